//! Migration throughput with and without a CEL filter, and the per-message cost of CEL
//! evaluation, each against a same-run baseline.
//!
//! 1. Evaluation only (no broker): `CompiledTransformation::apply` on one ~200-byte JSON
//!    record with headers, for an identity transformation (baseline) and for the documented
//!    filters and a key rewrite; prints ns per message.
//! 2. Migration: produces N keyed ~200-byte JSON messages (half contain "important") into a
//!    2-partition topic on the local test broker, then migrates it without a transformation
//!    and with `value.contains('important')`; prints messages read per second.
//!
//! Environment: `KVAULT_BENCH_MESSAGES` (default 100000), `KVAULT_BENCH_EVALS` (default
//! 200000). Uses `KVAULT_TEST_BOOTSTRAP` or starts nisshi exactly like the tests.
//!
//! Run: `cargo bench -p kvault-kafka --bench cel`

use std::hint::black_box;
use std::time::Instant;

use kvault_domain::job::OperationControl;
use kvault_domain::migrate::{MessageTransformation, MigrateRequest, OnEvaluationError};
use kvault_domain::record::{Header, Record, TimestampType};
use kvault_domain::ClusterId;
use kvault_kafka::transform::CompiledTransformation;
use kvault_kafka::{migrate, ClusterConfig, KafkaCluster};
use kvault_testkit::{produce_with, TestBroker, TestRecord};

const CHUNK: usize = 10_000;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn value(i: usize) -> String {
    let tag = if i % 2 == 0 { "important" } else { "routine" };
    format!(
        r#"{{"level":"error","user_id":"user-{i}","tag":"{tag}","payload":"{}"}}"#,
        "x".repeat(120)
    )
}

fn transformation(filter: Option<&str>, key: Option<&str>) -> CompiledTransformation {
    CompiledTransformation::compile(&MessageTransformation {
        filter_expression: filter.map(str::to_owned),
        key_transformation: key.map(str::to_owned),
        header_additions: Vec::new(),
    })
    .expect("bench expressions compile")
}

fn eval_bench(evals: usize) {
    let record = Record {
        offset: 12345,
        timestamp: 1_700_000_000_000,
        timestamp_type: TimestampType::CreateTime,
        key: Some(b"user-42".to_vec()),
        value: Some(value(42).into_bytes()),
        headers: vec![
            Header {
                key: "tenant".into(),
                value: Some(b"a".to_vec()),
            },
            Header {
                key: "trace".into(),
                value: Some(b"0123456789abcdef".to_vec()),
            },
        ],
    };
    let cases = [
        ("identity (baseline: record clone only)", None, None),
        (
            "filter value.contains('important')",
            Some("value.contains('important')"),
            None,
        ),
        (
            "filter offset % 2 == 0 (ints only)",
            Some("offset % 2 == 0"),
            None,
        ),
        (
            "filter json.level == 'error' && headers['tenant'] == 'a'",
            Some("json.level == 'error' && headers['tenant'] == 'a'"),
            None,
        ),
        ("key key + '-dr'", None, Some("key + '-dr'")),
    ];
    println!("CEL evaluation, {evals} messages each:");
    let mut baseline = 0.0;
    for (name, filter, key) in cases {
        let t = transformation(filter, key);
        // Warm-up.
        for _ in 0..1_000 {
            black_box(t.apply(black_box(&record), 0).expect("evaluates"));
        }
        let start = Instant::now();
        for _ in 0..evals {
            black_box(t.apply(black_box(&record), 0).expect("evaluates"));
        }
        let ns = start.elapsed().as_nanos() as f64 / evals as f64;
        if filter.is_none() && key.is_none() {
            baseline = ns;
        }
        println!(
            "  {name:<60} {ns:>9.0} ns/msg  (+{:.0} ns over baseline)",
            ns - baseline
        );
    }
}

async fn migration_bench(messages: usize) {
    let broker = TestBroker::get().await;
    let source_topic = broker.unique_topic("bench-cel-src");
    broker.create_topic(&source_topic, 2).await;
    let producer = broker.producer(&[("linger.ms", "20"), ("compression.type", "lz4")]);
    let mut produced = 0;
    while produced < messages {
        let n = CHUNK.min(messages - produced);
        let chunk: Vec<TestRecord> = (produced..produced + n)
            .map(|i| TestRecord {
                headers: vec![("tenant".into(), Some(b"a".to_vec()))],
                ..TestRecord::kv(format!("user-{i}"), value(i))
            })
            .collect();
        produce_with(&producer, &source_topic, &chunk).await;
        produced += n;
    }
    let cluster = KafkaCluster::connect(
        ClusterId::parse("bench").expect("id"),
        &ClusterConfig::new(broker.bootstrap()),
    )
    .expect("cluster");
    println!("Migration of {messages} messages (2 partitions, ~200 B values), same broker:");
    for (name, filter) in [
        ("no transformation (baseline)", None),
        (
            "filter value.contains('important')",
            Some("value.contains('important')"),
        ),
        (
            "filter json.level == 'error' && json.tag == 'important'",
            Some("json.level == 'error' && json.tag == 'important'"),
        ),
    ] {
        let target_topic = broker.unique_topic("bench-cel-dst");
        let req = MigrateRequest {
            source_cluster: "bench".into(),
            source_topic: source_topic.clone(),
            target_cluster: "bench".into(),
            target_topic: target_topic.clone(),
            max_messages: None,
            transformation: filter.map(|f| MessageTransformation {
                filter_expression: Some(f.to_owned()),
                ..Default::default()
            }),
            rate_limit_per_second: None,
            on_error: OnEvaluationError::Fail,
            translate_consumer_groups: Vec::new(),
            consumer_groups_mode: Default::default(),
            if_exists: Default::default(),
        };
        let start = Instant::now();
        let result = migrate(
            &cluster,
            &cluster,
            "bench".into(),
            req,
            OperationControl::new(),
        )
        .await
        .expect("migration");
        let secs = start.elapsed().as_secs_f64();
        println!(
            "  {name:<58} {:>9.0} msgs/s read, {:>9.0} msgs/s written ({} written, {secs:.2} s)",
            result.messages_read as f64 / secs,
            result.messages_written as f64 / secs,
            result.messages_written
        );
        broker.delete_topic(&target_topic).await;
    }
    broker.delete_topic(&source_topic).await;
}

fn main() {
    eval_bench(env_or("KVAULT_BENCH_EVALS", 200_000));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(migration_bench(env_or("KVAULT_BENCH_MESSAGES", 100_000)));
}
