//! Restores and migrations that survive their replica: real `kvault serve` replicas on one
//! PostgreSQL database, one S3 bucket and the test broker; the replica running the job is
//! killed with SIGKILL once the target holds a chosen share of the records; another replica
//! takes the job over and continues it. An independent consumer (the testkit's) then checks
//! every target partition: the records it held before (appends), then every source record of
//! that partition exactly once, byte for byte (key, value, headers, timestamp), in order, and
//! with `preserve_offsets` at the source's offsets.
//!
//! Shapes: restore into a new topic (identity mapping), with `preserve_offsets`, appending to a
//! topic that held records; migration into a new topic and appending. The suite runs one kill
//! point per shape on a smaller topic; `scripts/resume-kill.sh N` runs N kill points of every
//! shape on 200,000 records (`KVAULT_RESUME_RECORDS`, `KVAULT_RESUME_SEED`, the ignored test
//! `kill_points`).

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, Replica, LEASE_TTL_SECS};
use kvault_testkit::{ConsumedRecord, TestBroker, TestRecord};
use serde_json::{json, Value};

const PARTITIONS: i32 = 3;
/// Records the target held before an append, per partition.
const HELD_BEFORE: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    Restore,
    RestorePreserveOffsets,
    RestoreAppend,
    Migrate,
    MigrateAppend,
}

impl Shape {
    const ALL: [Shape; 5] = [
        Shape::Restore,
        Shape::RestorePreserveOffsets,
        Shape::RestoreAppend,
        Shape::Migrate,
        Shape::MigrateAppend,
    ];

    fn appends(self) -> bool {
        matches!(self, Shape::RestoreAppend | Shape::MigrateAppend)
    }

    fn is_restore(self) -> bool {
        matches!(
            self,
            Shape::Restore | Shape::RestorePreserveOffsets | Shape::RestoreAppend
        )
    }
}

fn record(i: usize) -> TestRecord {
    TestRecord {
        partition: Some((i % PARTITIONS as usize) as i32),
        key: (i % 5 != 0).then(|| format!("key-{i}").into_bytes()),
        value: (i % 11 != 0).then(|| {
            let mut v = format!("value-{i}-").into_bytes();
            v.extend((0..(i % 40)).map(|j| (i + j) as u8));
            v
        }),
        headers: vec![
            ("n".into(), Some(i.to_le_bytes().to_vec())),
            ("empty".into(), Some(Vec::new())),
            ("null".into(), None),
        ],
        timestamp: Some(1_760_000_000_000 + i as i64),
    }
}

/// What every shape of one kill point shares: the replicas, the source topic and its backup.
struct Setup {
    cluster: Cluster,
    replicas: Vec<Replica>,
    source: String,
    backup_id: String,
    /// The source as an independent consumer reads it, by partition.
    expected: Vec<Vec<ConsumedRecord>>,
    n: usize,
}

async fn setup(broker: &'static TestBroker, n: usize) -> Setup {
    let cluster = Cluster::new(broker, 10).await;
    let replicas = vec![
        cluster.start("r1").await,
        cluster.start("r2").await,
        cluster.start("r3").await,
    ];
    let source = broker.unique_topic("resume-src");
    broker.create_topic(&source, PARTITIONS).await;
    let records: Vec<TestRecord> = (0..n).map(record).collect();
    for chunk in records.chunks(50_000) {
        broker.produce(&source, chunk).await;
    }
    let backup: Value = cluster
        .post(
            &replicas[0],
            "/api/kafka/clusters/local/backup",
            json!({"topic": source, "compression": "zstd"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(backup["total_messages"], n as u64, "{backup}");
    let backup_id = backup["backup_id"].as_str().unwrap().to_owned();
    let expected = by_partition(broker.consume_all(&source).await);
    assert_eq!(expected.iter().map(Vec::len).sum::<usize>(), n);
    Setup {
        cluster,
        replicas,
        source,
        backup_id,
        expected,
        n,
    }
}

fn by_partition(records: Vec<ConsumedRecord>) -> Vec<Vec<ConsumedRecord>> {
    let mut out = vec![Vec::new(); PARTITIONS as usize];
    for r in records {
        out[r.partition as usize].push(r);
    }
    out
}

/// What one kill point did.
struct Outcome {
    written_at_kill: u64,
    took: Duration,
    resumed_from: Value,
}

/// Runs `shape` on `setup`, kills the replica running it once the target holds `fraction` of
/// the records, and checks the target once the job completed elsewhere. `victim` is the index
/// of the replica that runs it (restarted afterwards, so the next point has three again).
async fn kill_point(
    broker: &'static TestBroker,
    setup: &mut Setup,
    shape: Shape,
    fraction: f64,
    victim: usize,
) -> Outcome {
    let target = broker.unique_topic("resume-dst");
    let mut held = Vec::new();
    if shape.appends() {
        broker.create_topic(&target, PARTITIONS).await;
        let before: Vec<TestRecord> = (0..HELD_BEFORE * PARTITIONS as usize)
            .map(|i| TestRecord {
                partition: Some((i % PARTITIONS as usize) as i32),
                ..TestRecord::kv(format!("held-{i}"), "held")
            })
            .collect();
        broker.produce(&target, &before).await;
        held = by_partition(broker.consume_all(&target).await);
    }
    // About ten seconds of producing, so the kill lands mid-run.
    let rate = (setup.n / 10).max(100);
    let (path, body) = if shape.is_restore() {
        let mut body = json!({"backup_id": setup.backup_id, "target_topic": target,
            "rate_limit_per_second": rate});
        if shape == Shape::RestorePreserveOffsets {
            body["preserve_offsets"] = json!(true);
        }
        if shape.appends() {
            body["if_exists"] = json!("append");
        }
        ("/api/kafka/clusters/local/restore?wait=false", body)
    } else {
        let mut body = json!({"source_cluster": "local", "source_topic": setup.source,
            "target_cluster": "local", "target_topic": target, "rate_limit_per_second": rate});
        if shape.appends() {
            body["if_exists"] = json!("append");
        }
        ("/api/kafka/migrate?wait=false", body)
    };
    let (cluster, replicas) = (&setup.cluster, &mut setup.replicas);
    let resp = cluster.post(&replicas[victim], path, body).await;
    assert_eq!(resp.status().as_u16(), 202, "{:?}", resp.text().await);
    let id = resp.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let base = if shape.appends() { HELD_BEFORE } else { 0 } as u64 * PARTITIONS as u64;
    let goal = (setup.n as f64 * fraction) as u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    let written_at_kill = loop {
        let written = target_total(broker, &target).await.saturating_sub(base);
        if written >= goal {
            replicas[victim].kill();
            break target_total(broker, &target).await.saturating_sub(base);
        }
        assert!(
            Instant::now() < deadline,
            "{shape:?}: the target never reached {goal}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let killed = Instant::now();
    let other = (victim + 1) % replicas.len();
    let within = Duration::from_secs(LEASE_TTL_SECS * 2 + 120);
    let job = cluster.wait_for_end(&replicas[other], &id, within).await;
    let took = killed.elapsed();
    let log = cluster.log(&replicas[other].name);
    assert_eq!(job["state"], "completed", "{shape:?}: {job}\n{log}");
    let attempts = job["attempts"].as_array().expect("attempts").clone();
    assert_eq!(attempts.len(), 2, "{job}");
    assert_eq!(attempts[0]["replica"], replicas[victim].name.as_str());
    let resumed_from = attempts[1]["resumed_from"].clone();
    let landed: u64 = resumed_from[0]["partitions"]
        .as_array()
        .unwrap_or_else(|| panic!("{shape:?}: no resume notes: {job}"))
        .iter()
        .map(|p| p["already_written"].as_u64().unwrap())
        .sum();
    assert!(
        landed >= written_at_kill && landed < setup.n as u64,
        "{shape:?}: resumed after {landed} records, {written_at_kill} were there at the kill"
    );
    let done = if shape.is_restore() {
        &job["result"]["messages_restored"]
    } else {
        &job["result"]["messages_written"]
    };
    assert_eq!(done, setup.n as u64, "{job}");
    check_target(broker, &target, &setup.expected, &held, shape).await;
    replicas[victim] = cluster.start(&replicas[victim].name.clone()).await;
    Outcome {
        written_at_kill,
        took,
        resumed_from,
    }
}

async fn target_total(broker: &TestBroker, topic: &str) -> u64 {
    let mut total = 0;
    for p in 0..PARTITIONS {
        if broker.partition_count(topic).await.is_none() {
            return 0;
        }
        let (low, high) = broker.watermarks(topic, p).await;
        total += (high - low).max(0) as u64;
    }
    total
}

/// Every target partition: what it held before, then the source partition's records exactly
/// once, byte for byte, in order (at the source offsets with `preserve_offsets` or into a new
/// topic), and nothing else.
async fn check_target(
    broker: &TestBroker,
    target: &str,
    expected: &[Vec<ConsumedRecord>],
    held: &[Vec<ConsumedRecord>],
    shape: Shape,
) {
    let got = by_partition(broker.consume_all(target).await);
    for (p, records) in got.iter().enumerate() {
        let before = held.get(p).map_or(&[][..], Vec::as_slice);
        assert_eq!(
            records.len(),
            before.len() + expected[p].len(),
            "{shape:?} partition {p}: {} records, expected {} held + {} copied",
            records.len(),
            before.len(),
            expected[p].len()
        );
        assert_eq!(&records[..before.len()], before, "{shape:?} partition {p}");
        for (i, (got, want)) in records[before.len()..].iter().zip(&expected[p]).enumerate() {
            let same = (&got.key, &got.value, &got.headers, got.timestamp)
                == (&want.key, &want.value, &want.headers, want.timestamp);
            assert!(
                same,
                "{shape:?} partition {p} record {i}: {got:?} != {want:?}"
            );
            if !shape.appends() {
                assert_eq!(
                    got.offset, want.offset,
                    "{shape:?} partition {p} record {i}"
                );
            }
        }
    }
}

fn records_from_env(default: usize) -> usize {
    std::env::var("KVAULT_RESUME_RECORDS")
        .ok()
        .map(|v| v.trim().parse().expect("KVAULT_RESUME_RECORDS is a number"))
        .unwrap_or(default)
}

/// One kill point per shape: each completes on another replica, exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn restores_and_migrations_killed_mid_run_complete_elsewhere_exactly_once() {
    let broker = TestBroker::get().await;
    let mut setup = setup(broker, records_from_env(20_000)).await;
    for (i, shape) in Shape::ALL.into_iter().enumerate() {
        let fraction = [0.3, 0.55, 0.8, 0.4, 0.65][i];
        let out = kill_point(broker, &mut setup, shape, fraction, i % 3).await;
        println!(
            "{shape:?}: killed at {} of {} records, completed {:?} later; resumed from {}",
            out.written_at_kill, setup.n, out.took, out.resumed_from
        );
    }
}

/// `scripts/resume-kill.sh`: every shape at a kill point drawn from `KVAULT_RESUME_SEED`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "long: run by scripts/resume-kill.sh"]
async fn kill_points() {
    let seed: u64 = std::env::var("KVAULT_RESUME_SEED")
        .map(|v| v.trim().parse().expect("KVAULT_RESUME_SEED is a number"))
        .unwrap_or(1);
    let broker = TestBroker::get().await;
    let mut setup = setup(broker, records_from_env(200_000)).await;
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    for (i, shape) in Shape::ALL.into_iter().enumerate() {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let fraction = 0.05 + (state >> 11) as f64 / (1u64 << 53) as f64 * 0.9;
        let out = kill_point(broker, &mut setup, shape, fraction, i % 3).await;
        println!(
            "kill point: seed {seed} {shape:?} at {:.2} ({} of {} records on the target at the \
             kill): completed on another replica {:.1} s after the kill; exactly once",
            fraction,
            out.written_at_kill,
            setup.n,
            out.took.as_secs_f64()
        );
    }
}

/// A backup set restore killed in its second topic: on another replica the finished topic
/// keeps its recorded result, the topic in progress continues, the last one starts; every
/// topic holds its source exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_set_restore_killed_mid_set_completes_elsewhere_exactly_once() {
    let broker = TestBroker::get().await;
    let cluster = Cluster::new(broker, 10).await;
    let mut r1 = cluster.start("r1").await;
    let r2 = cluster.start("r2").await;
    let n = 6_000;
    let prefix = broker.unique_topic("set");
    let topics: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|t| format!("{prefix}-{t}"))
        .collect();
    let mut expected = Vec::new();
    for (k, topic) in topics.iter().enumerate() {
        broker.create_topic(topic, PARTITIONS).await;
        let records: Vec<TestRecord> = (0..n).map(|i| record(i + k * n)).collect();
        broker.produce(topic, &records).await;
        expected.push(by_partition(broker.consume_all(topic).await));
    }
    let set_id = format!("{prefix}-set");
    let set: Value = cluster
        .post(
            &r1,
            "/api/kafka/clusters/local/backup",
            json!({"topics": topics, "backup_id": set_id}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(set["set_id"], set_id.as_str(), "{set}");
    let copy = format!("{prefix}-copy-");
    let resp = cluster
        .post(
            &r1,
            "/api/kafka/clusters/local/restore?wait=false",
            json!({"backup_id": set_id, "topic_prefix": copy, "rate_limit_per_second": 2_000}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    let id = resp.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Killed once the second topic (in set order: by name) is a third restored.
    let second = format!("{copy}{}", topics[1]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while target_total(broker, &second).await < n as u64 / 3 {
        assert!(
            Instant::now() < deadline,
            "the set restore never reached its second topic"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    r1.kill();
    let job = cluster
        .wait_for_end(&r2, &id, Duration::from_secs(LEASE_TTL_SECS * 2 + 120))
        .await;
    assert_eq!(job["state"], "completed", "{job}\n{}", cluster.log("r2"));
    assert_eq!(job["result"]["messages_restored"], 3 * n as u64, "{job}");
    let resumed = job["attempts"][1]["resumed_from"]
        .as_array()
        .expect("resume notes")
        .clone();
    let continued: Vec<&str> = resumed
        .iter()
        .map(|t| t["target_topic"].as_str().unwrap())
        .collect();
    assert_eq!(continued, vec![second.as_str()], "{job}");
    for (k, topic) in topics.iter().enumerate() {
        let target = format!("{copy}{topic}");
        check_target(broker, &target, &expected[k], &[], Shape::Restore).await;
    }
}

/// SIGTERM (a rolling deploy) hands a running restore over: the replica stops producing,
/// leaves the topic it created in place, and another replica continues it exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_restore_handed_over_at_shutdown_continues_elsewhere_exactly_once() {
    let broker = TestBroker::get().await;
    let mut setup = setup(broker, 12_000).await;
    let target = broker.unique_topic("resume-term");
    let (cluster, replicas) = (&setup.cluster, &mut setup.replicas);
    let resp = cluster
        .post(
            &replicas[0],
            "/api/kafka/clusters/local/restore?wait=false",
            json!({"backup_id": setup.backup_id, "target_topic": target,
                "rate_limit_per_second": 1_500}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    let id = resp.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    while target_total(broker, &target).await < 3_000 {
        assert!(Instant::now() < deadline, "the restore never got going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let term = std::process::Command::new("kill")
        .args(["-TERM", &replicas[0].child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let _ = replicas[0].child.wait();
    let job = cluster
        .wait_for_end(&replicas[1], &id, Duration::from_secs(120))
        .await;
    assert_eq!(job["state"], "completed", "{job}\n{}", cluster.log("r1"));
    assert_eq!(job["result"]["messages_restored"], 12_000, "{job}");
    assert_eq!(job["result"]["topic_created"], true, "{job}");
    assert_eq!(job["attempts"].as_array().map(Vec::len), Some(2), "{job}");
    check_target(broker, &target, &setup.expected, &[], Shape::Restore).await;
}
