//! A backup schedule on the real broker: a producer writes while the schedule runs every two
//! seconds; the runs form one chain with no gap or overlap, restoring the schedule gives back
//! the topic byte for byte with the consumer group where it was committed, and a
//! point-in-time restore gives exactly the records stamped up to the instant. Once the
//! producer has stopped, a run finds nothing new and writes no archive.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use kvault_api::auth::Role;
use kvault_testkit::{ConsumedRecord, TestRecord};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_on_broker, TestApp};

/// A record as compared: partition, offset, key, value, headers.
type Content = (
    i32,
    i64,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(String, Option<Vec<u8>>)>,
);

fn content(records: impl IntoIterator<Item = ConsumedRecord>) -> Vec<Content> {
    let mut all: Vec<Content> = records
        .into_iter()
        .map(|r| (r.partition, r.offset, r.key, r.value, r.headers))
        .collect();
    all.sort_by_key(|r| (r.0, r.1));
    all
}

async fn view(app: &TestApp, id: &str) -> Value {
    app.get_json(&format!("/api/kafka/schedules/{id}"), Role::Viewer)
        .await
}

/// Completed runs, newest first.
fn completed(view: &Value) -> Vec<Value> {
    let runs = view["runs"].as_array().unwrap();
    runs.iter()
        .filter(|r| r["state"] == "completed")
        .cloned()
        .collect()
}

/// Waits (60 s at most) until the schedule has a completed run that started after `after`.
async fn run_started_after(app: &TestApp, id: &str, after: DateTime<Utc>) -> Value {
    for _ in 0..600 {
        let view = view(app, id).await;
        let fresh = completed(&view).into_iter().find(|r| {
            r["started_at"]
                .as_str()
                .and_then(|t| t.parse::<DateTime<Utc>>().ok())
                .is_some_and(|t| t > after)
        });
        if let Some(run) = fresh {
            return run;
        }
        assert!(view["last_error"].is_null(), "{view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no run of {id} after {after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_runs_while_producing_restore_whole_and_to_an_instant() {
    let app = spawn_app_on_broker().await;
    let broker = app.broker();
    let topic = broker.unique_topic("scheduled");
    broker.create_topic(&topic, 2).await;
    let group = broker.unique_topic("scheduled-group");

    // A producer writing small batches (a header on each, a tombstone now and then) runs
    // alongside the schedule until the third run after the group's commit.
    let producing = AtomicBool::new(true);
    let producer = async {
        let mut n = 0u32;
        while producing.load(Ordering::SeqCst) {
            let batch: Vec<TestRecord> = (0..4)
                .map(|i| TestRecord {
                    partition: Some(i % 2),
                    value: (n % 7 != 3).then(|| format!("v{n}-{i}").into_bytes()),
                    headers: vec![("seq".into(), Some(n.to_be_bytes().to_vec()))],
                    ..TestRecord::kv(format!("k{n}-{i}"), Vec::new())
                })
                .collect();
            broker.produce(&topic, &batch).await;
            n += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let schedule = async {
        let started = Utc::now();
        let body = json!({
            "schedule_id": topic, "cluster_id": "local", "topic": topic, "every": "2s",
            "compression": "zstd", "rate_limit_per_second": 1_000_000
        });
        let resp = app
            .post("/api/kafka/schedules", Role::Operator, &body)
            .await;
        assert_eq!(resp.status().as_u16(), 201);
        run_started_after(&app, &topic, started - chrono::Duration::seconds(1)).await;
        // The group commits at N before the second run.
        let committed = broker.watermarks(&topic, 0).await.1;
        broker.commit_group(&group, &topic, &[(0, committed)]).await;
        let second = run_started_after(&app, &topic, Utc::now()).await;
        assert!(second["backup_id"].is_string());
        let instant = Utc::now();
        tokio::time::sleep(Duration::from_millis(300)).await;
        run_started_after(&app, &topic, Utc::now()).await;
        producing.store(false, Ordering::SeqCst);
        (committed, instant)
    };
    let ((), (committed, instant)) = tokio::join!(producer, schedule);
    // One more run after the producer stopped covers everything it wrote (or, when the run
    // before it already had, it found nothing new); the one after it finds nothing new.
    run_started_after(&app, &topic, Utc::now()).await;
    let tip = view(&app, &topic).await["latest_backup_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let idle = run_started_after(&app, &topic, Utc::now()).await;
    assert!(idle["backup_id"].is_null(), "{idle}");
    let job = app
        .get_json(
            &format!("/api/kafka/jobs/{}", idle["job_id"].as_str().unwrap()),
            Role::Viewer,
        )
        .await;
    assert_eq!(job["result"]["status"], "nothing_new", "{job}");
    assert_eq!(job["result"]["incremental_from"], tip.as_str(), "{job}");
    let view = view(&app, &topic).await;
    assert_eq!(view["latest_backup_id"], tip.as_str(), "{view}");
    let written: Vec<Value> = completed(&view)
        .into_iter()
        .filter(|r| r["backup_id"].is_string())
        .collect();
    assert!(written.len() >= 3, "{view}");
    let listed = app
        .get_json(&format!("/api/kafka/backups?topic={topic}"), Role::Viewer)
        .await;
    assert_eq!(
        listed["backups"].as_array().unwrap().len(),
        written.len(),
        "one archive per run that wrote one, none for the idle runs: {listed}"
    );

    // The chain verifies: every link starts where its parent ended.
    let tip = tip.as_str();
    let resp = app
        .post(
            &format!("/api/kafka/backups/{tip}/verify"),
            Role::Operator,
            &json!({}),
        )
        .await;
    let report: Value = resp.json().await.unwrap();
    assert_eq!(report["valid"], true, "{report}");

    // The whole schedule restores byte for byte, the group at its committed offset.
    let whole = broker.unique_topic("scheduled-whole");
    let resp = app
        .post(
            "/api/kafka/clusters/local/restore",
            Role::Admin,
            &json!({"schedule_id": topic, "target_topic": whole, "restore_consumer_groups": true}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let source = broker.consume_all(&topic).await;
    assert!(
        source.len() >= 20,
        "the producer kept writing: {}",
        source.len()
    );
    assert_eq!(
        content(broker.consume_all(&whole).await),
        content(source.clone())
    );
    assert_eq!(
        broker.group_offsets(&group, &whole, 2).await,
        vec![Some(committed), None]
    );

    // Point in time: exactly the records stamped at or before the instant.
    let earlier = broker.unique_topic("scheduled-pit");
    let resp = app
        .post(
            "/api/kafka/clusters/local/restore",
            Role::Admin,
            &json!({"schedule_id": topic, "target_topic": earlier, "until_time": instant.to_rfc3339()}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let expected = content(source.into_iter().filter(|r| {
        r.timestamp
            .is_some_and(|ts| ts <= instant.timestamp_millis())
    }));
    assert!(!expected.is_empty());
    assert_eq!(content(broker.consume_all(&earlier).await), expected);
}
