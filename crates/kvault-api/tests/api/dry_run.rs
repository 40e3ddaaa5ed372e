//! `?dry_run=true` on restore and migrate over HTTP (on the in-memory engine; what the plan
//! says about Kafka is compared with real runs on the broker in kvault-kafka's `dry_run`
//! tests): the same role as the real run, the same validation and errors, 200 with the plan,
//! no job and nothing written.

use kvault_api::auth::Role;
use serde_json::json;

use crate::helpers::{error_body, spawn_app};

#[tokio::test]
async fn a_restore_dry_run_answers_the_plan_and_writes_nothing() {
    let app = spawn_app().await;
    let topic = app.topic_with(2, 10).await;
    let backup_id = app.completed_backup(&topic).await["backup_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let target = app.unique_topic("dry");
    let body = json!({ "backup_id": backup_id, "target_topic": target });
    let path = "/api/kafka/clusters/local/restore?dry_run=true";

    // The real run's role: an operator may not, an admin may.
    let refused = app.post(path, Role::Operator, &body).await;
    error_body(refused, 403).await;
    let resp = app.post(path, Role::Admin, &body).await;
    assert_eq!(resp.status().as_u16(), 200);
    let plan: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(plan["dry_run"], true, "{plan}");
    assert_eq!(plan["topic"]["create"], true, "{plan}");
    assert_eq!(plan["topic"]["partitions"], 2, "{plan}");
    assert_eq!(plan["total_messages"], 10, "{plan}");
    let per_partition: u64 = plan["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["messages_count"].as_u64().unwrap())
        .sum();
    assert_eq!(per_partition, 10);
    assert!(
        app.fake().records("local", &target).is_empty(),
        "the dry run wrote"
    );
    let jobs = app
        .get_json("/api/kafka/jobs?kind=restore", Role::Viewer)
        .await;
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(0), "{jobs}");

    // The real run then does what the plan said.
    let real = app
        .post("/api/kafka/clusters/local/restore", Role::Admin, &body)
        .await;
    assert_eq!(real.status().as_u16(), 200);
    let done: serde_json::Value = real.json().await.unwrap();
    assert_eq!(done["partitions_created"], plan["partitions"], "{done}");
    assert_eq!(done["messages_restored"], plan["total_messages"]);

    // Refused like the real run: the target now holds records.
    let again = app.post(path, Role::Admin, &body).await;
    let err = error_body(again, 409).await;
    assert_eq!(err["details"]["field"], "target_topic", "{err}");
    // An unknown backup is the same 404.
    let missing = json!({ "backup_id": "no-such-backup", "target_topic": target });
    error_body(app.post(path, Role::Admin, &missing).await, 404).await;
}

#[tokio::test]
async fn a_migrate_dry_run_answers_the_plan_and_writes_nothing() {
    let app = spawn_app().await;
    let topic = app.topic_with(3, 12).await;
    let target = app.unique_topic("dry-migrate");
    let body = json!({
        "source_cluster": "local", "source_topic": topic,
        "target_cluster": "local", "target_topic": target
    });
    let refused = app
        .post("/api/kafka/migrate?dry_run=true", Role::Operator, &body)
        .await;
    error_body(refused, 403).await;
    let resp = app
        .post("/api/kafka/migrate?dry_run=true", Role::Admin, &body)
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let plan: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(plan["dry_run"], true, "{plan}");
    assert_eq!(plan["total_messages"], 12, "{plan}");
    assert_eq!(plan["topic"]["create"], true, "{plan}");
    assert!(
        app.fake().records("local", &target).is_empty(),
        "the dry run wrote"
    );
    let bad = json!({
        "source_cluster": "local", "source_topic": topic,
        "target_cluster": "nowhere", "target_topic": target
    });
    error_body(
        app.post("/api/kafka/migrate?dry_run=true", Role::Admin, &bad)
            .await,
        404,
    )
    .await;
}
