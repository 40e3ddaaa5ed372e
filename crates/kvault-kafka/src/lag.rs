//! Consumer lag over rdkafka: the domain's [`ConsumerLag`] port for [`KafkaEngine`].
//!
//! - Committed offsets come from one OffsetFetch request sent by a client that carries the
//!   group's id but never subscribes, is never assigned and never commits
//!   ([`group_offsets_client`]): the group's members see no join and no rebalance.
//! - Watermarks are read per partition right after; the figures are as of that moment
//!   (`GroupLag::read_at`).
//! - The next unconsumed record's timestamp is read by a separate group-less consumer assigned
//!   at the committed offset of each lagging partition, one record each, never committing
//!   ([`next_record_timestamps`]); drain uses the same probe for its `lag_seconds`.
//! - Asked about no topics, every topic the group has committed offsets on is reported
//!   (internal `__` topics excepted). A group the broker does not know (no commits, not
//!   described) is `NotFound("consumer_group")`; an unknown listed topic is `NotFound("topic")`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use kvault_domain::error::{DomainResult, Missing};
use kvault_domain::ports::{ConsumerLag, GroupLag, PartitionPosition};
use kvault_domain::{ClusterConfig, ClusterId, DomainError};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset as KOffset, TopicPartitionList};

use crate::admin::{blocking, committed_offsets, METADATA_TIMEOUT};
use crate::client::{create_reader, group_offsets_client, kafka_error};
use crate::cluster::KafkaCluster;
use crate::engine::KafkaEngine;

/// How long the probe waits for the next unconsumed record of every lagging partition.
pub const NEXT_RECORD_WAIT: Duration = Duration::from_secs(5);

/// A topic and partition.
pub type TopicPartition = (String, i32);

#[async_trait]
impl ConsumerLag for KafkaEngine {
    async fn group_lag(
        &self,
        cluster: &ClusterId,
        group: &str,
        topics: &[String],
    ) -> DomainResult<GroupLag> {
        self.cluster(cluster)?.group_lag(group, topics).await
    }
}

impl KafkaCluster {
    /// `group`'s position on `topics` (every topic it committed on when empty): see the module
    /// docs. A failed timestamp probe leaves `next_record_timestamp_ms` empty, not the answer.
    pub async fn group_lag(&self, group: &str, topics: &[String]) -> DomainResult<GroupLag> {
        self.check_connection().await?;
        let probe = group_offsets_client(self.config(), group)?;
        let (owned_group, owned_topics) = (group.to_owned(), topics.to_vec());
        let (mut partitions, known) = blocking(move || {
            let positions = read_positions(&probe, &owned_group, &owned_topics)?;
            let known = positions.iter().any(|p| p.committed_offset.is_some())
                || group_described(&probe, &owned_group)?;
            Ok((positions, known))
        })
        .await?;
        let read_at = Utc::now();
        if !known {
            return Err(DomainError::not_found(Missing::ConsumerGroup, group));
        }
        let wanted: BTreeMap<TopicPartition, i64> = partitions
            .iter()
            .filter(|p| p.lag_records() > 0)
            .map(|p| ((p.topic.clone(), p.partition), p.position()))
            .collect();
        match next_record_timestamps(self.config(), wanted).await {
            Ok(stamps) => {
                for p in &mut partitions {
                    p.next_record_timestamp_ms =
                        stamps.get(&(p.topic.clone(), p.partition)).copied();
                }
            }
            Err(e) => {
                tracing::warn!(group, error = %e, "could not read the next unconsumed records")
            }
        }
        Ok(GroupLag {
            partitions,
            read_at,
        })
    }
}

/// Committed offsets and watermarks of the partitions asked about (blocking).
fn read_positions(
    probe: &BaseConsumer,
    group: &str,
    topics: &[String],
) -> DomainResult<Vec<PartitionPosition>> {
    let metadata = probe
        .fetch_metadata(None, METADATA_TIMEOUT)
        .map_err(|e| kafka_error("cluster metadata", e))?;
    let listed = !topics.is_empty();
    let mut wanted: Vec<TopicPartition> = Vec::new();
    for t in metadata.topics() {
        let pick = if listed {
            topics.iter().any(|name| name == t.name())
        } else {
            !t.name().starts_with("__")
        };
        if pick && t.error().is_none() {
            wanted.extend(t.partitions().iter().map(|p| (t.name().to_owned(), p.id())));
        }
    }
    if let Some(missing) = topics.iter().find(|t| !wanted.iter().any(|(n, _)| n == *t)) {
        return Err(DomainError::not_found(Missing::Topic, missing));
    }
    wanted.sort();
    let query: Vec<(&str, i32)> = wanted.iter().map(|(t, p)| (t.as_str(), *p)).collect();
    let committed = committed_offsets(probe, group, &query)?;
    // Unlisted topics are reported only when the group committed on one of their partitions.
    let committed_on: BTreeSet<&str> = wanted
        .iter()
        .zip(&committed)
        .filter(|(_, c)| listed || c.is_some())
        .map(|((t, _), _)| t.as_str())
        .collect();
    let mut out = Vec::new();
    for ((topic, partition), found) in wanted.iter().zip(committed) {
        if !committed_on.contains(topic.as_str()) {
            continue;
        }
        let (low, high) = probe
            .fetch_watermarks(topic, *partition, METADATA_TIMEOUT)
            .map_err(|e| kafka_error(format!("watermarks of {topic}/{partition}"), e))?;
        out.push(PartitionPosition {
            topic: topic.clone(),
            partition: *partition,
            committed_offset: found.map(|c| c.offset),
            low_watermark: low,
            high_watermark: high,
            next_record_timestamp_ms: None,
        });
    }
    Ok(out)
}

/// Whether the broker describes `group` in a live state (members, or stored offsets).
fn group_described(probe: &BaseConsumer, group: &str) -> DomainResult<bool> {
    let list = probe
        .fetch_group_list(Some(group), METADATA_TIMEOUT)
        .map_err(|e| kafka_error(format!("describe group {group}"), e))?;
    Ok(list.groups().iter().any(|g| {
        g.name() == group && !g.state().is_empty() && !g.state().eq_ignore_ascii_case("dead")
    }))
}

/// The timestamp (Unix ms) of the first readable record at or after each given offset, read by
/// a group-less consumer that is assigned the partitions and never commits. Partitions whose
/// record did not arrive within [`NEXT_RECORD_WAIT`] are left out.
pub async fn next_record_timestamps(
    cluster: &ClusterConfig,
    wanted: BTreeMap<TopicPartition, i64>,
) -> DomainResult<BTreeMap<TopicPartition, i64>> {
    if wanted.is_empty() {
        return Ok(BTreeMap::new());
    }
    let reader = create_reader(cluster)?;
    blocking(move || {
        let mut assignment = TopicPartitionList::new();
        for ((topic, partition), offset) in &wanted {
            assignment
                .add_partition_offset(topic, *partition, KOffset::Offset(*offset))
                .map_err(|e| kafka_error("next-record probe assignment", e))?;
        }
        reader
            .assign(&assignment)
            .map_err(|e| kafka_error("next-record probe assign", e))?;
        let deadline = Instant::now() + NEXT_RECORD_WAIT;
        let mut stamps = BTreeMap::new();
        while stamps.len() < wanted.len() && Instant::now() < deadline {
            match reader.poll(Duration::from_millis(100)) {
                None | Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => return Err(kafka_error("next-record probe read", e)),
                Some(Ok(m)) => {
                    let key = (m.topic().to_owned(), m.partition());
                    if stamps.contains_key(&key) {
                        continue;
                    }
                    if let Some(ts) = m.timestamp().to_millis() {
                        stamps.insert(key.clone(), ts);
                    }
                    // One record per partition is all that is needed.
                    let mut done = TopicPartitionList::new();
                    done.add_partition(&key.0, key.1);
                    let _ = reader.incremental_unassign(&done);
                }
            }
        }
        Ok(stamps)
    })
    .await
}
