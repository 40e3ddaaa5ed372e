//! Happy paths of backup, restore, migrate, drain and the backup routes, plus their conflicts.

use kvault_api::auth::Role;
use serde_json::{json, Value};

use crate::helpers::{
    error_body, spawn_app_on_broker as spawn_app, spawn_app_on_broker_with as spawn_app_with,
    spawn_app_on_broker_with_s3, TestApp,
};

#[tokio::test]
async fn backup_list_get_verify_restore_delete() {
    backup_routes_end_to_end(&spawn_app().await).await;
}

/// The same routes with the archives in a real S3-compatible server.
#[tokio::test]
async fn backup_list_get_verify_restore_delete_with_archives_in_s3() {
    let (app, s3) = spawn_app_on_broker_with_s3().await;
    backup_routes_end_to_end(&app).await;
    // The delete left nothing behind in the bucket.
    assert!(s3.objects().await.is_empty(), "{:?}", s3.objects().await);
}

async fn backup_routes_end_to_end(app: &TestApp) {
    let topic = app.topic_with(3, 30).await;

    // Backup, synchronous by default, with the documented response fields.
    let resp = app
        .post(
            "/api/kafka/clusters/local/backup",
            Role::Operator,
            &json!({"topic": topic, "compression": "gzip", "start_offset": "earliest", "end_offset": "latest"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let backup: Value = resp.json().await.unwrap();
    for field in [
        "backup_id",
        "topic",
        "cluster_id",
        "compression",
        "total_messages",
        "total_size_bytes",
        "compressed_size_bytes",
        "compression_ratio",
        "duration_ms",
        "partitions",
        "created_at",
        "status",
    ] {
        assert!(backup.get(field).is_some(), "missing {field}: {backup}");
    }
    assert_eq!(backup["status"], "completed");
    assert_eq!(backup["cluster_id"], "local");
    assert_eq!(backup["total_messages"], 30);
    assert_eq!(backup["partitions"].as_array().unwrap().len(), 3);
    let backup_id = backup["backup_id"].as_str().unwrap().to_owned();

    // Same id again: 409.
    let body = error_body(
        app.post(
            "/api/kafka/clusters/local/backup",
            Role::Operator,
            &json!({"topic": topic, "backup_id": backup_id}),
        )
        .await,
        409,
    )
    .await;
    assert_eq!(body["details"]["field"], "backup_id");

    // Listing and the manifest summary.
    let list: Value = app
        .get(
            &format!("/api/kafka/backups?cluster_id=local&topic={topic}"),
            Role::Viewer,
        )
        .await
        .json()
        .await
        .unwrap();
    let backups = list["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 1);
    assert_eq!(backups[0]["backup_id"], backup_id.as_str());
    let other: Value = app
        .get_json("/api/kafka/backups?topic=not-this-one", Role::Viewer)
        .await;
    assert!(other["backups"].as_array().unwrap().is_empty());
    let summary: Value = app
        .get_json(&format!("/api/kafka/backups/{backup_id}"), Role::Viewer)
        .await;
    assert_eq!(summary["total_messages"], 30);
    assert_eq!(summary["partitions"].as_array().unwrap().len(), 3);

    // Verify.
    let resp = app
        .post(
            &format!("/api/kafka/backups/{backup_id}/verify"),
            Role::Operator,
            &json!({}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let report: Value = resp.json().await.unwrap();
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["messages_checked"], 30);

    // Restore into a new topic, then again into the now non-empty topic: 409.
    let target = app.unique_topic("restored");
    let restore_req = json!({"backup_id": backup_id, "target_topic": target});
    let resp = app
        .post(
            "/api/kafka/clusters/local/restore",
            Role::Admin,
            &restore_req,
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let restored: Value = resp.json().await.unwrap();
    for field in [
        "backup_id",
        "target_topic",
        "cluster_id",
        "total_messages",
        "total_size_bytes",
        "duration_ms",
        "messages_restored",
        "partitions_created",
        "status",
        "checksum_validated",
    ] {
        assert!(restored.get(field).is_some(), "missing {field}: {restored}");
    }
    assert_eq!(restored["messages_restored"], 30);
    assert_eq!(restored["status"], "completed");
    assert_eq!(restored["checksum_validated"], true);
    let back = app.broker().consume_all(&target).await;
    assert_eq!(back.len(), 30);
    let body = error_body(
        app.post(
            "/api/kafka/clusters/local/restore",
            Role::Admin,
            &restore_req,
        )
        .await,
        409,
    )
    .await;
    assert_eq!(body["error"], "Conflict");

    // Delete, then it is gone.
    let resp = app
        .client
        .delete(app.url(&format!("/api/kafka/backups/{backup_id}")))
        .bearer_auth(app.token(Role::Admin))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    error_body(
        app.get(&format!("/api/kafka/backups/{backup_id}"), Role::Viewer)
            .await,
        404,
    )
    .await;
}

#[tokio::test]
async fn async_backup_answers_202_with_a_location_to_poll() {
    let app = spawn_app().await;
    let topic = app.topic_with(2, 10).await;
    let resp = app
        .post(
            "/api/kafka/clusters/local/backup?wait=false",
            Role::Operator,
            &json!({"topic": topic}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let accepted: Value = resp.json().await.unwrap();
    assert_eq!(location, accepted["location"].as_str().unwrap());
    let job_id = accepted["job_id"].as_str().unwrap().to_owned();
    assert!(location.ends_with(&job_id));
    let job = app.wait_for_job(&job_id).await;
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["kind"], "backup");
    assert_eq!(job["result"]["total_messages"], 10);
    assert_eq!(job["progress"]["messages"], 10);

    // Prefer: respond-async does the same.
    let resp = app
        .client
        .post(app.url("/api/kafka/clusters/local/backup"))
        .bearer_auth(app.token(Role::Operator))
        .header("Prefer", "respond-async")
        .json(&json!({"topic": topic}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let accepted: Value = resp.json().await.unwrap();
    let job = app.wait_for_job(accepted["job_id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "completed", "{job}");
}

#[tokio::test]
async fn migrate_and_drain_happy_paths() {
    let app = spawn_app().await;
    let source = app.topic_with(2, 12).await;
    let target = app.unique_topic("migrated");
    let resp = app
        .post(
            "/api/kafka/migrate",
            Role::Admin,
            &json!({
                "source_cluster": "local", "source_topic": source,
                "target_cluster": "local", "target_topic": target,
                "transformation": {"header_additions": [["migrated-from", "local"]]}
            }),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let migrated: Value = resp.json().await.unwrap();
    assert_eq!(migrated["status"], "completed", "{migrated}");
    assert_eq!(migrated["messages_migrated"], 12);
    assert!(migrated["migration_id"]
        .as_str()
        .unwrap()
        .starts_with("migration-"));

    // A bad CEL filter is a 400 naming the nested field, before anything moves.
    let body = error_body(
        app.post(
            "/api/kafka/migrate",
            Role::Admin,
            &json!({
                "source_cluster": "local", "source_topic": source,
                "target_cluster": "local", "target_topic": app.unique_topic("never"),
                "transformation": {"filter_expression": "value.contains("}
            }),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(body["details"]["field"], "transformation.filter_expression");

    // A group that has consumed everything: commit the high watermarks, then drain.
    let group = format!("api-test-{}", uuid::Uuid::new_v4().simple());
    commit_to_end(&app, &group, &source, 2).await;
    let resp = app
        .post(
            "/api/kafka/clusters/local/drain",
            Role::Operator,
            &json!({"group_id": group, "topics": [source], "max_lag": 0,
                    "timeout_seconds": 10, "check_interval_ms": 100}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let drained: Value = resp.json().await.unwrap();
    assert_eq!(drained["status"], "drained", "{drained}");
    assert_eq!(drained["total_lag"], 0);
    // An unknown group is a 404 naming group_id.
    let body = error_body(
        app.post(
            "/api/kafka/clusters/local/drain",
            Role::Operator,
            &json!({"group_id": "nobody-ever", "topics": [source], "timeout_seconds": 1, "check_interval_ms": 100}),
        )
        .await,
        404,
    )
    .await;
    assert_eq!(body["details"]["field"], "group_id");
    assert_eq!(drained["partitions_checked"], 2);
}

/// Commits `group`'s offsets at the end of every partition, as a consumer that read it all.
async fn commit_to_end(app: &crate::helpers::TestApp, group: &str, topic: &str, partitions: i32) {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        let (_, high) = app.broker().watermarks(topic, p).await;
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Offset(high))
            .unwrap();
    }
    let mut config = app.broker().client_config();
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false");
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create().unwrap();
        consumer.commit(&tpl, CommitMode::Sync).unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn max_backup_size_stops_a_backup_and_leaves_no_archive() {
    // A 1.5 MB cap; the topic holds ~4 MB of incompressible values. (The archive grows a
    // block, 1 MiB, at a time, so the cap is enforced at block granularity.)
    let app = spawn_app_with(|s| s.backup.max_backup_size_gb = 0.0015).await;
    let topic = app.unique_topic("big");
    app.broker().create_topic(&topic, 1).await;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut noise = move || {
        // xorshift64: incompressible bytes without a rand dependency
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    };
    let records: Vec<kvault_testkit::TestRecord> = (0..400)
        .map(|i| kvault_testkit::TestRecord {
            partition: Some(0),
            key: Some(format!("k{i}").into_bytes()),
            value: Some((0..10_000).map(|_| noise()).collect()),
            headers: vec![],
            timestamp: None,
        })
        .collect();
    app.broker().produce(&topic, &records).await;
    let resp = app
        .post(
            "/api/kafka/clusters/local/backup",
            Role::Operator,
            &json!({"topic": topic, "compression": "none"}),
        )
        .await;
    let body = error_body(resp, 422).await;
    assert_eq!(body["error"], "LimitExceeded");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("max_backup_size_gb"),
        "{body}"
    );
    let list: Value = app.get_json("/api/kafka/backups", Role::Viewer).await;
    assert!(list["backups"].as_array().unwrap().is_empty(), "{list}");
    let leftovers: Vec<_> = std::fs::read_dir(&app.settings.backup.base_path)
        .unwrap()
        .filter_map(Result::ok)
        .collect();
    assert!(
        leftovers.is_empty(),
        "partial archive left behind: {leftovers:?}"
    );
}
