//! The admin routes over an encrypted backup's key record (re-wrap, crypto-shred), on the
//! in-memory engine with an unencrypted store: who may call them, and what a backup that is
//! not encrypted answers. Encrypted archives themselves are tested in kvault-storage
//! (`tests/encryption.rs`) and on the broker in kvault-kafka (`tests/encrypted.rs`).

use kvault_api::auth::Role;
use serde_json::{json, Value};

use crate::helpers::{error_body, spawn_app};

#[tokio::test]
async fn key_routes_are_admin_only_and_refuse_an_unencrypted_backup() {
    let app = spawn_app().await;
    let topic = app.topic_with(1, 5).await;
    let backup = app.completed_backup(&topic).await;
    let id = backup["backup_id"].as_str().unwrap().to_owned();
    let rewrap = format!("/api/kafka/backups/{id}/keys/rewrap");
    let shred = format!("/api/kafka/backups/{id}/shred");
    let to = json!({"to_key_id": "k2"});

    // Operators may back up and restore, not touch keys.
    for path in [&rewrap, &shred] {
        let body = error_body(app.post(path, Role::Operator, &to).await, 403).await;
        assert_eq!(body["error"], "Forbidden");
    }
    // A backup that is not encrypted has no key to re-wrap or destroy: 400 on its id.
    let body = error_body(app.post(&rewrap, Role::Admin, &to).await, 400).await;
    assert_eq!(
        (&body["error"], &body["details"]["field"]),
        (&json!("ValidationError"), &json!("backup_id"))
    );
    let resp = app
        .client
        .post(app.url(&shred))
        .bearer_auth(app.token(Role::Admin))
        .send()
        .await
        .unwrap();
    let body = error_body(resp, 400).await;
    assert_eq!(body["details"]["field"], "backup_id");
    // The body is checked: an unknown field is refused.
    let body = error_body(
        app.post(&rewrap, Role::Admin, &json!({"to": "k2"})).await,
        400,
    )
    .await;
    assert_eq!(body["error"], "ValidationError");
    // An unknown backup is a 404.
    let body = error_body(
        app.post("/api/kafka/backups/nope/shred", Role::Admin, &json!({}))
            .await,
        404,
    )
    .await;
    assert_eq!(body["details"]["field"], "backup_id");
    // An unencrypted backup's summary carries no `encryption`.
    let summary: Value = app
        .get_json(&format!("/api/kafka/backups/{id}"), Role::Viewer)
        .await;
    assert!(summary.get("encryption").is_none(), "{summary}");
}
