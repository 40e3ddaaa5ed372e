//! Backup sets over HTTP (in-memory engine): `topics` / `topic_pattern` on the backup route,
//! a set id on the restore route, their errors, and the set's archives in the backup list.

use serde_json::{json, Value};

use kvault_api::auth::Role;

use crate::helpers::{error_body, spawn_app};

#[tokio::test]
async fn a_backup_set_and_its_restore_through_the_documented_routes() {
    let app = spawn_app().await;
    let first = app.topic_with(2, 12).await;
    let second = app.topic_with(1, 5).await;

    let resp = app
        .post(
            "/api/kafka/clusters/local/backup",
            Role::Operator,
            &json!({"topics": [second, first], "backup_id": "nightly"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let set: Value = resp.json().await.unwrap();
    assert_eq!(set["set_id"], "nightly");
    assert_eq!(set["topic_count"], 2);
    assert_eq!(set["total_messages"], 17);
    let members: Vec<&str> = set["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["backup_id"].as_str().unwrap())
        .collect();
    let mut expected = vec![format!("nightly.{first}"), format!("nightly.{second}")];
    expected.sort();
    assert_eq!(members, expected);
    // Each member is a backup of its own, listed and readable.
    let member = app
        .get_json(&format!("/api/kafka/backups/{}", expected[0]), Role::Viewer)
        .await;
    assert_eq!(member["backup_id"], expected[0].as_str());

    // The set restored in one call, renamed with a prefix.
    let resp = app
        .post(
            "/api/kafka/clusters/local/restore",
            Role::Admin,
            &json!({"backup_id": "nightly", "topic_prefix": "copy-"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let restored: Value = resp.json().await.unwrap();
    assert_eq!(restored["set_id"], "nightly");
    assert_eq!(restored["messages_restored"], 17);
    for topic in [&first, &second] {
        let copy = app.fake().records("local", &format!("copy-{topic}"));
        assert_eq!(
            copy.len(),
            app.fake().records("local", topic).len(),
            "{topic}"
        );
    }
    let jobs = app
        .get_json("/api/kafka/jobs?kind=restore", Role::Viewer)
        .await;
    assert!(
        jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["request"]["backup_id"] == "nightly" && j["state"] == "completed"),
        "{jobs}"
    );
}

#[tokio::test]
async fn set_requests_that_cannot_work_are_refused_with_the_field_at_fault() {
    let app = spawn_app().await;
    let topic = app.topic_with(1, 3).await;
    for (body, field, status) in [
        (json!({"topic": topic, "topics": [topic]}), "topic", 400),
        (
            json!({"topic_pattern": "no-such-topic-.*"}),
            "topic_pattern",
            400,
        ),
        (json!({"topic_pattern": "("}), "topic_pattern", 400),
        (json!({"topics": [topic, "missing-topic"]}), "topic", 404),
        (
            json!({"topics": [topic], "partitions": [0]}),
            "partitions",
            400,
        ),
    ] {
        let resp = app
            .post("/api/kafka/clusters/local/backup", Role::Operator, &body)
            .await;
        assert_eq!(resp.status().as_u16(), status, "{body}");
        let err = error_body(resp, status).await;
        assert_eq!(err["details"]["field"], field, "{body}: {err}");
    }
    app.post(
        "/api/kafka/clusters/local/backup",
        Role::Operator,
        &json!({"topics": [topic], "backup_id": "s1"}),
    )
    .await;
    for (body, field, status) in [
        (
            json!({"backup_id": "s1", "target_topic": "x"}),
            "target_topic",
            400,
        ),
        (
            json!({"backup_id": format!("s1.{topic}"), "topic_prefix": "x-"}),
            "topic_prefix",
            400,
        ),
        (json!({"backup_id": "no-such-set"}), "backup_id", 404),
    ] {
        let resp = app
            .post("/api/kafka/clusters/local/restore", Role::Admin, &body)
            .await;
        assert_eq!(resp.status().as_u16(), status, "{body}");
        let err = error_body(resp, status).await;
        assert_eq!(err["details"]["field"], field, "{body}: {err}");
    }
}

/// A set id names one set: a second set of a taken id is refused at admission (409), two
/// racing requests for one id never both succeed, and a set whose id the store shows claimed
/// (another set of it being written) fails without writing anything.
#[tokio::test]
async fn a_set_id_names_one_set_only() {
    let app = spawn_app().await;
    let (a, b) = (app.topic_with(1, 2).await, app.topic_with(1, 3).await);
    let set = |topics: Value, id: &str| json!({"topics": topics, "backup_id": id});
    let resp = app
        .post(
            "/api/kafka/clusters/local/backup",
            Role::Operator,
            &set(json!([a]), "s"),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let first: Value = resp.json().await.unwrap();
    assert!(first["set_uid"].is_string(), "{first}");
    let resp = app
        .post(
            "/api/kafka/clusters/local/backup",
            Role::Operator,
            &set(json!([b]), "s"),
        )
        .await;
    let err = error_body(resp, 409).await;
    assert_eq!(err["details"]["field"], "backup_id", "{err}");
    // The set still restores: only its own archive names it.
    let resp = app
        .post(
            "/api/kafka/clusters/local/restore",
            Role::Admin,
            &json!({"backup_id": "s", "topic_prefix": "copy-"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);

    // Two requests at once for a new id: one set.
    let (body_a, body_b) = (set(json!([a]), "raced"), set(json!([b]), "raced"));
    let (x, y) = tokio::join!(
        app.post("/api/kafka/clusters/local/backup", Role::Operator, &body_a),
        app.post("/api/kafka/clusters/local/backup", Role::Operator, &body_b)
    );
    let mut statuses = [x.status().as_u16(), y.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 409]);
    let members = kvault_domain::restore_set::set_members(app.app_state.archives.as_ref(), "raced")
        .await
        .unwrap();
    assert_eq!(members.len(), 1);

    // The store's claim on the set id refuses a set while another of that id is written.
    let store = app.app_state.archives.clone();
    let claim = store
        .create(kvault_domain::ports::ArchiveSpec {
            backup_id: kvault_domain::BackupId::parse("claimed").unwrap(),
            archive_uid: kvault_domain::ids::new_uid(),
            cluster_id: kvault_domain::ClusterId::parse("local").expect("cluster id"),
            topic: kvault_domain::TopicMetadata {
                name: a.clone(),
                partition_count: 1,
                replication_factor: 1,
                configs: Default::default(),
            },
            compression: kvault_domain::Compression::new(
                kvault_domain::CompressionType::None,
                None,
            )
            .unwrap(),
            include_keys: true,
            include_headers: true,
            created_at: chrono::Utc::now(),
            consumer_groups: Vec::new(),
            backup_set: None,
            chain: None,
        })
        .await
        .unwrap();
    let resp = app
        .post(
            "/api/kafka/clusters/local/backup",
            Role::Operator,
            &set(json!([a]), "claimed"),
        )
        .await;
    let err = error_body(resp, 409).await;
    assert!(
        err["message"].as_str().unwrap().contains("being written"),
        "{err}"
    );
    assert!(store
        .list()
        .await
        .unwrap()
        .iter()
        .all(|m| m.backup_set.as_ref().is_none_or(|s| s.set_id != "claimed")));
    claim.abort().unwrap();
}
