//! [`RecordProducer`]: librdkafka's threaded producer whose delivery reports are routed, by a
//! plain integer token per record, to the inbox of the task that sent the record.
//!
//! Nothing is allocated per record: the token is `task << SEQ_BITS | seq` (the sending task's
//! id and its record sequence number), and librdkafka's polling thread appends each report to
//! that task's inbox (a `Vec` behind an uncontended lock), waking the task only once as many
//! reports have arrived as it asked to wait for. Task ids are never reused within one
//! producer, so a report for a task that went away is dropped, never misrouted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use kvault_domain::error::DomainResult;
use kvault_domain::DomainError;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use tokio::sync::Notify;

use crate::client::{kafka_error, producer_config, ClusterConfig};

/// Low bits of a token: the record's sequence number within its task (wraps; far fewer than
/// 2^44 records are ever in flight). High bits: the task id.
pub(crate) const SEQ_BITS: u32 = 44;
pub(crate) const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;
/// Tasks one producer can serve over its life (2^20 source partitions).
const MAX_TASKS: usize = 1 << (64 - SEQ_BITS);
const _: () = assert!(usize::BITS == 64, "tokens need a 64-bit usize");

/// How a sent record ended: where it landed, or why it did not (after librdkafka's retries).
pub(crate) type Outcome = Result<(i32, i64), KafkaError>;

/// One delivery report: the record's sequence number (low [`SEQ_BITS`]) and its outcome.
pub(crate) struct Report {
    pub(crate) seq: u64,
    pub(crate) outcome: Outcome,
}

/// The reports for one task, filled by librdkafka's polling thread, drained by the task.
pub(crate) struct Inbox {
    reports: Mutex<Vec<Report>>,
    /// Wake the task once this many reports wait (`usize::MAX`: it is not waiting).
    wake_at: AtomicUsize,
    notify: Notify,
}

impl Inbox {
    fn new() -> Self {
        Self {
            reports: Mutex::new(Vec::new()),
            wake_at: AtomicUsize::new(usize::MAX),
            notify: Notify::new(),
        }
    }

    fn push(&self, report: Report) {
        let waiting = {
            let mut reports = self.reports.lock().unwrap_or_else(PoisonError::into_inner);
            reports.push(report);
            reports.len()
        };
        if waiting >= self.wake_at.load(Ordering::SeqCst) {
            self.wake_at.store(usize::MAX, Ordering::SeqCst);
            self.notify.notify_one();
        }
    }

    /// Moves every waiting report into `into` (which is expected empty), keeping both
    /// buffers' capacity.
    pub(crate) fn drain(&self, into: &mut Vec<Report>) {
        let mut reports = self.reports.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::swap(&mut *reports, into);
    }

    /// Waits until at least `want` reports wait, or `at_most` passed.
    pub(crate) async fn wait_for(&self, want: usize, at_most: Duration) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        self.wake_at.store(want.max(1), Ordering::SeqCst);
        let ready = self
            .reports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
            >= want;
        if !ready {
            let _ = tokio::time::timeout(at_most, notified).await;
        }
        self.wake_at.store(usize::MAX, Ordering::SeqCst);
    }
}

/// The producer context: routes every delivery report to its task's inbox.
pub(crate) struct Router {
    inboxes: RwLock<Vec<Option<Arc<Inbox>>>>,
}

impl ClientContext for Router {}

impl ProducerContext for Router {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, token: usize) {
        let token = token as u64;
        let outcome = match result {
            Ok(message) => Ok((message.partition(), message.offset())),
            Err((e, _)) => Err(e.clone()),
        };
        let task = (token >> SEQ_BITS) as usize;
        let inboxes = self.inboxes.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(Some(inbox)) = inboxes.get(task) {
            inbox.push(Report {
                seq: token & SEQ_MASK,
                outcome,
            });
        }
    }
}

/// kvault's producer for restore and migrate (idempotent, acks=all: [`producer_config`]).
/// Clones share the one librdkafka producer.
#[derive(Clone)]
pub(crate) struct RecordProducer {
    producer: ThreadedProducer<Router>,
    /// Registered tasks that have not finished sending.
    sending: Arc<AtomicUsize>,
}

/// A task's place at a [`RecordProducer`]: its id (the high bits of its tokens) and inbox.
/// Dropping it unregisters the inbox; later reports for it are dropped.
pub(crate) struct Registration<'p> {
    pub(crate) producer: &'p RecordProducer,
    pub(crate) task: u64,
    pub(crate) inbox: Arc<Inbox>,
    /// Whether the task may still send (it counts in the producer's `sending`).
    sending: bool,
}

impl Registration<'_> {
    /// The task has sent its last record. When no other task is sending any more, the
    /// records librdkafka holds back for `linger.ms` are sent now: a run does not end by
    /// waiting out the linger of its last batches.
    pub(crate) async fn finish_sending(&mut self) {
        if !std::mem::replace(&mut self.sending, false) {
            return;
        }
        if self.producer.sending.fetch_sub(1, Ordering::SeqCst) == 1 {
            let producer = self.producer.clone();
            // Its outcome is not needed: every delivery's own report is settled after this.
            let _ = tokio::task::spawn_blocking(move || producer.flush(FINISH_FLUSH)).await;
        }
    }
}

/// How long the last task to finish sending waits in a flush; past it, the task waits for its
/// reports as usual (librdkafka fails a record after `message.timeout.ms`).
const FINISH_FLUSH: Duration = Duration::from_secs(60);

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if self.sending {
            self.producer.sending.fetch_sub(1, Ordering::SeqCst);
        }
        let mut inboxes = self
            .producer
            .router()
            .inboxes
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        inboxes[self.task as usize] = None;
    }
}

impl RecordProducer {
    /// Creates the producer and starts connecting it at once. The idempotent producer cannot
    /// send before it has a producer id, and librdkafka asks for one on a 500 ms timer that
    /// only finds a broker if a connection is already up: left alone that cost ~1 s per run
    /// (measured). Callers create the producer first, so this overlaps with their checks.
    pub(crate) fn create(cluster: &ClusterConfig) -> DomainResult<Self> {
        let router = Router {
            inboxes: RwLock::new(Vec::new()),
        };
        let producer: ThreadedProducer<Router> = producer_config(cluster)?
            .create_with_context(router)
            .map_err(|e| kafka_error("create producer", e))?;
        // A metadata request (no topic named, so none is auto-created) opens a connection;
        // its answer is not needed.
        let early = producer.clone();
        std::thread::spawn(move || {
            use rdkafka::producer::Producer;
            let _ = early.client().fetch_metadata(None, Duration::from_secs(10));
        });
        Ok(Self {
            producer,
            sending: Arc::new(AtomicUsize::new(0)),
        })
    }

    fn router(&self) -> &Router {
        use rdkafka::producer::Producer;
        self.producer.context()
    }

    pub(crate) fn inner(&self) -> &ThreadedProducer<Router> {
        &self.producer
    }

    /// Sends everything queued now (without waiting out `linger.ms`) and waits up to
    /// `timeout` for it to be delivered (or to fail).
    pub(crate) fn flush(&self, timeout: Duration) -> rdkafka::error::KafkaResult<()> {
        super::flush::flush_now(&self.producer, timeout)
    }

    /// A new task's inbox; its id is never handed out again by this producer.
    pub(crate) fn register(&self) -> DomainResult<Registration<'_>> {
        let inbox = Arc::new(Inbox::new());
        let mut inboxes = self
            .router()
            .inboxes
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if inboxes.len() >= MAX_TASKS {
            return Err(DomainError::internal(format!(
                "one producer serves at most {MAX_TASKS} partition tasks"
            )));
        }
        inboxes.push(Some(Arc::clone(&inbox)));
        self.sending.fetch_add(1, Ordering::SeqCst);
        Ok(Registration {
            producer: self,
            task: (inboxes.len() - 1) as u64,
            inbox,
            sending: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_producer_is_created_and_registers_tasks_with_distinct_ids() {
        let producer = RecordProducer::create(&ClusterConfig::new("127.0.0.1:9")).unwrap();
        let a = producer.register().unwrap();
        let b = producer.register().unwrap();
        assert_ne!(a.task, b.task);
        let a_task = a.task;
        drop(a);
        let c = producer.register().unwrap();
        assert!(c.task != a_task && c.task != b.task, "ids are never reused");
    }

    #[tokio::test]
    async fn an_inbox_wakes_its_task_once_enough_reports_wait() {
        let inbox = Arc::new(Inbox::new());
        let filler = Arc::clone(&inbox);
        let fill = tokio::spawn(async move {
            for seq in 0..3 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                filler.push(Report {
                    seq,
                    outcome: Ok((0, seq as i64)),
                });
            }
        });
        inbox.wait_for(3, Duration::from_secs(10)).await;
        let mut got = Vec::new();
        inbox.drain(&mut got);
        assert_eq!(got.len(), 3);
        fill.await.unwrap();
    }
}
