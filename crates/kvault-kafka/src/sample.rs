//! Sample data for trying kvault out: creates a topic (when missing) and produces keyed,
//! JSON-valued messages with headers, plus a few tombstones and null keys, so a newcomer with an
//! empty local broker has something real to back up, restore and migrate.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use kvault_domain::error::DomainResult;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde::Serialize;

use crate::client::{create_producer, kafka_error};
use crate::cluster::KafkaCluster;

/// Deliveries awaited at once: enough to keep the producer busy, few enough to bound memory.
const IN_FLIGHT: usize = 10_000;
const LEVELS: [&str; 4] = ["debug", "info", "warn", "error"];
const TENANTS: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone, Serialize)]
pub struct SampleReport {
    pub topic: String,
    pub topic_created: bool,
    pub partitions: i32,
    pub messages_produced: u64,
    /// The consumer group committed at the end of every partition (`--group`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer_group: Option<String>,
}

/// The `i`th sample message: key, value (None for a tombstone) and headers.
pub fn sample_message(i: u64) -> (Option<String>, Option<String>, [(&'static str, String); 2]) {
    // Every 50th message has a null key, every 97th is a tombstone: the cases backups must keep.
    let key = (i % 50 != 49).then(|| format!("user-{}", i % 1000));
    let value = (i % 97 != 96).then(|| {
        format!(
            r#"{{"id":{i},"user_id":"user-{}","level":"{}","event":"page_view","path":"/products/{}","important":{},"attributes":{{"browser":"firefox","region":"eu-west-1","session":"{:016x}"}}}}"#,
            i % 1000,
            LEVELS[(i % 4) as usize],
            i % 311,
            i % 10 == 0,
            i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        )
    });
    let headers = [
        ("tenant", TENANTS[(i % 3) as usize].to_owned()),
        (
            "trace-id",
            format!("{:032x}", u128::from(i) * 0x1234_5678_9abc_def1),
        ),
    ];
    (key, value, headers)
}

impl KafkaCluster {
    /// Produces `messages` sample messages into `topic`, creating it with `partitions`
    /// partitions (replication factor 1) when it does not exist.
    pub async fn produce_sample(
        &self,
        topic: &str,
        partitions: i32,
        messages: u64,
    ) -> DomainResult<SampleReport> {
        let admin = self.admin()?;
        let (topic_created, partitions) = match admin.topic(topic).await? {
            Some(info) => (false, info.partition_count()),
            None => {
                admin
                    .create_topic(topic, partitions, 1, &BTreeMap::new())
                    .await?;
                (true, partitions)
            }
        };
        let producer = create_producer(self.config())?;
        let producer = &producer;
        let mut pending = FuturesUnordered::new();
        for i in 0..messages {
            if pending.len() >= IN_FLIGHT {
                pending.next().await.transpose()?;
            }
            pending.push(async move {
                let (key, value, headers) = sample_message(i);
                let owned_headers = headers.iter().fold(OwnedHeaders::new(), |acc, (k, v)| {
                    acc.insert(Header {
                        key: k,
                        value: Some(v.as_bytes()),
                    })
                });
                let mut record = FutureRecord::<str, str>::to(topic).headers(owned_headers);
                if let Some(k) = key.as_deref() {
                    record = record.key(k);
                }
                if let Some(v) = value.as_deref() {
                    record = record.payload(v);
                }
                producer
                    .send(record, Duration::from_secs(30))
                    .await
                    .map(|_| ())
                    .map_err(|(e, _)| kafka_error("produce sample message", e))
            });
        }
        while let Some(delivered) = pending.next().await {
            delivered?;
        }
        Ok(SampleReport {
            topic: topic.to_owned(),
            topic_created,
            partitions,
            messages_produced: messages,
            consumer_group: None,
        })
    }

    /// Commits `group`'s offsets on `topic` at every partition's high watermark, as a consumer
    /// that read everything would (without joining the group): a group to try drains and
    /// consumer-group backups with.
    pub async fn commit_sample_group(&self, topic: &str, group: &str) -> DomainResult<()> {
        let admin = self.admin()?;
        let info = admin.require_topic(topic).await?;
        let marks = admin.watermarks(topic, &info.partitions).await?;
        let offsets: Vec<(i32, i64, String)> = marks
            .into_iter()
            .map(|(partition, (_, high))| (partition, high, String::new()))
            .collect();
        let (config, topic, group) = (self.config().clone(), topic.to_owned(), group.to_owned());
        tokio::task::spawn_blocking(move || {
            crate::groups::commit_offsets(&config, &topic, &group, &offsets)
        })
        .await
        .map_err(|e| kvault_domain::DomainError::internal(format!("commit task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_include_null_keys_and_tombstones() {
        assert!(sample_message(49).0.is_none());
        assert!(sample_message(96).1.is_none());
        let (key, value, headers) = sample_message(3);
        assert_eq!(key.as_deref(), Some("user-3"));
        let json: serde_json::Value = serde_json::from_str(&value.unwrap()).unwrap();
        assert_eq!(json["level"], "error");
        assert_eq!(headers[0], ("tenant", "a".to_owned()));
    }
}
