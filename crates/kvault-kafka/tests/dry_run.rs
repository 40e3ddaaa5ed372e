//! Dry runs of restore and migrate against a real broker: the plan a dry run returns is what
//! the real run then does, field by field (topic created and its partitions, records per
//! partition, the offsets they landed at, the groups committed and where), checked against
//! the real run's result and, independently, against the broker; and the dry run itself
//! leaves the broker untouched.

use std::sync::Arc;

use kvault_domain::dry_run::{MigrateDryRun, RestoreDryRun};
use kvault_domain::groups::{GroupChoice, GroupTranslation};
use kvault_domain::job::OperationControl;
use kvault_domain::migrate::{MigrateRequest, OnEvaluationError};
use kvault_domain::operations::{MigrateOperation, MigrationPlan, RestoreOperation};
use kvault_domain::ports::ArchiveStore;
use kvault_domain::restore::{PartitionRestoreResult, RestoreRequest};
use kvault_domain::{ClusterId, CompressionType, IfExists, PartitionMapping, RestoreResult};
use kvault_kafka::{ClusterConfig, KafkaEngine};
use kvault_testkit::{TestBroker, TestRecord};

mod common;

use common::{backup, cluster, request, store};

fn engine(broker: &TestBroker, store: &Arc<dyn ArchiveStore>) -> KafkaEngine {
    let config = ClusterConfig::new(broker.bootstrap());
    let id = ClusterId::parse("test").unwrap();
    KafkaEngine::new([(id, config)], store.clone()).unwrap()
}

fn test_cluster() -> ClusterId {
    ClusterId::parse("test").unwrap()
}

/// Keyed records spread over `partitions`, `n` in all.
fn keyed(n: usize, partitions: i32) -> Vec<TestRecord> {
    (0..n)
        .map(|i| TestRecord {
            partition: Some((i % partitions as usize) as i32),
            headers: vec![("h".into(), Some(vec![i as u8]))],
            ..TestRecord::kv(format!("key-{}", i % 101), format!("value-{i}"))
        })
        .collect()
}

/// The target's watermarks per partition, as an independent client sees them.
async fn landed(broker: &TestBroker, topic: &str, partitions: i32) -> Vec<(i32, i64, i64)> {
    let mut out = Vec::new();
    for p in 0..partitions {
        let (low, high) = broker.watermarks(topic, p).await;
        out.push((p, low, high));
    }
    out
}

/// One group's status, and per partition its target offset and what was done there.
type GroupOutcome = (String, String, Vec<(i32, i64, String)>);

/// Per group, per partition: the target offset and what was done there.
fn group_plan(groups: &[GroupTranslation]) -> Vec<GroupOutcome> {
    groups
        .iter()
        .map(|g| {
            let partitions = g
                .partitions
                .iter()
                .map(|p| (p.partition, p.target_offset, format!("{:?}", p.action)))
                .collect();
            (g.group_id.clone(), format!("{:?}", g.status), partitions)
        })
        .collect()
}

fn compare_restore(plan: &RestoreDryRun, done: &RestoreResult) {
    assert!(plan.dry_run);
    assert_eq!(plan.topic.create, done.topic_created, "topic created");
    assert_eq!(plan.partition_mapping, done.partition_mapping, "mapping");
    assert_eq!(plan.offsets_preserved, done.offsets_preserved);
    assert_eq!(plan.total_messages, done.messages_restored, "records");
    assert_eq!(plan.total_size_bytes, done.total_size_bytes, "bytes");
    assert_eq!(
        plan.partitions, done.partitions_created,
        "records and offsets per partition"
    );
    assert_eq!(
        group_plan(&plan.consumer_groups),
        group_plan(&done.consumer_groups_restored),
        "groups committed and where"
    );
}

#[tokio::test]
async fn a_restore_dry_run_is_what_the_restore_then_does() {
    let broker = TestBroker::get().await;
    let kafka = cluster(broker);
    let (_dir, store) = store();
    let engine = engine(broker, &store);
    let source = broker.unique_topic("dry-src");
    broker.create_topic(&source, 3).await;
    broker.produce(&source, &keyed(900, 3)).await;
    let group = format!("{source}-readers");
    broker
        .commit_group(&group, &source, &[(0, 120), (2, 300)])
        .await;
    let backed_up = backup(&kafka, &store, request(&source, CompressionType::Lz4))
        .await
        .unwrap();

    // Into a new topic, with the groups.
    let target = broker.unique_topic("dry-new");
    let mut req = RestoreRequest::new(&backed_up.backup_id, &target);
    req.restore_consumer_groups = Some(GroupChoice::Every(true));
    let plan = engine
        .restore_dry_run(
            &test_cluster(),
            req.validate().unwrap(),
            OperationControl::new(),
        )
        .await
        .unwrap();
    assert!(plan.topic.create && plan.topic.partitions == 3, "{plan:?}");
    assert_eq!(plan.total_messages, 900);
    assert_eq!(
        broker.partition_count(&target).await,
        None,
        "the dry run created the topic"
    );
    let done = engine
        .restore(
            &test_cluster(),
            req.validate().unwrap(),
            OperationControl::new(),
        )
        .await
        .unwrap();
    compare_restore(&plan, &done);
    assert_eq!(
        broker.partition_count(&target).await,
        Some(plan.topic.partitions)
    );
    let planned: Vec<(i32, i64, i64)> = plan
        .partitions
        .iter()
        .map(|p| (p.partition, p.start_offset, p.end_offset))
        .collect();
    assert_eq!(
        landed(broker, &target, 3).await,
        planned,
        "offsets on the broker"
    );
    let committed = broker.group_offsets(&group, &target, 3).await;
    let planned_groups: Vec<Option<i64>> = (0..3)
        .map(|p| {
            plan.consumer_groups[0]
                .partitions
                .iter()
                .find(|t| t.partition == p)
                .map(|t| t.target_offset)
        })
        .collect();
    assert_eq!(committed, planned_groups, "group offsets on the broker");

    // Appended to an existing topic of another partition count: re-partitioned by key.
    let existing = broker.unique_topic("dry-old");
    broker.create_topic(&existing, 2).await;
    broker.produce(&existing, &keyed(31, 2)).await;
    let mut req = RestoreRequest::new(&backed_up.backup_id, &existing);
    req.if_exists = IfExists::Append;
    let before = landed(broker, &existing, 2).await;
    let plan = engine
        .restore_dry_run(
            &test_cluster(),
            req.validate().unwrap(),
            OperationControl::new(),
        )
        .await
        .unwrap();
    assert_eq!(plan.partition_mapping, PartitionMapping::Murmur2);
    assert!(!plan.topic.create);
    assert_eq!(
        landed(broker, &existing, 2).await,
        before,
        "the dry run produced"
    );
    let done = engine
        .restore(
            &test_cluster(),
            req.validate().unwrap(),
            OperationControl::new(),
        )
        .await
        .unwrap();
    compare_restore(&plan, &done);
    let after = landed(broker, &existing, 2).await;
    for (p, (_, _, high)) in after.iter().enumerate() {
        let planned = plan.partitions.iter().find(|r| r.partition == p as i32);
        assert_eq!(
            planned.map(|r| r.end_offset),
            Some(*high),
            "partition {p} on the broker"
        );
    }

    // Refused the same way: a topic that holds records, without `append`.
    let req = RestoreRequest::new(&backed_up.backup_id, &existing);
    let dry = engine
        .restore_dry_run(
            &test_cluster(),
            req.validate().unwrap(),
            OperationControl::new(),
        )
        .await
        .expect_err("a dry run refuses what the real run refuses");
    let real = engine
        .restore(
            &test_cluster(),
            req.validate().unwrap(),
            OperationControl::new(),
        )
        .await
        .expect_err("refused");
    assert_eq!(dry.kind(), real.kind());
}

#[tokio::test]
async fn a_migrate_dry_run_is_what_the_migration_then_does() {
    let broker = TestBroker::get().await;
    let (_dir, store) = store();
    let engine = engine(broker, &store);
    let source = broker.unique_topic("dry-msrc");
    broker.create_topic(&source, 3).await;
    broker.produce(&source, &keyed(600, 3)).await;
    let group = format!("{source}-g");
    broker
        .commit_group(&group, &source, &[(0, 50), (1, 200)])
        .await;
    let target = broker.unique_topic("dry-mdst");
    broker.create_topic(&target, 3).await;
    broker.produce(&target, &keyed(10, 3)).await;
    let request = MigrateRequest {
        source_cluster: "test".into(),
        source_topic: source.clone(),
        target_cluster: "test".into(),
        target_topic: target.clone(),
        max_messages: None,
        transformation: None,
        rate_limit_per_second: None,
        on_error: OnEvaluationError::Skip,
        translate_consumer_groups: vec![group.clone()],
        consumer_groups_mode: Default::default(),
        if_exists: IfExists::Append,
    };
    let plan_of = |r: MigrateRequest| MigrationPlan::new(r, "migration-dry".into()).unwrap();
    let before = landed(broker, &target, 3).await;
    let plan: MigrateDryRun = engine
        .migrate_dry_run(plan_of(request.clone()), OperationControl::new())
        .await
        .unwrap();
    assert_eq!(
        landed(broker, &target, 3).await,
        before,
        "the dry run produced"
    );
    assert_eq!(
        broker.group_offsets(&group, &target, 3).await,
        vec![None; 3]
    );
    let done = engine
        .migrate(plan_of(request), OperationControl::new())
        .await
        .unwrap();
    assert!(plan.partitions_kept && !plan.topic.create);
    assert_eq!(plan.total_messages, done.messages_written, "records");
    let after = landed(broker, &target, 3).await;
    let on_broker: Vec<PartitionRestoreResult> = after
        .iter()
        .zip(&before)
        .map(|((p, _, high), (_, _, was))| PartitionRestoreResult {
            partition: *p,
            messages_count: (high - was) as u64,
            start_offset: *was,
            end_offset: *high,
        })
        .collect();
    assert_eq!(
        plan.partitions, on_broker,
        "records and offsets per partition"
    );
    assert_eq!(
        group_plan(&plan.consumer_groups),
        group_plan(&done.consumer_groups_translated),
        "groups committed and where"
    );
    let committed = broker.group_offsets(&group, &target, 3).await;
    let planned: Vec<Option<i64>> = (0..3)
        .map(|p| {
            plan.consumer_groups[0]
                .partitions
                .iter()
                .find(|t| t.partition == p)
                .map(|t| t.target_offset)
        })
        .collect();
    assert_eq!(committed, planned, "group offsets on the broker");
}
