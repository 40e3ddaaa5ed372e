//! Restore: produces the records of a backup into a target topic, byte for byte.
//!
//! Order of business, so that nothing is produced from a bad plan or a bad archive:
//! 1. read the manifest, verify every checksum (when `validate_checksum`), check the request
//!    against the manifest and the target topic (conflict, `preserve_offsets` feasibility);
//! 2. create the target topic when missing;
//! 3. stream each selected source partition from the archive (a blocking reader thread feeding
//!    a bounded channel) into an idempotent acks=all producer, several partitions at a time.
//!
//! `preserve_offsets` semantics: Kafka assigns offsets on produce, so a record keeps its
//! offset only if it is produced into an empty partition whose next offset equals the source
//! record's and no offset before it is missing. kvault therefore accepts `preserve_offsets`
//! only when the mapping is identity, every selected source partition starts at offset 0 with
//! contiguous offsets (no compaction or transaction gaps), and every target partition is empty
//! (high watermark 0); otherwise it refuses up front. While producing it checks that each
//! delivered offset equals the source offset and fails loudly if not (e.g. another producer
//! wrote into the topic meanwhile). `include_source_offset_header` is the general tool for
//! translating offsets when they cannot be preserved.
//!
//! A failure after producing began never leaves a silent half-written topic: the error says
//! how many records reached which partitions, and a topic kvault created is deleted again.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use kvault_domain::error::DomainResult;
use kvault_domain::job::OperationControl;
use kvault_domain::manifest::Manifest;
use kvault_domain::ports::{ArchiveStore, ReadBounds, RecordReader};
use kvault_domain::record::{Record, TimestampType};
use kvault_domain::restore::{PartitionRestoreResult, RestorePlan, SOURCE_OFFSET_HEADER};
use kvault_domain::{DomainError, IfExists, PartitionMapping, RestoreResult, ValidationError};
use rdkafka::producer::FutureProducer;
use tokio::sync::mpsc;

use crate::admin::{Admin, TopicInfo};
use crate::client::{create_producer, ClusterConfig};
use crate::consume::{Batcher, CHANNEL_BATCHES, PARTITION_CONCURRENCY};
use crate::partitioner::KeyPartitioner;
use crate::produce::{delivered, future_record, Delivered, Deliveries, MAX_IN_FLIGHT};
use crate::throttle::Throttle;

/// Where produced records landed, per target partition.
#[derive(Debug, Default, Clone, Copy)]
struct Landed {
    count: u64,
    first: i64,
    last: i64,
}

#[derive(Default)]
struct Tally {
    partitions: BTreeMap<i32, Landed>,
}

impl Tally {
    fn add(&mut self, partition: i32, offset: i64) {
        let entry = self.partitions.entry(partition).or_insert(Landed {
            count: 0,
            first: offset,
            last: offset,
        });
        entry.count += 1;
        entry.first = entry.first.min(offset);
        entry.last = entry.last.max(offset);
    }

    fn total(&self) -> u64 {
        self.partitions.values().map(|l| l.count).sum()
    }

    fn describe(&self) -> String {
        if self.partitions.is_empty() {
            return "no records were written".into();
        }
        let parts: Vec<String> = self
            .partitions
            .iter()
            .map(|(p, l)| {
                format!(
                    "partition {p}: {} (offsets {}..={})",
                    l.count, l.first, l.last
                )
            })
            .collect();
        format!(
            "{} records were written: {}",
            self.total(),
            parts.join(", ")
        )
    }
}

struct Shared {
    backup_id: String,
    target_topic: String,
    mapping: PartitionMapping,
    partitioner: KeyPartitioner,
    producer: FutureProducer,
    throttle: Option<Throttle>,
    preserve_offsets: bool,
    source_offset_header: bool,
    until_ms: Option<i64>,
    control: OperationControl,
    stop: AtomicBool,
    tally: Mutex<Tally>,
}

impl Shared {
    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.control.is_cancelled()
    }

    fn target_partition(&self, source_partition: i32, record: &Record) -> i32 {
        match self.mapping {
            PartitionMapping::Identity => source_partition,
            PartitionMapping::Murmur2 => self.partitioner.partition(record.key.as_deref()),
        }
    }
}

/// Totals one source partition contributed.
#[derive(Debug, Default)]
struct SourceTotals {
    messages: u64,
    bytes: u64,
}

pub(crate) async fn run(
    cluster_id: &str,
    cluster: &ClusterConfig,
    plan: RestorePlan,
    store: Arc<dyn ArchiveStore>,
    control: OperationControl,
) -> DomainResult<RestoreResult> {
    let started = Instant::now();
    let manifest = store.manifest(&plan.backup_id).await?;
    if plan.validate_checksum {
        let report = store.check_integrity(&plan.backup_id, &control).await?;
        if !report.valid {
            return Err(DomainError::CorruptArchive {
                backup_id: plan.backup_id.to_string(),
                reason: format!(
                    "verification found {} problem(s): {}; nothing was restored",
                    report.problems.len(),
                    report.problems.join("; ")
                ),
            });
        }
    }
    let sources = select_partitions(&plan, &manifest)?;

    let admin = Admin::new(cluster)?;
    let existing = admin.topic(&plan.target_topic).await?;
    let source_count = manifest.topic.partition_count;
    let target_count = match &existing {
        Some(info) => info.partition_count(),
        None => plan.target_partitions.unwrap_or(source_count),
    };
    let mapping = if target_count == source_count {
        PartitionMapping::Identity
    } else {
        PartitionMapping::Murmur2
    };
    if let Some(info) = &existing {
        check_existing_target(&admin, &plan, info, &sources, &manifest, mapping).await?;
    } else if plan.preserve_offsets {
        check_offsets_preservable(&plan, &manifest, &sources, mapping)?;
    }
    if control.is_cancelled() {
        return Err(DomainError::Cancelled);
    }

    let topic_created = existing.is_none();
    let mut warnings = Vec::new();
    if topic_created {
        let replication = plan
            .replication_factor
            .unwrap_or(manifest.topic.replication_factor);
        let created = admin
            .create_topic(
                &plan.target_topic,
                target_count,
                replication,
                &manifest.topic.configs,
            )
            .await?;
        if created.configs_dropped {
            tracing::warn!(
                topic = %plan.target_topic,
                reason = ?created.config_error,
                "broker refused the backed-up topic configs; topic created without them"
            );
            warnings.push(format!(
                "the broker refused the backed-up topic configs ({}); topic {} was created \
                 without them",
                created.config_error.as_deref().unwrap_or("no reason given"),
                plan.target_topic
            ));
        }
    }

    let shared = Arc::new(Shared {
        backup_id: plan.backup_id.to_string(),
        target_topic: plan.target_topic.clone(),
        mapping,
        partitioner: KeyPartitioner::new(target_count),
        producer: create_producer(cluster)?,
        throttle: Throttle::per_second(plan.rate_limit_per_second),
        preserve_offsets: plan.preserve_offsets,
        source_offset_header: plan.include_source_offset_header,
        until_ms: plan.until_time_ms,
        control: control.clone(),
        stop: AtomicBool::new(false),
        tally: Mutex::new(Tally::default()),
    });

    let outcomes: Vec<DomainResult<SourceTotals>> = futures::stream::iter(sources.clone())
        .map(|p| restore_partition(p, store.clone(), shared.clone()))
        .buffer_unordered(PARTITION_CONCURRENCY)
        .collect()
        .await;

    let mut failure: Option<DomainError> = None;
    let mut totals = SourceTotals::default();
    for outcome in outcomes {
        match outcome {
            Ok(t) => {
                totals.messages += t.messages;
                totals.bytes += t.bytes;
            }
            Err(DomainError::Cancelled) if failure.is_some() => {}
            Err(e) => {
                if failure.is_none() || matches!(failure, Some(DomainError::Cancelled)) {
                    failure = Some(e);
                }
            }
        }
    }
    if failure.is_none() && control.is_cancelled() {
        failure = Some(DomainError::Cancelled);
    }
    let tally = std::mem::take(
        &mut *shared
            .tally
            .lock()
            .map_err(|_| DomainError::internal("restore tally lock poisoned"))?,
    );
    if let Some(error) = failure {
        return Err(
            fail_after_producing(error, &tally, &admin, &plan.target_topic, topic_created).await,
        );
    }

    let partitions_created = tally
        .partitions
        .iter()
        .map(|(p, l)| PartitionRestoreResult {
            partition: *p,
            messages_count: l.count,
            start_offset: l.first,
            end_offset: l.last + 1,
        })
        .collect();
    Ok(RestoreResult {
        backup_id: plan.backup_id.to_string(),
        target_topic: plan.target_topic,
        cluster_id: cluster_id.to_owned(),
        total_messages: totals.messages,
        total_size_bytes: totals.bytes,
        duration_ms: started.elapsed().as_millis() as u64,
        messages_restored: tally.total(),
        partitions_created,
        status: "completed".into(),
        checksum_validated: plan.validate_checksum,
        partition_mapping: mapping,
        topic_created,
        offsets_preserved: plan.preserve_offsets,
        warnings,
    })
}

/// The source partitions to restore: the request's subset (each must be in the backup) or all.
fn select_partitions(plan: &RestorePlan, manifest: &Manifest) -> DomainResult<Vec<i32>> {
    let in_backup: Vec<i32> = manifest.partitions.iter().map(|p| p.partition).collect();
    match &plan.partitions {
        None => Ok(in_backup),
        Some(requested) => {
            if let Some(bad) = requested.iter().find(|p| !in_backup.contains(p)) {
                return Err(ValidationError::new(
                    "partitions",
                    bad,
                    format!(
                        "backup {} holds partitions {in_backup:?}",
                        manifest.backup_id
                    ),
                )
                .into());
            }
            let mut sorted = requested.clone();
            sorted.sort_unstable();
            Ok(sorted)
        }
    }
}

/// An existing target: refuse when it holds messages unless appending; check offset
/// preservation against its watermarks.
async fn check_existing_target(
    admin: &Admin,
    plan: &RestorePlan,
    info: &TopicInfo,
    sources: &[i32],
    manifest: &Manifest,
    mapping: PartitionMapping,
) -> DomainResult<()> {
    let marks = admin
        .watermarks(&plan.target_topic, &info.partitions)
        .await?;
    let held: i64 = marks.values().map(|(low, high)| high - low).sum();
    if held > 0 && plan.if_exists == IfExists::Fail {
        return Err(DomainError::conflict_on(
            format!(
                "target topic {} already exists and holds {held} messages; restore into a new \
                 or empty topic, or set \"if_exists\": \"append\"",
                plan.target_topic
            ),
            "target_topic",
            &plan.target_topic,
        ));
    }
    if plan.preserve_offsets {
        check_offsets_preservable(plan, manifest, sources, mapping)?;
        if let Some((p, (_, high))) = marks.iter().find(|(_, (_, high))| *high != 0) {
            return Err(ValidationError::new(
                "preserve_offsets",
                true,
                format!(
                    "target partition {p} already has offsets up to {high}; offsets can only be \
                     preserved into empty partitions (high watermark 0)"
                ),
            )
            .into());
        }
    }
    Ok(())
}

fn check_offsets_preservable(
    plan: &RestorePlan,
    manifest: &Manifest,
    sources: &[i32],
    mapping: PartitionMapping,
) -> DomainResult<()> {
    let refuse = |why: String| -> DomainResult<()> {
        Err(ValidationError::new("preserve_offsets", true, why).into())
    };
    if mapping != PartitionMapping::Identity {
        return refuse(format!(
            "the target has a different partition count than the source ({}); records would \
             be repartitioned, so offsets cannot be kept",
            manifest.topic.partition_count
        ));
    }
    if plan
        .target_partitions
        .is_some_and(|n| n != manifest.topic.partition_count)
    {
        return refuse("target_partitions differs from the source's partition count".into());
    }
    for p in sources {
        let Some(pm) = manifest.partition(*p) else {
            continue;
        };
        if pm.message_count == 0 {
            continue;
        }
        if pm.first_offset != Some(0) {
            return refuse(format!(
                "source partition {p} starts at offset {} (Kafka assigns offsets from 0 in an \
                 empty partition); use include_source_offset_header to translate offsets instead",
                pm.first_offset.unwrap_or(pm.start_offset)
            ));
        }
        if !pm.contiguous {
            return refuse(format!(
                "source partition {p} has offset gaps (compaction or transaction markers); \
                 Kafka would renumber the records; use include_source_offset_header instead"
            ));
        }
    }
    Ok(())
}

/// Produces one source partition; returns how much it read from the archive.
async fn restore_partition(
    source: i32,
    store: Arc<dyn ArchiveStore>,
    shared: Arc<Shared>,
) -> DomainResult<SourceTotals> {
    let (tx, mut rx) = mpsc::channel::<Vec<Record>>(CHANNEL_BATCHES);
    let id = kvault_domain::BackupId::parse(&shared.backup_id)?;
    let records = store
        .read_partition(
            &id,
            source,
            ReadBounds {
                until_timestamp: shared.until_ms,
            },
        )
        .await?;
    let reader = {
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || read_archive(records, &shared, tx))
    };
    let produced = produce_batches(source, &mut rx, &shared).await;
    // Unblock the reader if producing stopped early, then collect its outcome.
    drop(rx);
    let read = reader
        .await
        .map_err(|e| DomainError::internal(format!("archive reader thread failed: {e}")))?;
    let result = match (read, produced) {
        (Err(e), _) if !matches!(e, DomainError::Cancelled) => Err(e),
        (_, Err(e)) => Err(e),
        (Err(e), Ok(_)) => Err(e),
        (Ok(()), Ok(totals)) => Ok(totals),
    };
    if result.is_err() {
        shared.stop.store(true, Ordering::Relaxed);
    }
    result
}

/// Streams a source partition out of the archive in batches.
fn read_archive(
    reader: Box<dyn RecordReader>,
    shared: &Shared,
    tx: mpsc::Sender<Vec<Record>>,
) -> DomainResult<()> {
    let mut batcher = Batcher::default();
    for record in reader {
        let record = record?;
        if let Some(until) = shared.until_ms {
            if record.timestamp_type != TimestampType::NotAvailable && record.timestamp > until {
                continue;
            }
        }
        if shared.should_stop() {
            return Err(DomainError::Cancelled);
        }
        if let Some(full) = batcher.push(record) {
            if tx.blocking_send(full).is_err() {
                return Err(DomainError::Cancelled);
            }
        }
    }
    let rest = batcher.take();
    if !rest.is_empty() && tx.blocking_send(rest).is_err() {
        return Err(DomainError::Cancelled);
    }
    Ok(())
}

async fn produce_batches(
    source: i32,
    rx: &mut mpsc::Receiver<Vec<Record>>,
    shared: &Shared,
) -> DomainResult<SourceTotals> {
    let mut totals = SourceTotals::default();
    // Deliveries are settled as they come: restore only tallies where they landed.
    let mut deliveries = Deliveries::new(FuturesUnordered::new(), MAX_IN_FLIGHT, |done| {
        settle(done, shared)
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
            let target = shared.target_partition(source, record);
            let offset_text = record.offset.to_string();
            let extra: &[(&str, &[u8])] = if shared.source_offset_header {
                &[(SOURCE_OFFSET_HEADER, offset_text.as_bytes())]
            } else {
                &[]
            };
            let out = future_record(&shared.target_topic, target, record, extra);
            deliveries
                .send(&shared.producer, out, record.offset)
                .await?;
        }
        totals.messages += batch.len() as u64;
        totals.bytes += batch_bytes;
        shared.control.add(batch.len() as u64, batch_bytes);
    }
    deliveries.settle_all().await?;
    Ok(totals)
}

/// Records a delivery report; a failed delivery (after librdkafka's own retries) fails the
/// restore, and so does an offset that differs from the source when offsets are preserved.
fn settle((source_offset, result): Delivered, shared: &Shared) -> DomainResult<()> {
    let (partition, offset) = delivered(result, &shared.target_topic)?;
    if let Ok(mut tally) = shared.tally.lock() {
        tally.add(partition, offset);
    }
    if shared.preserve_offsets && offset != source_offset {
        return Err(DomainError::kafka(format!(
            "offset preservation broken: source offset {source_offset} landed at offset \
             {offset} of partition {partition} (was something else writing to {}?)",
            shared.target_topic
        )));
    }
    Ok(())
}

/// Turns a failure after producing began into an error that says what was written, deleting
/// a topic kvault created so no half-restored topic is left behind.
async fn fail_after_producing(
    error: DomainError,
    tally: &Tally,
    admin: &Admin,
    topic: &str,
    topic_created: bool,
) -> DomainError {
    let cleanup = if topic_created {
        match admin.delete_topic(topic).await {
            Ok(()) => format!("; topic {topic} (created by this restore) was deleted again"),
            Err(e) => format!("; deleting topic {topic} (created by this restore) failed: {e}"),
        }
    } else {
        format!("; topic {topic} existed before and was left as is")
    };
    let written = tally.describe();
    let context = format!("restore into {topic} failed: {written}{cleanup}");
    match error {
        DomainError::Cancelled => {
            // The variant carries no text; the log keeps what was written.
            tracing::warn!(%context, "restore cancelled");
            DomainError::Cancelled
        }
        // The kind stays the cause's: a conflict found mid-run is still a 409.
        other => other.context(context),
    }
}
