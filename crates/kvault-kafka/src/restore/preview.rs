//! The restore's dry run: the real run's checks and planning (archive checksums, the target
//! topic, `if_exists`, `preserve_offsets`, the groups), then where every record would land,
//! and nothing created, produced or committed.
//!
//! Where records land: into an empty or new partition from its high watermark on, one offset
//! per record (the producer is idempotent, so no gaps), or at the source offsets when offsets
//! are preserved. When partitions are kept 1:1, no `until_time` cuts a partition and the
//! groups need no offset map beyond a contiguous run, the manifest's counts say it all;
//! otherwise the archive is read once (as the real run reads it) and each record placed.
//! Records with a null key re-partitioned by key go round-robin, as in the real run, where
//! partitions restored side by side interleave: then the per-partition counts are an estimate
//! and a warning says so.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kvault_domain::dry_run::{RestoreDryRun, TopicPlan};
use kvault_domain::error::DomainResult;
use kvault_domain::job::OperationControl;
use kvault_domain::manifest::Manifest;
use kvault_domain::ports::{ArchiveStore, ReadBounds};
use kvault_domain::record::TimestampType;
use kvault_domain::restore::RestorePlan;
use kvault_domain::restore_planning::select_partitions;
use kvault_domain::{BackupId, ClusterId, DomainError, PartitionMapping};

use super::groups::{restore_groups, warnings as group_warnings, GroupRestore};
use super::load::{load_checked, Checked};
use super::tally::{LandedOffsets, Tally};
use super::target::{prepare_target, PreparedRestoreTarget};
use super::transform::TransformStep;
use crate::admin::Admin;
use crate::client::ClusterConfig;
use crate::partitioner::KeyPartitioner;

/// What the restore of `plan` would do (see the module docs).
pub(crate) async fn dry_run(
    cluster_id: &ClusterId,
    cluster: &ClusterConfig,
    plan: RestorePlan,
    store: Arc<dyn ArchiveStore>,
    control: OperationControl,
) -> DomainResult<RestoreDryRun> {
    let Checked {
        links,
        archives,
        manifest,
        mut warnings,
        ..
    } = load_checked(store.as_ref(), &plan, &control).await?;
    let sources = select_partitions(&plan, &manifest)?;
    let step = TransformStep::prepare(&plan)?.map(Arc::new);
    let admin = Admin::new(cluster)?;
    let target =
        prepare_target(&admin, &plan, &manifest, &sources, &control, archives, true).await?;
    let mut all_warnings = target.warnings.clone();
    all_warnings.append(&mut warnings);
    let groups = GroupRestore::prepare(&plan, target.mapping, &target.base_offsets).map(Arc::new);
    let archive = (
        store.as_ref(),
        links.as_slice(),
        &manifest,
        sources.as_slice(),
    );
    let landing = land(
        archive,
        (&admin, &target),
        &plan,
        (groups.as_ref(), step.clone()),
        &control,
    )
    .await?;
    if landing.null_keys_spread > 0 {
        all_warnings.push(format!(
            "{} records with a null key would be spread round-robin over the target \
             partitions; their per-partition counts here are an estimate",
            landing.null_keys_spread
        ));
    }
    let consumer_groups = restore_groups(
        (cluster, &admin),
        &plan,
        &manifest,
        &sources,
        groups.as_deref(),
        true,
    )
    .await?;
    all_warnings.extend(group_warnings(&consumer_groups));
    Ok(RestoreDryRun {
        dry_run: true,
        backup_id: plan.backup_id.clone(),
        target_topic: plan.target_topic.clone(),
        cluster_id: cluster_id.clone(),
        topic: TopicPlan {
            topic: plan.target_topic.clone(),
            create: target.created,
            partitions: target.partitions,
            replication_factor: target.replication_factor,
            configs: target.configs,
        },
        partition_mapping: target.mapping,
        offsets_preserved: plan.preserve_offsets,
        checksum_validated: plan.validate_checksum,
        total_messages: landing.tally.total(),
        total_size_bytes: landing.bytes,
        partitions: landing.tally.partition_results(),
        consumer_groups,
        warnings: all_warnings,
        transform: step.map(|s| s.counts()),
    })
}

/// Where every record would land (see the module docs): from the manifest when that says it
/// all, otherwise by reading the archive as the real run reads it.
async fn land(
    (store, links, manifest, sources): Archive<'_>,
    (admin, target): (&Admin, &PreparedRestoreTarget),
    plan: &RestorePlan,
    (groups, transform): (Option<&Arc<GroupRestore>>, Option<Arc<TransformStep>>),
    control: &OperationControl,
) -> DomainResult<Landing> {
    let ends = if target.created {
        BTreeMap::new()
    } else {
        let partitions: Vec<i32> = (0..target.partitions).collect();
        admin
            .watermarks(&plan.target_topic, &partitions)
            .await?
            .into_iter()
            .map(|(p, (_, high))| (p, high))
            .collect()
    };
    let mut landing = Landing {
        next: ends,
        preserve: plan.preserve_offsets,
        tally: Tally::default(),
        bytes: 0,
        null_keys_spread: 0,
        transform,
    };
    let from_manifest = target.mapping == PartitionMapping::Identity
        && plan.until_time_ms.is_none()
        && landing.transform.is_none()
        && (groups.is_none() || all_contiguous(manifest, sources));
    if from_manifest {
        landing.place_from_manifest(manifest, sources, groups.map(Arc::as_ref));
    } else {
        let partitioner = Arc::new(KeyPartitioner::new(target.partitions));
        for source in sources {
            let ids: Vec<BackupId> = links
                .iter()
                .filter(|(_, held)| held.contains(source))
                .map(|(id, _)| id.clone())
                .collect();
            for id in ids {
                let reading = (id, *source, target.mapping, partitioner.clone());
                landing = read_and_place(store, reading, plan, landing, groups).await?;
                if control.is_cancelled() {
                    return Err(DomainError::Cancelled);
                }
            }
        }
    }
    Ok(landing)
}

/// The archive a dry run reads: the store, the links with their partitions, the manifest it
/// plans from and the selected source partitions.
type Archive<'a> = (
    &'a dyn ArchiveStore,
    &'a [(BackupId, BTreeSet<i32>)],
    &'a Manifest,
    &'a [i32],
);

/// Whether every selected partition holds its records at consecutive offsets.
fn all_contiguous(manifest: &Manifest, sources: &[i32]) -> bool {
    sources
        .iter()
        .filter_map(|p| manifest.partition(*p))
        .all(|p| p.contiguous)
}

/// Where the records would land so far.
struct Landing {
    /// Per target partition, the offset the next record would get.
    next: BTreeMap<i32, i64>,
    preserve: bool,
    tally: Tally,
    bytes: u64,
    null_keys_spread: u64,
    /// The restore's transform step: the records it leaves out are not placed.
    transform: Option<Arc<TransformStep>>,
}

impl Landing {
    fn place(&mut self, target: i32, source_offset: i64) -> i64 {
        let next = self.next.entry(target).or_insert(0);
        let offset = if self.preserve { source_offset } else { *next };
        *next = offset + 1;
        self.tally.add(target, offset);
        offset
    }

    /// Partitions kept 1:1, whole and (when groups are restored) contiguous: the counts
    /// and ranges come from the manifest.
    fn place_from_manifest(
        &mut self,
        manifest: &Manifest,
        sources: &[i32],
        groups: Option<&GroupRestore>,
    ) {
        for p in sources.iter().filter_map(|p| manifest.partition(*p)) {
            let (Some(first), true) = (p.first_offset, p.message_count > 0) else {
                continue;
            };
            let count = i64::try_from(p.message_count).unwrap_or(i64::MAX);
            let next = self.next.get(&p.partition).copied().unwrap_or(0);
            let start = if self.preserve { first } else { next };
            self.tally.partitions.insert(
                p.partition,
                LandedOffsets {
                    count: p.message_count,
                    first: start,
                    last: start + count - 1,
                },
            );
            self.next.insert(p.partition, start + count);
            self.bytes += p.raw_bytes;
            if let Some(groups) = groups {
                groups.landed_run(p.partition, first, start, count);
            }
        }
    }
}

/// Reads source partition `source` of archive `id` as the restore would, placing each record.
async fn read_and_place(
    store: &dyn ArchiveStore,
    (id, source, mapping, partitioner): (BackupId, i32, PartitionMapping, Arc<KeyPartitioner>),
    plan: &RestorePlan,
    mut landing: Landing,
    groups: Option<&Arc<GroupRestore>>,
) -> DomainResult<Landing> {
    let bounds = ReadBounds {
        until_timestamp: plan.until_time_ms,
        ..ReadBounds::default()
    };
    let until = plan.until_time_ms;
    let blocks = store.read_partition_blocks(&id, source, bounds).await?;
    let groups = groups.cloned();
    let placed = tokio::task::spawn_blocking(move || {
        for block in blocks {
            let block = super::transform::apply(landing.transform.as_deref(), source, block?)?;
            for record in block.iter() {
                let kept = until.is_none_or(|u| {
                    record.timestamp_type == TimestampType::NotAvailable || record.timestamp <= u
                });
                if !kept {
                    continue;
                }
                let target = match mapping {
                    PartitionMapping::Identity => source,
                    PartitionMapping::Murmur2 => {
                        if record.key.is_none() {
                            landing.null_keys_spread += 1;
                        }
                        partitioner.partition(record.key)
                    }
                };
                landing.bytes += record.payload_len();
                let offset = landing.place(target, record.offset);
                if let Some(groups) = &groups {
                    groups.landed(target, record.offset, offset);
                }
            }
        }
        Ok::<_, DomainError>(landing)
    })
    .await
    .map_err(|e| DomainError::internal(format!("archive reader failed: {e}")))??;
    Ok(placed)
}
