//! Migrations against real brokers: a cross-cluster copy with filter, key and header
//! transformations checked record by record; evaluation-error policies; invalid expressions
//! that move nothing; re-partitioning and `max_messages`.

use kvault_domain::job::OperationControl;
use kvault_domain::migrate::{MessageTransformation, MigrateRequest, OnEvaluationError};
use kvault_domain::{ClusterId, DomainError};
use kvault_kafka::partitioner::partition_for_key;
use kvault_kafka::{migrate, ClusterConfig, KafkaCluster};
use kvault_testkit::{ConsumedRecord, TestBroker, TestRecord};

fn cluster(id: &str, broker: &TestBroker) -> KafkaCluster {
    KafkaCluster::connect(
        ClusterId::parse(id).expect("cluster id"),
        &ClusterConfig::new(broker.bootstrap()),
    )
    .expect("cluster")
}

fn request(
    source_topic: &str,
    target_topic: &str,
    t: Option<MessageTransformation>,
) -> MigrateRequest {
    MigrateRequest {
        source_cluster: "src".into(),
        source_topic: source_topic.into(),
        target_cluster: "dst".into(),
        target_topic: target_topic.into(),
        max_messages: None,
        transformation: t,
        rate_limit_per_second: None,
        on_error: OnEvaluationError::Skip,
    }
}

fn rec(
    partition: i32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[(&str, Option<&[u8]>)],
    timestamp: i64,
) -> TestRecord {
    TestRecord {
        partition: Some(partition),
        key: key.map(<[u8]>::to_vec),
        value: value.map(<[u8]>::to_vec),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.map(<[u8]>::to_vec)))
            .collect(),
        timestamp: Some(timestamp),
    }
}

fn header_list(r: &ConsumedRecord) -> Vec<(&str, Option<&[u8]>)> {
    r.headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_deref()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_cluster_migration_filters_rewrites_keys_and_adds_headers() {
    let source_broker = TestBroker::get().await;
    let target_broker = TestBroker::start_new().await;
    let source_topic = source_broker.unique_topic("mig-src");
    let target_topic = target_broker.unique_topic("mig-dst");
    source_broker.create_topic(&source_topic, 2).await;
    let ts = 1_700_000_000_000i64;
    let records = vec![
        // p0: kept (error, tenant a), repeated + null headers survive
        rec(
            0,
            Some(b"a1"),
            Some(br#"{"level":"error","user_id":"u1"}"#),
            &[
                ("tenant", Some(b"a")),
                ("h", Some(b"1")),
                ("h", Some(b"2")),
                ("n", None),
            ],
            ts + 1,
        ),
        // p0: filtered (info)
        rec(
            0,
            Some(b"a2"),
            Some(br#"{"level":"info"}"#),
            &[("tenant", Some(b"a"))],
            ts + 2,
        ),
        // p0: filtered (not JSON, guarded by is_json)
        rec(
            0,
            Some(b"a3"),
            Some(b"plain text"),
            &[("tenant", Some(b"a"))],
            ts + 3,
        ),
        // p0: kept tombstone with a null key
        rec(0, None, None, &[], ts + 4),
        // p1: filtered (tenant b)
        rec(
            1,
            Some(b"b1"),
            Some(br#"{"level":"error"}"#),
            &[("tenant", Some(b"b"))],
            ts + 5,
        ),
        // p1: kept, binary key, empty header value
        rec(
            1,
            Some(&[0xff, 0x00]),
            Some(br#"{"level":"error","user_id":"u2"}"#),
            &[("tenant", Some(b"a")), ("empty", Some(b""))],
            ts + 6,
        ),
        // p1: kept with an empty key (distinct from null) and no headers besides tenant
        rec(
            1,
            Some(b""),
            Some(br#"{"level":"error"}"#),
            &[("tenant", Some(b"a"))],
            ts + 7,
        ),
    ];
    source_broker.produce(&source_topic, &records).await;

    let transformation = MessageTransformation {
        filter_expression: Some(
            "value_is_null || (is_json && json.level == 'error' && headers['tenant'] == 'a')"
                .into(),
        ),
        header_additions: vec![("migrated-from".into(), "src".into())],
        key_transformation: Some("key_is_null ? null : key_bytes + b'-dr'".into()),
    };
    let result = migrate(
        &cluster("src", source_broker),
        &cluster("dst", &target_broker),
        "migration-1".into(),
        request(&source_topic, &target_topic, Some(transformation)),
        OperationControl::new(),
    )
    .await
    .expect("migration succeeds");

    assert_eq!(result.status, "completed");
    assert!(result.transformation_applied);
    assert_eq!(result.messages_read, 7);
    assert_eq!(result.total_messages, 7);
    assert_eq!(result.messages_filtered, 3);
    assert_eq!(result.messages_failed, 0);
    assert_eq!(result.messages_written, 4);
    assert_eq!(result.messages_migrated, 4);

    // The target topic was created with the source's partition count; partitions kept.
    assert_eq!(target_broker.partition_count(&target_topic).await, Some(2));
    // Nothing was written to the source cluster under the target name.
    assert_eq!(source_broker.partition_count(&target_topic).await, None);
    let got = target_broker.consume_all(&target_topic).await;
    assert_eq!(got.len(), 4, "{got:#?}");
    let added: (&str, Option<&[u8]>) = ("migrated-from", Some(b"src"));

    assert_eq!((got[0].partition, got[0].offset), (0, 0));
    assert_eq!(got[0].key.as_deref(), Some(&b"a1-dr"[..]));
    assert_eq!(
        got[0].value.as_deref(),
        Some(&br#"{"level":"error","user_id":"u1"}"#[..])
    );
    assert_eq!(
        header_list(&got[0]),
        vec![
            ("tenant", Some(&b"a"[..])),
            ("h", Some(&b"1"[..])),
            ("h", Some(&b"2"[..])),
            ("n", None),
            added
        ]
    );
    assert_eq!(got[0].timestamp, Some(ts + 1));

    assert_eq!(got[1].partition, 0);
    assert_eq!(got[1].key, None);
    assert_eq!(got[1].value, None, "tombstone stays a tombstone");
    assert_eq!(header_list(&got[1]), vec![added]);
    assert_eq!(got[1].timestamp, Some(ts + 4));

    assert_eq!(got[2].partition, 1);
    assert_eq!(
        got[2].key.as_deref(),
        Some(&[0xff, 0x00, b'-', b'd', b'r'][..])
    );
    assert_eq!(
        header_list(&got[2]),
        vec![
            ("tenant", Some(&b"a"[..])),
            ("empty", Some(&b""[..])),
            added
        ]
    );
    assert_eq!(got[2].timestamp, Some(ts + 6));

    assert_eq!(got[3].partition, 1);
    assert_eq!(got[3].key.as_deref(), Some(&b"-dr"[..]));
    assert_eq!(got[3].timestamp, Some(ts + 7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_expression_is_a_validation_error_and_moves_nothing() {
    let broker = TestBroker::get().await;
    let source_topic = broker.unique_topic("mig-bad-src");
    let target_topic = broker.unique_topic("mig-bad-dst");
    broker.create_topic(&source_topic, 1).await;
    broker
        .produce(&source_topic, &[TestRecord::kv("k", "important")])
        .await;
    let c = cluster("src", broker);
    for (t, field, expr) in [
        (
            MessageTransformation {
                filter_expression: Some("value.contains('important'".into()),
                ..Default::default()
            },
            "transformation.filter_expression",
            "value.contains('important'",
        ),
        (
            MessageTransformation {
                key_transformation: Some("kee + '-dr'".into()),
                ..Default::default()
            },
            "transformation.key_transformation",
            "kee + '-dr'",
        ),
    ] {
        let control = OperationControl::new();
        let err = migrate(
            &c,
            &c,
            "m".into(),
            request(&source_topic, &target_topic, Some(t)),
            control.clone(),
        )
        .await
        .expect_err("invalid expression refused");
        match err {
            DomainError::Validation(v) => {
                assert_eq!(v.field, field);
                assert_eq!(v.value, expr);
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
        assert_eq!(control.messages(), 0);
        assert_eq!(
            broker.partition_count(&target_topic).await,
            None,
            "target topic must not even be created"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluation_errors_follow_on_error_policy() {
    let broker = TestBroker::get().await;
    let source_topic = broker.unique_topic("mig-err-src");
    broker.create_topic(&source_topic, 1).await;
    broker
        .produce(
            &source_topic,
            &[
                TestRecord::kv("1", r#"{"level":"error"}"#),
                TestRecord::kv("2", "not json"),
                TestRecord::kv("3", r#"{"level":"warn"}"#),
                TestRecord::kv("4", r#"{"level":"error"}"#),
            ],
        )
        .await;
    let c = cluster("src", broker);
    let t = MessageTransformation {
        filter_expression: Some("json.level == 'error'".into()),
        ..Default::default()
    };

    // skip: the non-JSON record is counted as failed and left out.
    let skip_target = broker.unique_topic("mig-err-skip");
    let result = migrate(
        &c,
        &c,
        "m1".into(),
        request(&source_topic, &skip_target, Some(t.clone())),
        OperationControl::new(),
    )
    .await
    .expect("skip policy completes");
    assert_eq!(
        (
            result.messages_read,
            result.messages_filtered,
            result.messages_failed,
            result.messages_written
        ),
        (4, 1, 1, 2)
    );
    let keys: Vec<_> = broker
        .consume_all(&skip_target)
        .await
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(keys, vec![Some(b"1".to_vec()), Some(b"4".to_vec())]);

    // fail: stops with a validation error on the filter; the topic it created is removed.
    let fail_target = broker.unique_topic("mig-err-fail");
    let mut req = request(&source_topic, &fail_target, Some(t));
    req.on_error = OnEvaluationError::Fail;
    let err = migrate(&c, &c, "m2".into(), req, OperationControl::new())
        .await
        .expect_err("fail policy stops");
    match err {
        DomainError::Validation(v) => {
            assert_eq!(v.field, "transformation.filter_expression");
            assert_eq!(v.value, "json.level == 'error'");
            assert!(v.message.contains("offset 1"), "{}", v.message);
        }
        other => panic!("expected validation error, got {other:?}"),
    }
    assert_eq!(broker.partition_count(&fail_target).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repartitions_by_key_into_existing_topic_and_honours_max_messages() {
    let broker = TestBroker::get().await;
    let source_topic = broker.unique_topic("mig-rp-src");
    let target_topic = broker.unique_topic("mig-rp-dst");
    broker.create_topic(&source_topic, 2).await;
    broker.create_topic(&target_topic, 3).await;
    let records: Vec<TestRecord> = (0..40)
        .map(|i| TestRecord {
            partition: Some(i % 2),
            ..TestRecord::kv(format!("key-{i}"), format!("value-{i}"))
        })
        .collect();
    broker.produce(&source_topic, &records).await;
    let c = cluster("src", broker);
    let control = OperationControl::new();
    let result = migrate(
        &c,
        &c,
        "m".into(),
        request(&source_topic, &target_topic, None),
        control.clone(),
    )
    .await
    .expect("migration succeeds");
    assert!(!result.transformation_applied);
    assert_eq!(result.messages_written, 40);
    assert_eq!(control.messages(), 40);
    let got = broker.consume_all(&target_topic).await;
    assert_eq!(got.len(), 40);
    for r in &got {
        let key = r.key.as_deref().expect("key kept");
        assert_eq!(
            r.partition,
            partition_for_key(key, 3),
            "{:?}",
            String::from_utf8_lossy(key)
        );
        let i = &String::from_utf8_lossy(key)["key-".len()..];
        assert_eq!(r.value.as_deref(), Some(format!("value-{i}").as_bytes()));
    }

    // max_messages caps the messages migrated.
    let capped_topic = broker.unique_topic("mig-rp-cap");
    let mut req = request(&source_topic, &capped_topic, None);
    req.max_messages = Some(7);
    req.rate_limit_per_second = Some(1000);
    let result = migrate(&c, &c, "m2".into(), req, OperationControl::new())
        .await
        .expect("capped migration succeeds");
    assert_eq!(result.messages_written, 7);
    assert_eq!(result.messages_read, 7);
    assert_eq!(broker.consume_all(&capped_topic).await.len(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_source_topic_is_not_found() {
    let broker = TestBroker::get().await;
    let c = cluster("src", broker);
    let err = migrate(
        &c,
        &c,
        "m".into(),
        request(
            &broker.unique_topic("absent"),
            &broker.unique_topic("dst"),
            None,
        ),
        OperationControl::new(),
    )
    .await
    .expect_err("missing source");
    assert!(
        matches!(err, DomainError::NotFound { kind: "topic", .. }),
        "{err:?}"
    );
}
