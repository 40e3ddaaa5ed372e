//! The fake migrate: records copied between in-memory topics, without CEL or group
//! translation (those are refused: test them on a broker).

use std::time::Instant;

use async_trait::async_trait;
use kvault_domain::error::DomainResult;
use kvault_domain::job::OperationControl;
use kvault_domain::operations::{MigrateOperation, MigrationPlan};
use kvault_domain::{DomainError, MigrateResult, ValidationError};

use super::{pace, FakeEngine, FakeTopic};

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
            c.topics.get(&request.source_topic).cloned().ok_or_else(|| {
                DomainError::not_found(kvault_domain::error::Missing::Topic, &request.source_topic)
            })
        })?;
        self.on(&plan.target, |c| {
            let held = c
                .topics
                .get(&request.target_topic)
                .map_or(0, FakeTopic::message_count);
            let held = i64::try_from(held).unwrap_or(i64::MAX);
            request
                .if_exists
                .admit(&request.target_topic, held, "migrate")
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
            status: kvault_domain::job::OperationStatus::Completed,
            transformation_applied: false,
            messages_read: copied,
            messages_filtered: 0,
            messages_failed: 0,
            messages_written: copied,
            consumer_groups_translated: Vec::new(),
        })
    }

    async fn migrate_dry_run(
        &self,
        plan: MigrationPlan,
        _control: OperationControl,
    ) -> DomainResult<kvault_domain::dry_run::MigrateDryRun> {
        self.fake_migrate_dry_run(plan).await
    }
}
