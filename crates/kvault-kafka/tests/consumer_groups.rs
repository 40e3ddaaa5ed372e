//! Consumer groups travel with their data, on a real broker: a backup records the groups'
//! committed offsets at its cut (all groups, a list, or none), and a restore puts them back on
//! the target, exactly with `preserve_offsets`, translated when appending, refused while the
//! group is active there or when partitions are not kept 1:1.

mod common;

use chrono::{TimeZone, Utc};
use common::{backup, cluster, request, restore, store};
use kvault_domain::groups::{GroupChoice, GroupTranslation, GroupTranslationStatus};
use kvault_domain::restore::RestoreRequest;
use kvault_domain::{CompressionType, IfExists};
use kvault_testkit::{TestBroker, TestRecord};

const PER_PARTITION: i64 = 50;
const BASE_TS: i64 = 1_760_000_000_000;

/// 50 records on each of partitions 0 and 1; record `i` of a partition has CreateTime
/// `BASE_TS + i * 1000`.
async fn two_partition_topic(broker: &TestBroker, prefix: &str) -> String {
    let topic = broker.unique_topic(prefix);
    broker.create_topic(&topic, 2).await;
    let records: Vec<TestRecord> = (0..2)
        .flat_map(|p| {
            (0..PER_PARTITION).map(move |i| TestRecord {
                partition: Some(p),
                timestamp: Some(BASE_TS + i * 1000),
                ..TestRecord::kv(format!("k{p}-{i}"), format!("v{p}-{i}"))
            })
        })
        .collect();
    broker.produce(&topic, &records).await;
    topic
}

fn outcome<'a>(outcomes: &'a [GroupTranslation], group: &str) -> &'a GroupTranslation {
    outcomes
        .iter()
        .find(|g| g.group_id == group)
        .unwrap_or_else(|| panic!("no outcome for {group} in {outcomes:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_records_the_groups_and_a_restore_puts_them_back() {
    let broker = TestBroker::get().await;
    let kafka = cluster(broker);
    let (_dir, store) = store();
    let topic = two_partition_topic(broker, "grp-src").await;
    let (reader, tail) = (broker.unique_topic("reader"), broker.unique_topic("tail"));
    broker
        .commit_group(&reader, &topic, &[(0, 20), (1, 50)])
        .await;
    broker.commit_group(&tail, &topic, &[(0, 5)]).await;
    // A group that committed only on another topic is not recorded.
    let elsewhere = broker.unique_topic("elsewhere");
    let other_topic = two_partition_topic(broker, "grp-other").await;
    broker
        .commit_group(&elsewhere, &other_topic, &[(0, 1)])
        .await;

    let result = backup(&kafka, &store, request(&topic, CompressionType::Lz4))
        .await
        .expect("backup");
    assert!(result.consumer_groups.contains(&reader), "{result:?}");
    assert!(result.consumer_groups.contains(&tail), "{result:?}");
    assert!(!result.consumer_groups.contains(&elsewhere), "{result:?}");
    let id = kvault_domain::BackupId::parse(result.backup_id.as_str()).unwrap();
    let manifest = store.manifest(&id).await.expect("manifest");
    let recorded = manifest.consumer_group(&reader).expect("reader recorded");
    let offsets: Vec<(i32, i64)> = recorded
        .partitions
        .iter()
        .map(|p| (p.partition, p.offset))
        .collect();
    assert_eq!(offsets, vec![(0, 20), (1, 50)]);
    let tail_offsets = &manifest
        .consumer_group(&tail)
        .expect("tail recorded")
        .partitions;
    assert_eq!(tail_offsets.len(), 1);
    assert_eq!((tail_offsets[0].partition, tail_offsets[0].offset), (0, 5));

    // A listed group only, or none at all.
    let mut only = request(&topic, CompressionType::None);
    only.consumer_groups = Some(vec![tail.clone()]);
    let listed = backup(&kafka, &store, only).await.expect("listed backup");
    assert_eq!(listed.consumer_groups, vec![tail.clone()]);
    let mut none = request(&topic, CompressionType::None);
    none.include_consumer_groups = false;
    let without = backup(&kafka, &store, none)
        .await
        .expect("backup without groups");
    assert!(without.consumer_groups.is_empty(), "{without:?}");

    // preserve_offsets: every group lands on the very offsets it had.
    let exact_topic = broker.unique_topic("grp-exact");
    let mut req = RestoreRequest::new(&result.backup_id, &exact_topic);
    req.preserve_offsets = true;
    req.restore_consumer_groups = Some(GroupChoice::Every(true));
    let restored = restore(&kafka, &store, req).await.expect("exact restore");
    assert_eq!(restored.consumer_groups_restored.len(), 2, "{restored:?}");
    for group in [&reader, &tail] {
        let got = outcome(&restored.consumer_groups_restored, group);
        assert_eq!(got.status, GroupTranslationStatus::Translated, "{got:?}");
    }
    assert_eq!(
        broker.group_offsets(&reader, &exact_topic, 2).await,
        vec![Some(20), Some(50)]
    );
    assert_eq!(
        broker.group_offsets(&tail, &exact_topic, 2).await,
        vec![Some(5), None]
    );

    // Appending after records already there: each group resumes at the restored copy of the
    // record it would have read next.
    let busy_topic = broker.unique_topic("grp-busy");
    broker.create_topic(&busy_topic, 2).await;
    let existing: Vec<TestRecord> = [(0, 7), (1, 3)]
        .into_iter()
        .flat_map(|(p, n)| {
            (0..n).map(move |i| TestRecord {
                partition: Some(p),
                ..TestRecord::kv(format!("old-{i}"), "old")
            })
        })
        .collect();
    broker.produce(&busy_topic, &existing).await;
    let mut req = RestoreRequest::new(&result.backup_id, &busy_topic);
    req.if_exists = IfExists::Append;
    req.restore_consumer_groups = Some(GroupChoice::Only(vec![reader.clone(), "nobody".into()]));
    let appended = restore(&kafka, &store, req)
        .await
        .expect("appending restore");
    let got = outcome(&appended.consumer_groups_restored, &reader);
    assert_eq!(got.status, GroupTranslationStatus::Translated, "{got:?}");
    let mapped: Vec<(i32, i64, i64)> = got
        .partitions
        .iter()
        .map(|p| (p.partition, p.source_offset, p.target_offset))
        .collect();
    assert_eq!(mapped, vec![(0, 20, 27), (1, 50, 53)]);
    assert_eq!(
        broker.group_offsets(&reader, &busy_topic, 2).await,
        vec![Some(27), Some(53)]
    );
    let nobody = outcome(&appended.consumer_groups_restored, "nobody");
    assert_eq!(nobody.status, GroupTranslationStatus::Skipped, "{nobody:?}");
    let consumed = broker.consume_all(&busy_topic).await;
    let at = |p: i32, o: i64| {
        consumed
            .iter()
            .find(|r| r.partition == p && r.offset == o)
            .and_then(|r| r.value.clone())
    };
    assert_eq!(at(0, 27), Some(b"v0-20".to_vec()), "the next unread record");

    // Restored up to an instant: a group past the restored records lands at their end.
    let until_topic = broker.unique_topic("grp-until");
    let mut req = RestoreRequest::new(&result.backup_id, &until_topic);
    req.until_time = Some(Utc.timestamp_millis_opt(BASE_TS + 9_000).unwrap());
    req.restore_consumer_groups = Some(GroupChoice::Every(true));
    let until = restore(&kafka, &store, req).await.expect("restore until");
    assert_eq!(until.messages_restored, 20);
    assert_eq!(
        broker.group_offsets(&reader, &until_topic, 2).await,
        vec![Some(10), Some(10)]
    );
    assert_eq!(
        broker.group_offsets(&tail, &until_topic, 2).await,
        vec![Some(5), None]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_refused_while_active_on_the_target_or_when_repartitioned() {
    let broker = TestBroker::get().await;
    let kafka = cluster(broker);
    let (_dir, store) = store();
    let topic = two_partition_topic(broker, "grp-act-src").await;
    let (busy, idle) = (broker.unique_topic("busy"), broker.unique_topic("idle"));
    broker
        .commit_group(&busy, &topic, &[(0, 10), (1, 10)])
        .await;
    broker
        .commit_group(&idle, &topic, &[(0, 30), (1, 40)])
        .await;
    let result = backup(&kafka, &store, request(&topic, CompressionType::Zstd))
        .await
        .expect("backup");

    // `busy` has a live member on the target topic: committing would race it.
    let target = broker.unique_topic("grp-act-dst");
    broker.create_topic(&target, 2).await;
    let member = broker.active_member(&busy, &target);
    let mut req = RestoreRequest::new(&result.backup_id, &target);
    req.restore_consumer_groups = Some(GroupChoice::Only(vec![busy.clone(), idle.clone()]));
    let restored = restore(&kafka, &store, req).await.expect("restore");
    drop(member);
    let refused = outcome(&restored.consumer_groups_restored, &busy);
    assert_eq!(
        refused.status,
        GroupTranslationStatus::Refused,
        "{refused:?}"
    );
    assert!(
        refused
            .message
            .as_deref()
            .is_some_and(|m| m.contains("active member")),
        "{refused:?}"
    );
    assert!(
        restored.warnings.iter().any(|w| w.contains(&busy)),
        "{:?}",
        restored.warnings
    );
    let translated = outcome(&restored.consumer_groups_restored, &idle);
    assert_eq!(translated.status, GroupTranslationStatus::Translated);
    assert_eq!(
        broker.group_offsets(&idle, &target, 2).await,
        vec![Some(30), Some(40)]
    );
    assert_eq!(
        restored.messages_restored, 100,
        "the data is restored either way"
    );

    // Into 3 partitions records are re-partitioned by key: no group is guessed at.
    let wider = broker.unique_topic("grp-wider");
    let mut req = RestoreRequest::new(&result.backup_id, &wider);
    req.target_partitions = Some(3);
    req.restore_consumer_groups = Some(GroupChoice::Every(true));
    let repartitioned = restore(&kafka, &store, req).await.expect("restore");
    for group in [&busy, &idle] {
        let got = outcome(&repartitioned.consumer_groups_restored, group);
        assert_eq!(got.status, GroupTranslationStatus::Refused, "{got:?}");
        assert!(got.message.as_deref().is_some_and(|m| m.contains("1:1")));
    }
    assert_eq!(
        broker.group_offsets(&idle, &wider, 3).await,
        vec![None, None, None]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_with_commits_on_the_target_is_kept_unless_overwrite_is_asked() {
    use kvault_domain::groups::{ConsumerGroupsMode, PartitionAction};

    let broker = TestBroker::get().await;
    let kafka = cluster(broker);
    let (_dir, store) = store();
    let topic = two_partition_topic(broker, "grp-live-src").await;
    let group = broker.unique_topic("live");
    broker
        .commit_group(&group, &topic, &[(0, 20), (1, 30)])
        .await;
    let result = backup(&kafka, &store, request(&topic, CompressionType::Lz4))
        .await
        .expect("backup");

    // A live topic where the group (no active member: a consumer using assign()) has read 4
    // records of partition 0 and has no commit on partition 1.
    let live = broker.unique_topic("grp-live-dst");
    broker.create_topic(&live, 2).await;
    let existing: Vec<TestRecord> = (0..10)
        .map(|i| TestRecord {
            partition: Some(0),
            ..TestRecord::kv(format!("old-{i}"), "old")
        })
        .collect();
    broker.produce(&live, &existing).await;
    broker.commit_group(&group, &live, &[(0, 4)]).await;

    let mut req = RestoreRequest::new(&result.backup_id, &live);
    req.if_exists = IfExists::Append;
    req.restore_consumer_groups = Some(GroupChoice::Only(vec![group.clone()]));
    let respected = restore(&kafka, &store, req.clone()).await.expect("restore");
    let got = outcome(&respected.consumer_groups_restored, &group);
    assert_eq!(got.status, GroupTranslationStatus::Translated, "{got:?}");
    let actions: Vec<(i32, PartitionAction, Option<i64>, i64)> = got
        .partitions
        .iter()
        .map(|p| (p.partition, p.action, p.existing_offset, p.target_offset))
        .collect();
    assert_eq!(
        actions,
        vec![
            (0, PartitionAction::KeptExisting, Some(4), 30),
            (1, PartitionAction::Committed, None, 30),
        ]
    );
    assert!(
        got.message.as_deref().is_some_and(|m| m.contains("kept")),
        "{got:?}"
    );
    assert_eq!(
        broker.group_offsets(&group, &live, 2).await,
        vec![Some(4), Some(30)],
        "the group is not moved past the 6 old records it has not read"
    );

    // Again: every partition now has a commit, so nothing is committed and the result says so.
    let again = restore(&kafka, &store, req.clone()).await.expect("restore");
    let got = outcome(&again.consumer_groups_restored, &group);
    assert_eq!(got.status, GroupTranslationStatus::Kept, "{got:?}");
    assert!(got
        .partitions
        .iter()
        .all(|p| p.action == PartitionAction::KeptExisting));
    assert!(
        again.warnings.iter().any(|w| w.contains(&group)),
        "{:?}",
        again.warnings
    );
    assert_eq!(
        broker.group_offsets(&group, &live, 2).await,
        vec![Some(4), Some(30)]
    );

    // Asked explicitly: the translated offsets replace the group's commits.
    req.consumer_groups_mode = ConsumerGroupsMode::Overwrite;
    let overwritten = restore(&kafka, &store, req).await.expect("restore");
    let got = outcome(&overwritten.consumer_groups_restored, &group);
    assert_eq!(got.status, GroupTranslationStatus::Translated, "{got:?}");
    let actions: Vec<(i32, PartitionAction, Option<i64>, i64)> = got
        .partitions
        .iter()
        .map(|p| (p.partition, p.action, p.existing_offset, p.target_offset))
        .collect();
    // Third copy of the backup: partition 0 holds 10 old + 2 x 50 restored records before it.
    assert_eq!(
        actions,
        vec![
            (0, PartitionAction::Committed, Some(4), 130),
            (1, PartitionAction::Committed, Some(30), 130),
        ]
    );
    assert_eq!(
        broker.group_offsets(&group, &live, 2).await,
        vec![Some(130), Some(130)]
    );
}
