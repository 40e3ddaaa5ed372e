//! Unit tests of masking: splices leave the rest of a value byte-identical, `drop` keeps
//! valid JSON, hashing is keyed and stable, headers and keys.

use super::*;
use crate::restore_transform::{JsonPath, OnNonJson};

fn rule(target: RuleTarget, action: MaskAction) -> RulePlan {
    RulePlan {
        target,
        action,
        encoding: HashEncoding::Hex,
        on_non_json: OnNonJson::Keep,
    }
}

fn path(p: &str, action: MaskAction) -> RulePlan {
    rule(RuleTarget::Path(JsonPath::parse(p).unwrap()), action)
}

fn key() -> HashKey {
    HashKey::new(b"test-key".to_vec())
}

fn masked(rules: &[RulePlan], value: &str) -> (String, Vec<u64>) {
    let m = Masker::new(rules, Some(&key())).unwrap();
    let mut counts = vec![0; rules.len()];
    match m.mask_value(value.as_bytes(), &mut counts) {
        ValueMask::Masked(v) => (String::from_utf8(v).unwrap(), counts),
        ValueMask::Unchanged => (value.to_owned(), counts),
        other => panic!("{other:?}"),
    }
}

#[test]
fn only_the_named_fields_change_and_the_rest_stays_byte_identical() {
    let value = r#"{ "id" : 7,"email":"a@b.example",  "card": {"number": "4111 1111", "exp":"01/30"},
 "n": 1.50e0, "items":[{"name":"x","q":1},{"q":2},{"name":"\u00e9"}] }"#;
    let rules = [
        path("$.email", MaskAction::Hash),
        path("$.card.number", MaskAction::Redact),
        path("$.items[*].name", MaskAction::Null),
    ];
    let (out, counts) = masked(&rules, value);
    let email = Masker::new(&rules, Some(&key()))
        .unwrap()
        .hash(HashEncoding::Hex, b"a@b.example");
    let expected = value
        .replace("\"a@b.example\"", &format!("\"{email}\""))
        .replace("\"4111 1111\"", "\"[redacted]\"")
        .replace("\"x\"", "null")
        .replace("\"\\u00e9\"", "null");
    assert_eq!(out, expected);
    assert_eq!(counts, vec![1, 1, 2]);
}

#[test]
fn dropped_members_leave_valid_json_wherever_they_are() {
    let cases = [
        (r#"{"a":1,"b":2,"c":3}"#, r#"{"a":1,"c":3}"#),
        (r#"{"b":2,"c":3}"#, r#"{"c":3}"#),
        (r#"{"a":1, "b":2}"#, r#"{"a":1}"#),
        (r#"{ "b" : 2 }"#, r#"{  }"#),
        (r#"{"b":1,"b":2,"a":0}"#, r#"{"a":0}"#),
        (
            r#"{"a":{"b":[1,{"c":2}]},"b":{"x":1}}"#,
            r#"{"a":{"b":[1,{"c":2}]}}"#,
        ),
    ];
    for (value, expected) in cases {
        let (out, _) = masked(&[path("$.b", MaskAction::Drop)], value);
        assert_eq!(out, expected, "{value}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap();
    }
}

#[test]
fn hashing_is_stable_keyed_and_encodes_as_asked() {
    let m = Masker::new(&[path("$.e", MaskAction::Hash)], Some(&key())).unwrap();
    let other = Masker::new(
        &[path("$.e", MaskAction::Hash)],
        Some(&HashKey::new(b"other".to_vec())),
    )
    .unwrap();
    assert_eq!(
        m.hash(HashEncoding::Hex, b"x"),
        m.hash(HashEncoding::Hex, b"x")
    );
    assert_ne!(
        m.hash(HashEncoding::Hex, b"x"),
        other.hash(HashEncoding::Hex, b"x")
    );
    assert_eq!(m.hash(HashEncoding::Hex, b"x").len(), 64);
    assert_eq!(m.hash(HashEncoding::Base64, b"x").len(), 44);
    // An escaped JSON string hashes as its text, like the same text unescaped.
    let (a, _) = masked(&[path("$.e", MaskAction::Hash)], r#"{"e":"\u0041"}"#);
    let (b, _) = masked(&[path("$.e", MaskAction::Hash)], r#"{"e":"A"}"#);
    assert_eq!(a, b);
    assert!(Masker::new(&[path("$.e", MaskAction::Hash)], None).is_err());
}

#[test]
fn values_that_are_not_json_or_miss_the_path_are_told_apart() {
    let mut refusing = path("$.e", MaskAction::Redact);
    refusing.on_non_json = OnNonJson::Refuse;
    let m = Masker::new(&[path("$.x", MaskAction::Null), refusing], None).unwrap();
    let mut counts = vec![0, 0];
    assert_eq!(
        m.mask_value(b"not json", &mut counts),
        ValueMask::NotJson { refuse: Some(1) }
    );
    assert_eq!(
        m.mask_value(b"{\"e\":1", &mut counts),
        ValueMask::NotJson { refuse: Some(1) }
    );
    assert_eq!(
        m.mask_value(&[0xff, 0xfe], &mut counts),
        ValueMask::NotJson { refuse: Some(1) }
    );
    assert_eq!(m.mask_value(b"[1,2]", &mut counts), ValueMask::Unchanged);
    assert_eq!(
        m.mask_value(b"{\"y\":{\"e\":1}}", &mut counts),
        ValueMask::Unchanged
    );
    assert_eq!(counts, vec![0, 0]);
}

#[test]
fn headers_and_keys_are_masked_as_bytes() {
    let rules = [
        rule(RuleTarget::Header("user".into()), MaskAction::Redact),
        rule(RuleTarget::Header("trace".into()), MaskAction::Drop),
        rule(RuleTarget::Key, MaskAction::Hash),
    ];
    let m = Masker::new(&rules, Some(&key())).unwrap();
    let mut counts = vec![0; 3];
    let headers: Vec<(&str, Option<&[u8]>)> = vec![
        ("user", Some(b"ann")),
        ("trace", Some(b"1")),
        ("keep", None),
        ("user", None),
    ];
    let out = m
        .mask_headers(headers.iter().copied(), &mut counts)
        .unwrap();
    let out: Vec<(&str, Option<&[u8]>)> = out.iter().map(|(n, v)| (*n, v.as_deref())).collect();
    assert_eq!(
        out,
        vec![
            ("user", Some(&b"[redacted]"[..])),
            ("keep", None),
            ("user", None)
        ]
    );
    let untouched: Vec<(&str, Option<&[u8]>)> = vec![("other", Some(b"v"))];
    assert!(m
        .mask_headers(untouched.iter().copied(), &mut counts)
        .is_none());
    let k = m.mask_key(Some(b"user-1"), &mut counts).unwrap().unwrap();
    assert_eq!(k, m.hash(HashEncoding::Hex, b"user-1").into_bytes());
    assert_eq!(m.mask_key(None, &mut counts), None);
    assert_eq!(counts, vec![1, 1, 1]);
}
