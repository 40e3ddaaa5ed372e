//! Backups in a bucket with S3 Object Lock: each one shows when its lock expires, `DELETE`
//! answers 423 `ArchiveLocked` and the retention sweep passes it by, and the archive stays whole
//! and restorable.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kvault_api::auth::Role;
use kvault_api::retention::sweep_retention;
use serde_json::{json, Value};

use crate::helpers::{error_body, spawn_app_on_broker_with_locked_s3};

#[tokio::test]
async fn a_locked_backup_outlives_delete_and_retention_and_says_until_when() {
    let (app, bucket, store) =
        spawn_app_on_broker_with_locked_s3(Duration::from_secs(30 * 86_400)).await;
    let topic = app.topic_with(2, 40).await;
    let resp = app
        .post(
            "/api/kafka/clusters/local/backup",
            Role::Operator,
            &json!({"topic": topic}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let backup: Value = resp.json().await.unwrap();
    let backup_id = backup["backup_id"].as_str().unwrap().to_owned();

    let shown: Value = app
        .get(&format!("/api/kafka/backups/{backup_id}"), Role::Viewer)
        .await
        .json()
        .await
        .unwrap();
    let until: DateTime<Utc> = shown["immutable_until"]
        .as_str()
        .unwrap_or_else(|| panic!("no immutable_until: {shown}"))
        .parse()
        .unwrap();
    assert!(until > Utc::now() + chrono::Duration::days(29), "{until}");
    let listed: Value = app
        .get("/api/kafka/backups", Role::Viewer)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["backups"][0]["immutable_until"],
        shown["immutable_until"]
    );
    let objects = bucket.objects().await;

    let resp = app
        .client
        .delete(app.url(&format!("/api/kafka/backups/{backup_id}")))
        .bearer_auth(app.token(Role::Admin))
        .send()
        .await
        .unwrap();
    let body = error_body(resp, 423).await;
    assert_eq!(body["error"], "ArchiveLocked", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(&backup_id) && message.contains("locked"),
        "{message}"
    );

    // Two days later a one-day retention has expired it, but its 30-day lock has not.
    let later = Utc::now() + chrono::Duration::days(2);
    let swept = sweep_retention(store.as_ref(), 1, later, |_| false)
        .await
        .unwrap();
    assert!(
        swept.deleted.is_empty() && swept.failed.is_empty(),
        "{swept:?}"
    );
    assert_eq!(swept.locked, std::slice::from_ref(&backup_id));
    assert_eq!(bucket.objects().await, objects);
    let target = app.unique_topic("from-locked");
    let resp = app
        .post(
            "/api/kafka/clusters/local/restore",
            Role::Admin,
            &json!({"backup_id": backup_id, "target_topic": target}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(app.broker().consume_all(&target).await.len(), 40);
}
