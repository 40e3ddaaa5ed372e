//! Backup set restores killed mid-set. A set's topics are restored `workers.set_parallelism`
//! at a time: with 1 they run one after another, so exactly the topic in progress is continued
//! on the other replica; with 3 they run side by side, and every topic the other replica
//! continues must have been unfinished when the first was killed. Either way the finished
//! topics keep their recorded results and every target holds its source exactly once.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kvault_testkit::{TestBroker, TestRecord};
use serde_json::{json, Value};

use super::common::{Cluster, LEASE_TTL_SECS};
use super::{by_partition, check_target, record, target_total, Shape, PARTITIONS};

/// Records of each topic of the set.
const N: usize = 6_000;

/// A set restore killed mid-set that completed on another replica.
struct KilledSet {
    /// The job as the other replica reports it once completed.
    job: Value,
    /// The set's target topics, in set order (by source topic name).
    targets: Vec<String>,
    /// Records on each target just after the kill.
    at_kill: Vec<u64>,
    /// The job's journal as the killed replica left it.
    journal: Value,
}

impl KilledSet {
    /// The resume notes of the attempt that took the job over, one per continued topic.
    fn resume_notes(&self) -> Vec<Value> {
        self.job["attempts"][1]["resumed_from"]
            .as_array()
            .unwrap_or_else(|| panic!("no resume notes: {}", self.job))
            .clone()
    }

    /// The target topics the taking-over attempt continued.
    fn continued(&self) -> Vec<String> {
        self.resume_notes()
            .iter()
            .map(|t| t["target_topic"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// Three topics of [`N`] records backed up as one set, restored through r1 (replicas with
/// `workers.set_restore_parallelism` = `parallelism`) at 2,000 records a second per topic; r1 is
/// killed once the second topic is a third restored, and the job completes on r2. Checks the
/// job's totals and that every target holds its source exactly once, before anything else.
async fn set_restore_killed(parallelism: usize) -> KilledSet {
    let broker = TestBroker::get().await;
    let settings = [
        ("KVAULT__BACKUP__MAX_CONCURRENT_BACKUPS", "10".to_owned()),
        (
            "KVAULT__WORKERS__SET_RESTORE_PARALLELISM",
            parallelism.to_string(),
        ),
    ];
    let cluster = Cluster::with_settings(broker, &settings).await;
    let mut r1 = cluster.start("r1").await;
    let r2 = cluster.start("r2").await;
    let prefix = broker.unique_topic("set");
    let topics: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|t| format!("{prefix}-{t}"))
        .collect();
    let mut expected = Vec::new();
    for (k, topic) in topics.iter().enumerate() {
        broker.create_topic(topic, PARTITIONS).await;
        let records: Vec<TestRecord> = (0..N).map(|i| record(i + k * N)).collect();
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
    let targets: Vec<String> = topics.iter().map(|t| format!("{copy}{t}")).collect();
    // Killed once the second topic (in set order: by name) is a third restored.
    let deadline = Instant::now() + Duration::from_secs(120);
    while target_total(broker, &targets[1]).await < N as u64 / 3 {
        assert!(
            Instant::now() < deadline,
            "the set restore never reached its second topic"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    r1.kill();
    let mut at_kill = Vec::with_capacity(targets.len());
    for target in &targets {
        at_kill.push(target_total(broker, target).await);
    }
    // What r1 recorded, read well before r2 may take the job over (a lease period after r1's
    // last renewal).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let journal = journal_of(&cluster, &id).await;
    let job = cluster
        .wait_for_end(&r2, &id, Duration::from_secs(LEASE_TTL_SECS * 2 + 120))
        .await;
    assert_eq!(job["state"], "completed", "{job}\n{}", cluster.log("r2"));
    assert_eq!(job["result"]["messages_restored"], 3 * N as u64, "{job}");
    assert_eq!(job["attempts"].as_array().map(Vec::len), Some(2), "{job}");
    for (k, target) in targets.iter().enumerate() {
        check_target(broker, target, &expected[k], &[], Shape::Restore).await;
    }
    KilledSet {
        job,
        targets,
        at_kill,
        journal,
    }
}

/// The job's journal as stored (`null` while it has none).
async fn journal_of(cluster: &Cluster, id: &str) -> Value {
    let (journal,): (Option<String>,) = sqlx::query_as("SELECT journal FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(&mut cluster.db().await)
        .await
        .unwrap();
    journal
        .map(|j| serde_json::from_str(&j).unwrap())
        .unwrap_or_default()
}

/// The keys of a journal map (`started`, `finished`: by target topic).
fn keys(map: &Value) -> BTreeSet<String> {
    map.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Topics one after another (`workers.set_parallelism: 1`), killed in the second: on another
/// replica the finished first topic keeps its recorded result, the second continues, the last
/// one starts; every topic holds its source exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_set_restore_killed_mid_set_completes_elsewhere_exactly_once() {
    let killed = set_restore_killed(1).await;
    assert_eq!(
        killed.continued(),
        vec![killed.targets[1].clone()],
        "{}",
        killed.job
    );
}

/// Topics side by side (`workers.set_parallelism: 3`), killed while they run: on another
/// replica every continued topic is one the killed replica had started and not finished, and
/// continues after what its target held at the kill; every topic part way at the kill is
/// continued; every topic holds its source exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_set_restored_side_by_side_killed_mid_set_completes_elsewhere_exactly_once() {
    let killed = set_restore_killed(3).await;
    let job = &killed.job;
    let started = keys(&killed.journal["started"]);
    let finished = keys(&killed.journal["finished"]);
    for note in killed.resume_notes() {
        let topic = note["target_topic"].as_str().unwrap();
        let k = killed
            .targets
            .iter()
            .position(|t| t == topic)
            .unwrap_or_else(|| panic!("{topic} is not a topic of the set: {job}"));
        assert!(
            !finished.contains(topic),
            "{topic} was recorded finished before the kill, yet continued: {job}"
        );
        assert!(
            started.contains(topic),
            "{topic} was continued, but the killed replica never started it: {job}"
        );
        let landed: u64 = note["partitions"]
            .as_array()
            .unwrap_or_else(|| panic!("{topic}: no partitions in its resume note: {job}"))
            .iter()
            .map(|p| p["already_written"].as_u64().unwrap())
            .sum();
        assert!(
            landed >= killed.at_kill[k] && landed <= N as u64,
            "{topic}: continued after {landed} records, {} were there at the kill: {job}",
            killed.at_kill[k]
        );
    }
    // A target holding some but not all of its records at the kill was started and cannot
    // have been finished: it must have been continued.
    let continued = killed.continued();
    let part_way: Vec<&String> = killed
        .targets
        .iter()
        .zip(&killed.at_kill)
        .filter(|(_, at)| **at > 0 && **at < N as u64)
        .map(|(t, _)| t)
        .collect();
    for topic in &part_way {
        assert!(
            continued.contains(*topic),
            "{topic} was part way at the kill ({:?} records on the targets) and not \
             continued: {job}",
            killed.at_kill
        );
    }
    // The topics ran side by side: the first was still running when the second was a third
    // done.
    assert!(
        part_way.len() >= 2,
        "only {part_way:?} part way at the kill ({:?} records on the targets): the topics did \
         not run side by side",
        killed.at_kill
    );
    println!(
        "set restore side by side: {:?} records on the targets at the kill; continued {:?}",
        killed.at_kill, continued
    );
}
