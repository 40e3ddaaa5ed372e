//! Where a restore begins producing: a first attempt records its start (through
//! `prepare_target`, before the topic is created and before the first produce); an attempt
//! that took the job over reads the target, works out per partition how many of the job's
//! records are already there (`kvault_domain::resume`), checks that the first and the last of
//! them are the planned records, and continues after them. Records re-partitioned by key hash
//! cannot be told apart on the target: such a restore continues only if nothing had landed.

use std::collections::BTreeMap;
use std::sync::Arc;

use kvault_domain::error::DomainResult;
use kvault_domain::job::OperationControl;
use kvault_domain::manifest::Manifest;
use kvault_domain::ports::{ArchiveStore, ReadBounds};
use kvault_domain::restore::RestorePlan;
use kvault_domain::resume::{
    not_resumable_repartitioned, resume_point, PartitionResume, StartRecord, TopicResume,
};
use kvault_domain::{BackupId, DomainError, PartitionMapping};

use crate::admin::Admin;
use crate::client::ClusterConfig;
use crate::consume::{read_one, KeyValue};

use super::partition::kept_until;
use super::target::{prepare_target, PreparedRestoreTarget};

/// The target as this attempt uses it: per target partition its end offset before the job's
/// first record (`base`), and how many of the job's records each already holds (`skip`).
pub(super) struct RestoreAttempt {
    pub(super) target: PreparedRestoreTarget,
    pub(super) base: BTreeMap<i32, i64>,
    pub(super) skip: BTreeMap<i32, u64>,
}

/// What the restore reads: archives as `(backup_id, uid)` oldest first, and per source
/// partition the links holding it.
pub(super) struct Reading<'a> {
    pub(super) archives: Vec<(String, Option<String>)>,
    pub(super) links: &'a [(BackupId, std::collections::BTreeSet<i32>)],
    pub(super) store: &'a Arc<dyn ArchiveStore>,
}

/// Prepares the target of a first attempt (recording its start), or continues from what an
/// earlier attempt recorded.
pub(super) async fn begin(
    (cluster, admin): (&ClusterConfig, &Admin),
    plan: &RestorePlan,
    manifest: &Manifest,
    sources: &[i32],
    reading: Reading<'_>,
    control: &OperationControl,
) -> DomainResult<RestoreAttempt> {
    let topic = &plan.target_topic;
    let recorded = control.journal().and_then(|j| j.start_record(topic));
    let existing = match &recorded {
        Some(_) => admin.topic(topic).await?,
        None => None,
    };
    let (start, info) = match (recorded, existing) {
        (Some(start), Some(info)) => (start, info),
        // Recorded, but the topic it was to create does not exist: nothing was produced.
        (Some(start), None) if start.topic_created => {
            return first(admin, plan, manifest, sources, reading, control).await
        }
        (Some(_), None) => {
            return Err(DomainError::interrupted(format!(
                "target topic {topic} existed when the job started and is gone now: it was \
                 deleted meanwhile; the job cannot continue exactly"
            )))
        }
        (None, _) => return first(admin, plan, manifest, sources, reading, control).await,
    };
    if start.archives != reading.archives {
        return Err(DomainError::interrupted(format!(
            "the backup restored into {topic} is not the archive the job started with (another \
             archive under its id, or another chain): the job cannot continue exactly"
        )));
    }
    if info.partition_count() as usize != start.base_offsets.len() {
        return Err(DomainError::interrupted(format!(
            "target topic {topic} has {} partitions, {} when the job started: the job cannot \
             continue exactly",
            info.partition_count(),
            start.base_offsets.len()
        )));
    }
    let found = already_landed(admin, plan, manifest, sources, &start).await?;
    for p in found.iter().filter(|p| p.already_written > 0) {
        check_landed(cluster, topic, p, &reading, plan.until_time_ms, control).await?;
    }
    if let Some(journal) = control.journal() {
        let partitions = found.clone();
        let topic = topic.clone();
        journal
            .record_resume(TopicResume {
                target_topic: topic,
                partitions,
            })
            .await?;
    }
    tracing::info!(topic = %topic, resumed = ?found, "restore continues where the target ends");
    Ok(RestoreAttempt {
        target: PreparedRestoreTarget {
            mapping: start.mapping,
            partitions: info.partition_count(),
            created: start.topic_created,
            replication_factor: info.replication_factor,
            configs: BTreeMap::new(),
            warnings: Vec::new(),
            base_offsets: start.base_offsets.clone(),
        },
        base: start.base_offsets,
        skip: found
            .iter()
            .map(|p| (p.partition, p.already_written))
            .collect(),
    })
}

/// Per target partition, how many of the job's records an earlier attempt landed; refused
/// where they cannot be told apart from the backup's (re-partitioned or transformed records).
async fn already_landed(
    admin: &Admin,
    plan: &RestorePlan,
    manifest: &Manifest,
    sources: &[i32],
    start: &StartRecord,
) -> DomainResult<Vec<PartitionResume>> {
    let topic = &plan.target_topic;
    let parts: Vec<i32> = start.base_offsets.keys().copied().collect();
    let ends: BTreeMap<i32, i64> = admin
        .watermarks(topic, &parts)
        .await?
        .into_iter()
        .map(|(p, (_, high))| (p, high))
        .collect();
    let planned: BTreeMap<i32, u64> = match start.mapping {
        PartitionMapping::Identity => parts
            .iter()
            .map(|p| {
                let count = if sources.contains(p) {
                    manifest.partition(*p).map_or(0, |m| m.message_count)
                } else {
                    0
                };
                (*p, count)
            })
            .collect(),
        PartitionMapping::Murmur2 => BTreeMap::new(),
    };
    let found = resume_point(topic, &start.base_offsets, &ends, &planned)?;
    if start.mapping == PartitionMapping::Murmur2 && found.iter().any(|p| p.already_written > 0) {
        return Err(not_resumable_repartitioned(topic, &found));
    }
    if plan.transform.is_some() && found.iter().any(|p| p.already_written > 0) {
        return Err(DomainError::interrupted(format!(
            "records of this filtered, sampled or masked restore already landed in {topic}: \
             they cannot be matched against the backup's records, so the job cannot continue \
             exactly; delete the topic and restore again"
        )));
    }
    Ok(found)
}

/// A first attempt: the target is checked or created, the start recorded before that.
async fn first(
    admin: &Admin,
    plan: &RestorePlan,
    manifest: &Manifest,
    sources: &[i32],
    reading: Reading<'_>,
    control: &OperationControl,
) -> DomainResult<RestoreAttempt> {
    let target = prepare_target(
        admin,
        plan,
        manifest,
        sources,
        control,
        reading.archives,
        false,
    )
    .await?;
    Ok(RestoreAttempt {
        base: target.base_offsets.clone(),
        skip: BTreeMap::new(),
        target,
    })
}

/// Checks that the first and the last of the `already_written` records on the partition are
/// the planned records at those positions (keys and values, byte for byte): a cheap proof that
/// the records counted are the job's, which catches another writer.
async fn check_landed(
    cluster: &ClusterConfig,
    topic: &str,
    found: &PartitionResume,
    reading: &Reading<'_>,
    until_ms: Option<i64>,
    control: &OperationControl,
) -> DomainResult<()> {
    let p = found.partition;
    let last = found.already_written - 1;
    let planned = planned_at(reading, p, until_ms, [0, last]).await?;
    let offsets = [found.base_offset, found.base_offset + last as i64];
    for (i, (index, offset)) in [0, last].into_iter().zip(offsets).enumerate() {
        let stop = {
            let control = control.clone();
            move || control.is_cancelled()
        };
        let landed = read_one(cluster, topic, p, offset, stop).await?;
        if planned.get(i).cloned().flatten() != landed {
            return Err(DomainError::interrupted(format!(
                "offset {offset} of {topic} partition {p} does not hold the record this job \
                 wrote there (record {index} of the partition): something else wrote into the \
                 topic; the job cannot continue exactly"
            )));
        }
    }
    Ok(())
}

/// The key and value of the planned records at `indexes` of source partition `p` (in the
/// order the restore produces them), `None` where the partition has fewer records.
async fn planned_at(
    reading: &Reading<'_>,
    p: i32,
    until_ms: Option<i64>,
    indexes: [u64; 2],
) -> DomainResult<Vec<Option<KeyValue>>> {
    let bounds = ReadBounds {
        until_timestamp: until_ms,
        ..ReadBounds::default()
    };
    let mut found: Vec<Option<KeyValue>> = vec![None; indexes.len()];
    let mut index = 0u64;
    for (id, _) in reading.links.iter().filter(|(_, ps)| ps.contains(&p)) {
        if found.iter().all(Option::is_some) {
            break;
        }
        let blocks = reading.store.read_partition_blocks(id, p, bounds).await?;
        let (start, wanted) = (index, indexes);
        let (seen, got) = tokio::task::spawn_blocking(move || {
            let mut index = start;
            let mut got: Vec<(usize, KeyValue)> = Vec::new();
            for block in blocks {
                for record in block?.iter().filter(|r| kept_until(r, until_ms)) {
                    for (slot, want) in wanted.iter().enumerate() {
                        if *want == index {
                            let kv = (
                                record.key.map(<[u8]>::to_vec),
                                record.value.map(<[u8]>::to_vec),
                            );
                            got.push((slot, kv));
                        }
                    }
                    index += 1;
                }
                if index > wanted.iter().copied().max().unwrap_or(0) {
                    break;
                }
            }
            Ok::<_, DomainError>((index, got))
        })
        .await
        .map_err(|e| DomainError::internal(format!("archive reader failed: {e}")))??;
        index = seen;
        for (slot, kv) in got {
            found[slot] = Some(kv);
        }
    }
    Ok(found)
}
