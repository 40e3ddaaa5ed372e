//! Unit tests of the transform fields: validation (each error names its field), the
//! `preserve_offsets` conflict, and what a request plans.

use super::*;
use crate::RestoreRequest;

fn request(json: serde_json::Value) -> RestoreRequest {
    serde_json::from_value(json).unwrap()
}

#[test]
fn the_transform_fields_validate_into_a_plan() {
    let plan = request(serde_json::json!({
        "backup_id": "b", "target_topic": "t",
        "filter_expression": "headers['tenant'] == '42'",
        "sample": {"ratio": 0.5},
        "mask": [{"path": "$.email", "action": "hash", "encoding": "base64"},
                 {"header": "user", "action": "drop"}, {"key": true, "action": "redact"}],
        "exclude_keys": ["k1", {"base64": "AAE="}, {"list": "erasures"}]
    }))
    .validate()
    .unwrap();
    let t = plan.transform.unwrap();
    assert!(t.masks_key() && t.hashes());
    assert_eq!(t.sample.as_ref().unwrap().by, SampleBy::Key);
    assert!(t.exclude_keys.contains(&b"k1"[..]) && t.exclude_keys.contains(&[0u8, 1][..]));
    assert_eq!(t.exclude_lists, ["erasures"]);
    assert_eq!(
        t.fields(),
        ["filter_expression", "sample", "mask", "exclude_keys"]
    );
    assert!(
        !format!("{t:?}").contains("k1"),
        "excluded keys are not shown"
    );
    let none = request(serde_json::json!({"backup_id": "b", "target_topic": "t", "mask": []}));
    assert!(none.validate().unwrap().transform.is_none());
}

#[test]
fn bad_transform_fields_are_named() {
    let field = |json: serde_json::Value| {
        let mut base = serde_json::json!({"backup_id": "b", "target_topic": "t"});
        base.as_object_mut()
            .unwrap()
            .extend(json.as_object().unwrap().clone());
        request(base).validate().unwrap_err().field
    };
    use serde_json::json;
    assert_eq!(field(json!({"sample": {"ratio": 0}})), "sample.ratio");
    assert_eq!(
        field(json!({"mask": [{"path": "email", "action": "redact"}]})),
        "mask[0].path"
    );
    assert_eq!(field(json!({"mask": [{"action": "redact"}]})), "mask[0]");
    assert_eq!(
        field(json!({"mask": [{"key": true, "path": "$.a", "action": "null"}]})),
        "mask[0]"
    );
    assert_eq!(
        field(json!({"mask": [{"key": true, "action": "null", "encoding": "hex"}]})),
        "mask[0].encoding"
    );
    assert_eq!(
        field(json!({"mask": [{"header": "h", "action": "null", "on_non_json": "refuse"}]})),
        "mask[0].on_non_json"
    );
    assert_eq!(
        field(
            json!({"mask": [{"path": "$.a", "action": "null"}, {"path": "$.a", "action": "drop"}]})
        ),
        "mask[1]"
    );
    assert_eq!(
        field(json!({"exclude_keys": [{"base64": "!!"}]})),
        "exclude_keys[0].base64"
    );
    assert_eq!(
        field(json!({"exclude_keys": ["k", {"list": ""}]})),
        "exclude_keys[1].list"
    );
    assert_eq!(
        field(json!({"filter_expression": "(".repeat(100)})),
        "filter_expression"
    );
    let err = request(
        json!({"backup_id": "b", "target_topic": "t", "preserve_offsets": true,
        "sample": {"ratio": 0.1}, "exclude_keys": ["k"]}),
    )
    .validate()
    .unwrap_err();
    assert_eq!(err.field, "preserve_offsets");
    assert!(
        err.message.contains("sample") && err.message.contains("exclude_keys"),
        "{}",
        err.message
    );
}
