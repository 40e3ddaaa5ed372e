//! The fake restore: a real archive's records appended to an in-memory topic (created
//! when missing; `if_exists` as documented).

use std::time::Instant;

use async_trait::async_trait;
use kvault_domain::chain::{load_chain, merge_chain};
use kvault_domain::error::DomainResult;
use kvault_domain::job::OperationControl;
use kvault_domain::operations::RestoreOperation;
use kvault_domain::ports::{ArchiveStore, ReadBounds};
use kvault_domain::record::Record;
use kvault_domain::restore::{PartitionRestoreResult, RestorePlan};
use kvault_domain::{ClusterId, DomainError, Manifest, PartitionMapping, RestoreResult};

use super::{blocking_failed, pace, FakeCluster, FakeEngine, FakeTopic};

/// Every record of `partition` over the links of `chain` that hold it, oldest link first.
async fn read_chain(
    archives: &dyn ArchiveStore,
    chain: &[Manifest],
    partition: i32,
    bounds: ReadBounds,
) -> DomainResult<Vec<Record>> {
    let mut records = Vec::new();
    for link in chain.iter().filter(|l| l.partition(partition).is_some()) {
        let id = kvault_domain::BackupId::parse(&link.backup_id)?;
        let reader = archives.read_partition(&id, partition, bounds).await?;
        records.extend(
            tokio::task::spawn_blocking(move || reader.collect::<DomainResult<Vec<_>>>())
                .await
                .map_err(blocking_failed)??,
        );
    }
    Ok(records)
}

#[async_trait]
impl RestoreOperation for FakeEngine {
    async fn restore(
        &self,
        cluster: &ClusterId,
        plan: RestorePlan,
        control: OperationControl,
    ) -> DomainResult<RestoreResult> {
        let started = Instant::now();
        let archives = self.archives().clone();
        // An incremental backup restores its whole chain, like the Kafka engine.
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
        control.reset_progress();
        let partitions = plan
            .target_partitions
            .unwrap_or(manifest.topic.partition_count);
        let topic_created = self.on(cluster, |c| ensure_target(c, &plan, partitions))?;
        let bounds = ReadBounds {
            until_timestamp: plan.until_time_ms,
            ..ReadBounds::default()
        };
        let mut results = Vec::new();
        let (mut restored, mut bytes) = (0u64, 0u64);
        for part in &manifest.partitions {
            if plan
                .partitions
                .as_ref()
                .is_some_and(|ps| !ps.contains(&part.partition))
            {
                continue;
            }
            let records = read_chain(archives.as_ref(), &chain, part.partition, bounds).await?;
            let mut offsets = Vec::new();
            for record in records {
                pace(plan.rate_limit_per_second, &control).await?;
                bytes += record.payload_len();
                control.add(1, record.payload_len());
                let target = &plan.target_topic;
                offsets.push(self.on(cluster, |c| append(c, target, part.partition, record))?);
            }
            restored += offsets.len() as u64;
            results.push(PartitionRestoreResult {
                partition: part.partition,
                messages_count: offsets.len() as u64,
                start_offset: offsets.first().copied().unwrap_or(0),
                end_offset: offsets.last().map_or(0, |o| o + 1),
            });
        }
        Ok(RestoreResult {
            backup_id: plan.backup_id.clone(),
            target_topic: plan.target_topic,
            cluster_id: cluster.clone(),
            total_messages: restored,
            total_size_bytes: bytes,
            duration_ms: started.elapsed().as_millis() as u64,
            messages_restored: restored,
            partitions_created: results,
            status: kvault_domain::job::OperationStatus::Completed,
            checksum_validated: plan.validate_checksum,
            partition_mapping: PartitionMapping::Identity,
            topic_created,
            offsets_preserved: false,
            warnings: Vec::new(),
            consumer_groups_restored: Vec::new(),
            transform: None,
        })
    }

    async fn restore_dry_run(
        &self,
        cluster: &ClusterId,
        plan: RestorePlan,
        control: OperationControl,
    ) -> DomainResult<kvault_domain::dry_run::RestoreDryRun> {
        self.fake_restore_dry_run(cluster, plan, control).await
    }
}

/// Whether the target topic was created; a conflict when it holds messages and the plan
/// does not append.
fn ensure_target(c: &mut FakeCluster, plan: &RestorePlan, partitions: i32) -> DomainResult<bool> {
    match c.topics.get(&plan.target_topic) {
        Some(t) => {
            let held = i64::try_from(t.message_count()).unwrap_or(i64::MAX);
            plan.if_exists
                .admit(&plan.target_topic, held, "restore")
                .map(|()| false)
        }
        None => {
            let topic = FakeTopic::with_partitions(partitions);
            c.topics.insert(plan.target_topic.clone(), topic);
            Ok(true)
        }
    }
}

/// Appends `record` to `topic`, keeping the source partition where the counts allow.
fn append(
    c: &mut FakeCluster,
    topic: &str,
    source_partition: i32,
    record: kvault_domain::Record,
) -> DomainResult<i64> {
    let t = c
        .topics
        .get_mut(topic)
        .ok_or_else(|| DomainError::not_found(kvault_domain::error::Missing::Topic, topic))?;
    let target = source_partition as usize % t.partitions.len();
    Ok(t.append(target, record))
}
