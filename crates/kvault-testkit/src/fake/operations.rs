//! The four operations of the [`FakeEngine`], over its in-memory topics and a real archive
//! store. Rate limits are honoured (so a test can keep a job running and cancel it).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use kvault_domain::backup::{BackupPlan, PartitionBackupResult};
use kvault_domain::drain::{DrainStatus, PartitionLag};
use kvault_domain::error::DomainResult;
use kvault_domain::job::OperationControl;
use kvault_domain::manifest::TopicMetadata;
use kvault_domain::operations::{
    BackupOperation, DrainOperation, DrainPlan, MigrateOperation, MigrationPlan, RestoreOperation,
};
use kvault_domain::ports::{ArchiveSpec, ReadBounds};
use kvault_domain::restore::{IfExists, PartitionRestoreResult, RestorePlan};
use kvault_domain::{
    BackupResult, ClusterId, DomainError, DrainResult, MigrateResult, PartitionMapping, Record,
    RestoreResult, ValidationError,
};

use super::{FakeEngine, FakeTopic};

/// Sleeps `1/rate` seconds per record (none when `rate` is 0); `Cancelled` once cancelled.
async fn pace(rate: u32, control: &OperationControl) -> DomainResult<()> {
    if control.is_cancelled() {
        return Err(DomainError::Cancelled);
    }
    if rate > 0 {
        tokio::time::sleep(Duration::from_secs_f64(1.0 / f64::from(rate))).await;
        if control.is_cancelled() {
            return Err(DomainError::Cancelled);
        }
    }
    Ok(())
}

fn blocking_failed(e: tokio::task::JoinError) -> DomainError {
    DomainError::internal(format!("fake engine blocking task failed: {e}"))
}

#[async_trait]
impl BackupOperation for FakeEngine {
    async fn backup(
        &self,
        cluster: &ClusterId,
        plan: BackupPlan,
        control: OperationControl,
    ) -> DomainResult<BackupResult> {
        let started = Instant::now();
        let created_at = Utc::now();
        let topic = self.on(cluster, |c| {
            c.topics
                .get(&plan.topic)
                .cloned()
                .ok_or_else(|| DomainError::not_found("topic", &plan.topic))
        })?;
        let count = topic.partitions.len() as i32;
        if let Some(bad) = plan
            .partitions
            .iter()
            .flatten()
            .find(|p| !(0..count).contains(*p))
        {
            return Err(ValidationError::new(
                "partitions",
                bad,
                format!("topic {} has {count} partitions", plan.topic),
            )
            .into());
        }
        let spec = ArchiveSpec {
            backup_id: plan.backup_id.clone(),
            cluster_id: cluster.to_string(),
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
        };
        let mut selected: Vec<(i32, Vec<Record>)> = Vec::new();
        let mut budget = plan.max_messages.unwrap_or(u64::MAX);
        for (p, log) in topic.partitions.iter().enumerate() {
            let p = p as i32;
            if plan.partitions.as_ref().is_some_and(|ps| !ps.contains(&p)) {
                continue;
            }
            let high = log.len() as i64;
            let (start, end) = (
                plan.start_offset.resolve(0, high),
                plan.end_offset.resolve(0, high),
            );
            let mut records = Vec::new();
            for record in log.iter().filter(|r| r.offset >= start && r.offset < end) {
                if budget == 0 {
                    break;
                }
                pace(plan.rate_limit_per_second, &control).await?;
                budget -= 1;
                control.add(1, record.payload_len());
                records.push(strip(record.clone(), &plan));
            }
            selected.push((p, records));
        }
        let writer = self.archives().create(spec).await?;
        let manifest = tokio::task::spawn_blocking(move || {
            let mut parts = Vec::new();
            for (p, records) in selected {
                let mut pw = writer.partition(p)?;
                for r in &records {
                    pw.append(r)?;
                }
                let start = records.first().map_or(0, |r| r.offset);
                let end = records.last().map_or(start, |r| r.offset + 1);
                parts.push(pw.finish(start, end)?);
            }
            writer.commit(parts, Utc::now())
        })
        .await
        .map_err(blocking_failed)??;
        let (raw, compressed) = (
            manifest.total_raw_bytes(),
            manifest.total_compressed_bytes(),
        );
        Ok(BackupResult {
            backup_id: manifest.backup_id.clone(),
            topic: plan.topic,
            cluster_id: cluster.to_string(),
            compression: manifest.compression.codec,
            total_messages: manifest.total_messages(),
            total_size_bytes: raw,
            compressed_size_bytes: compressed,
            compression_ratio: kvault_domain::backup::compression_ratio(raw, compressed),
            duration_ms: started.elapsed().as_millis() as u64,
            partitions: manifest
                .partitions
                .iter()
                .map(|p| PartitionBackupResult {
                    partition: p.partition,
                    messages_count: p.message_count,
                    start_offset: p.start_offset,
                    end_offset: p.end_offset,
                    first_offset: p.first_offset,
                    last_offset: p.last_offset,
                    start_truncated_by_retention: false,
                })
                .collect(),
            created_at,
            finished_at: manifest.finished_at,
            status: "completed".into(),
            warnings: Vec::new(),
        })
    }
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
        let manifest = archives.manifest(&plan.backup_id).await?;
        if plan.validate_checksum {
            let report = archives.check_integrity(&plan.backup_id, &control).await?;
            if !report.valid {
                return Err(DomainError::CorruptArchive {
                    backup_id: plan.backup_id.to_string(),
                    reason: report.problems.join("; "),
                });
            }
        }
        let partitions = plan
            .target_partitions
            .unwrap_or(manifest.topic.partition_count);
        let topic_created = self.on(cluster, |c| match c.topics.get(&plan.target_topic) {
            Some(t) if t.message_count() > 0 && plan.if_exists == IfExists::Fail => {
                Err(DomainError::conflict_on(
                    format!(
                        "target topic {} already exists and holds {} messages; restore into \
                             a new or empty topic, or set \"if_exists\": \"append\"",
                        plan.target_topic,
                        t.message_count()
                    ),
                    "target_topic",
                    &plan.target_topic,
                ))
            }
            Some(_) => Ok(false),
            None => {
                c.topics.insert(
                    plan.target_topic.clone(),
                    FakeTopic::with_partitions(partitions),
                );
                Ok(true)
            }
        })?;
        let bounds = ReadBounds {
            until_timestamp: plan.until_time_ms,
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
            let reader = archives
                .read_partition(&plan.backup_id, part.partition, bounds)
                .await?;
            let records =
                tokio::task::spawn_blocking(move || reader.collect::<DomainResult<Vec<_>>>())
                    .await
                    .map_err(blocking_failed)??;
            let mut offsets = Vec::new();
            for record in records {
                pace(plan.rate_limit_per_second, &control).await?;
                bytes += record.payload_len();
                control.add(1, record.payload_len());
                offsets.push(self.on(cluster, |c| {
                    let t = c
                        .topics
                        .get_mut(&plan.target_topic)
                        .ok_or_else(|| DomainError::not_found("topic", &plan.target_topic))?;
                    let target = part.partition as usize % t.partitions.len();
                    Ok(t.append(target, record))
                })?);
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
            backup_id: plan.backup_id.to_string(),
            target_topic: plan.target_topic,
            cluster_id: cluster.to_string(),
            total_messages: restored,
            total_size_bytes: bytes,
            duration_ms: started.elapsed().as_millis() as u64,
            messages_restored: restored,
            partitions_created: results,
            status: "completed".into(),
            checksum_validated: plan.validate_checksum,
            partition_mapping: PartitionMapping::Identity,
            topic_created,
            offsets_preserved: false,
            warnings: Vec::new(),
        })
    }
}

#[async_trait]
impl MigrateOperation for FakeEngine {
    async fn migrate(
        &self,
        plan: MigrationPlan,
        control: OperationControl,
    ) -> DomainResult<MigrateResult> {
        let started = Instant::now();
        let request = &plan.request;
        if request.transformation.is_some() || !request.translate_consumer_groups.is_empty() {
            return Err(ValidationError::new(
                "transformation",
                "",
                "the fake engine runs no CEL and translates no groups; test those on a broker",
            )
            .into());
        }
        let source = self.on(&plan.source, |c| {
            c.topics
                .get(&request.source_topic)
                .cloned()
                .ok_or_else(|| DomainError::not_found("topic", &request.source_topic))
        })?;
        let mut copied = 0u64;
        let budget = request.max_messages.unwrap_or(u64::MAX);
        for (p, log) in source.partitions.iter().enumerate() {
            for record in log {
                if copied >= budget {
                    break;
                }
                pace(request.rate_limit_per_second.unwrap_or(0), &control).await?;
                control.add(1, record.payload_len());
                self.on(&plan.target, |c| {
                    let t = c
                        .topics
                        .entry(request.target_topic.clone())
                        .or_insert_with(|| {
                            FakeTopic::with_partitions(source.partitions.len() as i32)
                        });
                    let target = p % t.partitions.len();
                    t.append(target, record.clone());
                    Ok(())
                })?;
                copied += 1;
            }
        }
        Ok(MigrateResult {
            migration_id: plan.migration_id.clone(),
            source_cluster: plan.source.to_string(),
            source_topic: request.source_topic.clone(),
            target_cluster: plan.target.to_string(),
            target_topic: request.target_topic.clone(),
            total_messages: copied,
            messages_migrated: copied,
            duration_ms: started.elapsed().as_millis() as u64,
            status: "completed".into(),
            transformation_applied: false,
            messages_read: copied,
            messages_filtered: 0,
            messages_failed: 0,
            messages_written: copied,
            consumer_groups_translated: Vec::new(),
        })
    }
}

#[async_trait]
impl DrainOperation for FakeEngine {
    async fn drain(
        &self,
        cluster: &ClusterId,
        plan: DrainPlan,
        control: OperationControl,
    ) -> DomainResult<DrainResult> {
        let started = Instant::now();
        let request = plan.request;
        let deadline = Duration::from_secs(request.timeout_seconds);
        loop {
            let lags = self.on(cluster, |c| {
                let group = c
                    .groups
                    .get(&request.group_id)
                    .ok_or_else(|| DomainError::not_found("consumer_group", &request.group_id))?;
                let mut lags = Vec::new();
                for topic in &request.topics {
                    let t = c
                        .topics
                        .get(topic)
                        .ok_or_else(|| DomainError::not_found("topic", topic))?;
                    for (p, log) in t.partitions.iter().enumerate() {
                        let latest = log.len() as i64;
                        let current = group.get(&(topic.clone(), p as i32)).copied().unwrap_or(0);
                        lags.push(PartitionLag {
                            topic: topic.clone(),
                            partition: p as i32,
                            current_offset: current,
                            latest_offset: latest,
                            lag: (latest - current).max(0),
                            lag_seconds: None,
                        });
                    }
                }
                Ok(lags)
            })?;
            let total_lag: i64 = lags.iter().map(|l| l.lag).sum();
            let drained = total_lag as u64 <= request.max_lag;
            if drained || started.elapsed() >= deadline {
                return Ok(DrainResult {
                    group_id: request.group_id.clone(),
                    status: if drained {
                        DrainStatus::Drained
                    } else {
                        DrainStatus::Timeout
                    },
                    total_lag,
                    duration_ms: started.elapsed().as_millis() as u64,
                    partitions_checked: lags.len(),
                    last_check_time: Utc::now(),
                    partition_details: lags,
                });
            }
            if control.is_cancelled() {
                return Err(DomainError::Cancelled);
            }
            tokio::time::sleep(Duration::from_millis(request.check_interval_ms.max(10))).await;
        }
    }
}
