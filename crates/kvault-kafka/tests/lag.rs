//! Consumer lag through the `ConsumerLag` port on a real broker: records with known CreateTime
//! timestamps, a group committed at known offsets without joining it, and the figures checked
//! exactly (lag in records, the next unconsumed record's timestamp, lag in seconds); the group
//! gets no member from being read; unknown groups and topics are `NotFound`.

use std::sync::Arc;
use std::time::Duration;

use kvault_domain::error::Missing;
use kvault_domain::ports::{ArchiveStore, ConsumerLag};
use kvault_domain::{ClusterConfig, ClusterId, DomainError};
use kvault_kafka::KafkaEngine;
use kvault_testkit::{TestBroker, TestRecord};
use rdkafka::consumer::Consumer;

fn engine(broker: &TestBroker, dir: &tempfile::TempDir) -> KafkaEngine {
    let archives: Arc<dyn ArchiveStore> =
        Arc::new(kvault_storage::Store::local(dir.path()).expect("store"));
    KafkaEngine::new(
        [(local(), ClusterConfig::new(broker.bootstrap()))],
        archives,
    )
    .expect("engine")
}

fn local() -> ClusterId {
    ClusterId::parse("local").expect("id")
}

/// `records` records on `partition`, record i stamped `first_ms + i * 1000`.
fn stamped(partition: i32, records: i64, first_ms: i64) -> Vec<TestRecord> {
    (0..records)
        .map(|i| TestRecord {
            partition: Some(partition),
            timestamp: Some(first_ms + i * 1000),
            ..TestRecord::kv(format!("k{i}"), format!("v{i}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_in_records_and_seconds_is_exact() {
    let broker = TestBroker::get().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(broker, &dir);
    let topic = broker.unique_topic("lag");
    broker.create_topic(&topic, 3).await;
    // An hour ago, to the millisecond, so the age is large and known.
    let first_ms = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let mut records = stamped(0, 10, first_ms);
    records.extend(stamped(1, 4, first_ms + 500));
    broker.produce(&topic, &records).await;
    let group = format!("lag-group-{}", uuid_like());
    // p0 consumed 3 of 10; p1 all 4; p2 (empty) nothing committed.
    broker.commit_group(&group, &topic, &[(0, 3), (1, 4)]).await;

    let lag = engine
        .group_lag(&local(), &group, std::slice::from_ref(&topic))
        .await
        .expect("lag");
    assert_eq!(lag.partitions.len(), 3, "{lag:?}");
    let p0 = &lag.partitions[0];
    assert_eq!((p0.partition, p0.committed_offset), (0, Some(3)));
    assert_eq!((p0.high_watermark, p0.lag_records()), (10, 7));
    // The next unconsumed record is offset 3: its own timestamp, not an estimate.
    let next = first_ms + 3 * 1000;
    assert_eq!(p0.next_record_timestamp_ms, Some(next));
    let seconds = p0.lag_seconds(lag.read_at).expect("known");
    assert_eq!(
        seconds,
        (lag.read_at.timestamp_millis() - next) as f64 / 1000.0
    );
    assert!((3590.0..3700.0).contains(&seconds), "{seconds}");
    let p1 = &lag.partitions[1];
    assert_eq!((p1.committed_offset, p1.lag_records()), (Some(4), 0));
    assert_eq!(p1.lag_seconds(lag.read_at), Some(0.0));
    let p2 = &lag.partitions[2];
    assert_eq!((p2.committed_offset, p2.lag_records()), (None, 0));
    assert_eq!(lag.total_records(), 7);

    // Asked about no topic: the topics the group committed on, and only those.
    let found = engine.group_lag(&local(), &group, &[]).await.expect("lag");
    assert!(
        found.partitions.iter().all(|p| p.topic == topic),
        "{found:?}"
    );
    assert_eq!(found.total_records(), 7);

    // Reading the lag joined nothing: the group has no member.
    let probe = broker.group_client(&group);
    let g = group.clone();
    let members = tokio::task::spawn_blocking(move || {
        let list = probe
            .fetch_group_list(Some(&g), Duration::from_secs(10))
            .expect("describe");
        list.groups()
            .iter()
            .map(|g| g.members().len())
            .sum::<usize>()
    })
    .await
    .unwrap();
    assert_eq!(members, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_groups_and_topics_are_not_found() {
    let broker = TestBroker::get().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(broker, &dir);
    let topic = broker.unique_topic("lag-missing");
    broker.create_topic(&topic, 1).await;
    let missing = engine
        .group_lag(
            &local(),
            &format!("no-such-group-{}", uuid_like()),
            &[topic],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            missing,
            DomainError::NotFound {
                kind: Missing::ConsumerGroup,
                ..
            }
        ),
        "{missing:?}"
    );
    let missing = engine
        .group_lag(&local(), "any", &["no-such-topic-lag".to_owned()])
        .await
        .unwrap_err();
    assert!(
        matches!(
            missing,
            DomainError::NotFound {
                kind: Missing::Topic,
                ..
            }
        ),
        "{missing:?}"
    );
}

/// A unique suffix without a uuid dependency.
fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    )
}
