//! The produce path shared by restore and migrate: turning a record ([`RecordView`]) into an
//! rdkafka [`BaseRecord`], and sending it with back-pressure while a bounded number of
//! deliveries are outstanding. Delivery reports come back per task through [`RecordProducer`]'s router (an
//! integer token per record, no future or channel per record) and are settled in send order;
//! how a settled delivery is accounted for (tally, offset check, offset map) is the caller's.

mod flush;
mod router;

use std::collections::VecDeque;
use std::time::Duration;

use kvault_domain::error::DomainResult;
use kvault_domain::record::TimestampType;
use kvault_domain::record_block::RecordView;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KHeader, OwnedHeaders};
use rdkafka::producer::BaseRecord;

pub(crate) use router::RecordProducer;
use router::{Outcome, Registration, Report, SEQ_BITS, SEQ_MASK};

/// A record ready to send; its delivery token is set by [`Deliveries::send`].
pub(crate) type OutRecord<'a> = BaseRecord<'a, [u8], [u8], usize>;

/// How long to wait before retrying a send into a full local queue when no delivery of ours
/// is outstanding (the queue is full of another task's records).
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(5);
/// The longest a task sleeps waiting for reports before it looks again (a safety net: the
/// polling thread wakes it when they arrive).
const WAIT_SLICE: Duration = Duration::from_millis(100);
pub(crate) use crate::tuning::{MAX_IN_FLIGHT, MAX_IN_FLIGHT_BYTES};

/// The record to produce to `topic`/`partition`: key, value (null stays null, empty stays
/// empty), headers in order with null values kept, then `extra_headers`, and the timestamp
/// when the source had one (else the producer stamps it). Borrows the record's bytes:
/// librdkafka copies them when the record is sent.
pub(crate) fn out_record<'a>(
    topic: &'a str,
    partition: i32,
    record: RecordView<'a>,
    extra_headers: &[(&str, &[u8])],
) -> OutRecord<'a> {
    let mut out: OutRecord<'a> = BaseRecord::with_opaque_to(topic, 0).partition(partition);
    let header_count = record.header_count() + extra_headers.len();
    if header_count > 0 {
        // `OwnedHeaders::insert` copies the bytes, so extra headers may borrow from temporaries.
        let mut headers = OwnedHeaders::new_with_capacity(header_count);
        for (key, value) in record.headers() {
            headers = headers.insert(KHeader { key, value });
        }
        for (key, value) in extra_headers {
            headers = headers.insert(KHeader {
                key,
                value: Some(*value),
            });
        }
        out = out.headers(headers);
    }
    if let Some(key) = record.key {
        out = out.key(key);
    }
    if let Some(value) = record.value {
        out = out.payload(value);
    }
    if record.timestamp_type != TimestampType::NotAvailable {
        out = out.timestamp(record.timestamp);
    }
    out
}

/// A settled delivery: the source offset of the record, and where it landed or why not.
pub(crate) type Delivered = (i64, Outcome);

/// One sent record: its source offset, its payload size, and its report once it came.
#[derive(Default)]
struct Slot {
    source_offset: i64,
    bytes: u64,
    outcome: Option<Outcome>,
}

/// Records in flight through one producer for one task: at most [`MAX_IN_FLIGHT`] deliveries
/// and [`MAX_IN_FLIGHT_BYTES`] of payload are outstanding at once (a larger record goes
/// alone), and each confirmed or failed delivery goes through `settle`, in
/// the order the records were sent (librdkafka's idempotent producer confirms one
/// partition's records in order anyway; settling in send order lets migrate build its offset
/// map in offset order).
pub(crate) struct Deliveries<'p, S> {
    registration: Registration<'p>,
    /// The records sent and not yet settled, oldest (sequence number `head`) first. It grows
    /// as records are sent, up to [`MAX_IN_FLIGHT`], so a task with few records in flight (a
    /// small partition) holds little.
    ring: VecDeque<Slot>,
    /// The oldest unsettled sequence number, and the next one to send.
    head: u64,
    next: u64,
    /// Sent records whose report has not come yet.
    unreported: usize,
    /// Payload bytes of the records sent and not yet settled.
    pending_bytes: u64,
    /// Reports taken from the inbox, not yet placed (kept for its capacity).
    drained: Vec<Report>,
    settle: S,
}

impl<'p, S> Deliveries<'p, S>
where
    S: FnMut(Delivered) -> DomainResult<()>,
{
    pub(crate) fn new(producer: &'p RecordProducer, settle: S) -> DomainResult<Self> {
        Ok(Self {
            registration: producer.register()?,
            ring: VecDeque::new(),
            head: 0,
            next: 0,
            unreported: 0,
            pending_bytes: 0,
            drained: Vec::new(),
            settle,
        })
    }

    /// Whether another record must wait for deliveries first.
    fn window_full(&self) -> bool {
        let pending = self.pending();
        pending >= MAX_IN_FLIGHT || (pending > 0 && self.pending_bytes >= MAX_IN_FLIGHT_BYTES)
    }

    /// Deliveries sent and not yet settled.
    pub(crate) fn pending(&self) -> usize {
        (self.next - self.head) as usize
    }

    /// Places every report that arrived, then settles the oldest sent records for as long as
    /// their reports are in. A failed settlement is returned at once.
    fn settle_arrived(&mut self) -> DomainResult<()> {
        let mut drained = std::mem::take(&mut self.drained);
        self.registration.inbox.drain(&mut drained);
        for report in drained.drain(..) {
            // The report's sequence number is the low bits of one in [head, next).
            let seq = self.head + (report.seq.wrapping_sub(self.head) & SEQ_MASK);
            if seq < self.next {
                let slot = &mut self.ring[(seq - self.head) as usize];
                if slot.outcome.is_none() {
                    slot.outcome = Some(report.outcome);
                    self.unreported -= 1;
                }
            }
        }
        self.drained = drained;
        while let Some(slot) = self.ring.front_mut() {
            let Some(outcome) = slot.outcome.take() else {
                break;
            };
            let (source_offset, bytes) = (slot.source_offset, slot.bytes);
            self.ring.pop_front();
            self.head += 1;
            self.pending_bytes -= bytes;
            (self.settle)((source_offset, outcome))?;
        }
        Ok(())
    }

    /// Waits until some of the missing reports came in (a quarter of them, at most 1024, so a
    /// busy task is woken once per chunk rather than per record), and settles what it can.
    async fn settle_some(&mut self) -> DomainResult<()> {
        if self.unreported > 0 {
            let want = (self.unreported / 4).clamp(1, 1024);
            self.registration.inbox.wait_for(want, WAIT_SLICE).await;
        }
        self.settle_arrived()
    }

    /// Sends `out` (the record read at `source_offset`, `bytes` of payload). While
    /// librdkafka's local queue is full, or the task's window of deliveries is, it settles
    /// deliveries first (or pauses when none is ours). A failed send or a failed settlement is
    /// returned at once.
    pub(crate) async fn send(
        &mut self,
        mut out: OutRecord<'_>,
        source_offset: i64,
        bytes: u64,
    ) -> DomainResult<()> {
        while self.window_full() {
            self.settle_some().await?;
        }
        let seq = self.next;
        out.delivery_opaque = ((self.registration.task << SEQ_BITS) | (seq & SEQ_MASK)) as usize;
        loop {
            match self.registration.producer.inner().send(out) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    out = back;
                    if self.pending() > 0 {
                        self.settle_some().await?;
                    } else {
                        tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                    }
                }
                Err((e, back)) => {
                    return Err(crate::error::kafka_error(
                        format_args!("produce to {}/{}", back.topic, back.partition.unwrap_or(-1)),
                        e,
                    ))
                }
            }
        }
        self.ring.push_back(Slot {
            source_offset,
            bytes,
            outcome: None,
        });
        self.next += 1;
        self.unreported += 1;
        self.pending_bytes += bytes;
        Ok(())
    }

    /// The task has sent its last record: waits for and settles every outstanding delivery
    /// like [`Self::settle_all`]. The last task of the producer to get here first pushes out
    /// the partly filled batches librdkafka holds back for `linger.ms`.
    pub(crate) async fn finish(&mut self) -> DomainResult<()> {
        self.registration.finish_sending().await;
        self.settle_all().await
    }

    /// Settles what has arrived without waiting (between batches, to keep `settle`'s
    /// accounting current).
    pub(crate) fn settle_ready(&mut self) -> DomainResult<()> {
        self.settle_arrived()
    }

    /// Waits for every outstanding delivery, settling all of them; the first failure is
    /// returned after the rest are settled, so the caller's accounting covers everything
    /// delivered.
    pub(crate) async fn settle_all(&mut self) -> DomainResult<()> {
        let mut first_error = None;
        while self.pending() > 0 {
            if self.unreported > 0 {
                let want = self.unreported;
                self.registration.inbox.wait_for(want, WAIT_SLICE).await;
            }
            if let Err(e) = self.settle_arrived() {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// The common verdict on a delivery: where it landed, or the error saying why `topic` did
/// not get it (after librdkafka's own retries).
pub(crate) fn delivered(outcome: Outcome, topic: &str) -> DomainResult<(i32, i64)> {
    outcome.map_err(|e| crate::error::kafka_error(format_args!("delivery to {topic} failed"), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClusterConfig;
    use kvault_domain::record::{Header, Record};
    use rdkafka::message::Headers;

    fn record(key: Option<&[u8]>, value: Option<&[u8]>, ts: TimestampType) -> Record {
        Record {
            offset: 7,
            timestamp: 1_700_000_000_000,
            timestamp_type: ts,
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers: vec![
                Header {
                    key: "a".into(),
                    value: Some(b"1".to_vec()),
                },
                Header {
                    key: "a".into(),
                    value: None,
                },
                Header {
                    key: "e".into(),
                    value: Some(Vec::new()),
                },
            ],
        }
    }

    #[test]
    fn out_record_keeps_bytes_headers_and_timestamp() {
        let r = record(None, Some(b""), TimestampType::CreateTime);
        let out = out_record("t", 3, RecordView::from(&r), &[("x-offset", b"7")]);
        assert_eq!(out.topic, "t");
        assert_eq!(out.partition, Some(3));
        assert_eq!(out.key, None, "null key stays null");
        assert_eq!(
            out.payload,
            Some(&b""[..]),
            "empty value stays empty, not null"
        );
        assert_eq!(out.timestamp, Some(1_700_000_000_000));
        let headers = out.headers.as_ref().expect("headers");
        let seen: Vec<(String, Option<Vec<u8>>)> = headers
            .iter()
            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("a".to_owned(), Some(b"1".to_vec())),
                ("a".to_owned(), None),
                ("e".to_owned(), Some(Vec::new())),
                ("x-offset".to_owned(), Some(b"7".to_vec())),
            ]
        );
    }

    #[tokio::test]
    async fn the_window_closes_at_its_byte_budget_but_always_admits_one_record() {
        // No broker answers here: sent records stay queued in librdkafka, unreported.
        let producer = RecordProducer::create(&ClusterConfig::new("127.0.0.1:9")).unwrap();
        let mut deliveries = Deliveries::new(&producer, |_| Ok(())).unwrap();
        let r = record(Some(b"k"), Some(b"v"), TimestampType::CreateTime);
        assert!(!deliveries.window_full());
        // One record larger than the whole budget still goes, alone.
        let huge = MAX_IN_FLIGHT_BYTES * 2;
        deliveries
            .send(out_record("t", 0, (&r).into(), &[]), 0, huge)
            .await
            .unwrap();
        assert!(deliveries.window_full(), "nothing more while it is out");
        // Smaller records go until together they fill the budget.
        let mut fresh = Deliveries::new(&producer, |_| Ok(())).unwrap();
        let half = MAX_IN_FLIGHT_BYTES / 2;
        fresh
            .send(out_record("t", 0, (&r).into(), &[]), 1, half)
            .await
            .unwrap();
        assert!(!fresh.window_full(), "half the budget leaves room");
        fresh
            .send(out_record("t", 0, (&r).into(), &[]), 2, half)
            .await
            .unwrap();
        assert!(fresh.window_full(), "the full budget closes the window");
        assert_eq!(fresh.pending(), 2);
    }

    #[tokio::test]
    async fn finishing_sends_the_last_batch_without_waiting_out_the_linger() {
        let broker = kvault_testkit::TestBroker::get().await;
        let topic = broker.unique_topic("finish-flush");
        broker.create_topic(&topic, 1).await;
        let mut cluster = ClusterConfig::new(broker.bootstrap());
        // A linger far longer than the test's patience: only a flush sends the batch.
        cluster
            .properties
            .insert("linger.ms".into(), "120000".into());
        cluster
            .properties
            .insert("message.timeout.ms".into(), "300000".into());
        let producer = RecordProducer::create(&cluster).unwrap();
        let mut landed = Vec::new();
        let mut deliveries = Deliveries::new(&producer, |(source, outcome)| {
            landed.push((source, outcome.map(|(_, offset)| offset)));
            Ok(())
        })
        .unwrap();
        let r = record(Some(b"k"), Some(b"v"), TimestampType::CreateTime);
        for offset in 0..3 {
            let out = out_record(&topic, 0, (&r).into(), &[]);
            deliveries.send(out, offset, 2).await.unwrap();
        }
        tokio::time::timeout(Duration::from_secs(30), deliveries.finish())
            .await
            .expect("the last batch waited for linger.ms")
            .unwrap();
        drop(deliveries);
        let offsets: Vec<(i64, i64)> = landed
            .into_iter()
            .map(|(source, offset)| (source, offset.expect("delivered")))
            .collect();
        assert_eq!(offsets, vec![(0, 0), (1, 1), (2, 2)]);
    }

    #[test]
    fn out_record_leaves_missing_timestamp_and_tombstone_alone() {
        let r = record(Some(b"k"), None, TimestampType::NotAvailable);
        let out = out_record("t", 0, (&r).into(), &[]);
        assert_eq!(out.key, Some(&b"k"[..]));
        assert_eq!(out.payload, None, "a tombstone stays a tombstone");
        assert_eq!(out.timestamp, None);
        assert_eq!(out.headers.as_ref().map(|h| h.count()), Some(3));
    }
}
