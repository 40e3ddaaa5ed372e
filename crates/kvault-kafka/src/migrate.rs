//! Migrate: streams a consistent cut of a topic from one cluster into a topic of another (or
//! the same) cluster, applying the request's CEL filter, key rewrite and header additions, with
//! nothing touching disk.
//!
//! Order of business, so that nothing moves on a bad request:
//! 1. validate the request and compile the transformation (a bad expression is a
//!    `Validation` error naming the field; the target topic is not even created);
//! 2. describe the source topic (`NotFound("topic")` when missing) and snapshot its
//!    watermarks: the cut. Records produced later are not migrated;
//! 3. create the target topic when missing, like restore does (same partition count,
//!    replication factor and topic-level configs as the source);
//! 4. per source partition, a blocking reader thread (a consumer assigned to that partition,
//!    never joining a group) evaluates the transformation and feeds a bounded channel; an async
//!    task produces into the target through one idempotent acks=all producer. A few partitions
//!    run at a time, so memory stays bounded whatever the topic size.
//!
//! Partitions are kept (source partition N -> target partition N) when both topics have the
//! same partition count; otherwise keyed records go where Kafka's default partitioner (murmur2
//! of the *new* key) puts them and null-key records round-robin. Keys, values (null and empty
//! alike), headers (order, repeats, null values) and timestamps are preserved.
//!
//! Counting: `messages_read` = `messages_filtered` + `messages_failed` + `messages_written`
//! for a completed migration. `max_messages` caps the messages *migrated* (written): a record
//! the cap stops is not counted as read. Evaluation errors follow `on_error`: `skip` counts
//! the record as failed and goes on; `fail` stops with a `Validation` error on the failing
//! field. A migration that fails or is cancelled after it created the target topic deletes that
//! topic again, so no half-migrated topic is left behind; a pre-existing target is left as is
//! (records already written stay).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use kvault_domain::error::DomainResult;
use kvault_domain::job::OperationControl;
use kvault_domain::migrate::{
    MessageTransformation, MigrateRequest, MigrateResult, OnEvaluationError,
};
use kvault_domain::record::{Record, TimestampType};
use kvault_domain::{DomainError, ValidationError};
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KHeader, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset as KOffset, TopicPartitionList};
use tokio::sync::mpsc;

use crate::admin::Admin;
use crate::client::{create_producer, create_reader, kafka_error, ClusterConfig};
use crate::cluster::KafkaCluster;
use crate::partitioner::KeyPartitioner;
use crate::throttle::Throttle;
use crate::transform::{CompiledTransformation, EvalError};

/// Partitions migrated at the same time (each holds a consumer and a reader thread).
const PARTITION_CONCURRENCY: usize = 4;
/// Record batches in flight between one reader and its producing task.
const CHANNEL_BATCHES: usize = 4;
const BATCH_RECORDS: usize = 1_000;
const BATCH_BYTES: u64 = 4 * 1024 * 1024;
/// Deliveries awaited at once per partition task; librdkafka's own queue is bounded too.
const MAX_IN_FLIGHT: usize = 20_000;
/// A reader that gets neither a record nor an end-of-partition event for this long gives up.
const READ_STALL_TIMEOUT: Duration = Duration::from_secs(60);
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);

/// State shared by every partition task of one migration.
struct Shared {
    source: ClusterConfig,
    source_topic: String,
    target_topic: String,
    transformation: CompiledTransformation,
    on_error: OnEvaluationError,
    /// `None`: same partition as the source; else re-partition by key.
    partitioner: Option<KeyPartitioner>,
    producer: FutureProducer,
    throttle: Option<Throttle>,
    /// Messages that may still be migrated (`max_messages`), `u64::MAX` when uncapped.
    budget: AtomicU64,
    control: OperationControl,
    stop: AtomicBool,
    read: AtomicU64,
    filtered: AtomicU64,
    failed: AtomicU64,
    written: AtomicU64,
}

impl Shared {
    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.control.is_cancelled()
    }

    fn budget_left(&self) -> bool {
        self.budget.load(Ordering::Relaxed) > 0
    }

    /// Takes one message from the `max_messages` budget; false when it is spent.
    fn take_budget(&self) -> bool {
        self.budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(1)
            })
            .is_ok()
    }

    fn target_partition(&self, source_partition: i32, record: &Record) -> i32 {
        match &self.partitioner {
            None => source_partition,
            Some(p) => p.partition(record.key.as_deref()),
        }
    }

    fn written_so_far(&self) -> String {
        format!(
            "{} read, {} filtered, {} failed, {} written",
            self.read.load(Ordering::Relaxed),
            self.filtered.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.written.load(Ordering::Relaxed)
        )
    }
}

/// Copies a consistent cut of `req.source_topic` on `source` into `req.target_topic` on
/// `target` (see the module docs for the rules).
pub async fn migrate(
    source: &KafkaCluster,
    target: &KafkaCluster,
    migration_id: String,
    req: MigrateRequest,
    control: OperationControl,
) -> DomainResult<MigrateResult> {
    let started = Instant::now();
    req.validate()?;
    let empty = MessageTransformation::default();
    let transformation =
        CompiledTransformation::compile(req.transformation.as_ref().unwrap_or(&empty))?;
    let transformation_applied = req.transformation.as_ref().is_some_and(|t| !t.is_empty());

    let source_admin = source.admin()?;
    let info = source_admin.require_topic(&req.source_topic).await?;
    let marks = source_admin
        .watermarks(&req.source_topic, &info.partitions)
        .await?;
    if control.is_cancelled() {
        return Err(DomainError::Cancelled);
    }

    let target_admin = target.admin()?;
    let existing = target_admin.topic(&req.target_topic).await?;
    let topic_created = existing.is_none();
    let target_partitions = match existing {
        Some(t) => t.partitions,
        None => {
            let configs = source_admin.topic_configs(&req.source_topic).await?;
            let created = target_admin
                .create_topic(
                    &req.target_topic,
                    info.partition_count(),
                    info.replication_factor,
                    &configs,
                )
                .await?;
            if created.configs_dropped {
                tracing::warn!(
                    topic = %req.target_topic,
                    reason = ?created.config_error,
                    "target cluster refused the source topic's configs; created without them"
                );
            }
            info.partitions.clone()
        }
    };
    // Partitions are kept only when the two topics have the very same partition ids.
    let partitioner = if target_partitions == info.partitions {
        None
    } else {
        Some(KeyPartitioner::new(target_partitions.len() as i32))
    };

    let shared = Arc::new(Shared {
        source: source.config().clone(),
        source_topic: req.source_topic.clone(),
        target_topic: req.target_topic.clone(),
        transformation,
        on_error: req.on_error,
        partitioner,
        producer: create_producer(target.config())?,
        throttle: req.rate_limit_per_second.and_then(Throttle::per_second),
        budget: AtomicU64::new(req.max_messages.unwrap_or(u64::MAX)),
        control,
        stop: AtomicBool::new(false),
        read: AtomicU64::new(0),
        filtered: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        written: AtomicU64::new(0),
    });

    let ranges: Vec<(i32, i64, i64)> = marks
        .iter()
        .filter(|(_, (low, high))| high > low)
        .map(|(p, (low, high))| (*p, *low, *high))
        .collect();
    let mut tasks = futures::stream::iter(ranges)
        .map(|(p, start, end)| migrate_partition(p, start, end, Arc::clone(&shared)))
        .buffer_unordered(PARTITION_CONCURRENCY);
    let mut first_error = None;
    while let Some(result) = tasks.next().await {
        if let Err(e) = result {
            // Stop the other partitions; keep the first (root-cause) error.
            shared.stop.store(true, Ordering::Relaxed);
            first_error.get_or_insert(e);
        }
    }
    drop(tasks);
    if first_error.is_none() {
        let producer = shared.producer.clone();
        let flushed = tokio::task::spawn_blocking(move || producer.flush(FLUSH_TIMEOUT))
            .await
            .map_err(|e| DomainError::Internal(format!("flush thread failed: {e}")))?;
        if let Err(e) = flushed {
            first_error = Some(kafka_error(format!("flush {}", req.target_topic), e));
        }
    }
    if let Some(error) = first_error {
        return Err(fail(error, &shared, &target_admin, topic_created).await);
    }

    let read = shared.read.load(Ordering::Relaxed);
    let written = shared.written.load(Ordering::Relaxed);
    Ok(MigrateResult {
        migration_id,
        source_cluster: req.source_cluster,
        source_topic: req.source_topic,
        target_cluster: req.target_cluster,
        target_topic: req.target_topic,
        total_messages: read,
        messages_migrated: written,
        duration_ms: started.elapsed().as_millis() as u64,
        status: "completed".to_owned(),
        transformation_applied,
        messages_read: read,
        messages_filtered: shared.filtered.load(Ordering::Relaxed),
        messages_failed: shared.failed.load(Ordering::Relaxed),
        messages_written: written,
    })
}

/// Migrates `[start, end)` of one source partition.
async fn migrate_partition(
    partition: i32,
    start: i64,
    end: i64,
    shared: Arc<Shared>,
) -> DomainResult<()> {
    let (tx, mut rx) = mpsc::channel::<Vec<Record>>(CHANNEL_BATCHES);
    let reader_shared = Arc::clone(&shared);
    let reader = tokio::task::spawn_blocking(move || {
        read_partition(partition, start, end, tx, &reader_shared)
    });
    let produced = produce_batches(partition, &mut rx, &shared).await;
    if produced.is_err() {
        // Unblocks and stops the reader: its next send fails.
        shared.stop.store(true, Ordering::Relaxed);
    }
    drop(rx);
    let read = reader
        .await
        .map_err(|e| DomainError::Internal(format!("reader thread failed: {e}")))?;
    // A reader error is the root cause (the producer just saw the channel close); a producer
    // error makes the reader stop with `Cancelled`, which must not hide it.
    match (read, produced) {
        (Err(e), Ok(())) => Err(e),
        (_, Err(e)) => Err(e),
        (Ok(()), Ok(())) => Ok(()),
    }
}

/// Reads `[start, end)` of one partition, applies the transformation and sends what is kept
/// in batches. Runs on a blocking thread: librdkafka's poll and CEL evaluation are both
/// synchronous.
fn read_partition(
    partition: i32,
    start: i64,
    end: i64,
    tx: mpsc::Sender<Vec<Record>>,
    shared: &Shared,
) -> DomainResult<()> {
    let consumer = create_reader(&shared.source)?;
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&shared.source_topic, partition, KOffset::Offset(start))
        .map_err(|e| kafka_error("partition assignment", e))?;
    consumer
        .assign(&assignment)
        .map_err(|e| kafka_error(format!("assign {}/{partition}", shared.source_topic), e))?;

    let mut batch = Vec::with_capacity(BATCH_RECORDS);
    let mut batch_bytes = 0u64;
    let mut last_activity = Instant::now();
    loop {
        if shared.should_stop() {
            return Err(DomainError::Cancelled);
        }
        if !shared.budget_left() {
            break;
        }
        let message = match consumer.poll(Duration::from_millis(100)) {
            None => {
                if last_activity.elapsed() > READ_STALL_TIMEOUT {
                    return Err(DomainError::Kafka(format!(
                        "{}/{partition}: no record and no end-of-partition for \
                         {READ_STALL_TIMEOUT:?} (cut at {end})",
                        shared.source_topic
                    )));
                }
                continue;
            }
            // The log end is at or past the cut: offsets may have gaps (compaction,
            // transaction markers), so "offset end-1 arrived" is not a usable test.
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => {
                return Err(kafka_error(
                    format!("read {}/{partition}", shared.source_topic),
                    e,
                ))
            }
            Some(Ok(message)) => message,
        };
        last_activity = Instant::now();
        let offset = rdkafka::Message::offset(&message);
        if offset >= end {
            break;
        }
        let record = crate::backup::to_record(&message, true, true);
        drop(message);
        match shared.transformation.apply_owned(record, partition) {
            Ok(None) => {
                shared.read.fetch_add(1, Ordering::Relaxed);
                shared.filtered.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Some(record)) => {
                if !shared.take_budget() {
                    // max_messages reached: this record is neither migrated nor counted.
                    break;
                }
                shared.read.fetch_add(1, Ordering::Relaxed);
                batch_bytes += record.payload_len();
                batch.push(record);
                if batch.len() >= BATCH_RECORDS || batch_bytes >= BATCH_BYTES {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_RECORDS));
                    batch_bytes = 0;
                    if tx.blocking_send(full).is_err() {
                        // The producing task failed; its error is the one reported.
                        return Err(DomainError::Cancelled);
                    }
                }
            }
            Err(e) => {
                shared.read.fetch_add(1, Ordering::Relaxed);
                shared.failed.fetch_add(1, Ordering::Relaxed);
                match shared.on_error {
                    OnEvaluationError::Skip => {
                        tracing::debug!(error = %e, "expression failed; message skipped");
                    }
                    OnEvaluationError::Fail => return Err(eval_failure(e, shared)),
                }
            }
        }
        if offset + 1 >= end {
            break;
        }
    }
    if !batch.is_empty() && tx.blocking_send(batch).is_err() {
        return Err(DomainError::Cancelled);
    }
    Ok(())
}

fn eval_failure(e: EvalError, shared: &Shared) -> DomainError {
    let expression = shared
        .transformation
        .expression(e.field)
        .unwrap_or_default();
    ValidationError::new(
        e.field,
        expression,
        format!(
            "failed at partition {} offset {}: {} (on_error is \"fail\")",
            e.partition, e.offset, e.message
        ),
    )
    .into()
}

/// One record waiting for its delivery report.
type DeliveryResult = Result<
    rdkafka::producer::future_producer::OwnedDeliveryResult,
    futures::channel::oneshot::Canceled,
>;

async fn produce_batches(
    source_partition: i32,
    rx: &mut mpsc::Receiver<Vec<Record>>,
    shared: &Shared,
) -> DomainResult<()> {
    let mut pending: FuturesUnordered<DeliveryFuture> = FuturesUnordered::new();
    while let Some(batch) = rx.recv().await {
        if shared.should_stop() {
            settle_all(&mut pending, shared).await?;
            return Err(DomainError::Cancelled);
        }
        if let Some(throttle) = &shared.throttle {
            throttle.acquire(batch.len() as u32).await;
        }
        let mut batch_bytes = 0u64;
        for record in &batch {
            batch_bytes += record.payload_len();
            let target = shared.target_partition(source_partition, record);
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for h in &record.headers {
                headers = headers.insert(KHeader {
                    key: h.key.as_str(),
                    value: h.value.as_deref(),
                });
            }
            let mut out: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&shared.target_topic)
                .partition(target)
                .headers(headers);
            if let Some(key) = &record.key {
                out = out.key(key.as_slice());
            }
            if let Some(value) = &record.value {
                out = out.payload(value.as_slice());
            }
            if record.timestamp_type != TimestampType::NotAvailable {
                out = out.timestamp(record.timestamp);
            }
            loop {
                match shared.producer.send_result(out) {
                    Ok(future) => {
                        pending.push(future);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        out = back;
                        // The local queue is full: wait for a delivery (or a moment) first.
                        match pending.next().await {
                            Some(done) => settle(done, shared)?,
                            None => tokio::time::sleep(Duration::from_millis(5)).await,
                        }
                    }
                    Err((e, _)) => {
                        return Err(DomainError::Kafka(format!(
                            "produce to {}/{target}: {e}",
                            shared.target_topic
                        )))
                    }
                }
            }
            while pending.len() > MAX_IN_FLIGHT {
                if let Some(done) = pending.next().await {
                    settle(done, shared)?;
                }
            }
        }
        shared.control.add(batch.len() as u64, batch_bytes);
    }
    settle_all(&mut pending, shared).await
}

async fn settle_all(
    pending: &mut FuturesUnordered<DeliveryFuture>,
    shared: &Shared,
) -> DomainResult<()> {
    let mut first_error = None;
    while let Some(done) = pending.next().await {
        if let Err(e) = settle(done, shared) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Counts a confirmed delivery; a failed one (after librdkafka's own retries) fails the
/// migration.
fn settle(result: DeliveryResult, shared: &Shared) -> DomainResult<()> {
    match result {
        Ok(Ok(_)) => {
            shared.written.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Ok(Err((e, _))) => Err(DomainError::Kafka(format!(
            "delivery to {} failed: {e}",
            shared.target_topic
        ))),
        Err(_) => Err(DomainError::Kafka(
            "producer shut down before delivery was confirmed".into(),
        )),
    }
}

/// Adds what was done to a failure and deletes a target topic this migration created.
async fn fail(
    error: DomainError,
    shared: &Shared,
    target_admin: &Admin,
    topic_created: bool,
) -> DomainError {
    let topic = &shared.target_topic;
    let cleanup = if topic_created {
        match target_admin.delete_topic(topic).await {
            Ok(()) => format!("topic {topic} (created by this migration) was deleted again"),
            Err(e) => format!("deleting topic {topic} (created by this migration) failed: {e}"),
        }
    } else {
        format!("topic {topic} existed before and was left as is")
    };
    let context = format!("{}; {cleanup}", shared.written_so_far());
    match error {
        DomainError::Cancelled => {
            tracing::warn!(%context, "migration cancelled");
            DomainError::Cancelled
        }
        DomainError::Validation(mut v) => {
            v.message = format!("{} ({context})", v.message);
            DomainError::Validation(v)
        }
        DomainError::Kafka(m) => DomainError::Kafka(format!("{m} ({context})")),
        DomainError::NotFound { kind, name } => DomainError::NotFound { kind, name },
        other => DomainError::Internal(format!("{other} ({context})")),
    }
}
