//! Incremental backups on a real broker: three runs while a producer writes form a chain with
//! no gap or overlap; restoring the last link restores the whole chain byte for byte (with the
//! consumer groups as the last run saw them), and a point-in-time restore returns exactly the
//! records up to an instant, with the groups as of the last run before it.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::{backup, cluster, engine, request, restore, store};
use kvault_domain::chain::{chain_problems, load_chain};
use kvault_domain::groups::GroupChoice;
use kvault_domain::job::OperationControl;
use kvault_domain::operations::{BackupOperation, RestoreOperation};
use kvault_domain::restore::RestoreRequest;
use kvault_domain::{BackupId, CompressionType};
use kvault_testkit::{ConsumedRecord, TestBroker, TestRecord};

/// `per_partition` records on each of 2 partitions, stamped by the producer (now).
fn batch(label: &str, per_partition: usize) -> Vec<TestRecord> {
    (0..2)
        .flat_map(|p| {
            (0..per_partition).map(move |i| TestRecord {
                partition: Some(p),
                ..TestRecord::kv(format!("{label}-{p}-{i}"), vec![i as u8, 0xff])
            })
        })
        .collect()
}

/// A record as compared here: partition, offset, key, value.
type Content = (i32, i64, Option<Vec<u8>>, Option<Vec<u8>>);

fn content(mut records: Vec<ConsumedRecord>) -> Vec<Content> {
    records.sort_by_key(|r| (r.partition, r.offset));
    records
        .into_iter()
        .map(|r| (r.partition, r.offset, r.key, r.value))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_incremental_backups_restores_whole_or_up_to_an_instant() {
    let broker = TestBroker::get().await;
    let kafka = cluster(broker);
    let (_dir, store) = store();
    let topic = broker.unique_topic("chain");
    broker.create_topic(&topic, 2).await;
    let group = broker.unique_topic("chain-group");

    // Run 1: a full backup.
    broker.produce(&topic, &batch("a", 10)).await;
    broker.commit_group(&group, &topic, &[(0, 4)]).await;
    let first = backup(&kafka, &store, request(&topic, CompressionType::Lz4))
        .await
        .expect("full backup");
    // Runs 2 and 3 continue it while the producer keeps writing.
    tokio::time::sleep(Duration::from_millis(20)).await;
    broker.produce(&topic, &batch("b", 5)).await;
    broker.commit_group(&group, &topic, &[(0, 12)]).await;
    let mut req = request(&topic, CompressionType::Zstd);
    req.incremental_from = Some(first.backup_id.to_string());
    let second = backup(&kafka, &store, req).await.expect("incremental 1");
    let between = Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    broker.produce(&topic, &batch("c", 5)).await;
    broker.commit_group(&group, &topic, &[(0, 18)]).await;
    let mut req = request(&topic, CompressionType::Gzip);
    req.incremental_from = Some(second.backup_id.to_string());
    let third = backup(&kafka, &store, req).await.expect("incremental 2");

    assert_eq!(
        (
            first.total_messages,
            second.total_messages,
            third.total_messages
        ),
        (20, 10, 10),
        "each run copies only what arrived since the last"
    );
    let last = store
        .manifest(&BackupId::parse(third.backup_id.as_str()).unwrap())
        .await
        .unwrap();
    let link = last.chain.clone().expect("an incremental backup is a link");
    assert_eq!(
        (
            link.parent_id.as_str(),
            link.root_id.as_str(),
            link.sequence
        ),
        (second.backup_id.as_str(), first.backup_id.as_str(), 2)
    );
    let chain = load_chain(store.as_ref(), last, 100).await.unwrap();
    assert_eq!(chain.len(), 3);
    assert!(
        chain_problems(&chain).is_empty(),
        "{:?}",
        chain_problems(&chain)
    );

    // The last link restores the whole chain, offsets and groups included.
    let whole = broker.unique_topic("chain-whole");
    let mut req = RestoreRequest::new(&third.backup_id, &whole);
    req.preserve_offsets = true;
    req.restore_consumer_groups = Some(GroupChoice::Every(true));
    req.rate_limit_per_second = Some(10_000_000);
    let control = OperationControl::new();
    let restored = engine(&kafka, &store)
        .restore(kafka.id(), req.validate().unwrap(), control.clone())
        .await
        .expect("chain restore");
    assert_eq!(restored.messages_restored, 40);
    assert_eq!(control.messages(), 40, "progress counts each record once");
    assert_eq!(
        content(broker.consume_all(&whole).await),
        content(broker.consume_all(&topic).await)
    );
    assert_eq!(
        broker.group_offsets(&group, &whole, 2).await,
        vec![Some(18), None]
    );

    // Point in time: the records stamped up to `between`, the group as run 2 recorded it.
    let earlier = broker.unique_topic("chain-pit");
    let mut req = RestoreRequest::new(&third.backup_id, &earlier);
    req.until_time = Some(between);
    req.restore_consumer_groups = Some(GroupChoice::Every(true));
    let pit = restore(&kafka, &store, req)
        .await
        .expect("point-in-time restore");
    assert_eq!(pit.messages_restored, 30);
    let source = broker.consume_all(&topic).await;
    let expected: Vec<_> = content(
        source
            .into_iter()
            .filter(|r| {
                r.timestamp
                    .is_some_and(|ts| ts <= between.timestamp_millis())
            })
            .collect(),
    );
    assert_eq!(content(broker.consume_all(&earlier).await), expected);
    assert_eq!(
        broker.group_offsets(&group, &earlier, 2).await,
        vec![Some(12), None]
    );
}

/// Retention deleted a chain's root and a backup of another topic was then made under the
/// root's id: restoring the chain refuses it (naming the backup and the uid it expected)
/// instead of producing the other topic's records with the chain's, and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_made_under_a_deleted_roots_id_never_joins_the_chain() {
    let broker = TestBroker::get().await;
    let kafka = cluster(broker);
    let (_dir, store) = store();
    let (topic, other) = (
        broker.unique_topic("chain-own"),
        broker.unique_topic("chain-foreign"),
    );
    broker.create_topic(&topic, 2).await;
    broker.create_topic(&other, 2).await;
    broker.produce(&topic, &batch("own", 3)).await;
    let mut req = request(&topic, CompressionType::None);
    req.backup_id = Some(broker.unique_topic("root"));
    let root = backup(&kafka, &store, req).await.expect("root");
    broker.produce(&topic, &batch("more", 2)).await;
    let mut req = request(&topic, CompressionType::None);
    req.incremental_from = Some(root.backup_id.to_string());
    let link = backup(&kafka, &store, req).await.expect("link");

    let root_id = BackupId::parse(root.backup_id.as_str()).unwrap();
    store.delete(&root_id).await.unwrap();
    // Same offsets per partition as the deleted root, so only identity tells them apart.
    broker.produce(&other, &batch("foreign", 3)).await;
    let mut req = request(&other, CompressionType::None);
    req.backup_id = Some(root.backup_id.to_string());
    backup(&kafka, &store, req)
        .await
        .expect("foreign backup under the root's id");

    let target = broker.unique_topic("chain-poisoned");
    let refused = restore(
        &kafka,
        &store,
        RestoreRequest::new(&link.backup_id, &target),
    )
    .await;
    match refused {
        Err(kvault_domain::DomainError::Conflict { message, .. }) => {
            assert!(
                message.contains(root.backup_id.as_str()) && message.contains("uid"),
                "{message}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let last = store
        .manifest(&BackupId::parse(link.backup_id.as_str()).unwrap())
        .await
        .unwrap();
    assert!(load_chain(store.as_ref(), last, 100).await.is_err());
    if broker.partition_count(&target).await.is_some() {
        assert!(
            broker.consume_all(&target).await.is_empty(),
            "nothing was restored"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_increment_with_nothing_new_writes_no_archive() {
    use kvault_domain::backup::{BackupDefaults, BackupOutcome};

    let broker = TestBroker::get().await;
    let kafka = cluster(broker);
    let (_dir, store) = store();
    let topic = broker.unique_topic("chain-idle");
    broker.create_topic(&topic, 2).await;
    broker.produce(&topic, &batch("a", 3)).await;
    let first = backup(&kafka, &store, request(&topic, CompressionType::None))
        .await
        .expect("full backup");
    let incremental = |id: &str| {
        let mut req = request(&topic, CompressionType::None);
        req.backup_id = Some(format!("{topic}-{id}"));
        req.incremental_from = Some(first.backup_id.to_string());
        req.validate(BackupDefaults::default(), Utc::now()).unwrap()
    };

    let idle = engine(&kafka, &store)
        .backup_unless_unchanged(kafka.id(), incremental("idle"), OperationControl::new())
        .await
        .expect("idle run");
    let BackupOutcome::NothingNew(unchanged) = idle else {
        panic!("an idle increment wrote an archive: {idle:?}");
    };
    assert_eq!(unchanged.incremental_from, first.backup_id.as_str());
    let ends: Vec<(i32, i64)> = unchanged
        .partitions
        .iter()
        .map(|p| (p.partition, p.end_offset))
        .collect();
    assert_eq!(ends, vec![(0, 3), (1, 3)]);
    let listed: Vec<String> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.backup_id)
        .collect();
    assert_eq!(listed, vec![first.backup_id.to_string()]);
    let idle_id = BackupId::parse(&format!("{topic}-idle")).unwrap();
    assert!(store.manifest(&idle_id).await.is_err());

    // One new record: the increment is written and continues the same backup.
    broker
        .produce(
            &topic,
            &[TestRecord {
                partition: Some(1),
                ..TestRecord::kv("k", "v")
            }],
        )
        .await;
    let busy = engine(&kafka, &store)
        .backup_unless_unchanged(kafka.id(), incremental("busy"), OperationControl::new())
        .await
        .expect("busy run");
    let BackupOutcome::Written(written) = busy else {
        panic!("a new record was not backed up: {busy:?}");
    };
    assert_eq!(written.total_messages, 1);
    let manifest = store
        .manifest(&BackupId::parse(written.backup_id.as_str()).unwrap())
        .await
        .unwrap();
    assert_eq!(
        manifest.chain.map(|c| c.parent_id),
        Some(first.backup_id.to_string())
    );
}
