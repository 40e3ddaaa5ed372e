//! Several real `kvault serve` processes on loopback ports sharing one PostgreSQL database,
//! one S3 bucket (moto) and one broker: a replica killed with SIGKILL mid-backup, a replica
//! restarted beside a running job, the concurrency limit across replicas, SIGTERM mid-job.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Cluster, Replica, LEASE_TTL_SECS};
use kvault_testkit::{TestBroker, TestRecord};
use serde_json::{json, Value};

fn records(n: usize) -> Vec<TestRecord> {
    (0..n)
        .map(|i| TestRecord {
            partition: Some((i % 3) as i32),
            key: (i % 4 != 0).then(|| format!("k{i}").into_bytes()),
            value: (i % 9 != 0).then(|| vec![i as u8; 1 + i % 50]),
            headers: vec![("h".into(), Some(vec![0, 1])), ("e".into(), None)],
            timestamp: Some(1_700_000_000_000 + i as i64),
        })
        .collect()
}

async fn topic_with(broker: &TestBroker, n: usize) -> String {
    let topic = broker.unique_topic("replicas");
    broker.create_topic(&topic, 3).await;
    broker.produce(&topic, &records(n)).await;
    topic
}

/// Starts a backup that takes about `seconds` (rate limited), answering 202.
async fn slow_backup(
    cluster: &Cluster,
    on: &Replica,
    topic: &str,
    n: usize,
    seconds: u64,
) -> String {
    let rate = (n as u64 / seconds).max(1);
    let resp = cluster
        .post(
            on,
            "/api/kafka/clusters/local/backup?wait=false",
            json!({"topic": topic, "rate_limit_per_second": rate, "compression": "zstd"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    resp.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_whose_replica_is_killed_completes_on_another_and_restores_byte_for_byte() {
    let broker = TestBroker::get().await;
    let cluster = Cluster::new(broker, 10).await;
    let mut r1 = cluster.start("r1").await;
    let r2 = cluster.start("r2").await;
    let r3 = cluster.start("r3").await;
    let n = 3_000;
    let topic = topic_with(broker, n).await;
    let id = slow_backup(&cluster, &r1, &topic, n, 12).await;

    tokio::time::sleep(Duration::from_secs(3)).await;
    let (state, owner, _) = cluster.job_row(&id).await;
    assert_eq!((state.as_str(), owner.as_deref()), ("running", Some("r1")));
    r1.child.kill().unwrap();
    r1.child.wait().unwrap();
    let killed = Instant::now();

    // Taken over once the lease runs out, then run to the end on a surviving replica.
    let job = cluster
        .wait_for_end(&r2, &id, Duration::from_secs(LEASE_TTL_SECS + 40))
        .await;
    let took = killed.elapsed();
    assert_eq!(job["state"], "completed", "{job}\n{}", cluster.log("r2"));
    assert_eq!(job["result"]["total_messages"], n as u64, "{job}");
    let (_, owner, attempts) = cluster.job_row(&id).await;
    assert_ne!(owner.as_deref(), Some("r1"));
    assert_eq!(attempts, 2);
    println!("takeover: killed -> completed in {took:?}");

    let backup_id = job["result"]["backup_id"].as_str().unwrap().to_owned();
    let listed = cluster.get(&r3, "/api/kafka/backups").await;
    assert_eq!(listed["backups"].as_array().unwrap().len(), 1, "{listed}");
    let report: Value = cluster
        .post(
            &r3,
            &format!("/api/kafka/backups/{backup_id}/verify"),
            json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["valid"], true, "{report}");

    let target = broker.unique_topic("replicas-restored");
    let restored: Value = cluster
        .post(
            &r3,
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
    assert_eq!(original, copy);
    drop((r2, r3));
}

#[tokio::test(flavor = "multi_thread")]
async fn restarting_a_replica_leaves_the_job_of_another_untouched() {
    let broker = TestBroker::get().await;
    let cluster = Cluster::new(broker, 10).await;
    let r1 = cluster.start("r1").await;
    let r2 = cluster.start("r2").await;
    let n = 1_200;
    let topic = topic_with(broker, n).await;
    let id = slow_backup(&cluster, &r1, &topic, n, 6).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(r2);
    let r2 = cluster.start("r2").await;
    let job = cluster
        .wait_for_end(&r2, &id, Duration::from_secs(30))
        .await;
    assert_eq!(job["state"], "completed", "{job}");
    let (_, owner, attempts) = cluster.job_row(&id).await;
    assert_eq!((owner.as_deref(), attempts), (Some("r1"), 1));
    // The job's log lines carry its id (a span field; JSON logs write it on every line).
    let log = cluster.log("r1");
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("job{{job_id={id}}}")) && l.contains("job ended")),
        "{log}"
    );
    drop(r1);
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_together_run_no_more_backups_than_the_limit() {
    let broker = TestBroker::get().await;
    let cluster = Cluster::new(broker, 10).await;
    let replicas = [
        cluster.start("r1").await,
        cluster.start("r2").await,
        cluster.start("r3").await,
    ];
    let n = 600;
    let topic = topic_with(broker, n).await;
    let mut accepted = Vec::new();
    let mut refused = 0;
    let sends = (0..12).map(|i| {
        cluster.post(
            &replicas[i % 3],
            "/api/kafka/clusters/local/backup?wait=false",
            json!({"topic": topic, "rate_limit_per_second": 60}),
        )
    });
    // All at once, so admissions on the three replicas race.
    for resp in futures::future::join_all(sends).await {
        match resp.status().as_u16() {
            202 => accepted.push(resp.json::<Value>().await.unwrap()["job_id"].clone()),
            429 => {
                assert!(resp.headers().contains_key("retry-after"));
                refused += 1;
            }
            other => panic!("unexpected {other}: {:?}", resp.text().await),
        }
    }
    assert_eq!((accepted.len(), refused), (10, 2));
    let mut db = cluster.db().await;
    for _ in 0..10 {
        let running: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE kind = 'backup' AND state = 'running'",
        )
        .fetch_one(&mut db)
        .await
        .unwrap();
        assert!(running <= 10, "{running} backups running");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_hands_a_running_backup_over_and_the_process_exits_in_time() {
    let broker = TestBroker::get().await;
    let cluster = Cluster::new(broker, 10).await;
    let mut r1 = cluster.start("r1").await;
    let r2 = cluster.start("r2").await;
    let n = 2_000;
    let topic = topic_with(broker, n).await;
    let id = slow_backup(&cluster, &r1, &topic, n, 10).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = Instant::now();
    let term = Command::new("kill")
        .args(["-TERM", &r1.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = sent + Duration::from_secs(2 + 3);
    loop {
        if r1.child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "r1 still runs 5 s after SIGTERM:\n{}",
            cluster.log("r1")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("r1 exited {:?} after SIGTERM", sent.elapsed());
    let job = cluster
        .wait_for_end(&r2, &id, Duration::from_secs(40))
        .await;
    assert_eq!(job["state"], "completed", "{job}\n{}", cluster.log("r2"));
    assert_eq!(job["result"]["total_messages"], n as u64);
    let listed = cluster.get(&r2, "/api/kafka/backups").await;
    assert_eq!(listed["backups"].as_array().unwrap().len(), 1, "{listed}");
    drop(r2);
    let _ = r1.name;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_admit_one_restore_into_one_topic() {
    let broker = TestBroker::get().await;
    let cluster = Cluster::new(broker, 10).await;
    let (r1, r2) = (cluster.start("r1").await, cluster.start("r2").await);
    let n = 600;
    let topic = topic_with(broker, n).await;
    let backup: Value = cluster
        .post(
            &r1,
            "/api/kafka/clusters/local/backup",
            json!({"topic": topic}),
        )
        .await
        .json()
        .await
        .unwrap();
    let backup_id = backup["backup_id"].as_str().unwrap();
    let target = broker.unique_topic("replicas-one-writer");
    // About three seconds each: both would be writing at once.
    let body =
        json!({"backup_id": backup_id, "target_topic": target, "rate_limit_per_second": 200});
    let path = "/api/kafka/clusters/local/restore?wait=false";
    let (a, b) = tokio::join!(
        cluster.post(&r1, path, body.clone()),
        cluster.post(&r2, path, body.clone())
    );
    let mut answers = Vec::new();
    for resp in [a, b] {
        let status = resp.status().as_u16();
        answers.push((status, resp.json::<Value>().await.unwrap()));
    }
    answers.sort_by_key(|(status, _)| *status);
    let [(accepted, job), (refused, error)] = [answers[0].clone(), answers[1].clone()];
    assert_eq!((accepted, refused), (202, 409), "{job} {error}");
    let id = job["job_id"].as_str().unwrap();
    assert_eq!(error["details"]["field"], "target_topic", "{error}");
    assert!(error["message"].as_str().unwrap().contains(id), "{error}");
    let ended = cluster.wait_for_end(&r2, id, Duration::from_secs(60)).await;
    assert_eq!(ended["state"], "completed", "{ended}");
    assert_eq!(broker.consume_all(&target).await.len(), n);
}
