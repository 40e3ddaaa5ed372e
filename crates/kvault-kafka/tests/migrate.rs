//! Migrations against real brokers: a cross-cluster copy with filter, key and header
//! transformations checked record by record; evaluation-error policies; invalid expressions
//! that move nothing; re-partitioning and `max_messages`; consumer-group offsets translated
//! to the target (a real group that consumed part of the source, explicit commits, a filter
//! dropping records, a group without commits, re-partitioning refused).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kvault_domain::job::OperationControl;
use kvault_domain::migrate::{
    GroupTranslationStatus, MessageTransformation, MigrateRequest, OnEvaluationError,
};
use kvault_domain::{ClusterId, DomainError};
use kvault_kafka::partitioner::partition_for_key;
use kvault_kafka::{migrate, ClusterConfig, KafkaCluster};
use kvault_testkit::{ConsumedRecord, TestBroker, TestRecord};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};

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
        translate_consumer_groups: Vec::new(),
        consumer_groups_mode: Default::default(),
        if_exists: Default::default(),
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

    assert_eq!(result.status, kvault_domain::OperationStatus::Completed);
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
    // The kind survives the context that says what had been done when it stopped.
    assert!(err.to_string().contains("was deleted again"), "{err}");
    match err.root() {
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
    let group = broker.unique_topic("mig-rp-group");
    broker
        .commit_group(&group, &source_topic, &[(0, 5), (1, 5)])
        .await;
    let mut req = request(&source_topic, &target_topic, None);
    req.translate_consumer_groups = vec![group.clone()];
    let result = migrate(&c, &c, "m".into(), req, control.clone())
        .await
        .expect("migration succeeds");
    assert!(!result.transformation_applied);
    // Re-partitioned by key: a source offset has no single target offset, so the group is
    // refused and nothing is committed for it on the target topic.
    assert_eq!(result.consumer_groups_translated.len(), 1);
    let refused = &result.consumer_groups_translated[0];
    assert_eq!(refused.status, GroupTranslationStatus::Refused);
    assert!(
        refused
            .message
            .as_deref()
            .is_some_and(|m| m.contains("not kept 1:1")),
        "{refused:?}"
    );
    assert!(refused.partitions.is_empty());
    assert_eq!(
        broker.group_offsets(&group, &target_topic, 3).await,
        vec![None, None, None]
    );
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
        matches!(
            err,
            DomainError::NotFound {
                kind: kvault_domain::error::Missing::Topic,
                ..
            }
        ),
        "{err:?}"
    );
}

/// A real group member: subscribes, consumes `limit` records committing each synchronously,
/// then leaves the group.
async fn consume_part(broker: &TestBroker, group: &str, topic: &str, limit: usize) {
    let mut config = broker.client_config();
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000");
    let consumer: StreamConsumer = config.create().expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut handled = 0;
    while handled < limit {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("group member got no record within 30s")
            .expect("consume");
        consumer
            .commit_message(&message, CommitMode::Sync)
            .expect("commit");
        handled += 1;
    }
    consumer.unsubscribe();
}

fn is_dropped(i: usize) -> bool {
    i % 4 == 1 || (40..50).contains(&i)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn translates_consumer_group_offsets_to_the_target_cluster() {
    const PARTITIONS: i32 = 3;
    const PER_PARTITION: usize = 100;
    let source_broker = TestBroker::get().await;
    let target_broker = TestBroker::start_new().await;
    let source_topic = source_broker.unique_topic("mig-grp-src");
    let target_topic = target_broker.unique_topic("mig-grp-dst");
    source_broker.create_topic(&source_topic, PARTITIONS).await;
    // Every 4th record (from 1) and the run 40..50 of each partition are filtered out.
    let records: Vec<TestRecord> = (0..PARTITIONS)
        .flat_map(|p| {
            (0..PER_PARTITION).map(move |i| {
                let verdict = if is_dropped(i) { "drop" } else { "keep" };
                TestRecord {
                    partition: Some(p),
                    ..TestRecord::kv(format!("k-{p}-{i}"), format!("{verdict}-{p}-{i}"))
                }
            })
        })
        .collect();
    let produced = source_broker.produce(&source_topic, &records).await;
    assert_eq!(produced[1], (0, 1), "offsets are the record indexes");

    // A real group that consumed part of the topic; one with explicit commits covering a
    // filtered run (p0), the end of the partition (p1) and no commit at all (p2); one with
    // no commit anywhere.
    let member_group = source_broker.unique_topic("mig-grp-member");
    consume_part(source_broker, &member_group, &source_topic, 130).await;
    let explicit_group = source_broker.unique_topic("mig-grp-explicit");
    source_broker
        .commit_group(
            &explicit_group,
            &source_topic,
            &[(0, 41), (1, PER_PARTITION as i64)],
        )
        .await;
    // And one inside kept runs (p0: 63, p2: 0) and on a lone filtered record (p1: 57).
    let mid_group = source_broker.unique_topic("mig-grp-mid");
    source_broker
        .commit_group(&mid_group, &source_topic, &[(0, 63), (1, 57), (2, 0)])
        .await;
    let idle_group = source_broker.unique_topic("mig-grp-idle");

    let mut req = request(
        &source_topic,
        &target_topic,
        Some(MessageTransformation {
            filter_expression: Some("!value.contains('drop')".into()),
            ..Default::default()
        }),
    );
    req.translate_consumer_groups = vec![
        member_group.clone(),
        explicit_group.clone(),
        mid_group.clone(),
        idle_group.clone(),
    ];
    let result = migrate(
        &cluster("src", source_broker),
        &cluster("dst", &target_broker),
        "migration-groups".into(),
        req,
        OperationControl::new(),
    )
    .await
    .expect("migration succeeds");
    let kept_per_partition = (0..PER_PARTITION).filter(|i| !is_dropped(*i)).count();
    assert_eq!(
        result.messages_written,
        (kept_per_partition * PARTITIONS as usize) as u64
    );

    let outcomes: Vec<_> = result
        .consumer_groups_translated
        .iter()
        .map(|g| (g.group_id.as_str(), g.status))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (member_group.as_str(), GroupTranslationStatus::Translated),
            (explicit_group.as_str(), GroupTranslationStatus::Translated),
            (mid_group.as_str(), GroupTranslationStatus::Translated),
            (idle_group.as_str(), GroupTranslationStatus::Skipped),
        ]
    );

    let source_records = source_broker.consume_all(&source_topic).await;
    let target_records = target_broker.consume_all(&target_topic).await;
    let target_at: HashMap<(i32, i64), &ConsumedRecord> = target_records
        .iter()
        .map(|r| ((r.partition, r.offset), r))
        .collect();
    let mut target_ends = BTreeMap::new();
    for p in 0..PARTITIONS {
        target_ends.insert(p, target_broker.watermarks(&target_topic, p).await.1);
    }

    for group in [&member_group, &explicit_group, &mid_group] {
        let on_source = source_broker
            .group_offsets(group, &source_topic, PARTITIONS)
            .await;
        let on_target = target_broker
            .group_offsets(group, &target_topic, PARTITIONS)
            .await;
        assert!(
            on_source.iter().any(Option::is_some),
            "{group}: {on_source:?}"
        );
        let reported = &result
            .consumer_groups_translated
            .iter()
            .find(|g| &g.group_id == group)
            .expect("reported")
            .partitions;
        for p in 0..PARTITIONS {
            let Some(source_offset) = on_source[p as usize] else {
                assert_eq!(
                    on_target[p as usize], None,
                    "{group} p{p}: no commit to copy"
                );
                continue;
            };
            let target_offset = on_target[p as usize].unwrap_or_else(|| {
                panic!("{group} p{p}: committed {source_offset} on source, nothing on target")
            });
            let entry = reported
                .iter()
                .find(|t| t.partition == p)
                .expect("partition reported");
            assert_eq!(
                (entry.source_offset, entry.target_offset, entry.exact),
                (source_offset, target_offset, true)
            );
            // The next record the group would read on the source that was copied...
            let next_on_source = source_records.iter().find(|r| {
                r.partition == p
                    && r.offset >= source_offset
                    && r.value.as_deref().is_some_and(|v| v.starts_with(b"keep"))
            });
            match next_on_source {
                // ...is the record the group reads next on the target.
                Some(expected) => {
                    let got = target_at
                        .get(&(p, target_offset))
                        .unwrap_or_else(|| panic!("{group} p{p}: no record at {target_offset}"));
                    assert_eq!(
                        (&got.key, &got.value),
                        (&expected.key, &expected.value),
                        "{group} p{p}: source {source_offset} -> target {target_offset}"
                    );
                }
                // ...or none is left: the group is at the end on the target as well.
                None => assert_eq!(Some(&target_offset), target_ends.get(&p)),
            }
        }
    }
    // The explicit commits: p0 at 41 (inside the filtered run 40..50) resumes at the copy of
    // record 50; p1 fully consumed stays fully consumed; p2 was never committed.
    let explicit = target_broker
        .group_offsets(&explicit_group, &target_topic, PARTITIONS)
        .await;
    let copies_before = |offset: usize| (0..offset).filter(|i| !is_dropped(*i)).count() as i64;
    assert_eq!(
        explicit,
        vec![
            Some(copies_before(50)),
            Some(kept_per_partition as i64),
            None
        ]
    );
    assert_eq!(
        target_broker
            .group_offsets(&mid_group, &target_topic, PARTITIONS)
            .await,
        vec![Some(copies_before(63)), Some(copies_before(58)), Some(0)]
    );
    // The group without commits got none on the target either.
    assert_eq!(
        target_broker
            .group_offsets(&idle_group, &target_topic, PARTITIONS)
            .await,
        vec![None, None, None]
    );
}

/// Like restore: an existing target that holds messages is a conflict unless the request says
/// `if_exists: append`; refused, nothing is written.
#[tokio::test]
async fn a_non_empty_target_is_a_conflict_unless_appending() {
    use kvault_domain::restore::IfExists;
    let broker = TestBroker::get().await;
    let source_topic = broker.unique_topic("mig-ie-src");
    let target_topic = broker.unique_topic("mig-ie-dst");
    broker.create_topic(&source_topic, 1).await;
    broker.create_topic(&target_topic, 1).await;
    let three: Vec<TestRecord> = (0..3)
        .map(|i| TestRecord::kv(format!("k{i}"), "v"))
        .collect();
    broker.produce(&source_topic, &three).await;
    broker.produce(&target_topic, &three[..1]).await;
    let c = cluster("src", broker);

    let refused = migrate(
        &c,
        &c,
        "m".into(),
        request(&source_topic, &target_topic, None),
        OperationControl::new(),
    )
    .await
    .expect_err("the target holds a message");
    assert_eq!(
        refused.kind(),
        kvault_domain::ErrorKind::Conflict,
        "{refused}"
    );
    assert!(refused.to_string().contains("if_exists"), "{refused}");
    assert_eq!(
        broker.watermarks(&target_topic, 0).await.1,
        1,
        "nothing written"
    );

    let mut append = request(&source_topic, &target_topic, None);
    append.if_exists = IfExists::Append;
    let result = migrate(&c, &c, "m".into(), append, OperationControl::new())
        .await
        .expect("appending is allowed");
    assert_eq!(result.messages_written, 3);
    assert_eq!(broker.watermarks(&target_topic, 0).await.1, 4);
}
