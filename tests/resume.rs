//! Jobs that survive their replica: real `kvault serve` replicas on one PostgreSQL database,
//! the test broker and shared archive storage; the replica running a job is killed with
//! SIGKILL (or shut down) mid-run, another replica takes the job over and continues it, and an
//! independent client (the testkit's) checks the outcome.
//!
//! Restores and migrations: the replica is killed once the target holds a chosen share of the
//! records. The testkit's consumer then checks every target partition: the records it held
//! before (appends), then every source record of that partition exactly once, byte for byte
//! (key, value, headers, timestamp), in order, and with `preserve_offsets` at the source's
//! offsets. Shapes: restore into a new topic (identity mapping), with `preserve_offsets`,
//! appending to a topic that held records; migration into a new topic and appending. The suite
//! runs one kill point per shape on a smaller topic; `scripts/resume-kill.sh N` runs N kill
//! points of every shape on 200,000 records (`KVAULT_RESUME_RECORDS`, `KVAULT_RESUME_SEED`, the
//! ignored test `kill_points`).
//!
//! Backup set restores (`sets`): killed mid-set, with the set's topics restored one after
//! another and side by side (`workers.set_parallelism`).
//!
//! Backups: a backup whose replica is killed mid-run resumes on another replica from the
//! segments the first attempt committed, with the cut it recorded at the start, on S3 (moto)
//! and on a local directory the replicas share. The archive must restore every record exactly
//! once, byte for byte, and the checkpoint in the job's journal shows what was adopted.
//! `resume_measure_1gb` (ignored; `scripts/resume-measure.sh` runs it) backs up about 1 GB to
//! S3 once whole and once killed at 50 %, and prints the full and the resumed run's times.

mod common;
#[path = "resume/sets.rs"]
mod sets;

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

// Backups resumed from the segments their first attempt committed.

/// `n` records over 3 partitions, values of `size` bytes (varied, with null keys and
/// tombstones now and then).
fn records(range: std::ops::Range<usize>, size: usize) -> Vec<TestRecord> {
    range
        .map(|i| TestRecord {
            partition: Some((i % 3) as i32),
            key: (i % 4 != 0).then(|| format!("k{i}").into_bytes()),
            value: (i % 9 != 0)
                .then(|| (0..size).map(|b| ((b * 31 + i * 7) % 251) as u8).collect()),
            headers: vec![("h".into(), Some(vec![0, 1])), ("e".into(), None)],
            timestamp: Some(1_700_000_000_000 + i as i64),
        })
        .collect()
}

async fn topic_with(broker: &TestBroker, n: usize, size: usize) -> String {
    let topic = broker.unique_topic("resume");
    broker.create_topic(&topic, 3).await;
    for start in (0..n).step_by(20_000) {
        broker
            .produce(&topic, &records(start..(start + 20_000).min(n), size))
            .await;
    }
    topic
}

/// Starts a backup answering 202; its job id.
async fn start_backup(cluster: &Cluster, on: &Replica, body: Value) -> String {
    let resp = cluster
        .post(on, "/api/kafka/clusters/local/backup?wait=false", body)
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    resp.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits until the job's checkpoint lists at least `segments` finished segments in every
/// partition and its progress passed `percent`.
async fn wait_for_checkpoint(cluster: &Cluster, id: &str, segments: usize, percent: f64) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (journal, done, total): (Option<String>, Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT journal, progress_messages, progress_total FROM jobs WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&mut cluster.db().await)
        .await
        .unwrap();
        let checkpoint = checkpoint_in(journal);
        let finished = (0..3)
            .map(|p| {
                checkpoint["segments"][p.to_string()]
                    .as_array()
                    .map_or(0, Vec::len)
            })
            .min()
            .unwrap_or(0);
        let progress = match (done, total) {
            (Some(done), Some(total)) if total > 0 => done as f64 * 100.0 / total as f64,
            _ => 0.0,
        };
        if finished >= segments && progress >= percent {
            return;
        }
        assert!(Instant::now() < deadline, "no checkpoint: {checkpoint}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The backup's checkpoint in the job's stored journal (`null` while it has none).
fn checkpoint_in(journal: Option<String>) -> Value {
    journal
        .map(|j| serde_json::from_str::<Value>(&j).unwrap()["checkpoint"].clone())
        .unwrap_or_default()
}

/// The checkpoint's `resumed_from`, as the job stores it.
async fn resumed_from(cluster: &Cluster, id: &str) -> Value {
    let (journal,): (Option<String>,) = sqlx::query_as("SELECT journal FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(&mut cluster.db().await)
        .await
        .unwrap();
    checkpoint_in(journal)["resumed_from"].clone()
}

/// Kills the backup's replica once it has committed segments and `percent` of the records
/// are read, lets another replica resume it, and checks the archive with an independent
/// client. Returns the segments the resumed attempt adopted and how long it took from the kill.
async fn killed_and_resumed(cluster: Cluster, broker: &TestBroker, percent: f64) -> (u64, f64) {
    let mut r1 = cluster.start("r1").await;
    let r2 = cluster.start("r2").await;
    let n = 200_000;
    let topic = topic_with(broker, n, 40).await;
    let body = json!({"topic": topic, "compression": "none", "rate_limit_per_second": 20_000});
    let id = start_backup(&cluster, &r1, body).await;
    wait_for_checkpoint(&cluster, &id, 2, percent).await;
    let (state, owner, _) = cluster.job_row(&id).await;
    assert_eq!((state.as_str(), owner.as_deref()), ("running", Some("r1")));
    r1.kill();
    let killed = Instant::now();

    let job = cluster
        .wait_for_end(&r2, &id, Duration::from_secs(LEASE_TTL_SECS + 120))
        .await;
    assert_eq!(job["state"], "completed", "{job}\n{}", cluster.log("r2"));
    let took = killed.elapsed().as_secs_f64();
    assert_eq!(job["result"]["total_messages"], n as u64, "{job}");
    let (_, owner, attempts) = cluster.job_row(&id).await;
    assert_eq!((owner.as_deref(), attempts), (Some("r2"), 2));
    let resumed = resumed_from(&cluster, &id).await;
    let adopted: u64 = resumed["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["segments_adopted"].as_u64().unwrap())
        .sum();
    assert!(
        adopted >= 6,
        "segments of the first attempt were adopted: {resumed}"
    );
    // The job's attempts say the same: the second started where the first left off.
    let attempts = job["attempts"].as_array().expect("attempts").clone();
    assert_eq!(attempts.len(), 2, "{job}");
    assert!(attempts[0]["resumed_from"].is_null(), "{job}");
    assert_eq!(attempts[1]["resumed_from"], resumed, "{job}");
    println!("resumed from: {resumed}");
    let warnings = job["result"]["warnings"].to_string();
    assert!(warnings.contains("resumed"), "{job}");

    let backup_id = job["result"]["backup_id"].as_str().unwrap().to_owned();
    let verify = format!("/api/kafka/backups/{backup_id}/verify");
    let report: Value = cluster
        .post(&r2, &verify, json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["messages_checked"], n as u64, "{report}");
    let target = broker.unique_topic("resume-restored");
    let restored: Value = cluster
        .post(
            &r2,
            "/api/kafka/clusters/local/restore",
            json!({"backup_id": backup_id, "target_topic": target}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(restored["messages_restored"], n as u64, "{restored}");
    let mut original = broker.consume_all(&topic).await;
    let mut copy = broker.consume_all(&target).await;
    original.sort_by_key(|r| (r.partition, r.offset));
    copy.sort_by_key(|r| (r.partition, r.offset));
    assert_eq!(copy.len(), n, "every record exactly once");
    assert_eq!(original, copy, "byte for byte");
    (adopted, took)
}

/// Replicas whose archives go to the test S3 server, in segments of 1 MiB.
async fn backup_cluster_on_s3(broker: &TestBroker) -> Cluster {
    let segment = ("KVAULT__STORAGE__SEGMENT_SIZE_MIB", "1".to_owned());
    Cluster::with_settings(broker, &[segment]).await
}

/// Replicas sharing one local directory (`shared`), in segments of 1 MiB.
async fn backup_cluster_on_disk(broker: &TestBroker, shared: &std::path::Path) -> Cluster {
    let settings = [
        ("KVAULT__STORAGE__SEGMENT_SIZE_MIB", "1".to_owned()),
        (
            "KVAULT__STORAGE__URL",
            format!("file://{}", shared.display()),
        ),
    ];
    Cluster::with_settings(broker, &settings).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_killed_mid_run_resumes_on_another_replica_on_s3() {
    let broker = TestBroker::get().await;
    killed_and_resumed(backup_cluster_on_s3(broker).await, broker, 30.0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_killed_mid_run_resumes_on_another_replica_on_a_local_disk() {
    let broker = TestBroker::get().await;
    let shared = tempfile::tempdir().unwrap();
    let cluster = backup_cluster_on_disk(broker, shared.path()).await;
    killed_and_resumed(cluster, broker, 30.0).await;
}

/// `scripts/resume-kill.sh`: a backup of 200,000 records killed at a share of its records
/// drawn from `KVAULT_RESUME_SEED` (10-85 %), on S3 for even seeds and a local disk for odd.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "long: run by scripts/resume-kill.sh"]
async fn backup_kill_points() {
    let seed: u64 = std::env::var("KVAULT_RESUME_SEED")
        .map(|v| v.trim().parse().expect("KVAULT_RESUME_SEED is a number"))
        .unwrap_or(1);
    let percent = 10.0 + (mix(seed) >> 11) as f64 / (1u64 << 53) as f64 * 75.0;
    let broker = TestBroker::get().await;
    let shared = tempfile::tempdir().unwrap();
    let (store, cluster) = if seed % 2 == 0 {
        ("s3", backup_cluster_on_s3(broker).await)
    } else {
        (
            "local disk",
            backup_cluster_on_disk(broker, shared.path()).await,
        )
    };
    let (adopted, took) = killed_and_resumed(cluster, broker, percent).await;
    println!(
        "kill point: seed {seed} backup on {store} at {percent:.0} % read: {adopted} segments \
         adopted, completed on another replica {took:.1} s after the kill; every record \
         exactly once"
    );
}

/// splitmix64: neighbouring seeds give unrelated values.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Polls job `id` through `replica` until it ends; the replica's log if it went away.
async fn wait_logged(cluster: &Cluster, replica: &Replica, id: &str) -> Value {
    loop {
        let job = match cluster
            .try_get(replica, &format!("/api/kafka/jobs/{id}"))
            .await
        {
            Ok(job) => job,
            Err(e) => panic!("{}: {e}\n{}", replica.name, cluster.log(&replica.name)),
        };
        if job["state"] != "running" {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Backs up about 1 GB to S3 whole, then again killed at 50 % and resumed; prints both
/// times. A measurement, not a check of them: `scripts/resume-measure.sh` runs it.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement (about 1 GB); run by scripts/resume-measure.sh"]
async fn resume_measure_1gb() {
    let broker = TestBroker::get().await;
    let mib: usize = std::env::var("RESUME_MEASURE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let size = 8 * 1024;
    let n = mib * 1024 * 1024 / size;
    let segment = ("KVAULT__STORAGE__SEGMENT_SIZE_MIB", "16".to_owned());
    let cluster = Cluster::with_settings(broker, &[segment]).await;
    let mut r1 = cluster.start("r1").await;
    let r2 = cluster.start("r2").await;
    let topic = topic_with(broker, n, size).await;
    println!("measure: {n} records of {size} B in {topic}");

    let full = start_backup(
        &cluster,
        &r1,
        json!({"topic": topic, "compression": "none", "rate_limit_per_second": 10_000_000}),
    )
    .await;
    let job = wait_logged(&cluster, &r1, &full).await;
    assert_eq!(job["state"], "completed", "{job}");
    let full_ms = job["result"]["duration_ms"].as_u64().unwrap();
    let bytes = job["result"]["total_size_bytes"].as_u64().unwrap_or(0);

    let body = json!({"topic": topic, "compression": "none", "rate_limit_per_second": 10_000_000});
    let id = start_backup(&cluster, &r1, body).await;
    wait_for_checkpoint(&cluster, &id, 1, 50.0).await;
    r1.kill();
    let killed = Instant::now();
    let job = wait_logged(&cluster, &r2, &id).await;
    let after_kill = killed.elapsed();
    assert_eq!(job["state"], "completed", "{job}\n{}", cluster.log("r2"));
    let resumed_ms = job["result"]["duration_ms"].as_u64().unwrap();
    let resumed = resumed_from(&cluster, &id).await;
    let backup_id = job["result"]["backup_id"].as_str().unwrap().to_owned();
    let verify = format!("/api/kafka/backups/{backup_id}/verify");
    let report: Value = cluster
        .post(&r2, &verify, json!({}))
        .await
        .json()
        .await
        .unwrap();
    println!(
        "measure: {} records, {bytes} B; full run {full_ms} ms; killed at 50 %, resumed \
         attempt {resumed_ms} ms ({:.0} % of the full run), kill to completed {} ms (lease \
         {LEASE_TTL_SECS} s); adopted {} records in {} segments; verify valid={} \
         messages_checked={}",
        job["result"]["total_messages"],
        resumed_ms as f64 * 100.0 / full_ms.max(1) as f64,
        after_kill.as_millis(),
        resumed["partitions"].as_array().map_or(0, |ps| ps
            .iter()
            .map(|p| p["records_adopted"].as_u64().unwrap_or(0))
            .sum::<u64>()),
        resumed["partitions"].as_array().map_or(0, |ps| ps
            .iter()
            .map(|p| p["segments_adopted"].as_u64().unwrap_or(0))
            .sum::<u64>()),
        report["valid"],
        report["messages_checked"],
    );
    let log = cluster.log("r2");
    let resumed_line = log.lines().find(|l| l.contains("backup resumed"));
    println!(
        "measure: r2: {}",
        resumed_line.unwrap_or("(no resume logged)")
    );
    assert_eq!(report["valid"], true, "{report}");
    drop(r2);
}
