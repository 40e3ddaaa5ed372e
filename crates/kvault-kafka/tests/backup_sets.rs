//! Backup sets on a real broker: many topics in one call (a list or a pattern), one archive per
//! topic, all or nothing; and a set restored in one call under new names, byte for byte, with
//! its consumer groups.

mod common;

use std::sync::Arc;

use chrono::Utc;
use common::store;
use kvault_domain::backup::{BackupDefaults, BackupRequest};
use kvault_domain::backup_set::run_backup_set;
use kvault_domain::groups::GroupTranslationStatus;
use kvault_domain::job::OperationControl;
use kvault_domain::ports::ArchiveStore;
use kvault_domain::restore::RestoreRequest;
use kvault_domain::restore_set::{run_restore_set, set_members};
use kvault_domain::{BackupId, ClusterId, CompressionType, DomainError};
use kvault_kafka::{ClusterConfig, KafkaEngine};
use kvault_testkit::{TestBroker, TestRecord};

fn engine(broker: &TestBroker, store: &Arc<dyn ArchiveStore>) -> KafkaEngine {
    let id = ClusterId::parse("test").unwrap();
    KafkaEngine::new(
        [(id, ClusterConfig::new(broker.bootstrap()))],
        store.clone(),
    )
    .unwrap()
}

fn test_cluster() -> ClusterId {
    ClusterId::parse("test").unwrap()
}

/// `count` records with binary keys, some tombstones, on one partition of a new topic.
async fn topic_with(broker: &TestBroker, name: &str, count: usize, value_len: usize) {
    broker.create_topic(name, 2).await;
    let records: Vec<TestRecord> = (0..count)
        .map(|i| TestRecord {
            partition: Some((i % 2) as i32),
            key: Some(vec![0xff, (i % 256) as u8]),
            value: (i % 7 != 3).then(|| vec![b'v'; value_len]),
            ..TestRecord::default()
        })
        .collect();
    broker.produce(name, &records).await;
}

/// Runs a backup set of `req` with `defaults` on the test cluster.
async fn run_set(
    kafka: &KafkaEngine,
    store: &Arc<dyn ArchiveStore>,
    req: BackupRequest,
    defaults: BackupDefaults,
) -> Result<kvault_domain::backup_set::BackupSetResult, DomainError> {
    run_set_with(kafka, store, req, defaults, OperationControl::new()).await
}

/// [`run_set`] with the caller's control, to watch its progress.
async fn run_set_with(
    kafka: &KafkaEngine,
    store: &Arc<dyn ArchiveStore>,
    req: BackupRequest,
    defaults: BackupDefaults,
    control: OperationControl,
) -> Result<kvault_domain::backup_set::BackupSetResult, DomainError> {
    let plan = req.validate_set(defaults, Utc::now()).unwrap();
    run_backup_set(kafka, store.as_ref(), &test_cluster(), plan, control).await
}

fn set_request(json: serde_json::Value) -> BackupRequest {
    let mut req: BackupRequest = serde_json::from_value(json).unwrap();
    req.compression = Some(CompressionType::None);
    req.rate_limit_per_second = Some(10_000_000);
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_backs_up_every_matching_topic_and_the_set_restores_under_new_names() {
    let broker = TestBroker::get().await;
    let (_dir, store) = store();
    let kafka = engine(broker, &store);
    let prefix = broker.unique_topic("set");
    for (suffix, count) in [("a", 30), ("b", 7), ("c", 0)] {
        topic_with(broker, &format!("{prefix}-{suffix}"), count, 20).await;
    }
    topic_with(broker, &format!("{prefix}-other"), 5, 20).await;
    let group = broker.unique_topic("set-group");
    broker
        .commit_group(&group, &format!("{prefix}-a"), &[(0, 4), (1, 6)])
        .await;

    let req = set_request(serde_json::json!({
        "topic_pattern": format!("{prefix}-[abc]"), "backup_id": format!("{prefix}-nightly")
    }));
    let control = OperationControl::new();
    let set = run_set_with(
        &kafka,
        &store,
        req,
        BackupDefaults::default(),
        control.clone(),
    )
    .await
    .expect("backup set");
    assert_eq!(set.topic_count, 3);
    assert_eq!(set.total_messages, 37);
    // One progress for the whole set: counts and the expected total cover every topic (the
    // total was the last topic's alone before, so a bar restarted per topic).
    assert_eq!(control.messages(), 37);
    assert_eq!(control.total(), Some(37));
    let topics: Vec<&str> = set.topics.iter().map(|t| t.topic.as_str()).collect();
    let expected: Vec<String> = ["a", "b", "c"].map(|s| format!("{prefix}-{s}")).to_vec();
    assert_eq!(
        topics,
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(
        set.topics[0].backup_id.to_string(),
        format!("{prefix}-nightly.{prefix}-a")
    );
    assert_eq!(set.topics[0].consumer_groups, vec![group.clone()]);
    let members = set_members(store.as_ref(), &set.set_id).await.unwrap();
    assert_eq!(members.len(), 3);
    assert!(members
        .iter()
        .all(|m| m.backup_set.as_ref().is_some_and(|s| s.topic_count == 3)));

    // The whole set back, renamed: a prefix for most, a mapping for one.
    let mut restore: RestoreRequest = serde_json::from_value(serde_json::json!({
        "backup_id": set.set_id, "topic_prefix": "dr-",
        "topic_mapping": {format!("{prefix}-b"): format!("{prefix}-bee")},
        "restore_consumer_groups": true
    }))
    .unwrap();
    restore.rate_limit_per_second = Some(10_000_000);
    let plan = restore.validate_set(&members).unwrap();
    let restored = run_restore_set(&kafka, &test_cluster(), plan, OperationControl::new())
        .await
        .expect("restore set");
    assert_eq!(restored.messages_restored, 37);
    let targets: Vec<&str> = restored
        .topics
        .iter()
        .map(|t| t.target_topic.as_str())
        .collect();
    let (dr_a, bee, dr_c) = (
        format!("dr-{prefix}-a"),
        format!("{prefix}-bee"),
        format!("dr-{prefix}-c"),
    );
    assert_eq!(targets, vec![dr_a.as_str(), bee.as_str(), dr_c.as_str()]);
    for (source, target) in [(&expected[0], &dr_a), (&expected[1], &bee)] {
        let key = |r: &kvault_testkit::ConsumedRecord| (r.partition, r.offset);
        let mut want = broker.consume_all(source).await;
        let mut got = broker.consume_all(target).await;
        want.sort_by_key(key);
        got.sort_by_key(key);
        let strip = |rs: Vec<kvault_testkit::ConsumedRecord>| {
            rs.into_iter()
                .map(|r| (r.partition, r.key, r.value))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            strip(got),
            strip(want),
            "{target} holds {source} byte for byte"
        );
    }
    let groups = &restored.topics[0].consumer_groups_restored;
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].status, GroupTranslationStatus::Translated);
    assert_eq!(
        broker.group_offsets(&group, &dr_a, 2).await,
        vec![Some(4), Some(6)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_is_all_or_nothing_and_an_incomplete_set_is_not_restored() {
    let broker = TestBroker::get().await;
    let (_dir, store) = store();
    let kafka = engine(broker, &store);
    let prefix = broker.unique_topic("set-fail");
    // Topics are backed up in name order: the small one first.
    let (small, large) = (format!("{prefix}-a-small"), format!("{prefix}-b-large"));
    topic_with(broker, &small, 10, 10).await;
    topic_with(broker, &large, 1_500, 4_000).await;

    // A listed topic that does not exist: refused before anything is written.
    let req = set_request(serde_json::json!({"topics": [small.clone(), format!("{prefix}-none")]}));
    let err = run_set(&kafka, &store, req, BackupDefaults::default())
        .await
        .expect_err("missing topic");
    assert!(
        matches!(err.root(), DomainError::NotFound { .. }),
        "{err:?}"
    );
    assert!(store.list().await.unwrap().is_empty());

    // The second topic outgrows the size cap (checked per 1 MiB block, so the topic holds
    // several). One topic at a time, the first topic's archive exists by then and is deleted
    // again; side by side, the first may be stopped before it commits. Either way no member
    // of the failed set is listed.
    let defaults = BackupDefaults {
        max_bytes: Some(1_000_000),
        ..BackupDefaults::default()
    };
    for parallelism in [1, 2] {
        let req = set_request(serde_json::json!({"topics": [small.clone(), large.clone()]}));
        let mut plan = req.validate_set(defaults, Utc::now()).unwrap();
        plan.parallelism = parallelism;
        let err = run_backup_set(
            &kafka,
            store.as_ref(),
            &test_cluster(),
            plan,
            OperationControl::new(),
        )
        .await
        .expect_err("size cap");
        let message = err.to_string();
        if parallelism == 1 {
            assert!(message.contains("were deleted"), "{message}");
        }
        assert!(message.contains(&large), "{message}");
        assert!(
            store.list().await.unwrap().is_empty(),
            "no member of a failed set is listed ({parallelism} at a time)"
        );
    }

    // A set that lost an archive is refused as a set before anything is written.
    let req = set_request(serde_json::json!({"topics": [small.clone(), large.clone()]}));
    let set = run_set(&kafka, &store, req, BackupDefaults::default())
        .await
        .expect("backup set");
    let lost = BackupId::parse(set.topics[1].backup_id.as_str()).unwrap();
    store.delete(&lost).await.unwrap();
    let members = set_members(store.as_ref(), &set.set_id).await.unwrap();
    let restore: RestoreRequest =
        serde_json::from_value(serde_json::json!({"backup_id": set.set_id, "topic_prefix": "x-"}))
            .unwrap();
    let err = restore.validate_set(&members).expect_err("incomplete");
    assert!(err.to_string().contains("1 of its 2 archives"), "{err}");
}
