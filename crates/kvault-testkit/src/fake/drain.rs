//! The fake drain: lag from committed offsets against the in-memory topics, polled
//! until drained or timed out.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use kvault_domain::drain::{DrainStatus, PartitionLag};
use kvault_domain::error::DomainResult;
use kvault_domain::job::OperationControl;
use kvault_domain::operations::{DrainOperation, DrainPlan};
use kvault_domain::{ClusterId, DomainError, DrainResult};

use super::FakeEngine;

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
                let group = c.groups.get(&request.group_id).ok_or_else(|| {
                    DomainError::not_found(
                        kvault_domain::error::Missing::ConsumerGroup,
                        &request.group_id,
                    )
                })?;
                let mut lags = Vec::new();
                for topic in &request.topics {
                    let t = c.topics.get(topic).ok_or_else(|| {
                        DomainError::not_found(kvault_domain::error::Missing::Topic, topic)
                    })?;
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
            let drained = request.is_drained(total_lag);
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
