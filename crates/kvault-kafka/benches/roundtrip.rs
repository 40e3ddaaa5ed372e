//! Backup and restore throughput against the local test broker, per codec, with peak RSS.
//!
//! Produces N (~500-byte, JSON-like, keyed, two headers) messages into a 3-partition topic,
//! then for each codec backs the topic up and restores it into a fresh topic, printing
//! messages/s, MB/s (payload bytes) and the peak RSS of each phase. Those RSS figures are
//! indicative only: this process also produced the topic, and memory the allocator kept from
//! that phase counts as RSS of the later ones. The memory check proper is
//! `scripts/bench-memory.sh`, which measures `kvault backup`/`restore` in processes of their own.
//!
//! Environment: `KVAULT_BENCH_MESSAGES` (default 1000000), `KVAULT_BENCH_CODECS` (comma list,
//! default all five), `KVAULT_BENCH_RSS_CAP_MB` (default 200), `KVAULT_BENCH_PROPS` (extra
//! librdkafka properties for kvault's clients, `k=v,k=v`). Uses `KVAULT_TEST_BOOTSTRAP` or
//! starts nisshi exactly like the tests.
//!
//! Run: `cargo bench -p kvault-kafka --bench roundtrip`

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use kvault_domain::backup::{BackupDefaults, BackupRequest};
use kvault_domain::job::OperationControl;
use kvault_domain::operations::{BackupOperation, RestoreOperation};
use kvault_domain::ports::ArchiveStore;
use kvault_domain::restore::RestoreRequest;
use kvault_domain::{ClusterId, CompressionType};
use kvault_kafka::{ClusterConfig, KafkaCluster, KafkaEngine};
use kvault_storage::Store;
use kvault_testkit::{bench_message, produce_with, TestBroker, TestRecord};

const PARTITIONS: i32 = 3;
const CHUNK: usize = 10_000;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Peak resident set size of this process in MB (VmHWM).
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Current resident set size in MB (VmRSS).
fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Resets VmHWM to the current RSS so each phase reports its own peak.
/// The engine the API runs operations through, over `kafka` alone and archiving into `store`.
fn engine(kafka: &KafkaCluster, store: &Arc<dyn ArchiveStore>) -> KafkaEngine {
    let cluster = (kafka.id().clone(), kafka.config().clone());
    KafkaEngine::new([cluster], store.clone()).expect("engine")
}

fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let n: usize = env_or("KVAULT_BENCH_MESSAGES", 1_000_000);
    let cap_mb: f64 = env_or("KVAULT_BENCH_RSS_CAP_MB", 200.0);
    let codecs: Vec<CompressionType> = std::env::var("KVAULT_BENCH_CODECS")
        .unwrap_or_else(|_| "none,gzip,snappy,lz4,zstd".into())
        .split(',')
        .filter_map(|c| c.parse().ok())
        .collect();

    let broker = TestBroker::get().await;
    // Extra librdkafka properties for experiments, e.g. KVAULT_BENCH_PROPS=debug=fetch.
    let mut config = ClusterConfig::new(broker.bootstrap());
    for pair in std::env::var("KVAULT_BENCH_PROPS")
        .unwrap_or_default()
        .split(',')
    {
        if let Some((k, v)) = pair.split_once('=') {
            config.properties.insert(k.trim().into(), v.trim().into());
        }
    }
    let kafka = KafkaCluster::connect(ClusterId::parse("bench").expect("cluster id"), &config)
        .expect("cluster");
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn ArchiveStore> = Arc::new(Store::local(dir.path()).expect("archive store"));

    let topic = broker.unique_topic("bench");
    broker.create_topic(&topic, PARTITIONS).await;
    let producer = broker.producer(&[("compression.type", "lz4"), ("linger.ms", "20")]);
    let started = Instant::now();
    for chunk_start in (0..n).step_by(CHUNK) {
        let chunk: Vec<TestRecord> = (chunk_start..(chunk_start + CHUNK).min(n))
            .map(|i| bench_message(i, PARTITIONS))
            .collect();
        produce_with(&producer, &topic, &chunk).await;
    }
    drop(producer);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "produced {n} messages (~{} B each) in {secs:.1} s ({:.0} msg/s)",
        bench_message(0, PARTITIONS).value.map_or(0, |v| v.len()),
        n as f64 / secs
    );
    println!(
        "{:<7} {:>9} {:>10} {:>8} {:>9} {:>8} | {:>10} {:>8} {:>9}",
        "codec", "backup s", "msg/s", "MB/s", "ratio", "RSS MB", "restore msg/s", "MB/s", "RSS MB"
    );

    let mut backup_peaks = Vec::new();
    for codec in codecs {
        let mut req = BackupRequest::for_topic(&topic);
        req.compression = Some(codec);
        req.rate_limit_per_second = Some(u32::MAX);
        let plan = req
            .validate(BackupDefaults::default(), Utc::now())
            .expect("backup plan");
        let rss_before = rss_mb();
        reset_peak_rss();
        let t = Instant::now();
        let backup = engine(&kafka, &store)
            .backup(kafka.id(), plan, OperationControl::new())
            .await
            .expect("backup");
        let backup_secs = t.elapsed().as_secs_f64();
        let backup_rss = peak_rss_mb();
        backup_peaks.push((codec, backup_rss, backup.total_size_bytes));
        assert_eq!(backup.total_messages, n as u64, "backup message count");

        let target = broker.unique_topic(&format!("bench-{codec}"));
        let mut req = RestoreRequest::new(&backup.backup_id, &target);
        req.rate_limit_per_second = Some(u32::MAX);
        let plan = req.validate().expect("restore plan");
        reset_peak_rss();
        let t = Instant::now();
        let restored = engine(&kafka, &store)
            .restore(kafka.id(), plan, OperationControl::new())
            .await
            .expect("restore");
        let restore_secs = t.elapsed().as_secs_f64();
        let restore_rss = peak_rss_mb();
        assert_eq!(
            restored.messages_restored, n as u64,
            "restore message count"
        );

        let mb = backup.total_size_bytes as f64 / 1e6;
        println!(
            "{:<7} {:>9.1} {:>10.0} {:>8.1} {:>9.3} {:>8.0} | {:>10.0} {:>8.1} {:>9.0}   (restore {:.1} s incl. verify; RSS before backup {:.0} MB)",
            codec.as_str(),
            backup_secs,
            n as f64 / backup_secs,
            mb / backup_secs,
            backup.compression_ratio,
            backup_rss,
            n as f64 / restore_secs,
            mb / restore_secs,
            restore_rss,
            restore_secs,
            rss_before,
        );
        broker.delete_topic(&target).await;
        let id = backup.backup_id.clone();
        store.delete(&id).await.expect("delete backup");
    }

    println!(
        "in-process peak RSS (cap {cap_mb:.0} MB; includes memory kept from producing the \
         topic here, see scripts/bench-memory.sh for the separate-process check):"
    );
    for (codec, rss, raw) in backup_peaks {
        let topic_mb = raw as f64 / 1e6;
        println!(
            "  backup {codec:<6} topic payload {topic_mb:.0} MB ({:.1}x the cap), peak RSS {rss:.0} MB",
            topic_mb / cap_mb,
        );
    }
    broker.delete_topic(&topic).await;
}
