//! The fake backup: the topic's records (within the plan's offsets, partitions and
//! `max_messages`, paced by its rate limit) written to a real archive; an incremental run with
//! nothing new may write none, as the Kafka engine's.

use std::time::Instant;

use async_trait::async_trait;
use chrono::Utc;
use kvault_domain::backup::{BackupOutcome, BackupPlan};
use kvault_domain::error::DomainResult;
use kvault_domain::job::OperationControl;
use kvault_domain::manifest::TopicMetadata;
use kvault_domain::operations::BackupOperation;
use kvault_domain::ports::ArchiveSpec;
use kvault_domain::{BackupResult, ClusterId, DomainError, Record};

use super::{blocking_failed, pace, FakeEngine, FakeTopic};

use kvault_domain::backup_planning::{
    backup_result, nothing_new, plan_range, select_partitions, BackupRun, PartitionMarks,
    PartitionRange,
};
use kvault_domain::chain::continue_from;
use kvault_domain::manifest::Manifest;
use kvault_domain::ports::ArchiveWriter;

#[async_trait]
impl BackupOperation for FakeEngine {
    async fn backup(
        &self,
        cluster: &ClusterId,
        plan: BackupPlan,
        control: OperationControl,
    ) -> DomainResult<BackupResult> {
        match self.run_backup(cluster, plan, control, false).await? {
            BackupOutcome::Written(result) => Ok(result),
            BackupOutcome::NothingNew(_) => Err(DomainError::internal("skipped a backup")),
        }
    }

    async fn backup_unless_unchanged(
        &self,
        cluster: &ClusterId,
        plan: BackupPlan,
        control: OperationControl,
    ) -> DomainResult<BackupOutcome> {
        self.run_backup(cluster, plan, control, true).await
    }
}

impl FakeEngine {
    /// The backup, as the Kafka engine runs it: ranges from the topic's ends (continuing the
    /// parent), then, unless nothing is new and `skip_unchanged`, the archive.
    async fn run_backup(
        &self,
        cluster: &ClusterId,
        plan: BackupPlan,
        control: OperationControl,
        skip_unchanged: bool,
    ) -> DomainResult<BackupOutcome> {
        let started = Instant::now();
        let created_at = Utc::now();
        let topic = self.on(cluster, |c| {
            c.topics.get(&plan.topic).cloned().ok_or_else(|| {
                DomainError::not_found(kvault_domain::error::Missing::Topic, &plan.topic)
            })
        })?;
        let count = topic.partitions.len() as i32;
        let available: Vec<i32> = (0..count).collect();
        let selected_partitions = select_partitions(&plan, &available)?;
        // Incremental: continue the parent's chain, as the Kafka engine does.
        let (chain, continue_at) = continue_from(
            self.archives().as_ref(),
            plan.incremental_from.as_ref(),
            cluster,
            &plan.topic,
        )
        .await?;
        let ranges: Vec<PartitionRange> = selected_partitions
            .iter()
            .map(|p| {
                let marks = PartitionMarks {
                    watermarks: (0, topic.partitions[*p as usize].len() as i64),
                    continue_at: continue_at.get(p).copied(),
                    ..Default::default()
                };
                plan_range(&plan, *p, marks)
            })
            .collect();
        let checked = (created_at, started.elapsed().as_millis() as u64);
        let unchanged = nothing_new(&plan, &ranges, cluster, checked);
        if let Some(unchanged) = unchanged.filter(|_| skip_unchanged) {
            return Ok(BackupOutcome::NothingNew(unchanged));
        }
        let spec = ArchiveSpec {
            backup_id: plan.backup_id.clone(),
            archive_uid: plan.archive_uid.clone(),
            cluster_id: cluster.clone(),
            topic: TopicMetadata {
                name: plan.topic.clone(),
                partition_count: count,
                replication_factor: 1,
                configs: Default::default(),
            },
            compression: plan.compression,
            include_keys: plan.include_keys,
            include_headers: plan.include_headers,
            created_at,
            consumer_groups: Vec::new(),
            backup_set: plan.backup_set.clone(),
            chain,
        };
        let selected = take_records(&topic, ranges, &plan, &control).await?;
        let writer = self.archives().create(spec).await?;
        let manifest = tokio::task::spawn_blocking(move || write_archive(writer, selected))
            .await
            .map_err(blocking_failed)??;
        let run = BackupRun {
            backup_id: plan.backup_id.clone(),
            cluster_id: cluster.clone(),
            created_at,
            duration_ms: started.elapsed().as_millis() as u64,
            warnings: Vec::new(),
        };
        Ok(BackupOutcome::Written(backup_result(&manifest, &[], run)))
    }
}

/// Each range's records, as the plan keeps them, within `max_messages` and the rate limit.
async fn take_records(
    topic: &FakeTopic,
    ranges: Vec<PartitionRange>,
    plan: &BackupPlan,
    control: &OperationControl,
) -> DomainResult<Vec<(i32, (i64, i64), Vec<Record>)>> {
    let mut selected: Vec<(i32, (i64, i64), Vec<Record>)> = Vec::new();
    let mut budget = plan.max_messages.unwrap_or(u64::MAX);
    for range in ranges {
        let (p, log) = (range.partition, &topic.partitions[range.partition as usize]);
        let mut records = Vec::new();
        let mut covered = (range.start, range.end);
        for record in &log[range.start as usize..range.end as usize] {
            if budget == 0 {
                // max_messages stopped it: the range ends after the last record taken.
                covered.1 = records
                    .last()
                    .map_or(range.start, |r: &Record| r.offset + 1);
                break;
            }
            pace(plan.rate_limit_per_second, control).await?;
            budget -= 1;
            control.add(1, record.payload_len());
            records.push(strip(record.clone(), plan));
        }
        selected.push((p, covered, records));
    }
    Ok(selected)
}

/// Writes each partition's records and commits the archive.
fn write_archive(
    writer: Box<dyn ArchiveWriter>,
    selected: Vec<(i32, (i64, i64), Vec<Record>)>,
) -> DomainResult<Manifest> {
    let mut parts = Vec::new();
    for (p, (start, end), records) in selected {
        let mut pw = writer.partition(p)?;
        for r in &records {
            pw.append(r)?;
        }
        parts.push(pw.finish(start, end)?);
    }
    writer.commit(parts, Utc::now())
}

/// The record as the plan keeps it (keys and headers may be left out).
fn strip(mut record: Record, plan: &BackupPlan) -> Record {
    if !plan.include_keys {
        record.key = None;
    }
    if !plan.include_headers {
        record.headers.clear();
    }
    record
}
