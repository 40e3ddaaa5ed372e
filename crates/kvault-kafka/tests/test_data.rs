//! Restores for test environments on the test broker: `filter_expression`, `sample`, `mask`
//! and `exclude_keys`. Every test reads the target back with an independent consumer and
//! compares it with what it produced, computing the expected masks itself (HMAC-SHA-256 with
//! the `hmac` crate, the JSON text by hand), so the restore is not checked against its own
//! code.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use kvault_domain::job::OperationControl;
use kvault_domain::operations::RestoreOperation;
use kvault_domain::ports::ArchiveStore;
use kvault_domain::restore::RestoreRequest;
use kvault_domain::restore_transform::{HashKey, TransformCounts};
use kvault_domain::{ClusterId, CompressionType, DomainError, PartitionMapping, RestoreResult};
use kvault_kafka::{ClusterConfig, KafkaEngine};
use kvault_testkit::{ConsumedRecord, TestBroker, TestRecord};

mod common;

use common::{backup, cluster, request, store};

const KEY: &[u8] = b"test-hmac-key-0123456789";

fn engine(broker: &TestBroker, store: &Arc<dyn ArchiveStore>, key: &[u8]) -> KafkaEngine {
    let config = ClusterConfig::new(broker.bootstrap());
    let id = ClusterId::parse("test").unwrap();
    KafkaEngine::new([(id, config)], store.clone())
        .unwrap()
        .with_hash_key(Some(HashKey::new(key.to_vec())))
}

/// A restore request from JSON (the request's own field names), fast and into a new topic.
fn req(backup_id: &str, target: &str, extra: serde_json::Value) -> RestoreRequest {
    let mut json = serde_json::json!({
        "backup_id": backup_id, "target_topic": target, "rate_limit_per_second": 10_000_000
    });
    json.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(json).unwrap()
}

async fn run(engine: &KafkaEngine, r: RestoreRequest) -> Result<RestoreResult, DomainError> {
    let id = ClusterId::parse("test").unwrap();
    engine
        .restore(&id, r.validate()?, OperationControl::new())
        .await
}

/// What a record is, wherever it landed.
type Content = (
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(String, Option<Vec<u8>>)>,
);

fn content_of_test(r: &TestRecord) -> Content {
    (r.key.clone(), r.value.clone(), r.headers.clone())
}

fn content(r: &ConsumedRecord) -> Content {
    (r.key.clone(), r.value.clone(), r.headers.clone())
}

fn sorted(mut v: Vec<Content>) -> Vec<Content> {
    v.sort();
    v
}

fn counts(result: &RestoreResult) -> &TransformCounts {
    result
        .transform
        .as_ref()
        .expect("the result reports the transform's counts")
}

/// Orders over 3 partitions: tenants 0..5, regions eu/us in a header, a few values not JSON.
fn orders(n: usize) -> Vec<TestRecord> {
    (0..n)
        .map(|i| {
            let value = if i % 17 == 0 {
                format!("not json {i}")
            } else {
                format!(
                    r#"{{"tenant":{},"email":"u{i}@example.com","n":{i}}}"#,
                    i % 5
                )
            };
            TestRecord {
                partition: Some((i % 3) as i32),
                headers: vec![(
                    "region".into(),
                    Some(if i % 2 == 0 {
                        b"eu".to_vec()
                    } else {
                        b"us".to_vec()
                    }),
                )],
                ..TestRecord::kv(format!("order-{i}"), value)
            }
        })
        .collect()
}

#[tokio::test]
async fn a_filter_by_header_or_json_field_restores_exactly_the_matching_records() {
    let broker = TestBroker::get().await;
    let (_dir, store) = store();
    let engine = engine(broker, &store, KEY);
    let source = broker.unique_topic("td-filter");
    broker.create_topic(&source, 3).await;
    let records = orders(300);
    broker.produce(&source, &records).await;
    let b = backup(
        &cluster(broker),
        &store,
        request(&source, CompressionType::Zstd),
    )
    .await
    .unwrap();

    type Matches = fn(&TestRecord) -> bool;
    let cases: [(&str, Matches); 2] = [
        ("headers['region'] == 'eu'", |r| {
            r.headers[0].1.as_deref() == Some(&b"eu"[..])
        }),
        ("is_json && json.tenant == 3", |r| {
            let v: Option<serde_json::Value> =
                serde_json::from_slice(r.value.as_ref().unwrap()).ok();
            v.is_some_and(|v| v["tenant"] == 3)
        }),
    ];
    for (expr, matches) in cases {
        let target = broker.unique_topic("td-filtered");
        let r = req(
            b.backup_id.as_str(),
            &target,
            serde_json::json!({"filter_expression": expr}),
        );
        let dry = engine
            .restore_dry_run(
                &ClusterId::parse("test").unwrap(),
                r.validate().unwrap(),
                OperationControl::new(),
            )
            .await
            .unwrap();
        let done = run(&engine, r).await.unwrap();
        let expected: Vec<Content> = records
            .iter()
            .filter(|r| matches(r))
            .map(content_of_test)
            .collect();
        let got: Vec<Content> = broker
            .consume_all(&target)
            .await
            .iter()
            .map(content)
            .collect();
        assert_eq!(sorted(got), sorted(expected.clone()), "{expr}");
        let c = counts(&done);
        assert_eq!(
            (c.records_read, c.records_restored, c.filtered_out),
            (300, expected.len() as u64, 300 - expected.len() as u64),
            "{expr}"
        );
        assert_eq!(done.messages_restored, expected.len() as u64);
        assert_eq!(
            dry.transform.as_ref(),
            Some(c),
            "the dry run reports the same counts"
        );
        assert_eq!(dry.total_messages, expected.len() as u64);
    }
    let bad = req(
        b.backup_id.as_str(),
        "never",
        serde_json::json!({"filter_expression": "nosuch == 1"}),
    );
    match run(&engine, bad).await {
        Err(DomainError::Validation(v)) => assert_eq!(v.field, "filter_expression"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_sample_by_key_is_the_same_every_time_and_keeps_whole_keys() {
    let broker = TestBroker::get().await;
    let (_dir, store) = store();
    let engine = engine(broker, &store, KEY);
    let source = broker.unique_topic("td-sample");
    broker.create_topic(&source, 3).await;
    let records: Vec<TestRecord> = (0..600)
        .map(|i| TestRecord {
            partition: Some(i % 3),
            ..TestRecord::kv(format!("user-{}", i % 60), format!("event-{i}"))
        })
        .collect();
    broker.produce(&source, &records).await;
    let b = backup(
        &cluster(broker),
        &store,
        request(&source, CompressionType::Lz4),
    )
    .await
    .unwrap();
    let mut outputs = Vec::new();
    for _ in 0..2 {
        let target = broker.unique_topic("td-sampled");
        let sample = serde_json::json!({"sample": {"ratio": 0.3, "by": "key"}});
        let done = run(&engine, req(b.backup_id.as_str(), &target, sample))
            .await
            .unwrap();
        let got: Vec<Content> = broker
            .consume_all(&target)
            .await
            .iter()
            .map(content)
            .collect();
        assert_eq!(counts(&done).sampled_out, 600 - got.len() as u64);
        outputs.push(sorted(got));
    }
    assert_eq!(
        outputs[0], outputs[1],
        "the same request restores the same sample"
    );
    let keys: BTreeSet<&Option<Vec<u8>>> = outputs[0].iter().map(|c| &c.0).collect();
    assert!(
        (5..40).contains(&keys.len()),
        "about 30 % of 60 keys: {}",
        keys.len()
    );
    let expected: Vec<Content> = records
        .iter()
        .filter(|r| keys.contains(&r.key))
        .map(content_of_test)
        .collect();
    assert_eq!(
        outputs[0],
        sorted(expected),
        "every record of a sampled key, and no other"
    );
}

fn hmac_hex(key: &[u8], input: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(input);
    hex::encode(mac.finalize().into_bytes())
}

/// A value whose masked fields are `email`, `card.number` and `items[*].name`, spelled with
/// irregular whitespace, so any re-serialization would show.
fn order_value(i: usize, email: &str, card: &str, names: [&str; 2]) -> String {
    format!(
        r#"{{ "id" :{i},  "email":{email},"card" : {{"number": {card} ,"exp":"12/30"}},
"items":[ {{"name":{},"q":1.50}}, {{"q":2}}, {{"name":{}}} ], "note":"caf\u00e9 {i}" }}"#,
        names[0], names[1]
    )
}

#[tokio::test]
async fn masking_rewrites_exactly_the_named_fields_and_hashes_stably_under_the_key() {
    let broker = TestBroker::get().await;
    let (_dir, store) = store();
    let source = broker.unique_topic("td-mask");
    broker.create_topic(&source, 2).await;
    let records: Vec<TestRecord> = (0..200)
        .map(|i| {
            let value = order_value(
                i,
                &format!("\"u{}@example.com\"", i % 7),
                "\"4111 1111\"",
                ["\"a\"", "\"b\""],
            );
            TestRecord {
                partition: Some((i % 2) as i32),
                headers: vec![
                    ("user".into(), Some(format!("user-{i}").into_bytes())),
                    ("trace".into(), Some(b"t".to_vec())),
                ],
                ..TestRecord::kv(format!("k{i}"), value)
            }
        })
        .collect();
    broker.produce(&source, &records).await;
    let b = backup(
        &cluster(broker),
        &store,
        request(&source, CompressionType::None),
    )
    .await
    .unwrap();
    let mask = serde_json::json!({"mask": [
        {"path": "$.email", "action": "hash"},
        {"path": "$.card.number", "action": "redact"},
        {"path": "$.items[*].name", "action": "null"},
        {"header": "user", "action": "drop"}
    ]});
    let mut hashed = Vec::new();
    for key in [KEY, KEY, b"another-key-0123456789".as_slice()] {
        let engine = engine(broker, &store, key);
        let target = broker.unique_topic("td-masked");
        let done = run(&engine, req(b.backup_id.as_str(), &target, mask.clone()))
            .await
            .unwrap();
        let got = broker.consume_all(&target).await;
        assert_eq!(got.len(), 200);
        assert_eq!(done.partition_mapping, PartitionMapping::Identity);
        let masked: Vec<u64> = counts(&done)
            .fields_masked
            .iter()
            .map(|r| r.masked)
            .collect();
        assert_eq!(masked, vec![200, 200, 400, 200]);
        for r in &got {
            // Partitions kept 1:1 and nothing left out: offset N is source record N.
            let i = (r.offset * 2 + i64::from(r.partition)) as usize;
            let email = format!("u{}@example.com", i % 7);
            let expected = order_value(
                i,
                &format!("\"{}\"", hmac_hex(key, email.as_bytes())),
                "\"[redacted]\"",
                ["null", "null"],
            );
            assert_eq!(
                String::from_utf8(r.value.clone().unwrap()).unwrap(),
                expected
            );
            assert_eq!(r.headers, vec![("trace".to_owned(), Some(b"t".to_vec()))]);
            assert_eq!(r.key, records[i].key, "the key has no rule");
        }
        hashed.push(sorted(got.iter().map(content).collect()));
    }
    assert_eq!(
        hashed[0], hashed[1],
        "the same key hashes alike across runs"
    );
    assert_ne!(hashed[0], hashed[2], "another key hashes otherwise");
}

#[tokio::test]
async fn excluded_keys_lose_every_record_and_a_masked_key_decides_the_partition() {
    let broker = TestBroker::get().await;
    let (_dir, store) = store();
    let lists = tempfile::tempdir().unwrap();
    let erasures = lists.path().join("erasures.txt");
    std::fs::write(&erasures, "k5\r\n\nbase64:/wAB\n").unwrap();
    let engine =
        engine(broker, &store, KEY).with_key_lists([("erasures".to_owned(), erasures)].into());
    let source = broker.unique_topic("td-exclude");
    broker.create_topic(&source, 3).await;
    let key_of = |i: usize| -> Vec<u8> {
        match i % 10 {
            9 => vec![0xff, 0x00, 0x01],
            k => format!("k{k}").into_bytes(),
        }
    };
    let records: Vec<TestRecord> = (0..300)
        .map(|i| TestRecord {
            partition: Some((i % 3) as i32),
            ..TestRecord::kv(key_of(i), format!("v{i}"))
        })
        .collect();
    broker.produce(&source, &records).await;
    let b = backup(
        &cluster(broker),
        &store,
        request(&source, CompressionType::Snappy),
    )
    .await
    .unwrap();
    let binary = base64::engine::general_purpose::STANDARD.encode([0xff, 0x00, 0x01]);
    let target = broker.unique_topic("td-excluded");
    let extra = serde_json::json!({
        "exclude_keys": ["k3", {"base64": binary}, {"list": "erasures"}],
        "mask": [{"key": true, "action": "hash"}]
    });
    let done = run(&engine, req(b.backup_id.as_str(), &target, extra))
        .await
        .unwrap();
    let got = broker.consume_all(&target).await;
    let c = counts(&done);
    assert_eq!((c.excluded, c.records_restored), (90, 210));
    assert!(c.partitioned_by_masked_key);
    assert_eq!(done.partition_mapping, PartitionMapping::Murmur2);
    let expected: Vec<Content> = records
        .iter()
        .filter(|r| {
            !matches!(
                r.key.as_deref(),
                Some(b"k3") | Some(b"k5") | Some([0xff, 0x00, 0x01])
            )
        })
        .map(|r| {
            let hashed = hmac_hex(KEY, r.key.as_ref().unwrap()).into_bytes();
            (Some(hashed), r.value.clone(), r.headers.clone())
        })
        .collect();
    assert_eq!(sorted(got.iter().map(content).collect()), sorted(expected));
    // Equal masked keys share a partition.
    let mut partition_of: BTreeMap<Option<Vec<u8>>, BTreeSet<i32>> = BTreeMap::new();
    for r in &got {
        partition_of
            .entry(r.key.clone())
            .or_default()
            .insert(r.partition);
    }
    assert!(
        partition_of.values().all(|p| p.len() == 1),
        "{partition_of:?}"
    );
    let unknown = serde_json::json!({"exclude_keys": [{"list": "no-such-list"}]});
    let target = broker.unique_topic("td-unknown-list");
    match run(&engine, req(b.backup_id.as_str(), &target, unknown)).await {
        Err(DomainError::Validation(e)) => assert_eq!(e.field, "exclude_keys"),
        other => panic!("an unknown list is the request's error: {other:?}"),
    }
}

#[tokio::test]
async fn a_value_that_is_not_json_is_kept_or_refused_as_the_rule_says() {
    let broker = TestBroker::get().await;
    let (_dir, store) = store();
    let engine = engine(broker, &store, KEY);
    let source = broker.unique_topic("td-nonjson");
    broker.create_topic(&source, 1).await;
    let records: Vec<TestRecord> = (0..50)
        .map(|i| {
            let value: Vec<u8> = match i % 5 {
                0 => vec![0xff, 0xfe, i as u8],
                1 => format!("{{\"email\":\"e{i}\"").into_bytes(),
                _ => format!("{{\"email\":\"e{i}\"}}").into_bytes(),
            };
            TestRecord::kv(format!("k{i}"), value)
        })
        .collect();
    broker.produce(&source, &records).await;
    let b = backup(
        &cluster(broker),
        &store,
        request(&source, CompressionType::Gzip),
    )
    .await
    .unwrap();

    let target = broker.unique_topic("td-kept");
    let keep = serde_json::json!({"mask": [{"path": "$.email", "action": "redact", "on_non_json": "keep"}]});
    let done = run(&engine, req(b.backup_id.as_str(), &target, keep))
        .await
        .unwrap();
    let got = broker.consume_all(&target).await;
    assert_eq!(got.len(), 50);
    assert_eq!(counts(&done).values_not_json, 20);
    for (r, original) in got.iter().zip(&records) {
        let v = original.value.as_ref().unwrap();
        let expected = if v.ends_with(b"}") {
            br#"{"email":"[redacted]"}"#.to_vec()
        } else {
            v.clone()
        };
        assert_eq!(r.value.as_ref(), Some(&expected));
    }

    let target = broker.unique_topic("td-refused");
    let refuse = serde_json::json!({"mask": [{"path": "$.email", "action": "redact", "on_non_json": "refuse"}]});
    match run(&engine, req(b.backup_id.as_str(), &target, refuse)).await {
        Err(e) => {
            let text = e.to_string();
            assert!(
                text.contains("mask[0].on_non_json") && text.contains("offset 0"),
                "{text}"
            );
        }
        Ok(r) => panic!("a refusing rule restored a value that is not JSON: {r:?}"),
    }
}

#[tokio::test]
async fn preserve_offsets_with_a_transform_is_refused_naming_the_fields() {
    let r = req(
        "b1",
        "t",
        serde_json::json!({
            "preserve_offsets": true, "filter_expression": "true", "mask": [{"key": true, "action": "null"}]
        }),
    );
    let e = r.validate().unwrap_err();
    assert_eq!(e.field, "preserve_offsets");
    assert!(
        e.message.contains("filter_expression, mask"),
        "{}",
        e.message
    );
}
