//! Test support: gives integration tests a real Kafka-protocol broker over TCP.
//!
//! - [`TestBroker::get`] returns the broker shared by every test in the current test binary:
//!   the cluster named by `KVAULT_TEST_BOOTSTRAP` when that is set (so the same tests run
//!   against a real Apache Kafka), otherwise one [nisshi](https://crates.io/crates/nisshi)
//!   broker started lazily on a free loopback port with in-memory storage.
//! - [`TestBroker::start_new`] starts another, independent broker (tests that need two
//!   clusters, e.g. migrations); it is stopped when the value is dropped.
//! - Helpers create uniquely named topics, produce records with keys, values, headers and
//!   timestamps, and read a whole topic back with partitions and offsets.
//!
//! - Group helpers commit and read a consumer group's offsets without joining it, and keep a
//!   real member in a group ([`ActiveMember`]).
//!
//! - [`secure::SecureBroker`]: a broker with a TLS listener (certificates made at test time:
//!   valid, expired, or for another host) or one requiring SCRAM-SHA-512 over TLS.
//!
//! - [`fake::FakeEngine`]: the domain's operations in memory, for API tests that need no broker.
//!
//! Tests never skip silently: when no broker can be started they panic and say how to
//! install one. A started broker runs under a small `sh` watchdog that kills it as soon as the
//! test process is gone, because statics are never dropped and a crashed test must not leave
//! brokers behind.

pub mod azure;
pub mod fake;
pub mod s3;
pub mod secure;
mod watchdog;

mod groups;
mod process;
mod records;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::TopicPartitionList;
use tokio::sync::OnceCell;

pub use groups::ActiveMember;
use process::{start_nisshi, start_shared, BrokerProcess};
pub use records::{bench_message, produce_with, ConsumedRecord, TestRecord};
pub use s3::TestS3;

/// The environment variable naming an existing cluster to test against.
pub const BOOTSTRAP_ENV: &str = "KVAULT_TEST_BOOTSTRAP";
/// The environment variable naming the nisshi binary to run.
pub const NISSHI_BIN_ENV: &str = "KVAULT_NISSHI_BIN";
/// How to get the broker binary, printed whenever it cannot be found or started.
pub const INSTALL_HINT: &str = "install the test broker with: cargo install nisshi@0.8.1 --locked \
     --ignore-rust-version --no-default-features --features dynostore,postgres \
     --root $HOME/.cache/kvault/nisshi   (or set KVAULT_NISSHI_BIN to a nisshi binary, or \
     KVAULT_TEST_BOOTSTRAP to host:port of a running Kafka cluster)";

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const CONSUME_TIMEOUT: Duration = Duration::from_secs(300);

static SHARED: OnceCell<Result<TestBroker, String>> = OnceCell::const_new();

/// A broker the tests can talk to.
pub struct TestBroker {
    bootstrap: String,
    /// Client properties every client of the tests needs (TLS, SASL); empty for a plain broker.
    settings: Vec<(String, String)>,
    admin: AdminClient<DefaultClientContext>,
    /// `None` when the broker is external (`KVAULT_TEST_BOOTSTRAP`).
    process: Option<BrokerProcess>,
}

impl std::fmt::Debug for TestBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestBroker")
            .field("bootstrap", &self.bootstrap)
            .field("managed", &self.process.is_some())
            .finish()
    }
}

impl TestBroker {
    /// The broker shared by all tests of this test binary, started on first use.
    ///
    /// Panics (with installation instructions) when no broker can be reached or started.
    pub async fn get() -> &'static TestBroker {
        let shared = SHARED
            .get_or_init(|| async {
                match tokio::task::spawn_blocking(start_shared).await {
                    Ok(result) => result,
                    Err(e) => Err(format!("broker start-up thread failed: {e}")),
                }
            })
            .await;
        match shared {
            Ok(broker) => broker,
            Err(message) => panic!("no Kafka broker for tests: {message}"),
        }
    }

    /// Starts a second, independent nisshi broker (ignores `KVAULT_TEST_BOOTSTRAP`: two
    /// clusters are needed exactly when one is not enough). Stopped when dropped.
    pub async fn start_new() -> TestBroker {
        match tokio::task::spawn_blocking(start_nisshi).await {
            Ok(Ok(broker)) => broker,
            Ok(Err(message)) => panic!("could not start a nisshi broker: {message}"),
            Err(e) => panic!("broker start-up thread failed: {e}"),
        }
    }

    /// Kills this broker with SIGKILL, as a crash would (its in-memory data is gone). Only for
    /// brokers from [`Self::start_new`]; panics for an external one.
    pub fn kill(&self) {
        assert!(self.process.is_some(), "cannot kill an external broker");
        let pattern = format!("listener-url tcp://{}", self.bootstrap);
        let status = std::process::Command::new("pkill")
            .args(["-KILL", "-f", "--", &pattern])
            .status()
            .expect("run pkill");
        assert!(status.success(), "no broker process matched {pattern}");
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// A client config pointing at this broker, for tests that build their own clients.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        for (key, value) in &self.settings {
            config.set(key, value);
        }
        config
    }

    /// A topic name no other test (or earlier run against a shared cluster) uses.
    pub fn unique_topic(&self, prefix: &str) -> String {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        format!("{prefix}-{}", &suffix[..12])
    }

    /// Creates a topic with replication factor 1 and waits until its metadata shows every
    /// partition.
    pub async fn create_topic(&self, name: &str, partitions: i32) {
        self.create_topic_with(name, partitions, &[]).await
    }

    /// [`Self::create_topic`] with topic configs (`("retention.ms", "86400000")`, ...).
    pub async fn create_topic_with(&self, name: &str, partitions: i32, configs: &[(&str, &str)]) {
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        for (key, value) in configs {
            topic = topic.set(key, value);
        }
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = self
            .admin
            .create_topics(&[topic], &options)
            .await
            .unwrap_or_else(|e| panic!("create topic {name}: {e}"));
        for result in results {
            if let Err((topic, code)) = result {
                panic!("create topic {topic}: {code}");
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.partition_count(name).await != Some(partitions) {
            assert!(
                Instant::now() < deadline,
                "topic {name} did not show {partitions} partitions within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Deletes a topic; a topic that does not exist is not an error (cleanup is best effort).
    pub async fn delete_topic(&self, name: &str) {
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        if let Err(e) = self.admin.delete_topics(&[name], &options).await {
            panic!("delete topic {name}: {e}");
        }
    }

    /// The topic's partition count, or `None` when the broker does not know the topic.
    pub async fn partition_count(&self, topic: &str) -> Option<i32> {
        let consumer = self.base_consumer();
        let topic = topic.to_owned();
        blocking(move || {
            let metadata = consumer
                .fetch_metadata(Some(&topic), Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("metadata for {topic}: {e}"));
            metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none())
                .map(|t| t.partitions().len() as i32)
                .filter(|n| *n > 0)
        })
        .await
    }

    /// Low and high watermark of one partition.
    pub async fn watermarks(&self, topic: &str, partition: i32) -> (i64, i64) {
        let consumer = self.base_consumer();
        let topic = topic.to_owned();
        blocking(move || {
            consumer
                .fetch_watermarks(&topic, partition, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("watermarks of {topic}/{partition}: {e}"))
        })
        .await
    }

    /// A producer for this broker with `extra` settings on top of kvault-friendly defaults
    /// (acks=all, idempotence, large messages allowed).
    pub fn producer(&self, extra: &[(&str, &str)]) -> FutureProducer {
        let mut config = self.client_config();
        config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("message.max.bytes", "10000000")
            .set("message.timeout.ms", "60000");
        for (k, v) in extra {
            config.set(*k, *v);
        }
        config
            .create()
            .unwrap_or_else(|e| panic!("create producer: {e}"))
    }

    /// Produces `records` in order with a default producer; returns `(partition, offset)` of
    /// each, in the same order.
    pub async fn produce(&self, topic: &str, records: &[TestRecord]) -> Vec<(i32, i64)> {
        let producer = self.producer(&[]);
        produce_with(&producer, topic, records).await
    }

    /// Reads every record of every partition of `topic` up to the high watermarks seen when
    /// the call starts, sorted by partition and offset.
    pub async fn consume_all(&self, topic: &str) -> Vec<ConsumedRecord> {
        let partitions = self
            .partition_count(topic)
            .await
            .unwrap_or_else(|| panic!("topic {topic} does not exist"));
        let mut ends = HashMap::new();
        let mut assignment = TopicPartitionList::new();
        for p in 0..partitions {
            let (low, high) = self.watermarks(topic, p).await;
            if high > low {
                ends.insert(p, high);
                assignment
                    .add_partition_offset(topic, p, rdkafka::Offset::Offset(low))
                    .unwrap_or_else(|e| panic!("assignment: {e}"));
            }
        }
        if ends.is_empty() {
            return Vec::new();
        }
        let mut config = self.client_config();
        config
            .set("group.id", "kvault-testkit")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("fetch.message.max.bytes", "10000000");
        let consumer: BaseConsumer = config
            .create()
            .unwrap_or_else(|e| panic!("create consumer: {e}"));
        let topic = topic.to_owned();
        blocking(move || {
            consumer
                .assign(&assignment)
                .unwrap_or_else(|e| panic!("assign: {e}"));
            let deadline = Instant::now() + CONSUME_TIMEOUT;
            let mut out = Vec::new();
            let mut pending = ends.clone();
            while !pending.is_empty() {
                assert!(
                    Instant::now() < deadline,
                    "consuming {topic} timed out; still waiting on partitions {:?}",
                    pending.keys().collect::<Vec<_>>()
                );
                match consumer.poll(Duration::from_millis(200)) {
                    None => {}
                    Some(Err(KafkaError::PartitionEOF(p))) => {
                        pending.remove(&p);
                    }
                    Some(Err(e)) => panic!("consume {topic}: {e}"),
                    Some(Ok(m)) => {
                        let p = m.partition();
                        let end = ends.get(&p).copied().unwrap_or(0);
                        if m.offset() < end {
                            out.push(ConsumedRecord::from_message(&m));
                        }
                        if m.offset() + 1 >= end {
                            pending.remove(&p);
                        }
                    }
                }
            }
            out.sort_by_key(|r| (r.partition, r.offset));
            out
        })
        .await
    }

    fn base_consumer(&self) -> BaseConsumer {
        self.client_config()
            .create()
            .unwrap_or_else(|e| panic!("create metadata client: {e}"))
    }
}

pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("blocking task failed: {e}"),
    }
}
