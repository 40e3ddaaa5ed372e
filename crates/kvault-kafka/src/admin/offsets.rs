//! Offsets of many partitions at once: watermarks and offsets for a timestamp, each one
//! ListOffsets request per leader for every partition asked about.

use std::collections::BTreeMap;

use kvault_domain::error::DomainResult;
use kvault_domain::DomainError;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset as KOffset, TopicPartitionList};

use super::{blocking, Admin, METADATA_TIMEOUT};
use crate::client::kafka_error;

impl Admin {
    /// `(low, high)` watermarks of every listed partition, read right now: two ListOffsets
    /// requests (earliest, latest) per leader for all of them, not two per partition.
    pub async fn watermarks(
        &self,
        topic: &str,
        partitions: &[i32],
    ) -> DomainResult<BTreeMap<i32, (i64, i64)>> {
        let reader = self.reader.clone();
        let topic = topic.to_owned();
        let partitions = partitions.to_vec();
        blocking(move || {
            if partitions.is_empty() {
                return Ok(BTreeMap::new());
            }
            let low = list_offsets(&reader, &topic, &partitions, KOffset::Beginning)?;
            let high = list_offsets(&reader, &topic, &partitions, KOffset::End)?;
            Ok(partitions
                .iter()
                .zip(low.into_iter().zip(high))
                .map(|(p, marks)| (*p, marks))
                .collect())
        })
        .await
    }

    /// For each partition, the first offset whose timestamp is at or after `timestamp_ms`,
    /// or `None` when no such record exists (yet).
    pub async fn offsets_for_time(
        &self,
        topic: &str,
        partitions: &[i32],
        timestamp_ms: i64,
    ) -> DomainResult<BTreeMap<i32, Option<i64>>> {
        let reader = self.reader.clone();
        let topic = topic.to_owned();
        let partitions = partitions.to_vec();
        blocking(move || {
            let mut query = TopicPartitionList::new();
            for p in &partitions {
                query
                    .add_partition_offset(&topic, *p, KOffset::Offset(timestamp_ms))
                    .map_err(|e| kafka_error("offsets_for_times request", e))?;
            }
            let answer = reader
                .offsets_for_times(query, METADATA_TIMEOUT)
                .map_err(|e| kafka_error(format!("offsets_for_times on {topic}"), e))?;
            let mut out = BTreeMap::new();
            for p in partitions {
                let offset = match answer.find_partition(&topic, p).map(|e| e.offset()) {
                    Some(KOffset::Offset(o)) if o >= 0 => Some(o),
                    _ => None,
                };
                out.insert(p, offset);
            }
            Ok(out)
        })
        .await
    }
}

/// The offsets ListOffsets answers for `at` (earliest or latest) on `partitions`, in order,
/// with one request per leader. Blocking.
fn list_offsets(
    reader: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
    at: KOffset,
) -> DomainResult<Vec<i64>> {
    let mut query = TopicPartitionList::new();
    for p in partitions {
        query
            .add_partition_offset(topic, *p, at)
            .map_err(|e| kafka_error("watermarks request", e))?;
    }
    let answer = reader
        .offsets_for_times(query, METADATA_TIMEOUT)
        .map_err(|e| kafka_error(format!("watermarks of {topic}"), e))?;
    partitions
        .iter()
        .map(|p| {
            let elem = answer.find_partition(topic, *p).ok_or_else(|| {
                DomainError::kafka(format!("watermarks of {topic}/{p}: no answer"))
            })?;
            elem.error()
                .map_err(|e| kafka_error(format!("watermarks of {topic}/{p}"), e))?;
            match elem.offset() {
                KOffset::Offset(o) if o >= 0 => Ok(o),
                other => Err(DomainError::kafka(format!(
                    "watermarks of {topic}/{p}: the broker answered {other:?}"
                ))),
            }
        })
        .collect()
}
