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
//!
//! Consumer-group translation (`translate_consumer_groups`): while copying, each partition
//! task records where the copies landed (source offset -> target offset, as run-length
//! segments in an [`OffsetMap`] of bounded size). After the copy, each listed group's committed
//! offsets on the source topic are read without joining the group (a consumer with the group's
//! id that never subscribes, only sends OffsetFetch), each committed offset `c` is mapped to
//! the target offset of the first copied record at or after `c` (the end of the copied
//! records when none; the target's end when the partition copied nothing), and the result is
//! committed for the same group id on the target, again without joining. The group then
//! resumes on the target at the copy of the next record it would have read on the source,
//! whatever the filter dropped. Translation needs partitions kept 1:1: when records are
//! re-partitioned by key, one source position has no single target position, so the groups
//! are refused (reported, nothing committed) rather than guessed. A group with no commit on
//! the source topic is reported as skipped; a failure to read or commit one group's offsets
//! is reported for that group and does not undo the copy.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::FuturesOrdered;
use futures::StreamExt;
use kvault_domain::error::DomainResult;
use kvault_domain::job::OperationControl;
use kvault_domain::migrate::{
    GroupTranslation, GroupTranslationStatus, MessageTransformation, MigrateRequest, MigrateResult,
    OnEvaluationError, PartitionTranslation,
};
use kvault_domain::record::Record;
use kvault_domain::{DomainError, ValidationError};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::{Offset as KOffset, TopicPartitionList};
use tokio::sync::mpsc;

use crate::admin::{committed_offsets, Admin};
use crate::client::{create_producer, group_offsets_client, kafka_error, ClusterConfig};
use crate::cluster::KafkaCluster;
use crate::consume::{to_record, Batcher, RangeReader, CHANNEL_BATCHES, PARTITION_CONCURRENCY};
use crate::partitioner::KeyPartitioner;
use crate::produce::{delivered, future_record, Delivered, Deliveries, MAX_IN_FLIGHT};
use crate::throttle::Throttle;
use crate::transform::{CompiledTransformation, EvalError};

const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);
/// Offset-map segments kept over all partitions of one migration (32 bytes each), shared out
/// per partition; only reached when a filter fragments the copy into very many runs.
const OFFSET_MAP_TOTAL_RUNS: usize = 1 << 20;
const OFFSET_MAP_MIN_RUNS: usize = 256;
const OFFSET_MAP_MAX_RUNS: usize = 1 << 16;

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
    /// Segments each partition's [`OffsetMap`] may hold; `None` when no group is translated.
    offset_map_runs: Option<usize>,
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
    // Group translation: why it cannot be done, or the target's ends before the copy (where
    // a group lands on a partition that copies nothing).
    let translation = if req.translate_consumer_groups.is_empty() {
        None
    } else if partitioner.is_some() {
        Some(Err(format!(
            "partitions were not kept 1:1 (source topic has partitions {:?}, target topic {:?}): \
             records were re-partitioned by key, so a source offset has no single target \
             offset; nothing was committed",
            info.partitions, target_partitions
        )))
    } else {
        let ends = target_admin
            .watermarks(&req.target_topic, &target_partitions)
            .await?
            .into_iter()
            .map(|(p, (_, high))| (p, high))
            .collect::<BTreeMap<i32, i64>>();
        Some(Ok(ends))
    };
    let offset_map_runs = matches!(translation, Some(Ok(_))).then(|| {
        (OFFSET_MAP_TOTAL_RUNS / info.partitions.len().max(1))
            .clamp(OFFSET_MAP_MIN_RUNS, OFFSET_MAP_MAX_RUNS)
    });

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
        offset_map_runs,
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
    let mut offset_maps = BTreeMap::new();
    while let Some(result) = tasks.next().await {
        match result {
            Ok((partition, Some(map))) => {
                offset_maps.insert(partition, map);
            }
            Ok((_, None)) => {}
            Err(e) => {
                // Stop the other partitions; keep the first (root-cause) error.
                shared.stop.store(true, Ordering::Relaxed);
                first_error.get_or_insert(e);
            }
        }
    }
    drop(tasks);
    if first_error.is_none() {
        let producer = shared.producer.clone();
        let flushed = tokio::task::spawn_blocking(move || producer.flush(FLUSH_TIMEOUT))
            .await
            .map_err(|e| DomainError::internal(format!("flush thread failed: {e}")))?;
        if let Err(e) = flushed {
            first_error = Some(kafka_error(format!("flush {}", req.target_topic), e));
        }
    }
    if let Some(error) = first_error {
        return Err(fail(error, &shared, &target_admin, topic_created).await);
    }

    let mut consumer_groups_translated = Vec::with_capacity(req.translate_consumer_groups.len());
    if let Some(translation) = translation {
        let plan = translation.map(|target_ends| TranslationPlan {
            cut: marks.clone(),
            offset_maps,
            target_ends,
        });
        for group in &req.translate_consumer_groups {
            if shared.control.is_cancelled() {
                return Err(DomainError::Cancelled);
            }
            let outcome = match &plan {
                Err(reason) => GroupTranslation {
                    group_id: group.clone(),
                    status: GroupTranslationStatus::Refused,
                    message: Some(reason.clone()),
                    partitions: Vec::new(),
                },
                Ok(plan) => {
                    translate_group(
                        source.config(),
                        target.config(),
                        &req.source_topic,
                        &req.target_topic,
                        group,
                        plan,
                    )
                    .await
                }
            };
            consumer_groups_translated.push(outcome);
        }
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
        consumer_groups_translated,
    })
}

/// Migrates `[start, end)` of one source partition; returns where the copies landed when
/// groups are to be translated.
async fn migrate_partition(
    partition: i32,
    start: i64,
    end: i64,
    shared: Arc<Shared>,
) -> DomainResult<(i32, Option<OffsetMap>)> {
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
        .map_err(|e| DomainError::internal(format!("reader thread failed: {e}")))?;
    // A reader error is the root cause (the producer just saw the channel close); a producer
    // error makes the reader stop with `Cancelled`, which must not hide it.
    match (read, produced) {
        (Err(e), Ok(_)) => Err(e),
        (_, Err(e)) => Err(e),
        (Ok(()), Ok(map)) => Ok((partition, map)),
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
    let mut reader =
        RangeReader::open(&shared.source, &shared.source_topic, partition, start, end)?;
    let mut batcher = Batcher::default();
    while shared.budget_left() {
        let Some(message) = reader.next(|| shared.should_stop())? else {
            break;
        };
        let record = to_record(&message, true, true);
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
                if let Some(full) = batcher.push(record) {
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
    }
    let rest = batcher.take();
    if !rest.is_empty() && tx.blocking_send(rest).is_err() {
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

async fn produce_batches(
    source_partition: i32,
    rx: &mut mpsc::Receiver<Vec<Record>>,
    shared: &Shared,
) -> DomainResult<Option<OffsetMap>> {
    let mut map = shared.offset_map_runs.map(OffsetMap::new);
    // Deliveries are awaited in send order: librdkafka confirms one partition's records in
    // order (idempotent producer), so this costs little, and it builds the offset map in
    // offset order.
    let mut deliveries = Deliveries::new(FuturesOrdered::new(), MAX_IN_FLIGHT, |done| {
        settle(done, &mut map, shared)
    });
    while let Some(batch) = rx.recv().await {
        if shared.should_stop() {
            deliveries.settle_all().await?;
            return Err(DomainError::Cancelled);
        }
        if let Some(throttle) = &shared.throttle {
            throttle.acquire(batch.len() as u32).await;
        }
        let mut batch_bytes = 0u64;
        for record in &batch {
            batch_bytes += record.payload_len();
            let target = shared.target_partition(source_partition, record);
            let out = future_record(&shared.target_topic, target, record, &[]);
            deliveries
                .send(&shared.producer, out, record.offset)
                .await?;
        }
        shared.control.add(batch.len() as u64, batch_bytes);
    }
    deliveries.settle_all().await?;
    // Ends the settle closure's borrow of `map`.
    drop(deliveries);
    Ok(map)
}

/// Counts a confirmed delivery (and maps its offset); a failed one (after librdkafka's own
/// retries) fails the migration.
fn settle(
    (source_offset, result): Delivered,
    map: &mut Option<OffsetMap>,
    shared: &Shared,
) -> DomainResult<()> {
    let (_, offset) = delivered(result, &shared.target_topic)?;
    shared.written.fetch_add(1, Ordering::Relaxed);
    if let Some(map) = map {
        map.record(source_offset, offset);
    }
    Ok(())
}

/// Where one group's offsets are translated to, once the copy is done.
struct TranslationPlan {
    /// Source `(low, high)` watermarks at the start: the cut.
    cut: BTreeMap<i32, (i64, i64)>,
    /// Per source partition that copied anything: where the copies landed.
    offset_maps: BTreeMap<i32, OffsetMap>,
    /// Target high watermarks before the copy: the position of a partition that copied
    /// nothing.
    target_ends: BTreeMap<i32, i64>,
}

impl TranslationPlan {
    /// The target offset for committed source offset `committed` on `partition`, and whether
    /// it is exact (see [`OffsetMap::translate`]).
    fn translate(&self, partition: i32, committed: i64) -> (i64, bool) {
        let map = self.offset_maps.get(&partition);
        if let Some(found) = map.and_then(|m| m.translate(committed)) {
            return found;
        }
        // No copied record at or after `committed`: the group has consumed everything it
        // would find on the target there.
        let end = map
            .and_then(OffsetMap::end)
            .or_else(|| self.target_ends.get(&partition).copied())
            .unwrap_or(0);
        (end, true)
    }
}

/// Reads `group`'s committed offsets on the source topic, translates and commits them on the
/// target topic. Errors are reported in the returned entry, not raised: the copy is done.
async fn translate_group(
    source: &ClusterConfig,
    target: &ClusterConfig,
    source_topic: &str,
    target_topic: &str,
    group: &str,
    plan: &TranslationPlan,
) -> GroupTranslation {
    let partitions: Vec<i32> = plan.cut.keys().copied().collect();
    let read = {
        let (source, topic, group) = (source.clone(), source_topic.to_owned(), group.to_owned());
        tokio::task::spawn_blocking(move || read_committed(&source, &topic, &group, &partitions))
            .await
            .map_err(|e| DomainError::internal(format!("offset reader thread failed: {e}")))
            .and_then(|r| r)
    };
    let mut outcome = GroupTranslation {
        group_id: group.to_owned(),
        status: GroupTranslationStatus::Failed,
        message: None,
        partitions: Vec::new(),
    };
    let committed = match read {
        Ok(committed) => committed,
        Err(e) => {
            outcome.message = Some(format!("reading committed offsets on the source: {e}"));
            return outcome;
        }
    };
    if committed.is_empty() {
        outcome.status = GroupTranslationStatus::Skipped;
        outcome.message = Some(format!(
            "no committed offset on source topic {source_topic}"
        ));
        return outcome;
    }

    let mut past_cut = Vec::new();
    let mut commit = Vec::with_capacity(committed.len());
    for (partition, offset, metadata) in committed {
        let (target_offset, exact) = plan.translate(partition, offset);
        if plan
            .cut
            .get(&partition)
            .is_some_and(|(_, high)| offset > *high)
        {
            past_cut.push(partition);
        }
        outcome.partitions.push(PartitionTranslation {
            partition,
            source_offset: offset,
            target_offset,
            exact,
        });
        commit.push((partition, target_offset, metadata));
    }
    let committed = {
        let (target, topic, group) = (target.clone(), target_topic.to_owned(), group.to_owned());
        tokio::task::spawn_blocking(move || commit_offsets(&target, &topic, &group, &commit))
            .await
            .map_err(|e| DomainError::internal(format!("offset commit thread failed: {e}")))
            .and_then(|r| r)
    };
    match committed {
        Ok(()) => {
            outcome.status = GroupTranslationStatus::Translated;
            if !past_cut.is_empty() {
                // Those records arrived after the cut and were not copied: nothing on the
                // target corresponds to them, so the group is put at the end of the copies.
                outcome.message = Some(format!(
                    "committed past the migration's cut on partitions {past_cut:?}; the \
                     records it consumed there after the cut were not copied"
                ));
            }
        }
        Err(e) => {
            outcome.message = Some(format!(
                "committing on the target failed (is the group active there?): {e}"
            ));
            outcome.partitions.clear();
        }
    }
    outcome
}

/// `(partition, committed offset, commit metadata)` for every partition where `group` has a
/// committed offset on `topic`.
fn read_committed(
    cluster: &ClusterConfig,
    topic: &str,
    group: &str,
    partitions: &[i32],
) -> DomainResult<Vec<(i32, i64, String)>> {
    let client = group_offsets_client(cluster, group)?;
    let query: Vec<(&str, i32)> = partitions.iter().map(|p| (topic, *p)).collect();
    let found = committed_offsets(&client, group, &query)?;
    Ok(partitions
        .iter()
        .zip(found)
        .filter_map(|(p, c)| c.map(|c| (*p, c.offset, c.metadata)))
        .collect())
}

/// Commits `offsets` for `group` on `topic` synchronously, without joining the group.
fn commit_offsets(
    cluster: &ClusterConfig,
    topic: &str,
    group: &str,
    offsets: &[(i32, i64, String)],
) -> DomainResult<()> {
    let client = group_offsets_client(cluster, group)?;
    let mut list = TopicPartitionList::new();
    for (partition, offset, metadata) in offsets {
        let mut elem = list.add_partition(topic, *partition);
        elem.set_offset(KOffset::Offset(*offset))
            .map_err(|e| kafka_error("offset commit request", e))?;
        elem.set_metadata(metadata.as_str());
    }
    client
        .commit(&list, CommitMode::Sync)
        .map_err(|e| kafka_error(format!("commit offsets of group {group} on {topic}"), e))
}

/// Where one source partition's copied records landed on the target: run-length segments
/// (consecutive source offsets written to consecutive target offsets), in offset order. Exact
/// as long as it holds at most `max_runs` segments; beyond that it is thinned out (every
/// other segment dropped), which keeps memory bounded and makes translations that fall in a
/// thinned gap err early (see [`OffsetMap::translate`]).
#[derive(Debug)]
struct OffsetMap {
    runs: Vec<Run>,
    max_runs: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    source: i64,
    target: i64,
    len: i64,
    /// Nothing was copied between the previous run's end and this run's start (false once a
    /// run in between was thinned out).
    gap_exact: bool,
}

impl OffsetMap {
    fn new(max_runs: usize) -> Self {
        Self {
            runs: Vec::new(),
            max_runs: max_runs.max(4),
        }
    }

    /// Records that the record at `source` was written at `target`; calls come in increasing
    /// source (and target) order.
    fn record(&mut self, source: i64, target: i64) {
        if let Some(last) = self.runs.last_mut() {
            if source == last.source + last.len && target == last.target + last.len {
                last.len += 1;
                return;
            }
        }
        if self.runs.len() >= self.max_runs {
            self.thin();
        }
        self.runs.push(Run {
            source,
            target,
            len: 1,
            gap_exact: true,
        });
    }

    /// Drops every other run, always keeping the first and the last.
    fn thin(&mut self) {
        let last = self.runs.len().saturating_sub(1);
        let mut dropped = false;
        let mut kept = Vec::with_capacity(self.runs.len() / 2 + 1);
        for (i, run) in self.runs.drain(..).enumerate() {
            if i % 2 == 0 || i == last {
                kept.push(Run {
                    gap_exact: run.gap_exact && !dropped,
                    ..run
                });
                dropped = false;
            } else {
                dropped = true;
            }
        }
        self.runs = kept;
    }

    /// The target offset of the first copied record at or after source offset `committed`,
    /// and whether that is exact; `None` when no record at or after it was copied. In a
    /// thinned-out gap the answer is the target position right after the last known copy
    /// before `committed`: never past an unread record, at worst a few already-read records
    /// early (at-least-once, like Kafka's own offset translation).
    fn translate(&self, committed: i64) -> Option<(i64, bool)> {
        let i = self.runs.partition_point(|r| r.source + r.len <= committed);
        let run = self.runs.get(i)?;
        if committed >= run.source {
            return Some((run.target + (committed - run.source), true));
        }
        match i.checked_sub(1).map(|j| self.runs[j]) {
            Some(prev) if !run.gap_exact => Some((prev.target + prev.len, false)),
            _ => Some((run.target, true)),
        }
    }

    /// The target offset after the last copied record.
    fn end(&self) -> Option<i64> {
        self.runs.last().map(|r| r.target + r.len)
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
        // The kind stays the cause's: a conflict found mid-run is still a 409.
        other => other.context(context),
    }
}

#[cfg(test)]
mod tests {
    use super::OffsetMap;

    /// Builds a map from `(source, target)` pairs.
    fn map(max_runs: usize, pairs: &[(i64, i64)]) -> OffsetMap {
        let mut m = OffsetMap::new(max_runs);
        for (s, t) in pairs {
            m.record(*s, *t);
        }
        m
    }

    #[test]
    fn contiguous_copy_is_one_run_and_translates_exactly() {
        let pairs: Vec<(i64, i64)> = (10..1_010).map(|s| (s, s + 90)).collect();
        let m = map(4, &pairs);
        assert_eq!(m.runs.len(), 1);
        assert_eq!(m.translate(0), Some((100, true)), "before the first copy");
        assert_eq!(m.translate(10), Some((100, true)));
        assert_eq!(m.translate(500), Some((590, true)));
        assert_eq!(m.translate(1_009), Some((1_099, true)));
        assert_eq!(m.translate(1_010), None, "nothing copied at or after");
        assert_eq!(m.end(), Some(1_100));
    }

    #[test]
    fn filtered_records_map_to_the_next_copy() {
        // Source 0..10, odd offsets filtered out: copies land at 0..5.
        let pairs: Vec<(i64, i64)> = (0..10).step_by(2).map(|s| (s, s / 2)).collect();
        let m = map(100, &pairs);
        assert_eq!(m.runs.len(), 5);
        for committed in 0..10 {
            // The next copy at or after `committed` is the next even source offset.
            let next_even = committed + committed % 2;
            let expected = (next_even < 10).then_some((next_even / 2, true));
            assert_eq!(m.translate(committed), expected, "committed {committed}");
        }
        assert_eq!(m.end(), Some(5));
    }

    #[test]
    fn thinning_bounds_memory_and_errs_early_never_late() {
        // 1000 copies of even source offsets, only 8 runs allowed.
        let pairs: Vec<(i64, i64)> = (0..2_000).step_by(2).map(|s| (s, s / 2)).collect();
        let m = map(8, &pairs);
        assert!(m.runs.len() <= 8, "{} runs", m.runs.len());
        assert_eq!(m.runs.first().map(|r| r.source), Some(0));
        assert_eq!(m.runs.last().map(|r| r.source), Some(1_998));
        let mut inexact = 0;
        for committed in 0..1_999 {
            let truth = (committed + committed % 2) / 2;
            let (target, exact) = m.translate(committed).expect("a copy follows");
            if exact {
                assert_eq!(target, truth, "committed {committed}");
            } else {
                inexact += 1;
                assert!(target <= truth, "committed {committed}: {target} > {truth}");
            }
        }
        assert!(inexact > 0, "thinning must show up as inexact answers");
        assert_eq!(m.translate(1_999), None, "the last copy is source 1998");
        assert_eq!(m.end(), Some(1_000));
    }
}
