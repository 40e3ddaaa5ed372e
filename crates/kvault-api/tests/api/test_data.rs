//! The restore extensions for test environments over HTTP (`filter_expression`, `sample`,
//! `mask`, `exclude_keys`): bad input is a 400 in the documented error body naming the field,
//! before any job starts. What they do to records is tested on the broker
//! (kvault-kafka's `test_data` tests).

use kvault_api::auth::Role;
use serde_json::{json, Value};

use crate::helpers::{error_body, spawn_app};

#[tokio::test]
async fn bad_transform_fields_are_400s_naming_the_field() {
    let app = spawn_app().await;
    let topic = app.topic_with(1, 5).await;
    let backup_id = app.completed_backup(&topic).await["backup_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = "/api/kafka/clusters/local/restore";
    let cases: [(Value, &str); 8] = [
        (
            json!({"preserve_offsets": true, "sample": {"ratio": 0.1}, "mask": [{"key": true, "action": "null"}]}),
            "preserve_offsets",
        ),
        (
            json!({"filter_expression": "value.contains("}),
            "filter_expression",
        ),
        (
            json!({"filter_expression": "nosuchvar == 1"}),
            "filter_expression",
        ),
        (json!({"sample": {"ratio": 1.5}}), "sample.ratio"),
        (
            json!({"mask": [{"path": "email", "action": "null"}]}),
            "mask[0].path",
        ),
        (
            json!({"mask": [{"path": "$.name", "action": "redact"}, {"path": "$.email", "action": "hash"}]}),
            "mask[1].action",
        ),
        (
            json!({"exclude_keys": ["k", {"list": "no-such-list"}]}),
            "exclude_keys[1].list",
        ),
        (
            json!({"exclude_keys": [{"base64": "not base64!"}]}),
            "exclude_keys[0].base64",
        ),
    ];
    for (extra, field) in cases {
        let mut body = json!({"backup_id": backup_id, "target_topic": app.unique_topic("td")});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let err = error_body(app.post(path, Role::Admin, &body).await, 400).await;
        assert_eq!(err["error"], "ValidationError", "{err}");
        assert_eq!(err["details"]["field"], field, "{err}");
        if field == "preserve_offsets" {
            let message = err["message"].as_str().unwrap();
            assert!(message.contains("sample, mask"), "{message}");
        }
    }
    let jobs: Value = app
        .get_json("/api/kafka/jobs?kind=restore", Role::Viewer)
        .await;
    assert!(
        jobs["jobs"].as_array().unwrap().is_empty(),
        "no job started: {jobs}"
    );
}
