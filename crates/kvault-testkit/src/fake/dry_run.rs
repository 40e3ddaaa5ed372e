//! The fake engine's dry runs: the same checks as its restore and migrate (archive, checksums,
//! `if_exists`), then where the records would land in the in-memory topics, from the
//! manifest's and the source's counts. Nothing is written.

use kvault_domain::chain::{load_chain, merge_chain};
use kvault_domain::dry_run::{MigrateDryRun, RestoreDryRun, TopicPlan};
use kvault_domain::error::DomainResult;
use kvault_domain::operations::MigrationPlan;
use kvault_domain::restore::{PartitionRestoreResult, RestorePlan};
use kvault_domain::{ClusterId, DomainError, PartitionMapping};

use super::{FakeEngine, FakeTopic};

/// Per partition: a record count and the length of the partition it lands in.
fn landing(counts: Vec<(i32, u64)>, target: Option<&FakeTopic>) -> Vec<PartitionRestoreResult> {
    counts
        .into_iter()
        .filter(|(_, count)| *count > 0)
        .map(|(partition, count)| {
            let start = target.map_or(0, |t| {
                let n = t.partitions.len().max(1);
                t.partitions[partition as usize % n].len() as i64
            });
            PartitionRestoreResult {
                partition,
                messages_count: count,
                start_offset: start,
                end_offset: start + count as i64,
            }
        })
        .collect()
}

fn topic_plan(name: &str, existing: Option<&FakeTopic>, partitions: i32, rf: i16) -> TopicPlan {
    TopicPlan {
        topic: name.to_owned(),
        create: existing.is_none(),
        partitions: existing.map_or(partitions, |t| t.partitions.len() as i32),
        replication_factor: rf,
        configs: Default::default(),
    }
}

impl FakeEngine {
    pub(super) async fn fake_restore_dry_run(
        &self,
        cluster: &ClusterId,
        plan: RestorePlan,
        control: kvault_domain::job::OperationControl,
    ) -> DomainResult<RestoreDryRun> {
        let archives = self.archives().clone();
        let last = archives.manifest(&plan.backup_id).await?;
        let chain = load_chain(archives.as_ref(), last, 10_000).await?;
        let manifest = merge_chain(&chain, plan.until_time_ms)?;
        if plan.validate_checksum {
            let report = archives.check_integrity(&plan.backup_id, &control).await?;
            if !report.valid {
                return Err(DomainError::CorruptArchive {
                    backup_id: plan.backup_id.to_string(),
                    reason: report.problems.join("; "),
                });
            }
        }
        let existing = self.on(cluster, |c| Ok(c.topics.get(&plan.target_topic).cloned()))?;
        if let Some(t) = &existing {
            let held = i64::try_from(t.message_count()).unwrap_or(i64::MAX);
            plan.if_exists.admit(&plan.target_topic, held, "restore")?;
        }
        let counts: Vec<(i32, u64)> = manifest
            .partitions
            .iter()
            .filter(|p| {
                plan.partitions
                    .as_ref()
                    .is_none_or(|ps| ps.contains(&p.partition))
            })
            .map(|p| (p.partition, p.message_count))
            .collect();
        let partitions = landing(counts, existing.as_ref());
        let total_messages = partitions.iter().map(|p| p.messages_count).sum();
        let count = plan
            .target_partitions
            .unwrap_or(manifest.topic.partition_count);
        let rf = plan
            .replication_factor
            .unwrap_or(manifest.topic.replication_factor);
        Ok(RestoreDryRun {
            dry_run: true,
            backup_id: plan.backup_id.clone(),
            target_topic: plan.target_topic.clone(),
            cluster_id: cluster.clone(),
            topic: topic_plan(&plan.target_topic, existing.as_ref(), count, rf),
            partition_mapping: PartitionMapping::Identity,
            offsets_preserved: false,
            checksum_validated: plan.validate_checksum,
            total_messages,
            total_size_bytes: manifest.partitions.iter().map(|p| p.raw_bytes).sum(),
            partitions,
            consumer_groups: Vec::new(),
            warnings: Vec::new(),
            transform: None,
        })
    }

    pub(super) async fn fake_migrate_dry_run(
        &self,
        plan: MigrationPlan,
    ) -> DomainResult<MigrateDryRun> {
        let request = &plan.request;
        let source = self.on(&plan.source, |c| {
            c.topics.get(&request.source_topic).cloned().ok_or_else(|| {
                DomainError::not_found(kvault_domain::error::Missing::Topic, &request.source_topic)
            })
        })?;
        let existing = self.on(&plan.target, |c| {
            Ok(c.topics.get(&request.target_topic).cloned())
        })?;
        if let Some(t) = &existing {
            let held = i64::try_from(t.message_count()).unwrap_or(i64::MAX);
            request
                .if_exists
                .admit(&request.target_topic, held, "migrate")?;
        }
        let counts = (0..)
            .zip(source.partitions.iter().map(|log| log.len() as u64))
            .collect();
        let partitions = landing(counts, existing.as_ref());
        let total = partitions.iter().map(|p| p.messages_count).sum::<u64>();
        let count = source.partitions.len() as i32;
        Ok(MigrateDryRun {
            dry_run: true,
            source_cluster: request.source_cluster.clone(),
            source_topic: request.source_topic.clone(),
            target_cluster: request.target_cluster.clone(),
            target_topic: request.target_topic.clone(),
            topic: topic_plan(&request.target_topic, existing.as_ref(), count, 1),
            partitions_kept: existing
                .as_ref()
                .is_none_or(|t| t.partitions.len() == source.partitions.len()),
            transformation_applied: false,
            total_messages: request.max_messages.map_or(total, |max| max.min(total)),
            partitions,
            consumer_groups: Vec::new(),
            warnings: Vec::new(),
        })
    }
}
