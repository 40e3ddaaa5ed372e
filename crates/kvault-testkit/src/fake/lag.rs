//! The fake consumer lag: committed offsets of the in-memory groups against the in-memory
//! topics, and the stored timestamp of the next unconsumed record, through the same domain
//! arithmetic as the Kafka adapter.

use async_trait::async_trait;
use chrono::Utc;
use kvault_domain::error::{DomainResult, Missing};
use kvault_domain::ports::{ConsumerLag, GroupLag, PartitionPosition};
use kvault_domain::{ClusterId, DomainError};

use super::FakeEngine;

#[async_trait]
impl ConsumerLag for FakeEngine {
    async fn group_lag(
        &self,
        cluster: &ClusterId,
        group: &str,
        topics: &[String],
    ) -> DomainResult<GroupLag> {
        let partitions = self.on(cluster, |c| {
            let offsets = c
                .groups
                .get(group)
                .ok_or_else(|| DomainError::not_found(Missing::ConsumerGroup, group))?;
            let wanted: Vec<String> = if topics.is_empty() {
                let mut committed: Vec<String> = offsets.keys().map(|(t, _)| t.clone()).collect();
                committed.dedup();
                committed
            } else {
                topics.to_vec()
            };
            let mut out = Vec::new();
            for topic in &wanted {
                let t = c
                    .topics
                    .get(topic)
                    .ok_or_else(|| DomainError::not_found(Missing::Topic, topic))?;
                for (p, log) in t.partitions.iter().enumerate() {
                    let committed = offsets.get(&(topic.clone(), p as i32)).copied();
                    let next = committed.unwrap_or(0).max(0) as usize;
                    out.push(PartitionPosition {
                        topic: topic.clone(),
                        partition: p as i32,
                        committed_offset: committed,
                        low_watermark: 0,
                        high_watermark: log.len() as i64,
                        next_record_timestamp_ms: log.get(next).map(|r| r.timestamp),
                    });
                }
            }
            Ok(out)
        })?;
        Ok(GroupLag {
            partitions,
            read_at: Utc::now(),
        })
    }
}
