//! Every error, including the ones actix would answer with text, uses the documented body.

use kvault_api::auth::Role;
use serde_json::json;

use crate::helpers::{error_body, spawn_app, spawn_app_with};

#[tokio::test]
async fn malformed_json_gets_the_documented_body() {
    let app = spawn_app().await;
    let resp = app
        .client
        .post(app.url("/api/kafka/clusters/local/backup"))
        .bearer_auth(app.token(Role::Operator))
        .header("Content-Type", "application/json")
        .body("{\"topic\": \"events\",")
        .send()
        .await
        .unwrap();
    let body = error_body(resp, 400).await;
    assert_eq!(body["error"], "ValidationError");
    assert_eq!(body["details"]["field"], "body");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON"),
        "{body}"
    );
}

#[tokio::test]
async fn unknown_fields_and_bad_values_name_the_field() {
    let app = spawn_app().await;
    let path = "/api/kafka/clusters/local/backup";
    let cases = [
        (json!({"topic": "t", "compresion": "gzip"}), "compresion"),
        (json!({"compression": "gzip"}), "topic"),
        (
            json!({"topic": "t", "compression": "brotli"}),
            "compression",
        ),
        (
            json!({"topic": "t", "start_offset": "soon"}),
            "start_offset",
        ),
        (json!({"topic": "t", "partitions": []}), "partitions"),
        (
            json!({"topic": "t", "rate_limit_per_second": 0}),
            "rate_limit_per_second",
        ),
        (json!({"topic": "bad topic"}), "topic"),
    ];
    for (req, field) in cases {
        let body = error_body(app.post(path, Role::Operator, &req).await, 400).await;
        assert_eq!(body["details"]["field"], field, "{req} -> {body}");
    }
    let body = error_body(
        app.post(
            path,
            Role::Operator,
            &json!({"topic": "t", "compression": "brotli"}),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(body["details"]["value"], "brotli");
    let restore = json!({
        "backup_id": "b1", "target_topic": "t", "restore_consumer_groups": true,
        "consumer_groups_mode": "merge"
    });
    let body = error_body(
        app.post("/api/kafka/clusters/local/restore", Role::Admin, &restore)
            .await,
        400,
    )
    .await;
    assert_eq!(body["details"]["field"], "consumer_groups_mode", "{body}");
}

#[tokio::test]
async fn wrong_content_type_and_oversized_bodies_are_refused_in_shape() {
    let app = spawn_app_with(|s| s.server.max_body_bytes = 1024).await;
    let resp = app
        .client
        .post(app.url("/api/kafka/clusters/local/backup"))
        .bearer_auth(app.token(Role::Operator))
        .header("Content-Type", "text/plain")
        .body("topic=events")
        .send()
        .await
        .unwrap();
    let body = error_body(resp, 415).await;
    assert_eq!(body["details"]["field"], "Content-Type");

    let big = json!({"topic": "x".repeat(4096)});
    let resp = app
        .post("/api/kafka/clusters/local/backup", Role::Operator, &big)
        .await;
    let body = error_body(resp, 413).await;
    assert_eq!(body["error"], "PayloadTooLarge");
}

#[tokio::test]
async fn unknown_routes_methods_and_query_errors_get_json() {
    let app = spawn_app().await;
    let body = error_body(app.get("/api/kafka/nothing-here", Role::Viewer).await, 404).await;
    assert_eq!(body["details"]["field"], "path");
    let body = error_body(app.client.get(app.url("/nope")).send().await.unwrap(), 404).await;
    assert_eq!(body["error"], "NotFound");
    // GET on a POST-only route
    let body = error_body(app.get("/api/kafka/migrate", Role::Viewer).await, 405).await;
    assert_eq!(body["error"], "MethodNotAllowed");
    let body = error_body(
        app.get("/api/kafka/jobs?limit=abc", Role::Viewer).await,
        400,
    )
    .await;
    assert_eq!(body["details"]["field"], "query");
    let body = error_body(
        app.get("/api/kafka/jobs?kind=teleport", Role::Viewer).await,
        400,
    )
    .await;
    assert_eq!(body["details"]["field"], "kind");
    let body = error_body(
        app.get("/api/kafka/jobs/not-a-uuid", Role::Viewer).await,
        400,
    )
    .await;
    assert_eq!(body["details"]["field"], "job_id");
    let body = error_body(
        app.get(
            &format!("/api/kafka/jobs/{}", uuid::Uuid::new_v4()),
            Role::Viewer,
        )
        .await,
        404,
    )
    .await;
    assert_eq!(body["details"]["field"], "job_id");
}

#[tokio::test]
async fn unknown_cluster_topic_and_backup_are_404_with_the_field() {
    let app = spawn_app().await;
    let body = error_body(
        app.post(
            "/api/kafka/clusters/nowhere/backup",
            Role::Operator,
            &json!({"topic": "t"}),
        )
        .await,
        404,
    )
    .await;
    assert_eq!(body["details"]["field"], "cluster_id");
    assert_eq!(body["details"]["value"], "nowhere");

    let missing = app.unique_topic("missing");
    let body = error_body(
        app.post(
            "/api/kafka/clusters/local/backup",
            Role::Operator,
            &json!({"topic": missing}),
        )
        .await,
        404,
    )
    .await;
    assert_eq!(body["details"]["field"], "topic");

    let body = error_body(
        app.post(
            "/api/kafka/clusters/local/restore",
            Role::Admin,
            &json!({"backup_id": "backup-does-not-exist", "target_topic": "t"}),
        )
        .await,
        404,
    )
    .await;
    assert_eq!(body["details"]["field"], "backup_id");
    error_body(
        app.get("/api/kafka/backups/backup-does-not-exist", Role::Viewer)
            .await,
        404,
    )
    .await;
    let body = error_body(
        app.post(
            "/api/kafka/migrate",
            Role::Admin,
            &json!({"source_cluster": "local", "source_topic": "a", "target_cluster": "nowhere", "target_topic": "b"}),
        )
        .await,
        404,
    )
    .await;
    assert_eq!(body["details"]["field"], "target_cluster");
}

/// A 120 KB operator chain used to overflow the parser's stack and abort the whole server.
#[tokio::test]
async fn a_huge_cel_expression_is_a_400_and_the_server_lives() {
    let app = spawn_app().await;
    let topic = app.topic_with(1, 3).await;
    let chain = format!("{}1 == 2", "1 + ".repeat(30_000));
    let nest = format!("{}true{}", "(".repeat(20_000), ")".repeat(20_000));
    for expression in [chain, nest] {
        let body = error_body(
            app.post(
                "/api/kafka/migrate",
                Role::Admin,
                &json!({"source_cluster": "local", "source_topic": topic,
                        "target_cluster": "local", "target_topic": format!("{topic}-copy"),
                        "transformation": {"filter_expression": expression}}),
            )
            .await,
            400,
        )
        .await;
        assert_eq!(body["details"]["field"], "transformation.filter_expression");
    }
    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

/// A cluster that cannot be reached is a 503 the caller can retry, not an opaque 500.
#[tokio::test]
async fn an_unreachable_cluster_is_a_503_kafka_unavailable() {
    let app = spawn_app().await;
    let topic = app.topic_with(1, 3).await;
    app.fake().set_unavailable(true);
    let resp = app
        .post(
            "/api/kafka/clusters/local/backup",
            Role::Operator,
            &json!({ "topic": topic }),
        )
        .await;
    let body = error_body(resp, 503).await;
    assert_eq!(body["error"], "KafkaUnavailable", "{body}");
    app.fake().set_unavailable(false);
    app.completed_backup(&topic).await;
}
