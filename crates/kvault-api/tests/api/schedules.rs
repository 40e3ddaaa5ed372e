//! Backup schedules over HTTP on the in-memory engine: the resource's errors and roles, runs
//! that chain and restore by `schedule_id`, and two replicas on one database sharing a
//! schedule without ever running it twice at once.

use std::time::Duration;

use kvault_api::auth::Role;
use serde_json::{json, Value};

use crate::helpers::{error_body, spawn_app, spawn_app_with, spawn_replica_of, TestApp};

/// Polls the schedule until `done(view)` holds (30 s at most); returns the view.
async fn wait_for(app: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..300 {
        let view = app
            .get_json(&format!("/api/kafka/schedules/{id}"), Role::Viewer)
            .await;
        if done(&view) {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("schedule {id} never got there");
}

/// Completed runs that wrote a backup (a run that found nothing new names none), newest first.
fn completed(view: &Value) -> Vec<Value> {
    view["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "completed" && r["backup_id"].is_string())
        .cloned()
        .collect()
}

/// Every run that ended (nothing-new runs included).
fn ended(view: &Value) -> usize {
    let runs = view["runs"].as_array().unwrap();
    runs.iter().filter(|r| r["state"] != "running").count()
}

#[tokio::test]
async fn schedules_are_created_listed_shown_and_deleted_with_their_errors() {
    let app = spawn_app().await;
    let topic = app.topic_with(1, 3).await;
    let body = json!({
        "schedule_id": "nightly", "cluster_id": "local", "topic": topic,
        "cron": "0 3 * * *", "compression": "zstd", "retention": "7d"
    });
    let resp = app
        .post("/api/kafka/schedules", Role::Operator, &body)
        .await;
    assert_eq!(resp.status().as_u16(), 201);
    assert_eq!(
        resp.headers()["location"].to_str().unwrap(),
        "/api/kafka/schedules/nightly"
    );
    let created: Value = resp.json().await.unwrap();
    assert_eq!(created["schedule_id"], "nightly");
    assert_eq!(created["cron"], "0 3 * * *");
    assert!(created["next_run_at"]
        .as_str()
        .unwrap()
        .ends_with("T03:00:00Z"));
    assert_eq!(created["runs"], json!([]));
    assert_eq!(created["latest_backup_id"], Value::Null);

    for (body, status, field) in [
        (json!({"cluster_id": "local", "topic": topic}), 400, "every"),
        (
            json!({"cluster_id": "local", "topic": topic, "every": "1m", "cron": "* * * * *"}),
            400,
            "cron",
        ),
        (
            json!({"cluster_id": "local", "topic": topic, "every": "often"}),
            400,
            "every",
        ),
        (
            json!({"cluster_id": "local", "topic": topic, "cron": "0 25 * * *"}),
            400,
            "cron",
        ),
        (json!({"cluster_id": "local", "every": "1m"}), 400, "topic"),
        (
            json!({"cluster_id": "nope", "topic": topic, "every": "1m"}),
            404,
            "cluster_id",
        ),
        (
            json!({"cluster_id": "local", "topic": "missing", "every": "1m"}),
            404,
            "topic",
        ),
        (
            json!({"schedule_id": "nightly", "cluster_id": "local", "topic": topic, "every": "1m"}),
            409,
            "schedule_id",
        ),
    ] {
        let resp = app
            .post("/api/kafka/schedules", Role::Operator, &body)
            .await;
        let err = error_body(resp, status).await;
        assert_eq!(err["details"]["field"], field, "{body}: {err}");
    }
    // A viewer may look but not create; a token scoped elsewhere sees nothing.
    let resp = app.post("/api/kafka/schedules", Role::Viewer, &body).await;
    error_body(resp, 403).await;
    let elsewhere = app.token_for("scoped", Role::Admin, Some(vec!["other".into()]));
    let listed: Value = app
        .client
        .get(app.url("/api/kafka/schedules"))
        .bearer_auth(&elsewhere)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["schedules"], json!([]));
    let listed = app.get_json("/api/kafka/schedules", Role::Viewer).await;
    assert_eq!(listed["schedules"][0]["schedule_id"], "nightly");

    // No run yet: a restore by schedule has nothing to restore.
    let resp = app
        .post(
            "/api/kafka/clusters/local/restore",
            Role::Admin,
            &json!({"schedule_id": "nightly", "target_topic": "copy"}),
        )
        .await;
    let err = error_body(resp, 404).await;
    assert_eq!(err["details"]["field"], "schedule_id");

    let resp = app
        .client
        .delete(app.url("/api/kafka/schedules/nightly"))
        .bearer_auth(app.token(Role::Operator))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let resp = app.get("/api/kafka/schedules/nightly", Role::Viewer).await;
    error_body(resp, 404).await;
}

#[tokio::test]
async fn schedules_more_frequent_than_the_floor_are_refused() {
    let app = spawn_app_with(|s| {
        s.schedules = kvault_api::configuration::ScheduleSettings::default();
    })
    .await;
    let topic = app.topic_with(1, 1).await;
    for (body, field) in [
        (
            json!({"cluster_id": "local", "topic": topic, "every": "1s"}),
            "every",
        ),
        (
            json!({"cluster_id": "local", "topic": topic, "cron": "*/5 * * * * *"}),
            "cron",
        ),
    ] {
        let resp = app
            .post("/api/kafka/schedules", Role::Operator, &body)
            .await;
        let err = error_body(resp, 400).await;
        assert_eq!(err["details"]["field"], field, "{body}: {err}");
        assert!(
            err["message"]
                .as_str()
                .unwrap()
                .contains("min_interval_secs"),
            "{err}"
        );
    }
    let ok = json!({"cluster_id": "local", "topic": topic, "every": "1m"});
    let resp = app.post("/api/kafka/schedules", Role::Operator, &ok).await;
    assert_eq!(resp.status().as_u16(), 201);
}

#[tokio::test]
async fn runs_continue_one_chain_and_restore_by_schedule_id() {
    let app = spawn_app().await;
    let topic = app.topic_with(2, 10).await;
    let body =
        json!({"schedule_id": "often", "cluster_id": "local", "topic": topic, "every": "1s"});
    let resp = app
        .post("/api/kafka/schedules", Role::Operator, &body)
        .await;
    assert_eq!(resp.status().as_u16(), 201);
    let first = wait_for(&app, "often", |v| !completed(v).is_empty()).await;
    let more: Vec<kvault_testkit::fake::KeyValue<'_>> = vec![(None, Some(b"later".as_slice())); 6];
    app.fake().produce("local", &topic, &more);
    let view = wait_for(&app, "often", |v| completed(v).len() >= 2).await;
    let runs = completed(&view);
    // Newest first; each run continues the one before it, and together they hold every record.
    let mut total = 0;
    for (newer, older) in runs.iter().zip(runs.iter().skip(1)) {
        let id = newer["backup_id"].as_str().unwrap();
        let shown = app
            .get_json(&format!("/api/kafka/backups/{id}"), Role::Viewer)
            .await;
        assert_eq!(shown["chain"]["parent_id"], older["backup_id"], "{shown}");
    }
    for run in &runs {
        let id = run["backup_id"].as_str().unwrap();
        assert!(id.starts_with("often-"), "{id}");
        let shown = app
            .get_json(&format!("/api/kafka/backups/{id}"), Role::Viewer)
            .await;
        total += shown["total_messages"].as_u64().unwrap();
    }
    let oldest = runs.last().unwrap()["backup_id"].clone();
    assert_eq!(first["runs"][0]["backup_id"], oldest);
    assert_eq!(total, 16, "the runs so far hold each record once");
    assert_eq!(view["latest_backup_id"], runs[0]["backup_id"]);
    // The runs are ordinary backup jobs.
    let job = app
        .get_json(
            &format!("/api/kafka/jobs/{}", runs[0]["job_id"].as_str().unwrap()),
            Role::Viewer,
        )
        .await;
    assert_eq!(job["kind"], "backup");
    assert_eq!(job["schedule_id"], "often");

    let resp = app
        .post(
            "/api/kafka/clusters/local/restore",
            Role::Admin,
            &json!({"schedule_id": "often", "target_topic": "from-schedule"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let restored: Value = resp.json().await.unwrap();
    assert_eq!(restored["messages_restored"], 16);

    let resp = app
        .post(
            "/api/kafka/clusters/local/restore",
            Role::Admin,
            &json!({"schedule_id": "often", "backup_id": "x", "target_topic": "t2"}),
        )
        .await;
    let err = error_body(resp, 400).await;
    assert_eq!(err["details"]["field"], "schedule_id");
}

#[tokio::test]
async fn a_run_that_finds_nothing_new_writes_no_archive_and_the_chain_goes_on() {
    let app = spawn_app().await;
    let topic = app.topic_with(2, 3).await;
    let body = json!({"schedule_id": "idle", "cluster_id": "local", "topic": topic, "every": "1s"});
    let resp = app
        .post("/api/kafka/schedules", Role::Operator, &body)
        .await;
    assert_eq!(resp.status().as_u16(), 201);
    // The first run, then at least two that found nothing new.
    let view = wait_for(&app, "idle", |v| ended(v) >= 3).await;
    let written = completed(&view);
    assert_eq!(
        written.len(),
        1,
        "only the first run wrote a backup: {view}"
    );
    let first = written[0]["backup_id"].as_str().unwrap().to_owned();
    assert_eq!(view["latest_backup_id"], first.as_str());
    let idle_runs: Vec<&Value> = view["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "completed" && r["backup_id"].is_null())
        .collect();
    assert!(idle_runs.len() >= 2, "{view}");
    let job = app
        .get_json(
            &format!(
                "/api/kafka/jobs/{}",
                idle_runs[0]["job_id"].as_str().unwrap()
            ),
            Role::Viewer,
        )
        .await;
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["result"]["status"], "nothing_new", "{job}");
    assert_eq!(job["result"]["incremental_from"], first.as_str(), "{job}");
    assert!(job["result"].get("backup_id").is_none(), "{job}");
    let listed = app
        .get_json(&format!("/api/kafka/backups?topic={topic}"), Role::Viewer)
        .await;
    assert_eq!(
        listed["backups"].as_array().unwrap().len(),
        1,
        "no empty archive was committed: {listed}"
    );

    // New records: the next run writes them, continuing the first run's backup.
    let more: Vec<kvault_testkit::fake::KeyValue<'_>> = vec![(None, Some(b"new".as_slice())); 4];
    app.fake().produce("local", &topic, &more);
    let view = wait_for(&app, "idle", |v| completed(v).len() >= 2).await;
    let next = completed(&view)[0]["backup_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let shown = app
        .get_json(&format!("/api/kafka/backups/{next}"), Role::Viewer)
        .await;
    assert_eq!(shown["chain"]["parent_id"], first.as_str(), "{shown}");
    assert_eq!(shown["total_messages"], 4, "{shown}");
}

#[tokio::test]
async fn two_replicas_never_run_one_schedule_twice_at_once() {
    let app = spawn_app().await;
    let replica = spawn_replica_of(&app).await;
    let topic = app.topic_with(1, 5).await;
    let body =
        json!({"schedule_id": "shared", "cluster_id": "local", "topic": topic, "every": "1s"});
    let resp = replica
        .post("/api/kafka/schedules", Role::Operator, &body)
        .await;
    assert_eq!(resp.status().as_u16(), 201);
    // New records keep arriving, so most runs write a backup.
    let view = {
        let producing = async {
            loop {
                let record: Vec<kvault_testkit::fake::KeyValue<'_>> =
                    vec![(None, Some(b"more".as_slice()))];
                app.fake().produce("local", &topic, &record);
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
        };
        tokio::select! {
            view = wait_for(&app, "shared", |v| completed(v).len() >= 4) => view,
            () = producing => unreachable!(),
        }
    };
    let mut runs: Vec<Value> = view["runs"].as_array().unwrap().clone();
    runs.reverse();
    // One at a time: each run started after the one before it finished; one chain.
    for pair in runs.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        assert_ne!(before["state"], "running", "{runs:?}");
        assert!(
            before["finished_at"].as_str().unwrap() <= after["started_at"].as_str().unwrap(),
            "{runs:?}"
        );
    }
    let jobs: Vec<Value> = {
        let listed = app
            .get_json("/api/kafka/jobs?kind=backup", Role::Viewer)
            .await;
        listed["jobs"].as_array().unwrap().clone()
    };
    assert_eq!(jobs.len(), runs.len(), "every run is one job: {jobs:?}");
    let completed_runs: Vec<&Value> = runs
        .iter()
        .filter(|r| r["state"] == "completed" && r["backup_id"].is_string())
        .collect();
    for pair in completed_runs.windows(2) {
        let id = pair[1]["backup_id"].as_str().unwrap();
        let shown = app
            .get_json(&format!("/api/kafka/backups/{id}"), Role::Viewer)
            .await;
        assert_eq!(shown["chain"]["parent_id"], pair[0]["backup_id"]);
    }
}

#[tokio::test]
async fn a_pattern_schedule_keeps_one_chain_per_topic_and_restores_as_a_set() {
    let app = spawn_app().await;
    let prefix = app.unique_topic("pat");
    for suffix in ["a", "b"] {
        app.fake()
            .create_topic("local", &format!("{prefix}-{suffix}"), 1);
        let records: Vec<kvault_testkit::fake::KeyValue<'_>> =
            vec![(None, Some(b"v".as_slice())); 3];
        app.fake()
            .produce("local", &format!("{prefix}-{suffix}"), &records);
    }
    let body = json!({
        "schedule_id": "sets", "cluster_id": "local", "topic_pattern": format!("{prefix}-.*"),
        "every": "1s"
    });
    let resp = app
        .post("/api/kafka/schedules", Role::Operator, &body)
        .await;
    assert_eq!(resp.status().as_u16(), 201);
    wait_for(&app, "sets", |v| !completed(v).is_empty()).await;
    // A topic created later joins the next run in full; the others continue their chains.
    app.fake().create_topic("local", &format!("{prefix}-c"), 1);
    let records: Vec<kvault_testkit::fake::KeyValue<'_>> = vec![(None, Some(b"w".as_slice())); 2];
    app.fake()
        .produce("local", &format!("{prefix}-c"), &records);
    app.fake()
        .produce("local", &format!("{prefix}-a"), &records);
    let view = wait_for(&app, "sets", |v| completed(v).len() >= 3).await;
    // The first run whose set holds topic c, and the run before it.
    let mut runs = completed(&view);
    runs.reverse();
    let mut pair = None;
    for w in runs.windows(2) {
        let newer = w[1]["backup_id"].as_str().unwrap().to_owned();
        let holds_c = app
            .get(
                &format!("/api/kafka/backups/{newer}.{prefix}-c"),
                Role::Viewer,
            )
            .await;
        if holds_c.status().is_success() {
            pair = Some((newer, w[0]["backup_id"].as_str().unwrap().to_owned()));
            break;
        }
    }
    let (newer, older) = pair.unwrap_or_else(|| panic!("no run holds the new topic: {view}"));
    let a = app
        .get_json(
            &format!("/api/kafka/backups/{newer}.{prefix}-a"),
            Role::Viewer,
        )
        .await;
    assert_eq!(
        a["chain"]["parent_id"],
        format!("{older}.{prefix}-a"),
        "{a}"
    );
    let c = app
        .get_json(
            &format!("/api/kafka/backups/{newer}.{prefix}-c"),
            Role::Viewer,
        )
        .await;
    assert!(c["chain"].is_null(), "a new topic starts in full: {c}");

    let resp = app
        .post(
            "/api/kafka/clusters/local/restore",
            Role::Admin,
            &json!({"schedule_id": "sets", "topic_prefix": "copy-"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let restored: Value = resp.json().await.unwrap();
    assert_eq!(restored["topic_count"], 3, "{restored}");
}

async fn delete_schedule(app: &TestApp, id: &str) {
    let resp = app
        .client
        .delete(app.url(&format!("/api/kafka/schedules/{id}")))
        .bearer_auth(app.token(Role::Operator))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

fn run_ids(view: &Value) -> Vec<String> {
    view["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["backup_id"].as_str().map(str::to_owned))
        .collect()
}

/// A schedule created under the name of a deleted one on another cluster: the old runs are
/// not its runs (not listed, not continued, not deleted by its retention).
#[tokio::test]
async fn a_schedule_reusing_a_deleted_schedules_name_never_takes_over_its_runs() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.backup.retention_sweep_interval_secs = 1;
        s.clusters.insert(
            "other".into(),
            kvault_domain::ClusterConfig {
                bootstrap_servers: "in-memory:9092".into(),
                properties: Default::default(),
            },
        );
    })
    .await;
    let topic = app.topic_with(1, 5).await;
    let body = json!({"schedule_id": "s", "cluster_id": "local", "topic": topic, "every": "1s"});
    let resp = app
        .post("/api/kafka/schedules", Role::Operator, &body)
        .await;
    assert_eq!(resp.status().as_u16(), 201);
    // A run writes a backup only when something new arrived since the last one.
    wait_for(&app, "s", |v| !completed(v).is_empty()).await;
    let more: Vec<kvault_testkit::fake::KeyValue<'_>> = vec![(None, Some(b"a".as_slice())); 2];
    app.fake().produce("local", &topic, &more);
    let old = wait_for(&app, "s", |v| completed(v).len() >= 2).await;
    delete_schedule(&app, "s").await;
    // Runs still going when it was deleted end before the new schedule exists.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let old_runs: Vec<String> = app
        .app_state
        .archives
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.backup_id)
        .collect();
    assert!(old_runs.len() >= 2, "{old_runs:?}");

    app.fake().create_topic("other", &topic, 1);
    let records: Vec<kvault_testkit::fake::KeyValue<'_>> = vec![(None, Some(b"b".as_slice())); 3];
    app.fake().produce("other", &topic, &records);
    let body = json!({"schedule_id": "s", "cluster_id": "other", "topic": topic, "every": "1s",
        "retention": "1s"});
    let resp = app
        .post("/api/kafka/schedules", Role::Operator, &body)
        .await;
    assert_eq!(resp.status().as_u16(), 201);
    let created: Value = resp.json().await.unwrap();
    assert!(created["runs"].as_array().unwrap().is_empty(), "{created}");
    assert_ne!(created["uid"], old["uid"]);
    // Its first run is a full backup of cluster other, not a link of the old chain.
    let new = wait_for(&app, "s", |v| !completed(v).is_empty()).await;
    let first = completed(&new).last().unwrap()["backup_id"].clone();
    let shown = app
        .get_json(
            &format!("/api/kafka/backups/{}", first.as_str().unwrap()),
            Role::Viewer,
        )
        .await;
    assert_eq!(shown["cluster_id"], "other", "{shown}");
    assert!(shown["chain"].is_null(), "{shown}");
    for runs in 2..=3 {
        app.fake().produce("other", &topic, &records);
        wait_for(&app, "s", |v| completed(v).len() >= runs).await;
    }
    let new = wait_for(&app, "s", |v| completed(v).len() >= 3).await;
    assert!(new["last_error"].is_null(), "{new}");
    let new_runs = run_ids(&new);
    assert!(
        new_runs.iter().all(|id| !old_runs.contains(id)),
        "{new_runs:?} {old_runs:?}"
    );
    // Its one-second retention has swept (every second) without touching the old runs.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let left: Vec<String> = app
        .app_state
        .archives
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.backup_id)
        .collect();
    for id in &old_runs {
        assert!(
            left.contains(id),
            "{id} of the deleted schedule was deleted: {left:?}"
        );
    }
}
