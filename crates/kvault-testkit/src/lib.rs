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
//! - [`fake::FakeEngine`]: the domain's operations in memory, for API tests that need no broker.
//!
//! Tests never skip silently: when no broker can be started they panic and say how to
//! install one. A started broker runs under a small `sh` watchdog that kills it as soon as the
//! test process is gone, because statics are never dropped and a crashed test must not leave
//! brokers behind.

pub mod fake;

use std::collections::HashMap;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::TopicPartitionList;
use tokio::sync::OnceCell;

/// The environment variable naming an existing cluster to test against.
pub const BOOTSTRAP_ENV: &str = "KVAULT_TEST_BOOTSTRAP";
/// The environment variable naming the nisshi binary to run.
pub const NISSHI_BIN_ENV: &str = "KVAULT_NISSHI_BIN";
/// How to get the broker binary, printed whenever it cannot be found or started.
pub const INSTALL_HINT: &str = "install the test broker with: cargo install nisshi@0.8.1 --locked \
     --ignore-rust-version --no-default-features --features dynostore \
     --root $HOME/.cache/kvault/nisshi   (or set KVAULT_NISSHI_BIN to a nisshi binary, or \
     KVAULT_TEST_BOOTSTRAP to host:port of a running Kafka cluster)";

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const CONSUME_TIMEOUT: Duration = Duration::from_secs(300);

static SHARED: OnceCell<Result<TestBroker, String>> = OnceCell::const_new();

/// A record to produce. `partition: None` lets the producer's partitioner choose.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestRecord {
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// CreateTime in milliseconds; `None` lets the producer stamp it.
    pub timestamp: Option<i64>,
}

impl TestRecord {
    /// A record with a key and a value, no headers.
    pub fn kv(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            key: Some(key.into()),
            value: Some(value.into()),
            ..Self::default()
        }
    }
}

/// The benches' message shape: a ~500-byte JSON-like value, a short key, two headers and a
/// CreateTime, spread round-robin over `partitions`. Deterministic in `i`.
pub fn bench_message(i: usize, partitions: i32) -> TestRecord {
    let filler = "abcdefghijklmnopqrstuvwxyz0123456789";
    let mut value = format!(
        r#"{{"id":{i},"user":"user-{}","event":"page_view","ts":{},"url":"https://example.com/p/{}","ua":"Mozilla/5.0 (X11; Linux x86_64)","data":""#,
        i % 100_003,
        1_750_000_000_000u64 + i as u64,
        i % 977
    );
    while value.len() < 480 {
        value.push_str(&filler[..(480 - value.len()).min(filler.len())]);
    }
    value.push_str("\"}");
    TestRecord {
        partition: Some((i % partitions.max(1) as usize) as i32),
        key: Some(format!("user-{}", i % 100_003).into_bytes()),
        value: Some(value.into_bytes()),
        headers: vec![
            ("trace-id".into(), Some(format!("{i:016x}").into_bytes())),
            ("source".into(), Some(b"bench".to_vec())),
        ],
        timestamp: Some(1_750_000_000_000 + i as i64),
    }
}

/// A record read back from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: Option<i64>,
}

/// A broker the tests can talk to.
pub struct TestBroker {
    bootstrap: String,
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

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// A client config pointing at this broker, for tests that build their own clients.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
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
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
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
                            out.push(ConsumedRecord {
                                partition: p,
                                offset: m.offset(),
                                key: m.key().map(<[u8]>::to_vec),
                                value: m.payload().map(<[u8]>::to_vec),
                                headers: m
                                    .headers()
                                    .map(|hs| {
                                        hs.iter()
                                            .map(|h| {
                                                (h.key.to_owned(), h.value.map(<[u8]>::to_vec))
                                            })
                                            .collect()
                                    })
                                    .unwrap_or_default(),
                                timestamp: m.timestamp().to_millis(),
                            });
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

/// Produces `records` in order through `producer`, keeping many in flight; returns
/// `(partition, offset)` of each, in the same order.
pub async fn produce_with(
    producer: &FutureProducer,
    topic: &str,
    records: &[TestRecord],
) -> Vec<(i32, i64)> {
    futures::stream::iter(records.iter().enumerate())
        .map(|(i, r)| {
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for (key, value) in &r.headers {
                headers = headers.insert(Header {
                    key: key.as_str(),
                    value: value.as_ref(),
                });
            }
            let mut record: FutureRecord<'_, Vec<u8>, Vec<u8>> =
                FutureRecord::to(topic).headers(headers);
            if let Some(key) = &r.key {
                record = record.key(key);
            }
            if let Some(value) = &r.value {
                record = record.payload(value);
            }
            if let Some(p) = r.partition {
                record = record.partition(p);
            }
            if let Some(ts) = r.timestamp {
                record = record.timestamp(ts);
            }
            async move {
                match producer.send(record, Timeout::Never).await {
                    Ok(delivery) => (delivery.partition, delivery.offset),
                    Err((e, _)) => panic!("produce record #{i} to {topic}: {e}"),
                }
            }
        })
        .buffered(10_000)
        .collect()
        .await
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("blocking task failed: {e}"),
    }
}

fn start_shared() -> Result<TestBroker, String> {
    match std::env::var(BOOTSTRAP_ENV) {
        Ok(bootstrap) if !bootstrap.trim().is_empty() => {
            let bootstrap = bootstrap.trim().to_owned();
            wait_until_ready(&bootstrap, None).map_err(|e| {
                format!("{BOOTSTRAP_ENV}={bootstrap} does not answer metadata requests: {e}")
            })?;
            Ok(TestBroker {
                admin: admin_client(&bootstrap)?,
                bootstrap,
                process: None,
            })
        }
        _ => start_nisshi(),
    }
}

fn start_nisshi() -> Result<TestBroker, String> {
    let binary = find_nisshi().ok_or_else(|| format!("nisshi not found; {INSTALL_HINT}"))?;
    // A free port can be taken between probing and binding; a second attempt covers that.
    let mut last_error = String::new();
    for _ in 0..3 {
        match BrokerProcess::spawn(&binary) {
            Ok(process) => {
                let bootstrap = process.bootstrap.clone();
                match wait_until_ready(&bootstrap, Some(&process)) {
                    Ok(()) => {
                        return Ok(TestBroker {
                            admin: admin_client(&bootstrap)?,
                            bootstrap,
                            process: Some(process),
                        })
                    }
                    Err(e) => last_error = e,
                }
            }
            Err(e) => last_error = e,
        }
    }
    Err(format!(
        "could not start {}: {last_error}; {INSTALL_HINT}",
        binary.display()
    ))
}

fn find_nisshi() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(NISSHI_BIN_ENV) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let cached = Path::new(&home).join(".cache/kvault/nisshi/bin/nisshi");
        if cached.is_file() {
            return Some(cached);
        }
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nisshi"))
            .find(|p| p.is_file())
    })
}

fn admin_client(bootstrap: &str) -> Result<AdminClient<DefaultClientContext>, String> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| format!("create admin client: {e}"))
}

/// Polls metadata until the broker answers; fails early when the broker process died.
fn wait_until_ready(bootstrap: &str, process: Option<&BrokerProcess>) -> Result<(), String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| format!("create metadata client: {e}"))?;
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Some(process) = process {
            process.check_alive()?;
        }
        match consumer.fetch_metadata(None, Duration::from_millis(500)) {
            Ok(metadata) if !metadata.brokers().is_empty() => return Ok(()),
            Ok(_) => {}
            Err(e) if Instant::now() >= deadline => {
                return Err(format!(
                    "no metadata answer within {STARTUP_TIMEOUT:?}: {e}"
                ))
            }
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            return Err(format!("no broker in metadata within {STARTUP_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A nisshi broker under a `sh` watchdog.
struct BrokerProcess {
    bootstrap: String,
    watchdog: Mutex<Child>,
    log: PathBuf,
}

impl BrokerProcess {
    fn spawn(binary: &Path) -> Result<Self, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free loopback port: {e}"))?
            .port();
        let bootstrap = format!("127.0.0.1:{port}");
        let log =
            std::env::temp_dir().join(format!("kvault-nisshi-{}-{port}.log", std::process::id()));
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| format!("open {}: {e}", log.display()))?;
        // The broker runs in the background of a shell that polls the test process: when the
        // test process is gone (finished, panicked, killed), the shell kills the broker. A TERM
        // to the shell (our Drop) does the same at once.
        let script = r#"
"$NISSHI" broker --listener-url "tcp://$ADDR" --advertised-listener-url "tcp://$ADDR" \
    --storage-engine memory://nisshi/ --group-initial-rebalance-delay 0s &
broker=$!
trap 'kill $broker 2>/dev/null; wait $broker; exit 0' TERM INT
while kill -0 "$OWNER" 2>/dev/null && kill -0 "$broker" 2>/dev/null; do sleep 0.5; done
kill $broker 2>/dev/null
wait $broker
"#;
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("NISSHI", binary)
            .env("ADDR", &bootstrap)
            .env("OWNER", std::process::id().to_string())
            .env(
                "RUST_LOG",
                std::env::var("NISSHI_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("spawn sh for {}: {e}", binary.display()))?;
        Ok(Self {
            bootstrap,
            watchdog: Mutex::new(child),
            log,
        })
    }

    fn check_alive(&self) -> Result<(), String> {
        let mut child = self
            .watchdog
            .lock()
            .map_err(|_| "broker handle poisoned".to_owned())?;
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "broker exited ({status}); log {}:\n{}",
                self.log.display(),
                tail(&self.log)
            )),
            Err(e) => Err(format!("broker status: {e}")),
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        if let Ok(mut child) = self.watchdog.lock() {
            // TERM lets the watchdog's trap stop the broker; `Child::kill` would SIGKILL the
            // shell and leave the broker to the (slower) owner check.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

fn tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let start = text.len().saturating_sub(4000);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[start..].to_owned()
}
