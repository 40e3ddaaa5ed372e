//! Cluster metadata and topic administration over rdkafka: topic description, watermarks,
//! offsets for timestamps, topic configs, creating and deleting topics. Blocking librdkafka
//! calls run on tokio's blocking pool so async callers never stall a runtime thread.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kvault_domain::error::DomainResult;
use kvault_domain::DomainError;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Offset as KOffset, TopicPartitionList};

use crate::client::{create_admin, create_reader, kafka_error, ClusterConfig};

mod configs;
mod groups;
mod offsets;

/// A group's committed position on one partition, as OffsetFetch returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    /// The metadata string stored with the commit (empty when none).
    pub metadata: String,
}

/// Reads the committed offsets of the group `client` was configured with (see
/// [`group_offsets_client`](crate::client::group_offsets_client)) on `partitions`, with one
/// OffsetFetch request that joins nothing. The answer has one entry per requested partition,
/// in order: `None` where the group has no commit. Blocking.
pub fn committed_offsets(
    client: &BaseConsumer,
    group: &str,
    partitions: &[(&str, i32)],
) -> DomainResult<Vec<Option<CommittedOffset>>> {
    let mut query = TopicPartitionList::new();
    for (topic, p) in partitions {
        query
            .add_partition_offset(topic, *p, KOffset::Invalid)
            .map_err(|e| kafka_error("committed offsets request", e))?;
    }
    let answer = client
        .committed_offsets(query, METADATA_TIMEOUT)
        .map_err(|e| kafka_error(format!("committed offsets of group {group}"), e))?;
    let mut out = Vec::with_capacity(partitions.len());
    for (topic, p) in partitions {
        let Some(elem) = answer.find_partition(topic, *p) else {
            out.push(None);
            continue;
        };
        elem.error()
            .map_err(|e| kafka_error(format!("committed offset of {topic}/{p}"), e))?;
        out.push(match elem.offset() {
            KOffset::Offset(o) if o >= 0 => Some(CommittedOffset {
                offset: o,
                metadata: elem.metadata().to_owned(),
            }),
            _ => None,
        });
    }
    Ok(out)
}

/// Timeout for metadata-style requests.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(15);

/// What the broker says a topic looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    /// Partition ids, sorted.
    pub partitions: Vec<i32>,
    /// The largest replica count of any partition.
    pub replication_factor: i16,
}

impl TopicInfo {
    pub fn partition_count(&self) -> i32 {
        self.partitions.len() as i32
    }
}

/// What creating a topic did with the requested configs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreatedTopic {
    /// True when the broker refused the configs and the topic was created without them.
    pub configs_dropped: bool,
    /// The broker's reason for refusing them.
    pub config_error: Option<String>,
}

/// Metadata and admin operations against one cluster.
#[derive(Clone)]
pub struct Admin {
    reader: Arc<BaseConsumer>,
    admin: Arc<AdminClient<DefaultClientContext>>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

/// Drops librdkafka clients on tokio's blocking pool, so their teardown (a producer stops its
/// polling thread, which polls in 100 ms slices, then flushes and destroys: ~0.15 s) does not
/// hold the result of an operation that has already settled everything it sent.
pub(crate) fn drop_in_background<T: Send + 'static>(clients: T) {
    tokio::task::spawn_blocking(move || drop(clients));
}

/// Runs a blocking librdkafka call on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> DomainResult<T> + Send + 'static,
) -> DomainResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DomainError::internal(format!("blocking task failed: {e}")))?
}

impl Admin {
    pub fn new(cluster: &ClusterConfig) -> DomainResult<Self> {
        Ok(Self {
            reader: Arc::new(create_reader(cluster)?),
            admin: Arc::new(create_admin(cluster)?),
        })
    }

    pub fn admin_client(&self) -> &AdminClient<DefaultClientContext> {
        &self.admin
    }

    /// Any metadata answer within `timeout`.
    pub async fn ping(&self, timeout: Duration) -> DomainResult<()> {
        let reader = self.reader.clone();
        blocking(move || {
            reader
                .fetch_metadata(None, timeout)
                .map(|_| ())
                .map_err(|e| kafka_error("cluster unreachable (metadata request)", e))
        })
        .await
    }

    /// The topic's partitions and replication factor; `None` when it does not exist.
    pub async fn topic(&self, topic: &str) -> DomainResult<Option<TopicInfo>> {
        let reader = self.reader.clone();
        let topic = topic.to_owned();
        blocking(move || {
            let metadata = reader
                .fetch_metadata(Some(&topic), METADATA_TIMEOUT)
                .map_err(|e| kafka_error(format!("metadata of topic {topic}"), e))?;
            let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
                return Ok(None);
            };
            match t.error() {
                None => {}
                Some(code) => {
                    let code = RDKafkaErrorCode::from(code);
                    if code == RDKafkaErrorCode::UnknownTopicOrPartition
                        || code == RDKafkaErrorCode::UnknownTopic
                    {
                        return Ok(None);
                    }
                    return Err(crate::error::code_error(
                        format_args!("metadata of topic {topic}"),
                        code,
                    ));
                }
            }
            if t.partitions().is_empty() {
                return Ok(None);
            }
            let mut partitions: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
            partitions.sort_unstable();
            let replication_factor = t
                .partitions()
                .iter()
                .map(|p| p.replicas().len())
                .max()
                .unwrap_or(1)
                .max(1) as i16;
            Ok(Some(TopicInfo {
                name: topic,
                partitions,
                replication_factor,
            }))
        })
        .await
    }

    /// Every topic the cluster's metadata lists (internal ones included), sorted.
    pub async fn list_topics(&self) -> DomainResult<Vec<String>> {
        let reader = self.reader.clone();
        blocking(move || {
            let metadata = reader
                .fetch_metadata(None, METADATA_TIMEOUT)
                .map_err(|e| kafka_error("list topics", e))?;
            let mut topics: Vec<String> = metadata
                .topics()
                .iter()
                .filter(|t| t.error().is_none())
                .map(|t| t.name().to_owned())
                .collect();
            topics.sort_unstable();
            Ok(topics)
        })
        .await
    }

    /// Like [`Admin::topic`], but a missing topic is `NotFound("topic")`.
    pub async fn require_topic(&self, topic: &str) -> DomainResult<TopicInfo> {
        self.topic(topic)
            .await?
            .ok_or_else(|| DomainError::not_found(kvault_domain::error::Missing::Topic, topic))
    }

    /// Creates a topic and waits until its metadata shows every partition. When the broker
    /// refuses the configs (unknown or invalid for this broker), the topic is created without
    /// them and the result says so: restoring the data matters more than a retention setting,
    /// and the caller reports it.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &BTreeMap<String, String>,
    ) -> DomainResult<CreatedTopic> {
        let mut created = CreatedTopic::default();
        match self
            .try_create(name, partitions, replication_factor, configs)
            .await
        {
            Ok(()) => {}
            Err((code, message))
                if !configs.is_empty()
                    && matches!(
                        code,
                        Some(RDKafkaErrorCode::InvalidConfig)
                            | Some(RDKafkaErrorCode::PolicyViolation)
                            | Some(RDKafkaErrorCode::InvalidRequest)
                    ) =>
            {
                created.configs_dropped = true;
                created.config_error = Some(message);
                self.try_create(name, partitions, replication_factor, &BTreeMap::new())
                    .await
                    .map_err(|(code, m)| crate::error::message_error(code, m))?;
            }
            Err((Some(RDKafkaErrorCode::TopicAlreadyExists), message)) => {
                return Err(DomainError::conflict_on(message, "target_topic", name));
            }
            Err((Some(RDKafkaErrorCode::InvalidReplicationFactor), message)) => {
                return Err(kvault_domain::ValidationError::new(
                    "replication_factor",
                    replication_factor,
                    message,
                )
                .into());
            }
            Err((code, message)) => return Err(crate::error::message_error(code, message)),
        }
        let deadline = tokio::time::Instant::now() + METADATA_TIMEOUT;
        loop {
            if let Some(info) = self.topic(name).await? {
                if info.partition_count() == partitions {
                    return Ok(created);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DomainError::kafka(format!(
                    "topic {name} was created but its {partitions} partitions did not appear \
                     in metadata within {METADATA_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn try_create(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), (Option<RDKafkaErrorCode>, String)> {
        let mut topic = NewTopic::new(
            name,
            partitions,
            TopicReplication::Fixed(i32::from(replication_factor)),
        );
        for (k, v) in configs {
            topic = topic.set(k, v);
        }
        let options = AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT));
        let results = self
            .admin
            .create_topics(&[topic], &options)
            .await
            .map_err(|e| (e.rdkafka_error_code(), format!("create topic {name}: {e}")))?;
        for result in results {
            if let Err((topic, code)) = result {
                return Err((Some(code), format!("create topic {topic}: {code}")));
            }
        }
        Ok(())
    }

    pub async fn delete_topic(&self, name: &str) -> DomainResult<()> {
        // Both timeouts: a failed restore deletes the topic it created, and when the broker is
        // gone the request timeout (librdkafka's 60 s socket timeout otherwise) is what bounds
        // how long that failure takes to report.
        let options = AdminOptions::new()
            .operation_timeout(Some(METADATA_TIMEOUT))
            .request_timeout(Some(METADATA_TIMEOUT));
        let results = self
            .admin
            .delete_topics(&[name], &options)
            .await
            .map_err(|e| kafka_error(format!("delete topic {name}"), e))?;
        for result in results {
            if let Err((topic, code)) = result {
                return Err(crate::error::code_error(
                    format_args!("delete topic {topic}"),
                    code,
                ));
            }
        }
        Ok(())
    }
}
