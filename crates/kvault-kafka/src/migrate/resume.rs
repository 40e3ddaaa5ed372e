//! Where a migration begins: a first attempt takes the cut, checks or creates the target and
//! records its start (the cut, each target partition's end offset) before the topic is
//! created and before the first produce; an attempt that took the job over copies the
//! recorded cut again, works out per partition how many of the job's records are already on
//! the target (`kvault_domain::resume`), and skips that many of the transformed records, each
//! partition checking the first and the last of them against the target before it produces.
//! Not provable, so a continued migration stops `interrupted` if anything had landed:
//! records re-partitioned by key hash, and `max_messages` (partitions share the budget, so
//! which records it took depends on timing).

use std::collections::BTreeMap;

use kvault_domain::error::DomainResult;
use kvault_domain::job::OperationControl;
use kvault_domain::migrate::MigrateRequest;
use kvault_domain::resume::{not_resumable_repartitioned, resume_point, StartRecord, TopicResume};
use kvault_domain::{DomainError, PartitionMapping};

use crate::admin::{Admin, TopicInfo};
use crate::client::ClusterConfig;
use crate::consume::{read_one, KeyValue};

/// The copy as this attempt runs it.
pub(super) struct Begun {
    /// Per source partition, `[start, end)`: the cut.
    pub(super) cut: BTreeMap<i32, (i64, i64)>,
    pub(super) target_partitions: Vec<i32>,
    pub(super) topic_created: bool,
    /// Per target partition: its end offset before the job's first record.
    pub(super) base: BTreeMap<i32, i64>,
    /// Per partition: how many of the job's records are already there, and the records found
    /// at the first and the last of them.
    pub(super) landed: BTreeMap<i32, Landed>,
}

/// The job's records an earlier attempt landed on one target partition.
#[derive(Debug, Clone)]
pub(super) struct Landed {
    pub(super) count: u64,
    pub(super) first: Option<KeyValue>,
    pub(super) last: Option<KeyValue>,
}

/// Prepares a first attempt (recording its start) or continues from an earlier one's record.
pub(super) async fn begin(
    (source_admin, target_admin, target): (&Admin, &Admin, &ClusterConfig),
    req: &MigrateRequest,
    info: &TopicInfo,
    cut_now: BTreeMap<i32, (i64, i64)>,
    control: &OperationControl,
) -> DomainResult<Begun> {
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
    let mut landed = BTreeMap::new();
    for p in found.iter().filter(|p| p.already_written > 0) {
        let last = p.base_offset + p.already_written as i64 - 1;
        let first = read_at(target, topic, p.partition, p.base_offset, control).await?;
        let last = read_at(target, topic, p.partition, last, control).await?;
        let count = p.already_written;
        landed.insert(p.partition, Landed { count, first, last });
    }
    if let Some(journal) = control.journal() {
        let resumed = TopicResume {
            target_topic: topic.clone(),
            partitions: found.clone(),
        };
        journal.record_resume(resumed).await?;
    }
    tracing::info!(topic = %topic, resumed = ?found, "migration continues where the target ends");
    Ok(Begun {
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
) -> DomainResult<Begun> {
    let (target_partitions, created, base) =
        super::prepare_target(source_admin, target_admin, req, info, (&cut, control)).await?;
    Ok(Begun {
        cut,
        target_partitions,
        topic_created: created,
        base,
        landed: BTreeMap::new(),
    })
}

/// The start record of a first attempt, stored before the target is created or written.
pub(super) async fn record_start(
    control: &OperationControl,
    record: StartRecord,
) -> DomainResult<()> {
    match control.journal() {
        Some(journal) => journal.record_start(record).await,
        None => Ok(()),
    }
}
