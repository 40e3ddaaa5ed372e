//! Incremental backups over HTTP (in-memory engine): `incremental_from` on the backup route,
//! its errors, a chain restored from its last link, verify of a link, and the refusal to
//! delete a link in the middle of a chain.

use kvault_api::auth::Role;
use serde_json::{json, Value};

use crate::helpers::{error_body, spawn_app};

#[tokio::test]
async fn an_incremental_chain_through_the_documented_routes() {
    let app = spawn_app().await;
    let topic = app.topic_with(2, 10).await;
    let backup = |body: Value| {
        let app = &app;
        async move {
            let resp = app
                .post("/api/kafka/clusters/local/backup", Role::Operator, &body)
                .await;
            assert_eq!(resp.status().as_u16(), 200, "{body}");
            resp.json::<Value>().await.unwrap()
        }
    };
    let first = backup(json!({"topic": topic, "backup_id": "full"})).await;
    assert_eq!(first["total_messages"], 10);
    let more: Vec<kvault_testkit::fake::KeyValue<'_>> = vec![(None, Some(b"late".as_slice())); 4];
    app.fake().produce("local", &topic, &more);
    let second =
        backup(json!({"topic": topic, "backup_id": "incr-1", "incremental_from": "full"})).await;
    assert_eq!(
        second["total_messages"], 4,
        "only what arrived since the parent"
    );
    let third =
        backup(json!({"topic": topic, "backup_id": "incr-2", "incremental_from": "incr-1"})).await;
    assert_eq!(third["total_messages"], 0);
    let shown = app
        .get_json("/api/kafka/backups/incr-2", Role::Viewer)
        .await;
    assert_eq!(shown["backup_id"], "incr-2");

    // Errors name the field: a missing parent, a parent of another topic, a start with it.
    let other = app.topic_with(1, 1).await;
    for (body, field, status) in [
        (
            json!({"topic": topic, "incremental_from": "nope"}),
            "incremental_from",
            404,
        ),
        (
            json!({"topic": other, "incremental_from": "full"}),
            "incremental_from",
            400,
        ),
        (
            json!({"topic": topic, "incremental_from": "full", "start_offset": 3}),
            "start_offset",
            400,
        ),
        // A set continues a set: a single backup is no parent set.
        (
            json!({"topics": [topic], "incremental_from": "full"}),
            "incremental_from",
            404,
        ),
    ] {
        let resp = app
            .post("/api/kafka/clusters/local/backup", Role::Operator, &body)
            .await;
        let err = error_body(resp, status).await;
        assert_eq!(err["details"]["field"], field, "{body}: {err}");
    }

    // The last link restores the whole chain.
    let resp = app
        .post(
            "/api/kafka/clusters/local/restore",
            Role::Admin,
            &json!({"backup_id": "incr-2", "target_topic": "chain-copy"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let restored: Value = resp.json().await.unwrap();
    assert_eq!(restored["messages_restored"], 14);
    assert_eq!(app.fake().records("local", "chain-copy").len(), 14);

    // Verify checks the chain's continuity too; a middle link cannot be deleted.
    let resp = app
        .post(
            "/api/kafka/backups/incr-2/verify",
            Role::Operator,
            &json!({}),
        )
        .await;
    let report: Value = resp.json().await.unwrap();
    assert_eq!(report["valid"], true, "{report}");
    let resp = app
        .client
        .delete(app.url("/api/kafka/backups/incr-1"))
        .bearer_auth(app.token(Role::Admin))
        .send()
        .await
        .unwrap();
    let err = error_body(resp, 409).await;
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("middle of a chain"),
        "{err}"
    );
}

/// Retention (here a delete) removed a chain's root and another backup was made under the
/// root's id: it is not the chain's root, and the chain is refused, never restored with it.
#[tokio::test]
async fn a_backup_under_a_deleted_roots_id_is_never_restored_with_the_chain() {
    let app = spawn_app().await;
    let topic = app.topic_with(1, 5).await;
    let backup = |body: Value| {
        let app = &app;
        async move {
            let resp = app
                .post("/api/kafka/clusters/local/backup", Role::Operator, &body)
                .await;
            assert_eq!(resp.status().as_u16(), 200, "{body}");
            resp.json::<Value>().await.unwrap()
        }
    };
    backup(json!({"topic": topic, "backup_id": "root"})).await;
    let more: Vec<kvault_testkit::fake::KeyValue<'_>> = vec![(None, Some(b"late".as_slice())); 2];
    app.fake().produce("local", &topic, &more);
    backup(json!({"topic": topic, "backup_id": "link", "incremental_from": "root"})).await;
    let resp = app
        .client
        .delete(app.url("/api/kafka/backups/root"))
        .bearer_auth(app.token(Role::Admin))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // A new "root": another topic, other records.
    let foreign = app.topic_with(1, 5).await;
    backup(json!({"topic": foreign, "backup_id": "root"})).await;

    let resp = app
        .post(
            "/api/kafka/clusters/local/restore",
            Role::Admin,
            &json!({"backup_id": "link", "target_topic": "poisoned-copy"}),
        )
        .await;
    let err = error_body(resp, 409).await;
    let message = err["message"].as_str().unwrap();
    assert!(message.contains("root") && message.contains("uid"), "{err}");
    assert!(
        app.fake().records("local", "poisoned-copy").is_empty(),
        "nothing was restored"
    );
}
