//! Metrics, Prometheus, health, readiness and the OpenAPI document.

use kvault_api::auth::Role;
use serde_json::{json, Value};

use crate::helpers::{error_body, spawn_app};

#[tokio::test]
async fn health_and_ready_need_no_token() {
    let app = spawn_app().await;
    let resp = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "ok");
    let resp = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "ready");
}

#[tokio::test]
async fn metrics_are_computed_from_jobs_and_archives() {
    let app = spawn_app().await;
    let empty: Value = app.get_json("/api/kafka/metrics", Role::Viewer).await;
    for field in [
        "active_backups",
        "completed_backups_today",
        "total_backup_size_gb",
        "average_backup_duration_ms",
        "compression_savings_percent",
        "error_rate_percent",
    ] {
        assert_eq!(empty[field].as_f64(), Some(0.0), "{field}: {empty}");
    }
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
    // A failing backup (the topic vanished between check and run is hard to stage; an unknown
    // partition fails inside the job instead).
    let resp = app
        .post(
            "/api/kafka/clusters/local/backup",
            Role::Operator,
            &json!({"topic": topic, "partitions": [7]}),
        )
        .await;
    assert!(resp.status().is_client_error(), "{}", resp.status());

    let m: Value = app.get_json("/api/kafka/metrics", Role::Viewer).await;
    assert_eq!(m["active_backups"], 0);
    assert_eq!(m["completed_backups_today"], 1);
    assert_eq!(m["total_backups"], 1);
    let gb = m["total_backup_size_gb"].as_f64().unwrap();
    let expected = backup["compressed_size_bytes"].as_f64().unwrap() / 1e9;
    assert!((gb - expected).abs() < 1e-6, "{gb} vs {expected}");
    assert!(m["average_backup_duration_ms"].as_f64().unwrap() >= 0.0);
    let ratio = backup["compression_ratio"].as_f64().unwrap();
    let savings = m["compression_savings_percent"].as_f64().unwrap();
    assert!(
        (savings - (1.0 - ratio) * 100.0).abs() < 0.1,
        "{savings} vs ratio {ratio}"
    );
    assert_eq!(m["error_rate_percent"], 50.0, "{m}");

    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("kvault_completed_backups_today 1"), "{text}");
    assert!(
        text.contains("kvault_jobs{kind=\"backup\",state=\"completed\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("kvault_jobs{kind=\"backup\",state=\"failed\"} 1"),
        "{text}"
    );
}

/// Every route the server mounts, as `(method, OpenAPI path)`.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/api/kafka/clusters/{cluster_id}/backup"),
    ("post", "/api/kafka/clusters/{cluster_id}/restore"),
    ("post", "/api/kafka/clusters/{cluster_id}/drain"),
    ("post", "/api/kafka/migrate"),
    ("get", "/api/kafka/jobs"),
    ("get", "/api/kafka/jobs/{job_id}"),
    ("post", "/api/kafka/jobs/{job_id}/cancel"),
    ("get", "/api/kafka/backups"),
    ("get", "/api/kafka/backups/{backup_id}"),
    ("delete", "/api/kafka/backups/{backup_id}"),
    ("post", "/api/kafka/backups/{backup_id}/verify"),
    ("get", "/api/kafka/backups/{backup_id}/records"),
    ("get", "/api/kafka/metrics"),
    ("get", "/metrics"),
    ("get", "/health"),
    ("get", "/ready"),
    ("get", "/api/openapi.json"),
];

#[tokio::test]
async fn the_openapi_document_names_every_route_and_every_documented_route_exists() {
    let app = spawn_app().await;
    error_body(
        app.client
            .get(app.url("/api/openapi.json"))
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
    let doc: Value = app.get_json("/api/openapi.json", Role::Viewer).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let mut documented = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            documented += 1;
            assert!(
                ROUTES.contains(&(method.as_str(), path.as_str())),
                "undocumented in test list: {method} {path}"
            );
            assert!(op["responses"].is_object());
            // The route really exists: an unknown route would say so in details.field = "path".
            let concrete = path
                .replace("{cluster_id}", "local")
                .replace("{job_id}", &uuid::Uuid::new_v4().to_string())
                .replace("{backup_id}", "backup-none");
            let req = match method.as_str() {
                "get" => app.client.get(app.url(&concrete)),
                "post" => app.client.post(app.url(&concrete)).json(&json!({})),
                "delete" => app.client.delete(app.url(&concrete)),
                other => panic!("unexpected method {other}"),
            };
            let resp = req
                .bearer_auth(app.token(Role::Admin))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            assert!(
                status != 405 && !text.contains("\"field\":\"path\""),
                "{method} {path} is not routed: {status} {text}"
            );
        }
    }
    assert_eq!(documented, ROUTES.len());
    // Request schemas are the real ones: the backup body lists every documented field.
    let schema = &doc["components"]["schemas"]["BackupRequest"]["properties"];
    for field in [
        "topic",
        "compression",
        "max_messages",
        "start_offset",
        "end_offset",
        "partitions",
        "include_headers",
        "include_keys",
        "rate_limit_per_second",
    ] {
        assert!(schema.get(field).is_some(), "BackupRequest lacks {field}");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn the_postman_collection_covers_every_route() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/postman_collection.json"
    ))
    .expect("docs/postman_collection.json exists");
    let collection: Value = serde_json::from_str(&text).unwrap();
    let mut found = Vec::new();
    fn walk(items: &Value, found: &mut Vec<(String, String)>) {
        for item in items.as_array().into_iter().flatten() {
            if let Some(sub) = item.get("item") {
                walk(sub, found);
            } else {
                let req = &item["request"];
                let raw = req["url"]["raw"].as_str().unwrap_or_default().to_owned();
                found.push((
                    req["method"].as_str().unwrap_or_default().to_lowercase(),
                    raw,
                ));
            }
        }
    }
    walk(&collection["item"], &mut found);
    for (method, path) in ROUTES {
        let postman_path = path
            .replace("{cluster_id}", ":cluster_id")
            .replace("{job_id}", ":job_id")
            .replace("{backup_id}", ":backup_id");
        assert!(
            found
                .iter()
                .any(|(m, raw)| m == method && raw.contains(&postman_path)),
            "postman collection lacks {method} {path}"
        );
    }
}
