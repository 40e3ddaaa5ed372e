//! Building librdkafka client configurations from a cluster definition: one place decides the
//! settings every kvault consumer, producer and admin client uses.

use kvault_domain::cluster::FILE_SUFFIX;
use kvault_domain::error::DomainResult;
pub use kvault_domain::ClusterConfig;
use kvault_domain::{DomainError, KafkaFailure};
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::FutureProducer;

pub use crate::error::kafka_error;
use crate::tuning::{MAX_IN_FLIGHT, PARTITION_CONCURRENCY, PRODUCE_BATCH_BYTES};

/// Bootstrap servers and kvault's client id: what every client starts from.
fn kvault_client(cluster: &ClusterConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &cluster.bootstrap_servers)
        .set("client.id", "kvault");
    config
}

/// The user's properties, applied after kvault's settings so they win. A property given as a
/// file (`sasl.password_file`) is read now: every client reads it afresh, so a rotated secret
/// is used by the next operation without a restart.
fn apply_user_properties(config: &mut ClientConfig, cluster: &ClusterConfig) -> DomainResult<()> {
    for (key, value) in &cluster.properties {
        if !key.ends_with(FILE_SUFFIX) {
            config.set(key, value);
        }
    }
    for (key, path) in cluster.file_properties() {
        config.set(key, read_secret_file(key, path)?);
    }
    Ok(())
}

/// The value of `property` from the file at `path`, without the trailing newline editors and
/// secret stores leave. A file that cannot be read is an authentication failure naming the
/// property and the path (never the content).
fn read_secret_file(property: &str, path: &str) -> DomainResult<String> {
    let text = std::fs::read_to_string(path).map_err(|e| DomainError::Kafka {
        failure: KafkaFailure::Authentication,
        message: format!("cannot read {property}{FILE_SUFFIX} {path}: {e}"),
        source: None,
    })?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

/// Bootstrap servers plus the user's properties: the start of admin and group clients.
pub fn base_config(cluster: &ClusterConfig) -> DomainResult<ClientConfig> {
    let mut config = kvault_client(cluster);
    apply_user_properties(&mut config, cluster)?;
    Ok(config)
}

/// Settings for a consumer that is assigned partitions explicitly (never joins a group,
/// never commits) and reads them to a known end.
pub fn reader_config(cluster: &ClusterConfig) -> DomainResult<ClientConfig> {
    let mut config = kvault_client(cluster);
    config
        // Required by librdkafka for some consumer paths even though no group is joined.
        .set("group.id", "kvault-reader")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // End-of-partition events let a reader stop at the cut even when the last offsets
        // before it are transaction markers or compacted away.
        .set("enable.partition.eof", "true")
        .set("allow.auto.create.topics", "false")
        .set("auto.offset.reset", "earliest")
        // Bound what librdkafka prefetches and buffers per consumer. The queue limits below
        // are only checked before a fetch is sent: one fetch response is decompressed and
        // queued whole, so the *fetch size times the topic's compression ratio* is what one
        // consumer can hold (measured: a 2 MiB partition fetch of lz4 batches of repetitive
        // JSON queued ~120k messages, ~70 MB, per partition). Small fetches keep that bounded
        // whatever the topic's size; larger single messages are still fetched (the broker
        // returns at least one batch).
        .set("queued.min.messages", "2000")
        .set("queued.max.messages.kbytes", "4096")
        .set("fetch.message.max.bytes", "524288")
        .set("fetch.max.bytes", "1048576")
        .set("receive.message.max.bytes", "9437184")
        // librdkafka postpones the next fetch by this much once the queue is over a limit
        // (default 1 s): with small fetches that turned a 3 s backup into 14 s. The reader
        // drains its queue continuously, so a short back-off is enough.
        .set("fetch.queue.backoff.ms", "10")
        // A reader reads up to a cut that is already written, so it never needs the broker
        // to hold a fetch open waiting for new records (default 500 ms). A consumer reused
        // for the next partition cannot fetch it before its fetch of the previous one (sent
        // ahead, at that partition's end) comes back, so this wait is paid once per
        // partition: at 10 ms a 400-partition backup spent a fifth of its time in it
        // (docs/performance.md). 0 is not usable: the broker answers at once, librdkafka
        // refetches in a tight loop, and against nisshi the reader stalled without a record.
        .set("fetch.wait.max.ms", "1");
    apply_user_properties(&mut config, cluster)?;
    // librdkafka refuses a consumer whose fetch.max.bytes is below message.max.bytes; a user
    // who raised message.max.bytes (it applies to every client) should not have to know that.
    let user_max_message = cluster
        .properties
        .get("message.max.bytes")
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(max) = user_max_message {
        if !cluster.properties.contains_key("fetch.max.bytes") && max > 1_048_576 {
            config.set("fetch.max.bytes", max.to_string());
            // librdkafka also wants room for the protocol overhead around such a response.
            if !cluster.properties.contains_key("receive.message.max.bytes") {
                config.set(
                    "receive.message.max.bytes",
                    (max + 512).max(9_437_184).to_string(),
                );
            }
        }
    }
    Ok(config)
}

/// How long librdkafka waits for more records before it sends a batch that is not full.
const LINGER_MS: &str = "100";

/// Settings for kvault's producers: idempotent with acks=all, so a broker hiccup neither
/// loses nor duplicates a record, and a bounded local queue.
pub fn producer_config(cluster: &ClusterConfig) -> DomainResult<ClientConfig> {
    let mut config = kvault_client(cluster);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // Long enough that a producer outpacing the broker fills its batches by size (a 1 MB
        // batch of one partition takes ~10 ms to fill at full speed): batches cut early by a
        // short linger pile up behind the five requests in flight and set librdkafka's broker
        // thread spinning (see `MAX_IN_FLIGHT_BYTES`). A run's last, partial batches do not
        // wait for it: the last task to finish sending flushes.
        .set("linger.ms", LINGER_MS)
        .set("batch.size", PRODUCE_BATCH_BYTES.to_string())
        .set("compression.type", "lz4")
        .set("message.max.bytes", "10485760")
        // The local queue is what a restore holds in memory besides its small batches;
        // 16 MiB kept the measured restore rate (a larger queue only raised peak RSS). The
        // byte cap is the bound: the message cap is what the partition tasks may keep in
        // flight together, so they wait for deliveries instead of retrying a full queue.
        // 30,000 here cost a 1M-record restore ~10% (2.1-2.4 s against 1.9-2.0 s,
        // docs/performance.md).
        .set(
            "queue.buffering.max.messages",
            queued_messages().to_string(),
        )
        .set("queue.buffering.max.kbytes", "16384")
        // How long a record may wait for delivery: what bounds a restore or migration whose
        // target broker disappears (it fails this long after the last delivery, naming what
        // was written). librdkafka's default is 300 s; a cluster's `properties` may change it.
        .set("message.timeout.ms", "30000");
    apply_user_properties(&mut config, cluster)?;
    Ok(config)
}

/// Records all partition tasks of one producer may have in flight together.
fn queued_messages() -> usize {
    PARTITION_CONCURRENCY * MAX_IN_FLIGHT.next_power_of_two()
}

/// A consumer carrying `group`'s id that is only ever used for OffsetFetch, OffsetCommit and
/// group description: it must never subscribe or be assigned, so it sends no
/// JoinGroup/SyncGroup/LeaveGroup and the group's members see no rebalance.
pub fn group_offsets_client(cluster: &ClusterConfig, group: &str) -> DomainResult<BaseConsumer> {
    let mut config = base_config(cluster)?;
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("allow.auto.create.topics", "false");
    config
        .create()
        .map_err(|e| kafka_error(format!("create offsets client for group {group}"), e))
}

pub fn create_admin(cluster: &ClusterConfig) -> DomainResult<AdminClient<DefaultClientContext>> {
    base_config(cluster)?
        .create()
        .map_err(|e| kafka_error("create admin client", e))
}

pub fn create_reader(cluster: &ClusterConfig) -> DomainResult<BaseConsumer> {
    reader_config(cluster)?
        .create()
        .map_err(|e| kafka_error("create consumer", e))
}

pub fn create_producer(cluster: &ClusterConfig) -> DomainResult<FutureProducer> {
    producer_config(cluster)?
        .create()
        .map_err(|e| kafka_error("create producer", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_reader_and_producer_configs_are_accepted() {
        let cluster = ClusterConfig::new("127.0.0.1:9");
        assert!(create_reader(&cluster).is_ok());
        assert!(create_producer(&cluster).is_ok());
    }

    #[test]
    fn user_properties_win() {
        let mut cluster = ClusterConfig::new("a:9092");
        cluster.properties.insert("linger.ms".into(), "50".into());
        cluster
            .properties
            .insert("security.protocol".into(), "SASL_SSL".into());
        let config = producer_config(&cluster).unwrap();
        assert_eq!(config.get("linger.ms"), Some("50"));
        assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(
            reader_config(&cluster).unwrap().get("enable.auto.commit"),
            Some("false")
        );
    }

    #[test]
    fn reader_fetch_size_follows_a_raised_message_max() {
        let mut cluster = ClusterConfig::new("a:9092");
        assert_eq!(
            reader_config(&cluster).unwrap().get("fetch.max.bytes"),
            Some("1048576")
        );
        cluster
            .properties
            .insert("message.max.bytes".into(), "10485760".into());
        assert_eq!(
            reader_config(&cluster).unwrap().get("fetch.max.bytes"),
            Some("10485760")
        );
        // librdkafka accepts the combination (it refuses fetch.max.bytes < message.max.bytes).
        assert!(create_reader(&cluster).is_ok());
        // An explicit fetch.max.bytes is the user's call.
        cluster
            .properties
            .insert("fetch.max.bytes".into(), "2097152".into());
        assert_eq!(
            reader_config(&cluster).unwrap().get("fetch.max.bytes"),
            Some("2097152")
        );
    }

    #[test]
    fn secret_files_are_read_for_every_client() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        std::fs::write(&path, "first-s3cret\n").unwrap();
        let mut cluster = ClusterConfig::new("a:9092");
        cluster.properties.insert(
            "sasl.password_file".into(),
            path.to_string_lossy().into_owned(),
        );
        let config = base_config(&cluster).unwrap();
        assert_eq!(config.get("sasl.password"), Some("first-s3cret"));
        assert_eq!(config.get("sasl.password_file"), None);
        // Rotated: the next client reads the new value.
        std::fs::write(&path, "second-s3cret").unwrap();
        let config = producer_config(&cluster).unwrap();
        assert_eq!(config.get("sasl.password"), Some("second-s3cret"));
        // Gone: an authentication failure naming the path, never a value.
        std::fs::remove_file(&path).unwrap();
        let Err(err) = create_reader(&cluster) else {
            panic!("a missing secret file must fail the client");
        };
        assert_eq!(
            err.kind(),
            kvault_domain::ErrorKind::Kafka(KafkaFailure::Authentication)
        );
        assert!(err.to_string().contains("sasl.password_file"), "{err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
}
