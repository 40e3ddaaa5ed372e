//! Building librdkafka client configurations from a cluster definition: one place decides the
//! settings every kvault consumer, producer and admin client uses.

use std::collections::BTreeMap;

use kvault_domain::error::DomainResult;
use kvault_domain::DomainError;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use serde::{Deserialize, Serialize};

/// How to reach a cluster: the `clusters:` entries of the config file.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ClusterConfig {
    pub bootstrap_servers: String,
    /// Extra librdkafka properties (SASL, TLS, timeouts...), applied last so they win.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

impl ClusterConfig {
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            properties: BTreeMap::new(),
        }
    }
}

/// Turns a client error into the domain's Kafka error, saying what kvault was doing.
pub fn kafka_error(context: impl std::fmt::Display, error: KafkaError) -> DomainError {
    DomainError::Kafka(format!("{context}: {error}"))
}

/// Bootstrap servers plus the user's properties. Every other builder starts here.
pub fn base_config(cluster: &ClusterConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &cluster.bootstrap_servers)
        .set("client.id", "kvault");
    for (key, value) in &cluster.properties {
        config.set(key, value);
    }
    config
}

/// Settings for a consumer that is assigned partitions explicitly (never joins a group,
/// never commits) and reads them to a known end.
pub fn reader_config(cluster: &ClusterConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &cluster.bootstrap_servers)
        .set("client.id", "kvault")
        // Required by librdkafka for some consumer paths even though no group is joined.
        .set("group.id", "kvault-reader")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // End-of-partition events let a reader stop at the cut even when the last offsets
        // before it are transaction markers or compacted away.
        .set("enable.partition.eof", "true")
        .set("allow.auto.create.topics", "false")
        .set("auto.offset.reset", "earliest")
        // Bound what librdkafka prefetches and buffers per consumer: a fetched response stays
        // in memory while any of its messages is queued, so both the queue and the fetch size
        // are kept small. Larger single messages are still fetched (librdkafka grows the
        // request for them).
        .set("queued.min.messages", "10000")
        .set("queued.max.messages.kbytes", "8192")
        .set("fetch.message.max.bytes", "2097152")
        .set("fetch.max.bytes", "8388608")
        .set("receive.message.max.bytes", "9437184");
    for (key, value) in &cluster.properties {
        config.set(key, value);
    }
    config
}

/// Settings for kvault's producers: idempotent with acks=all, so a broker hiccup neither
/// loses nor duplicates a record, and a bounded local queue.
pub fn producer_config(cluster: &ClusterConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &cluster.bootstrap_servers)
        .set("client.id", "kvault")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "10")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("message.max.bytes", "10485760")
        .set("queue.buffering.max.messages", "100000")
        .set("queue.buffering.max.kbytes", "65536")
        .set("message.timeout.ms", "120000");
    for (key, value) in &cluster.properties {
        config.set(key, value);
    }
    config
}

pub fn create_admin(cluster: &ClusterConfig) -> DomainResult<AdminClient<DefaultClientContext>> {
    base_config(cluster)
        .create()
        .map_err(|e| kafka_error("create admin client", e))
}

pub fn create_reader(cluster: &ClusterConfig) -> DomainResult<BaseConsumer> {
    reader_config(cluster)
        .create()
        .map_err(|e| kafka_error("create consumer", e))
}

pub fn create_producer(cluster: &ClusterConfig) -> DomainResult<FutureProducer> {
    producer_config(cluster)
        .create()
        .map_err(|e| kafka_error("create producer", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_properties_win() {
        let mut cluster = ClusterConfig::new("a:9092");
        cluster.properties.insert("linger.ms".into(), "50".into());
        cluster
            .properties
            .insert("security.protocol".into(), "SASL_SSL".into());
        let config = producer_config(&cluster);
        assert_eq!(config.get("linger.ms"), Some("50"));
        assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(
            reader_config(&cluster).get("enable.auto.commit"),
            Some("false")
        );
    }
}
