//! Where a migration begins: a first attempt takes the cut, checks or creates the target and
//! records its start (the cut, each target partition's end offset) before the topic is
//! created and before the first produce; an attempt that took the job over copies the
//! recorded cut again, works out per partition how many of the job's records are already on
//! the target (`kvault_domain::resume`), checks that the first and the last of them are the
//! copies it would have made (re-reading the source prefix through the transformation) before
//! anything is produced, then skips that many of the transformed records.
//! Not provable, so a continued migration stops `interrupted` if anything had landed:
//! records re-partitioned by key hash, and `max_messages` (partitions share the budget, so
//! which records it took depends on timing).

use std::collections::BTreeMap;

use kvault_domain::error::DomainResult;
use kvault_domain::job::OperationControl;
use kvault_domain::migrate::MigrateRequest;
use kvault_domain::resume::{
    not_resumable_repartitioned, resume_point, PartitionResume, StartRecord, TopicResume,
};
use kvault_domain::{DomainError, PartitionMapping};

use std::sync::Arc;

use crate::admin::{Admin, TopicInfo};
use crate::client::ClusterConfig;
use crate::consume::{read_one, to_record, KeyValue, RangeReader};

use super::in_progress::{EarlierCopies, MigrationInProgress};
use super::target::prepare_target;

/// The copy as this attempt runs it.
pub(super) struct MigrationAttempt {
    /// Per source partition, `[start, end)`: the cut.
    pub(super) cut: BTreeMap<i32, (i64, i64)>,
    pub(super) target_partitions: Vec<i32>,
    pub(super) topic_created: bool,
    /// Per target partition: its end offset before the job's first record.
    pub(super) base: BTreeMap<i32, i64>,
    /// Per partition: how many of the job's records are already there, and the records found
    /// at the first and the last of them.
    pub(super) landed: BTreeMap<i32, EarlierCopies>,
}

/// Per target partition, how many of the migration's records an earlier attempt landed;
/// refused where they cannot be matched to source records (re-partitioned, or under
/// `max_messages`).
async fn already_landed(
    target_admin: &Admin,
    req: &MigrateRequest,
    start: &StartRecord,
) -> DomainResult<Vec<PartitionResume>> {
    let topic = &req.target_topic;
    let parts: Vec<i32> = start.base_offsets.keys().copied().collect();
    let ends: BTreeMap<i32, i64> = target_admin
        .watermarks(topic, &parts)
        .await?
        .into_iter()
        .map(|(p, (_, high))| (p, high))
        .collect();
    let planned: BTreeMap<i32, u64> = match start.mapping {
        PartitionMapping::Identity => parts
            .iter()
            .map(|p| {
                let (low, high) = start.source_cut.get(p).copied().unwrap_or((0, 0));
                (*p, (high - low).max(0) as u64)
            })
            .collect(),
        PartitionMapping::Murmur2 => BTreeMap::new(),
    };
    let found = resume_point(topic, &start.base_offsets, &ends, &planned)?;
    if found.iter().any(|p| p.already_written > 0) {
        if start.mapping == PartitionMapping::Murmur2 {
            return Err(not_resumable_repartitioned(topic, &found));
        }
        if req.max_messages.is_some() {
            return Err(DomainError::interrupted(format!(
                "records were already written into {topic} under max_messages, which \
                 partitions share: which source records they were cannot be proved, so the \
                 migration does not continue. Inspect or delete the topic and run it again"
            )));
        }
    }
    Ok(found)
}

/// Prepares a first attempt (recording its start) or continues from an earlier one's record.
pub(super) async fn begin(
    (source_admin, target_admin, target): (&Admin, &Admin, &ClusterConfig),
    req: &MigrateRequest,
    info: &TopicInfo,
    cut_now: BTreeMap<i32, (i64, i64)>,
    control: &OperationControl,
) -> DomainResult<MigrationAttempt> {
    let topic = &req.target_topic;
    let Some(start) = control.journal().and_then(|j| j.start_record(topic)) else {
        return first(source_admin, target_admin, req, info, cut_now, control).await;
    };
    let Some(existing) = target_admin.topic(topic).await? else {
        if start.topic_created {
            // Recorded, but the topic it was to create does not exist: nothing was produced.
            return first(source_admin, target_admin, req, info, cut_now, control).await;
        }
        return Err(DomainError::interrupted(format!(
            "target topic {topic} existed when the migration started and is gone now; it \
             cannot continue exactly"
        )));
    };
    if existing.partition_count() as usize != start.base_offsets.len() {
        return Err(DomainError::interrupted(format!(
            "target topic {topic} has {} partitions, {} when the migration started; it cannot \
             continue exactly",
            existing.partition_count(),
            start.base_offsets.len()
        )));
    }
    check_source_kept(source_admin, req, &start.source_cut).await?;
    let found = already_landed(target_admin, req, &start).await?;
    let mut landed = BTreeMap::new();
    for p in found.iter().filter(|p| p.already_written > 0) {
        let last = p.base_offset + p.already_written as i64 - 1;
        let first = read_at(target, topic, p.partition, p.base_offset, control).await?;
        let last = read_at(target, topic, p.partition, last, control).await?;
        let count = p.already_written;
        landed.insert(p.partition, EarlierCopies { count, first, last });
    }
    if let Some(journal) = control.journal() {
        let resumed = TopicResume {
            target_topic: topic.clone(),
            partitions: found.clone(),
        };
        journal.record_resume(resumed).await?;
    }
    tracing::info!(topic = %topic, resumed = ?found, "migration continues where the target ends");
    Ok(MigrationAttempt {
        cut: start.source_cut,
        target_partitions: existing.partitions,
        topic_created: start.topic_created,
        base: start.base_offsets,
        landed,
    })
}

async fn read_at(
    cluster: &ClusterConfig,
    topic: &str,
    partition: i32,
    offset: i64,
    control: &OperationControl,
) -> DomainResult<Option<KeyValue>> {
    let control = control.clone();
    read_one(cluster, topic, partition, offset, move || {
        control.is_cancelled()
    })
    .await
}

/// The records of the recorded cut must still be on the source: retention may have deleted
/// the oldest meanwhile.
async fn check_source_kept(
    source_admin: &Admin,
    req: &MigrateRequest,
    cut: &BTreeMap<i32, (i64, i64)>,
) -> DomainResult<()> {
    let parts: Vec<i32> = cut.keys().copied().collect();
    let now = source_admin.watermarks(&req.source_topic, &parts).await?;
    for (p, (start, _)) in cut.iter().filter(|(_, (s, e))| e > s) {
        let low = now.get(p).map_or(i64::MAX, |(low, _)| *low);
        if low > *start {
            return Err(DomainError::interrupted(format!(
                "source partition {p} of {} now starts at offset {low}, after the offset \
                 {start} the migration started from: records it copies were deleted \
                 meanwhile; it cannot continue exactly",
                req.source_topic
            )));
        }
    }
    Ok(())
}

/// A first attempt: the target is checked or created (the start recorded first).
async fn first(
    source_admin: &Admin,
    target_admin: &Admin,
    req: &MigrateRequest,
    info: &TopicInfo,
    cut: BTreeMap<i32, (i64, i64)>,
    control: &OperationControl,
) -> DomainResult<MigrationAttempt> {
    let admins = (source_admin, target_admin);
    let target = prepare_target(admins, req, info, (&cut, control), false).await?;
    Ok(MigrationAttempt {
        cut,
        target_partitions: target.partitions,
        topic_created: target.topic.create,
        base: target.base,
        landed: BTreeMap::new(),
    })
}

/// Checks, before anything is produced, that on every partition where an earlier attempt
/// landed copies the first and the last of them are the copies this migration makes there
/// (keys and values, byte for byte): the source prefix is read again through the
/// transformation. Anything else means another writer: `Interrupted`.
pub(super) async fn check_landed(
    shared: &Arc<MigrationInProgress>,
    cut: &BTreeMap<i32, (i64, i64)>,
) -> DomainResult<()> {
    for (partition, landed) in &shared.landed {
        let (start, end) = cut.get(partition).copied().unwrap_or((0, 0));
        let (reader, p, count) = (Arc::clone(shared), *partition, landed.count);
        let planned =
            tokio::task::spawn_blocking(move || copies_at(&reader, p, (start, end), count))
                .await
                .map_err(|e| DomainError::internal(format!("reader thread failed: {e}")))??;
        let base = shared.base.get(partition).copied().unwrap_or(0);
        let found = [(0, &landed.first), (count - 1, &landed.last)];
        for ((index, found), planned) in found.into_iter().zip(planned) {
            if found.as_ref() != planned.as_ref() {
                return Err(DomainError::interrupted(format!(
                    "offset {} of {} partition {partition} does not hold the copy this \
                     migration made there (copy {index} of the partition): something else wrote \
                     into the topic; the migration cannot continue exactly",
                    base + index as i64,
                    shared.target_topic
                )));
            }
        }
    }
    Ok(())
}

/// The first and the `count`-th copy the transformation makes of source partition `p`'s cut
/// (`None` where there are fewer). Runs on a blocking thread.
fn copies_at(
    shared: &MigrationInProgress,
    p: i32,
    (start, end): (i64, i64),
    count: u64,
) -> DomainResult<[Option<KeyValue>; 2]> {
    let mut reader = RangeReader::open(&shared.source, &shared.source_topic, p, start, end)?;
    let mut found: [Option<KeyValue>; 2] = [None, None];
    let mut index = 0u64;
    while index < count {
        let Some(message) = reader.next(|| shared.should_stop())? else {
            break;
        };
        let record = to_record(&message, true, true);
        drop(message);
        // A record the expression failed on was skipped (with `on_error: fail` the earlier
        // attempt would have stopped there).
        let Ok(Some(copy)) = shared.transformation.apply_owned(record, p) else {
            continue;
        };
        if index == 0 {
            found[0] = Some((copy.key.clone(), copy.value.clone()));
        }
        if index == count - 1 {
            found[1] = Some((copy.key, copy.value));
        }
        index += 1;
    }
    Ok(found)
}
