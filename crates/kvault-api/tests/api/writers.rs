//! One writer per target: at most one restore or migration runs into a (cluster, topic) at a
//! time; the second is refused with 409 naming `target_topic` and the running job.

use kvault_api::auth::Role;
use serde_json::{json, Value};

use crate::helpers::{error_body, spawn_app, spawn_app_on_broker, TestApp};

/// Starts a restore (or anything else) with `?wait=false` that must be accepted; its job id.
async fn accepted(app: &TestApp, path: &str, body: &Value) -> String {
    let resp = app
        .post(&format!("{path}?wait=false"), Role::Admin, body)
        .await;
    assert_eq!(resp.status().as_u16(), 202, "{:?}", resp.text().await);
    resp.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Asserts a 409 naming `target_topic` = `topic` and job `holder`.
async fn refused_as_held(resp: reqwest::Response, topic: &str, holder: &str) {
    let body = error_body(resp, 409).await;
    assert_eq!(body["error"], "Conflict", "{body}");
    assert_eq!(body["details"]["field"], "target_topic", "{body}");
    assert_eq!(body["details"]["value"], topic, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(holder), "{body}");
}

const RESTORE: &str = "/api/kafka/clusters/local/restore";

#[tokio::test]
async fn a_second_restore_into_a_topic_being_restored_is_refused() {
    let app = spawn_app().await;
    let topic = app.topic_with(2, 40).await;
    let backup = app.completed_backup(&topic).await;
    let backup_id = backup["backup_id"].as_str().unwrap();
    let target = app.unique_topic("restored");
    // 20 records a second: the first restore runs for about two seconds.
    let slow = json!({"backup_id": backup_id, "target_topic": target, "rate_limit_per_second": 20});
    let first = accepted(&app, RESTORE, &slow).await;

    // Waiting or not, failing or appending: the target has a writer.
    let appending = json!({"backup_id": backup_id, "target_topic": target, "if_exists": "append"});
    for (path, body) in [
        (format!("{RESTORE}?wait=false"), &slow),
        (RESTORE.to_owned(), &slow),
        (RESTORE.to_owned(), &appending),
    ] {
        let resp = app.post(&path, Role::Admin, body).await;
        refused_as_held(resp, &target, &first).await;
    }
    // A migration into it is a second writer too.
    let migrate = json!({
        "source_cluster": "local", "source_topic": topic,
        "target_cluster": "local", "target_topic": target
    });
    let resp = app.post("/api/kafka/migrate", Role::Admin, &migrate).await;
    refused_as_held(resp, &target, &first).await;
    // Another topic is free.
    let other = json!({"backup_id": backup_id, "target_topic": app.unique_topic("other")});
    let resp = app.post(RESTORE, Role::Admin, &other).await;
    assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.text().await);

    let job = app.wait_for_job(&first).await;
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(app.fake().records("local", &target).len(), 40);
    // Once it ended, a later append is the user's choice, and appends.
    let resp = app.post(RESTORE, Role::Admin, &appending).await;
    assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.text().await);
    assert_eq!(app.fake().records("local", &target).len(), 80);
}

#[tokio::test]
async fn two_restores_sent_at_once_admit_one() {
    let app = spawn_app().await;
    let topic = app.topic_with(1, 30).await;
    let backup = app.completed_backup(&topic).await;
    let target = app.unique_topic("restored");
    let body = json!({
        "backup_id": backup["backup_id"], "target_topic": target, "rate_limit_per_second": 100
    });
    let (a, b) = tokio::join!(
        app.post(RESTORE, Role::Admin, &body),
        app.post(RESTORE, Role::Admin, &body)
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 409]);
    assert_eq!(app.fake().records("local", &target).len(), 30);
}

#[tokio::test]
async fn a_set_restore_holds_every_topic_of_the_set() {
    let app = spawn_app().await;
    let first = app.topic_with(1, 30).await;
    let second = app.topic_with(1, 30).await;
    let resp = app
        .post(
            "/api/kafka/clusters/local/backup",
            Role::Operator,
            &json!({"topics": [first, second], "backup_id": "pair"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let prefix = format!("{}-", app.unique_topic("copy"));
    let set = json!({"backup_id": "pair", "topic_prefix": prefix, "rate_limit_per_second": 20});
    let running = accepted(&app, RESTORE, &set).await;
    // A single restore into the set's second target, while the set is still on its first.
    let member = format!("pair.{second}");
    let target = format!("{prefix}{second}");
    let single = json!({"backup_id": member, "target_topic": target});
    let resp = app.post(RESTORE, Role::Admin, &single).await;
    refused_as_held(resp, &target, &running).await;
    let job = app.wait_for_job(&running).await;
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(app.fake().records("local", &target).len(), 30);
}

#[tokio::test]
async fn a_restore_into_a_topic_a_migration_writes_is_refused() {
    let app = spawn_app().await;
    let topic = app.topic_with(1, 40).await;
    let backup = app.completed_backup(&topic).await;
    let target = app.unique_topic("migrated");
    let migrate = json!({
        "source_cluster": "local", "source_topic": topic,
        "target_cluster": "local", "target_topic": target, "rate_limit_per_second": 20
    });
    let running = accepted(&app, "/api/kafka/migrate", &migrate).await;
    let restore = json!({"backup_id": backup["backup_id"], "target_topic": target});
    let resp = app.post(RESTORE, Role::Admin, &restore).await;
    refused_as_held(resp, &target, &running).await;
    let job = app.wait_for_job(&running).await;
    assert_eq!(job["state"], "completed", "{job}");
}

/// On the real broker: two concurrent restores of one 3,000-record backup into one new topic
/// write it once.
#[tokio::test]
async fn two_concurrent_restores_on_the_broker_write_the_topic_once() {
    let app = spawn_app_on_broker().await;
    let topic = app.topic_with(3, 3_000).await;
    let backup = app.completed_backup(&topic).await;
    let target = app.unique_topic("restored");
    let body = json!({"backup_id": backup["backup_id"], "target_topic": target});
    let (a, b) = tokio::join!(
        app.post(RESTORE, Role::Admin, &body),
        app.post(RESTORE, Role::Admin, &body)
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 409]);
    let copy = app.broker().consume_all(&target).await;
    assert_eq!(copy.len(), 3_000);
}
