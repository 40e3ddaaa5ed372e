//! Backup: reads a consistent cut of a topic (the watermarks seen when the backup starts) and
//! streams it into an archive.
//!
//! Each selected partition gets its own reader thread (a librdkafka consumer assigned to that
//! partition only, taken from the backup's pool of consumers and handed back for the next
//! partition) and its own writer thread (the archive's `PartitionWriter`), joined by a small
//! bounded channel of record batches: memory stays bounded whatever the topic size, and
//! fetching overlaps compression. A few partitions are processed at a time.
//!
//! The committed offsets of consumer groups on the topic are read right after the cut's
//! watermarks, without joining any group, and recorded in the manifest.
//!
//! A reader stops at the cut, never on silence: when it sees a record at or past the cut, or
//! librdkafka reports the end of the partition (offsets are not contiguous: compaction and
//! transaction markers leave gaps, so "offset end-1 arrived" is not a usable test).

mod commit;
mod cut;
mod in_progress;
mod resume;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::Utc;
use futures::StreamExt;
use kvault_domain::backup::{BackupOutcome, BackupPlan};
use kvault_domain::backup_planning::{
    backup_result, nothing_new, select_partitions, BackupRun, PartitionRange,
};
use kvault_domain::backup_resume::BackupCheckpoint;
use kvault_domain::chain::continue_from;
use kvault_domain::error::DomainResult;
use kvault_domain::job::OperationControl;
use kvault_domain::manifest::PartitionManifest;
use kvault_domain::ports::{ArchiveSpec, ArchiveStore, ArchiveWriter, PartitionWriter};
use kvault_domain::record_block::RecordBlock;
use kvault_domain::{ClusterId, DomainError};
use rdkafka::message::{BorrowedMessage, Message};

use crate::admin::{blocking, drop_in_background, Admin};
use crate::client::ClusterConfig;
use crate::consume::{BlockBatcher, RangeReader, CHANNEL_BATCHES, PARTITION_CONCURRENCY};
use in_progress::BackupInProgress;
use resume::Checkpointer;

type SharedArchive = Arc<Mutex<Option<Box<dyn ArchiveWriter>>>>;

/// Backs up the plan's cut of its topic into a new archive of `store`; with `skip_unchanged`,
/// an incremental backup whose cut holds nothing new stops before the groups and the archive.
pub(crate) async fn run(
    cluster_id: &ClusterId,
    cluster: &ClusterConfig,
    plan: BackupPlan,
    store: Arc<dyn ArchiveStore>,
    control: OperationControl,
    skip_unchanged: bool,
) -> DomainResult<BackupOutcome> {
    let started = Instant::now();
    // A taken-over backup keeps the cut, the start time and the topic its first attempt
    // recorded; a checkpoint of another archive is not this backup's.
    let resume = plan
        .resume
        .clone()
        .filter(|c| c.archive_uid == plan.archive_uid);
    let created_at = resume.as_ref().map_or_else(Utc::now, |c| c.created_at);
    let admin = Admin::new(cluster)?;
    let info = admin.require_topic(&plan.topic).await?;
    let selected = select_partitions(&plan, &info.partitions)?;
    // An incremental backup continues its parent's chain where the parent ended.
    let (chain, continue_at) = continue_from(
        store.as_ref(),
        plan.incremental_from.as_ref(),
        cluster_id,
        &plan.topic,
    )
    .await?;
    let ranges = match &resume {
        Some(checkpoint) => checkpoint.cut.clone(),
        None => cut::plan_ranges(&admin, &plan, &selected, &continue_at).await?,
    };
    let checked = (created_at, started.elapsed().as_millis() as u64);
    let unchanged = nothing_new(&plan, &ranges, cluster_id, checked);
    if let Some(unchanged) = unchanged.filter(|_| skip_unchanged) {
        return Ok(BackupOutcome::NothingNew(unchanged));
    }
    // An upper bound for progress bars: offsets in range (compacted or transactional topics
    // hold fewer records), capped by max_messages. Added, not set: the topics of a backup set
    // share one control, whose total grows as the set reaches each of them.
    let in_range: u64 = ranges.iter().map(|r| (r.end - r.start).max(0) as u64).sum();
    control.add_to_total(plan.max_messages.map_or(in_range, |max| max.min(in_range)));
    let mut warnings = Vec::new();
    let topic = match &resume {
        Some(checkpoint) => checkpoint.topic.clone(),
        None => cut::read_topic(&admin, &plan, &info, &mut warnings).await,
    };
    let spec = ArchiveSpec {
        backup_id: plan.backup_id.clone(),
        archive_uid: plan.archive_uid.clone(),
        cluster_id: cluster_id.clone(),
        topic,
        compression: plan.compression,
        include_keys: plan.include_keys,
        include_headers: plan.include_headers,
        created_at,
        consumer_groups: Vec::new(),
        backup_set: plan.backup_set.clone(),
        chain,
    };
    let begun = BackupAttempt {
        admin,
        selected,
        ranges,
        resume,
        warnings,
        started,
    };
    write_archive(cluster_id, cluster, &plan, store, control, (spec, begun)).await
}

/// What [`run`] found out before the archive is opened.
struct BackupAttempt {
    admin: Admin,
    selected: Vec<i32>,
    ranges: Vec<PartitionRange>,
    /// The checkpoint of this archive a taken-over backup continues from.
    resume: Option<BackupCheckpoint>,
    warnings: Vec<String>,
    started: Instant,
}

/// Opens (or resumes) the archive, copies every partition's range into it while the groups
/// at the cut are read, and commits it.
async fn write_archive(
    cluster_id: &ClusterId,
    cluster: &ClusterConfig,
    plan: &BackupPlan,
    store: Arc<dyn ArchiveStore>,
    control: OperationControl,
    (spec, begun): (ArchiveSpec, BackupAttempt),
) -> DomainResult<BackupOutcome> {
    let BackupAttempt {
        admin,
        selected,
        ranges,
        resume,
        mut warnings,
        started,
    } = begun;
    let created_at = spec.created_at;
    let checkpointer = Arc::new(Checkpointer::new(
        BackupCheckpoint {
            archive_uid: plan.archive_uid.clone(),
            created_at,
            cut: ranges.clone(),
            topic: spec.topic.clone(),
            consumer_groups: resume.as_ref().and_then(|c| c.consumer_groups.clone()),
            segments: BTreeMap::new(),
            resumed_from: None,
        },
        control.clone(),
    ));
    let groups = resume::spawn_groups(
        (&admin, cluster),
        plan,
        &selected,
        resume.as_ref().and_then(|c| c.consumer_groups.clone()),
        checkpointer.clone(),
    );
    let (writer, adopted) =
        resume::open_archive(store.as_ref(), spec, resume, &ranges, &checkpointer).await?;
    if let Some(point) = plan.resume.as_ref().and(checkpointer.resume_point()) {
        warnings.push(point.warning());
    }
    let archive: SharedArchive = Arc::new(Mutex::new(Some(writer)));
    let shared = Arc::new(BackupInProgress::new(
        cluster,
        plan,
        control.clone(),
        checkpointer,
    ));
    let adopted_records: u64 = adopted.values().flatten().map(|s| s.message_count).sum();
    shared.spend_budget(adopted_records);
    control.add(
        adopted_records,
        adopted.values().flatten().map(|s| s.raw_bytes).sum(),
    );
    let starts = resume::read_from(&ranges, &adopted);
    let outcomes: Vec<DomainResult<PartitionManifest>> = futures::stream::iter(ranges.clone())
        .map(|range| {
            let from = starts.get(&range.partition).copied().unwrap_or(range.start);
            backup_partition(range, from, shared.clone(), archive.clone())
        })
        .buffer_unordered(PARTITION_CONCURRENCY)
        .collect()
        .await;
    let consumer_groups = resume::groups_at_cut(groups, &mut warnings).await;
    // Client teardown (librdkafka joins its threads) holds up nobody's result.
    drop_in_background((shared.readers.drain(), admin));
    let manifest = commit::commit_or_abort(&archive, outcomes, consumer_groups, &shared).await?;
    let run = BackupRun {
        backup_id: plan.backup_id.clone(),
        cluster_id: cluster_id.clone(),
        created_at,
        duration_ms: started.elapsed().as_millis() as u64,
        warnings,
    };
    Ok(BackupOutcome::Written(backup_result(
        &manifest, &ranges, run,
    )))
}

/// Backs up `range` of one partition, reading from `from` (after what a resumed writer kept).
async fn backup_partition(
    range: PartitionRange,
    from: i64,
    shared: Arc<BackupInProgress>,
    archive: SharedArchive,
) -> DomainResult<PartitionManifest> {
    let (tx, rx) = sync_channel::<RecordBlock>(CHANNEL_BATCHES);
    let writer = {
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || write_partition(range.partition, rx, &shared, &archive))
    };
    let reader = {
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || read_partition(range, from, tx, &shared))
    };
    let read = join(reader).await;
    let written = join(writer).await;
    let result = match (read, written) {
        (Ok(end), Ok(pw)) => blocking(move || pw.finish(range.start, end)).await,
        // A writer failure is the cause when both failed: the reader only saw the closed channel.
        (_, Err(e)) | (Err(e), _) => Err(e),
    };
    if result.is_err() {
        shared.stop.store(true, Ordering::Relaxed);
    }
    result
}

/// Appends batches until the reader closes the channel; returns the writer unfinished (the
/// final range is known only when the reader is done).
fn write_partition(
    partition: i32,
    rx: Receiver<RecordBlock>,
    shared: &BackupInProgress,
    archive: &SharedArchive,
) -> DomainResult<Box<dyn PartitionWriter>> {
    let mut writer = {
        let guard = archive
            .lock()
            .map_err(|_| DomainError::internal("archive writer lock poisoned"))?;
        let archive = guard
            .as_ref()
            .ok_or_else(|| DomainError::internal("archive writer already committed"))?;
        archive.partition(partition)?
    };
    let fail = |e: DomainError| {
        shared.stop.store(true, Ordering::Relaxed);
        e
    };
    let mut reported = 0u64;
    for batch in rx {
        let mut bytes = 0u64;
        for record in batch.iter() {
            bytes += record.payload_len();
            writer.append_view(record).map_err(fail)?;
        }
        shared.control.add(batch.len() as u64, bytes);
        shared
            .checkpoints
            .segments(partition, writer.finished_segments());
        let size = writer.bytes_written();
        let total = shared
            .archive_bytes
            .fetch_add(size.saturating_sub(reported), Ordering::Relaxed)
            + size.saturating_sub(reported);
        reported = size;
        if let Some(max) = shared.max_bytes {
            if total > max {
                return Err(fail(commit::size_limit_exceeded(&shared.topic, max)));
            }
        }
    }
    Ok(writer)
}

/// Consumes `[from, range.end)` of one partition into batches (`from` is `range.start`
/// unless a resumed writer kept the records before it); returns the offset the covered range
/// ends at (the cut, or where `max_messages` stopped it).
fn read_partition(
    range: PartitionRange,
    from: i64,
    tx: SyncSender<RecordBlock>,
    shared: &BackupInProgress,
) -> DomainResult<i64> {
    if range.start >= range.end {
        return Ok(range.start);
    }
    if from >= range.end {
        return Ok(range.end);
    }
    let mut reader = RangeReader::pooled(
        &shared.readers,
        &shared.topic,
        range.partition,
        from,
        range.end,
    )?;
    let mut batcher = BlockBatcher::default();
    // The covered range ends where reading stopped: at the cut, or before the record that
    // max_messages left out.
    let mut covered_to = from;
    let mut reached_cut = true;
    while let Some(message) = reader.next(|| shared.should_stop())? {
        if !in_time_bounds(&message, shared) {
            covered_to = message.offset() + 1;
            continue;
        }
        if !shared.take_budget() {
            reached_cut = false;
            break;
        }
        if let Some(throttle) = &shared.throttle {
            if !throttle.acquire_blocking(1, || shared.should_stop()) {
                return Err(DomainError::Cancelled);
            }
        }
        covered_to = message.offset() + 1;
        if let Some(full) = batcher.push(&message, shared.include_keys, shared.include_headers) {
            if tx.send(full).is_err() {
                // The writer failed; its error is the one reported.
                return Err(DomainError::Cancelled);
            }
        }
    }
    if reached_cut {
        covered_to = range.end;
    }
    let rest = batcher.take();
    if !rest.is_empty() && tx.send(rest).is_err() {
        return Err(DomainError::Cancelled);
    }
    Ok(covered_to)
}

fn in_time_bounds(message: &BorrowedMessage<'_>, shared: &BackupInProgress) -> bool {
    if shared.start_time_ms.is_none() && shared.end_time_ms.is_none() {
        return true;
    }
    let Some(ts) = message.timestamp().to_millis() else {
        return true;
    };
    shared.start_time_ms.is_none_or(|from| ts >= from)
        && shared.end_time_ms.is_none_or(|until| ts < until)
}

/// The outcome of a partition's reader or writer thread.
async fn join<T>(handle: tokio::task::JoinHandle<DomainResult<T>>) -> DomainResult<T> {
    handle
        .await
        .map_err(|e| DomainError::internal(format!("worker thread failed: {e}")))?
}
