//! Response shapes a typed client relies on (Go `int`, Java `long`, strict date parsers):
//! every instant in one RFC 3339 form with whole seconds, integers where the spec shows them.

use kvault_api::auth::Role;
use serde_json::{json, Value};

use crate::helpers::spawn_app;

fn assert_whole_seconds(value: &Value, what: &str) {
    let text = value.as_str().unwrap_or_else(|| panic!("{what}: {value}"));
    assert!(
        chrono::DateTime::parse_from_rfc3339(text).is_ok()
            && text.len() == "2024-01-15T10:30:00Z".len()
            && text.ends_with('Z'),
        "{what} is {text}, not RFC 3339 UTC with whole seconds"
    );
}

#[tokio::test]
async fn instants_are_whole_second_rfc3339_and_the_average_duration_an_integer() {
    let app = spawn_app().await;
    let topic = app.topic_with(2, 20).await;
    let backup = app.completed_backup(&topic).await;
    assert_whole_seconds(&backup["created_at"], "backup created_at");
    assert_whole_seconds(&backup["finished_at"], "backup finished_at");

    let id = backup["backup_id"].as_str().unwrap();
    let shown = app
        .get_json(&format!("/api/kafka/backups/{id}"), Role::Viewer)
        .await;
    assert_whole_seconds(&shown["created_at"], "summary created_at");
    assert_whole_seconds(&shown["finished_at"], "summary finished_at");

    let jobs = app.get_json("/api/kafka/jobs", Role::Viewer).await;
    let job = &jobs["jobs"][0];
    assert_whole_seconds(&job["created_at"], "job created_at");
    assert_whole_seconds(&job["finished_at"], "job finished_at");
    assert_whole_seconds(&job["result"]["created_at"], "stored result created_at");

    app.fake().commit("local", "readers", &topic, 0, 10);
    app.fake().commit("local", "readers", &topic, 1, 10);
    let drained = app
        .post(
            "/api/kafka/clusters/local/drain",
            Role::Operator,
            &json!({"group_id": "readers", "topics": [topic], "timeout_seconds": 5}),
        )
        .await;
    assert_eq!(drained.status().as_u16(), 200);
    let drained: Value = drained.json().await.unwrap();
    assert_eq!(drained["status"], "drained", "{drained}");
    assert_whole_seconds(&drained["last_check_time"], "drain last_check_time");

    let metrics = app.get_json("/api/kafka/metrics", Role::Viewer).await;
    assert!(
        metrics["average_backup_duration_ms"].is_u64(),
        "{}",
        metrics["average_backup_duration_ms"]
    );
}
