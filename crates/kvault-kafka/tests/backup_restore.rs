//! Backup and restore against a real broker (kvault-testkit) and a real archive store
//! (kvault-storage): byte-for-byte round trips per codec, the consistent cut, partition and
//! offset selection, time bounds, repartitioning, corruption and conflict handling.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use kvault_domain::backup::BackupDefaults;
use kvault_domain::job::OperationControl;
use kvault_domain::operations::{BackupOperation, RestoreOperation};
use kvault_domain::ports::ArchiveStore;
use kvault_domain::restore::{RestoreRequest, SOURCE_OFFSET_HEADER};
use kvault_domain::{ClusterId, CompressionType, DomainError, IfExists, Offset, PartitionMapping};
use kvault_kafka::partitioner::partition_for_key;
use kvault_kafka::{ClusterConfig, KafkaCluster};
use kvault_testkit::{ConsumedRecord, TestBroker, TestRecord};

mod common;

use common::{backup, cluster, engine, request, restore, store};

const BASE_TS: i64 = 1_750_000_000_000;

/// Record `i` of a varied data set: null and empty keys, tombstones, empty values, non-UTF-8
/// bytes, duplicate and null headers, explicit timestamps.
fn varied_record(i: usize, partitions: i32) -> TestRecord {
    let key = match i % 10 {
        0 => None,
        1 => Some(Vec::new()),
        2 => Some(vec![0xff, 0xfe, 0x00, (i % 256) as u8]),
        _ => Some(format!("key-{}", i % 997).into_bytes()),
    };
    let value = match i % 17 {
        0 => None,
        1 => Some(Vec::new()),
        2 => Some((0..64).map(|b| (b * 7 + i) as u8 | 0x80).collect()),
        _ => Some(
            format!(
                r#"{{"id":{i},"user":"user-{}","event":"click","payload":"{}"}}"#,
                i % 1013,
                "x".repeat(i % 200)
            )
            .into_bytes(),
        ),
    };
    let headers = match i % 5 {
        0 => vec![
            ("trace".to_owned(), Some(b"a".to_vec())),
            ("trace".to_owned(), Some(vec![0xc3, 0x28])),
        ],
        1 => vec![
            ("nullable".to_owned(), None),
            ("empty".to_owned(), Some(vec![])),
        ],
        2 => Vec::new(),
        _ => vec![(
            "source".to_owned(),
            Some(format!("svc-{}", i % 3).into_bytes()),
        )],
    };
    TestRecord {
        partition: Some((i % partitions as usize) as i32),
        key,
        value,
        headers,
        timestamp: Some(BASE_TS + i as i64),
    }
}

/// Produces `n` varied records plus one 1 MB value; returns what landed where.
async fn fill_varied(
    broker: &TestBroker,
    topic: &str,
    n: usize,
    partitions: i32,
) -> BTreeMap<(i32, i64), TestRecord> {
    let mut records: Vec<TestRecord> = (0..n).map(|i| varied_record(i, partitions)).collect();
    records.push(TestRecord {
        partition: Some(1),
        key: Some(b"big".to_vec()),
        // 1 MB (decimal): Kafka's default max.message.bytes (1 MiB + 12) must hold the batch.
        value: Some(
            (0..1_000_000u32)
                .map(|b| (b.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
        ),
        headers: vec![("size".into(), Some(b"1MB".to_vec()))],
        timestamp: Some(BASE_TS + n as i64),
    });
    let placed = broker.produce(topic, &records).await;
    placed.into_iter().zip(records).collect()
}

fn assert_same(expected: &BTreeMap<(i32, i64), TestRecord>, got: &[ConsumedRecord]) {
    assert_eq!(got.len(), expected.len(), "record count");
    for r in got {
        let want = expected
            .get(&(r.partition, r.offset))
            .unwrap_or_else(|| panic!("unexpected record at {}/{}", r.partition, r.offset));
        let at = format!("{}/{}", r.partition, r.offset);
        assert_eq!(r.key, want.key, "key at {at}");
        assert_eq!(r.value, want.value, "value at {at}");
        assert_eq!(r.headers, want.headers, "headers at {at}");
        assert_eq!(r.timestamp, want.timestamp, "timestamp at {at}");
    }
}

async fn round_trip(codec: CompressionType, n: usize) {
    let broker = TestBroker::get().await;
    let kafka = cluster(broker);
    let (_dir, store) = store();
    let source = broker.unique_topic(&format!("rt-{codec}"));
    broker.create_topic(&source, 3).await;
    let produced = fill_varied(broker, &source, n, 3).await;

    let result = backup(&kafka, &store, request(&source, codec))
        .await
        .unwrap();
    assert_eq!(result.total_messages, produced.len() as u64);
    assert_eq!(result.compression, codec);
    assert_eq!(result.partitions.len(), 3);
    for p in &result.partitions {
        let (low, high) = broker.watermarks(&source, p.partition).await;
        assert_eq!((p.start_offset, p.end_offset), (low, high));
        assert_eq!(p.messages_count, (high - low) as u64);
        assert!(!p.start_truncated_by_retention);
    }
    let manifest = store
        .manifest(&kvault_domain::BackupId::parse(result.backup_id.as_str()).unwrap())
        .await
        .unwrap();
    assert_eq!(manifest.topic.partition_count, 3);
    assert_eq!(manifest.topic.replication_factor, 1);

    let target = broker.unique_topic(&format!("rt-{codec}-restored"));
    let restored = restore(
        &kafka,
        &store,
        RestoreRequest::new(&result.backup_id, &target),
    )
    .await
    .unwrap();
    assert!(restored.topic_created);
    assert!(restored.checksum_validated);
    assert_eq!(restored.partition_mapping, PartitionMapping::Identity);
    assert_eq!(restored.messages_restored, produced.len() as u64);
    assert_eq!(restored.total_messages, produced.len() as u64);
    assert_eq!(restored.partitions_created.len(), 3);

    // Into an empty topic with identity mapping the offsets match too: compare by position.
    let got = broker.consume_all(&target).await;
    assert_same(&produced, &got);
    broker.delete_topic(&source).await;
    broker.delete_topic(&target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_gzip_100k() {
    round_trip(CompressionType::Gzip, 100_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_none() {
    round_trip(CompressionType::None, 20_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_snappy() {
    round_trip(CompressionType::Snappy, 20_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_lz4() {
    round_trip(CompressionType::Lz4, 20_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_zstd() {
    round_trip(CompressionType::Zstd, 20_000).await;
}

/// Many partitions, more than are read or produced at once: the backup reads them with a few
/// consumers reused from partition to partition (a record of the previous partition must never
/// land in the next one's archive) and stops each at its cut; the restore produces many small
/// partitions side by side. Every record must come back at its partition and offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wide_topic_round_trips_through_reused_consumers() {
    let broker = TestBroker::get().await;
    let kafka = cluster(broker);
    let (_dir, store) = store();
    let source = broker.unique_topic("wide");
    broker.create_topic(&source, 40).await;
    let produced = fill_varied(broker, &source, 4_000, 40).await;

    let result = backup(&kafka, &store, request(&source, CompressionType::Zstd))
        .await
        .unwrap();
    assert_eq!(result.total_messages, produced.len() as u64);
    assert_eq!(result.partitions.len(), 40);
    for p in &result.partitions {
        let (low, high) = broker.watermarks(&source, p.partition).await;
        assert_eq!(
            (p.start_offset, p.end_offset),
            (low, high),
            "{}",
            p.partition
        );
        assert_eq!(p.messages_count, (high - low) as u64, "{}", p.partition);
    }
    let target = broker.unique_topic("wide-restored");
    let restored = restore(
        &kafka,
        &store,
        RestoreRequest::new(&result.backup_id, &target),
    )
    .await
    .unwrap();
    assert_eq!(restored.messages_restored, produced.len() as u64);
    assert_eq!(restored.partitions_created.len(), 40);
    assert_same(&produced, &broker.consume_all(&target).await);
    broker.delete_topic(&source).await;
    broker.delete_topic(&target).await;
}

/// Simple numbered records: partition `i % partitions`, key `k{i}`, value `v{i}`,
/// timestamp `BASE_TS + (i / partitions) * 1000` (one second apart within a partition).
async fn fill_simple(broker: &TestBroker, topic: &str, n: usize, partitions: i32) {
    let records: Vec<TestRecord> = (0..n)
        .map(|i| TestRecord {
            partition: Some((i % partitions as usize) as i32),
            key: Some(format!("k{i}").into_bytes()),
            value: Some(format!("v{i}").into_bytes()),
            headers: vec![],
            timestamp: Some(BASE_TS + (i / partitions as usize) as i64 * 1000),
        })
        .collect();
    broker.produce(topic, &records).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_producing_ends_at_the_cut() {
    let broker = TestBroker::get().await;
    let kafka = cluster(broker);
    let (_dir, store) = store();
    let topic = broker.unique_topic("cut");
    broker.create_topic(&topic, 3).await;
    fill_simple(broker, &topic, 30_000, 3).await;

    // A producer keeps writing the whole time the backup runs (same task, joined).
    let keep_writing = AtomicBool::new(true);
    let writer = async {
        let producer = broker.producer(&[]);
        let mut i = 0usize;
        while keep_writing.load(Ordering::Relaxed) {
            let batch: Vec<TestRecord> = (0..200)
                .map(|j| TestRecord::kv(format!("live{}", i + j), "more"))
                .collect();
            kvault_testkit::produce_with(&producer, &topic, &batch).await;
            i += 200;
        }
        i
    };
    let run_backup = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let mut before = Vec::new();
        for p in 0..3 {
            before.push(broker.watermarks(&topic, p).await.1);
        }
        let result = backup(&kafka, &store, request(&topic, CompressionType::Lz4))
            .await
            .unwrap();
        // Keep the producer going until it has written past the cut (on a loaded machine it
        // may need a moment), so the test always sees a backup that raced a producer.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let after = loop {
            let mut after = Vec::new();
            for p in 0..3 {
                after.push(broker.watermarks(&topic, p).await.1);
            }
            if after.iter().sum::<i64>() > result.total_messages as i64
                || std::time::Instant::now() > deadline
            {
                break after;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        keep_writing.store(false, Ordering::Relaxed);
        (result, before, after)
    };
    let (live, (result, before, after)) = tokio::join!(writer, run_backup);
    assert!(live > 0);

    let mut total = 0;
    for p in &result.partitions {
        let i = p.partition as usize;
        assert!(
            p.end_offset >= before[i] && p.end_offset <= after[i],
            "{p:?}"
        );
        assert_eq!(p.messages_count, (p.end_offset - p.start_offset) as u64);
        assert_eq!(p.last_offset, Some(p.end_offset - 1));
        total += p.messages_count;
    }
    assert_eq!(result.total_messages, total);
    assert!(
        after.iter().sum::<i64>() > total as i64,
        "the producer wrote past the cut"
    );
    broker.delete_topic(&topic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_subset_numeric_offsets_and_limits() {
    let broker = TestBroker::get().await;
    let kafka = cluster(broker);
    let (_dir, store) = store();
    let topic = broker.unique_topic("select");
    broker.create_topic(&topic, 3).await;
    fill_simple(broker, &topic, 300, 3).await; // 100 per partition

    let mut req = request(&topic, CompressionType::Zstd);
    req.partitions = Some(vec![2, 0]);
    req.start_offset = Offset::At(10);
    req.end_offset = Offset::At(50);
    let result = backup(&kafka, &store, req).await.unwrap();
    let parts: Vec<(i32, u64, i64, i64)> = result
        .partitions
        .iter()
        .map(|p| (p.partition, p.messages_count, p.start_offset, p.end_offset))
        .collect();
    assert_eq!(parts, vec![(0, 40, 10, 50), (2, 40, 10, 50)]);
    assert_eq!(result.partitions[0].first_offset, Some(10));
    assert_eq!(result.partitions[0].last_offset, Some(49));

    // Offsets past the end clamp to the high watermark: an empty, not a failed, backup.
    let mut req = request(&topic, CompressionType::None);
    req.start_offset = Offset::At(1_000);
    req.end_offset = Offset::At(2_000);
    let result = backup(&kafka, &store, req).await.unwrap();
    assert_eq!(result.total_messages, 0);
    assert!(result
        .partitions
        .iter()
        .all(|p| p.start_offset == 100 && p.end_offset == 100));

    // max_messages caps the total across partitions.
    let mut req = request(&topic, CompressionType::Snappy);
    req.max_messages = Some(50);
    let result = backup(&kafka, &store, req).await.unwrap();
    assert_eq!(result.total_messages, 50);
    for p in &result.partitions {
        assert_eq!(
            p.messages_count,
            (p.end_offset - p.start_offset) as u64,
            "{p:?}"
        );
    }

    // A partition the topic does not have.
    let mut req = request(&topic, CompressionType::None);
    req.partitions = Some(vec![0, 7]);
    match backup(&kafka, &store, req).await {
        Err(DomainError::Validation(v)) => {
            assert_eq!(v.field, "partitions");
            assert_eq!(v.value, "7");
        }
        other => panic!("expected a validation error, got {other:?}"),
    }

    // A topic that does not exist.
    match backup(
        &kafka,
        &store,
        request("no-such-topic-kvault", CompressionType::None),
    )
    .await
    {
        Err(DomainError::NotFound { kind, .. }) => {
            assert_eq!(kind, kvault_domain::error::Missing::Topic)
        }
        other => panic!("expected not found, got {other:?}"),
    }
    assert!(kafka.topic_exists(&topic).await.unwrap());
    assert!(!kafka.topic_exists("no-such-topic-kvault").await.unwrap());
    kafka.ping().await.unwrap();
    broker.delete_topic(&topic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_and_end_time_bound_the_backup() {
    let broker = TestBroker::get().await;
    let kafka = cluster(broker);
    let (_dir, store) = store();
    let topic = broker.unique_topic("time");
    broker.create_topic(&topic, 3).await;
    fill_simple(broker, &topic, 300, 3).await; // per partition: offset n at BASE_TS + n s

    let mut req = request(&topic, CompressionType::Gzip);
    req.start_time = Some(Utc.timestamp_millis_opt(BASE_TS + 20_000).unwrap());
    req.end_time = Some(Utc.timestamp_millis_opt(BASE_TS + 30_000).unwrap());
    let result = backup(&kafka, &store, req).await.unwrap();
    assert_eq!(result.total_messages, 30);
    for p in &result.partitions {
        assert_eq!(
            (p.start_offset, p.end_offset, p.messages_count),
            (20, 30, 10),
            "{p:?}"
        );
    }
    broker.delete_topic(&topic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_into_a_different_partition_count() {
    let broker = TestBroker::get().await;
    let kafka = cluster(broker);
    let (_dir, store) = store();
    let topic = broker.unique_topic("repart");
    broker.create_topic(&topic, 3).await;
    let records: Vec<TestRecord> = (0..3_000)
        .map(|i| TestRecord {
            partition: Some(i % 3),
            key: (i % 4 != 0).then(|| format!("user-{}", i % 50).into_bytes()),
            value: Some(format!("v{i}").into_bytes()),
            headers: vec![],
            timestamp: Some(BASE_TS + i as i64),
        })
        .collect();
    broker.produce(&topic, &records).await;
    let result = backup(&kafka, &store, request(&topic, CompressionType::Lz4))
        .await
        .unwrap();

    let target = broker.unique_topic("repart-5");
    let mut req = RestoreRequest::new(&result.backup_id, &target);
    req.target_partitions = Some(5);
    let restored = restore(&kafka, &store, req).await.unwrap();
    assert_eq!(restored.partition_mapping, PartitionMapping::Murmur2);
    assert_eq!(restored.messages_restored, 3_000);
    assert_eq!(broker.partition_count(&target).await, Some(5));

    let got = broker.consume_all(&target).await;
    assert_eq!(got.len(), 3_000);
    let mut null_keys_per_partition = HashMap::new();
    for r in &got {
        match &r.key {
            Some(key) => assert_eq!(r.partition, partition_for_key(key, 5), "{r:?}"),
            None => *null_keys_per_partition.entry(r.partition).or_insert(0) += 1,
        }
    }
    // 750 null-key records spread round-robin over all 5 partitions.
    assert_eq!(null_keys_per_partition.len(), 5);
    assert!(
        null_keys_per_partition.values().all(|n| *n >= 140),
        "{null_keys_per_partition:?}"
    );
    let mut want: Vec<_> = records.iter().map(|r| r.value.clone()).collect();
    let mut have: Vec<_> = got.iter().map(|r| r.value.clone()).collect();
    want.sort();
    have.sort();
    assert_eq!(want, have);

    // preserve_offsets cannot hold across a repartition: refused up front.
    let mut req = RestoreRequest::new(&result.backup_id, broker.unique_topic("repart-po"));
    req.target_partitions = Some(5);
    req.preserve_offsets = true;
    match restore(&kafka, &store, req).await {
        Err(DomainError::Validation(v)) => assert_eq!(v.field, "preserve_offsets"),
        other => panic!("expected a validation error, got {other:?}"),
    }
    broker.delete_topic(&topic).await;
    broker.delete_topic(&target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_archive_is_refused_before_producing() {
    let broker = TestBroker::get().await;
    let kafka = cluster(broker);
    let (dir, store) = store();
    let topic = broker.unique_topic("corrupt");
    broker.create_topic(&topic, 1).await;
    fill_simple(broker, &topic, 2_000, 1).await;
    let result = backup(&kafka, &store, request(&topic, CompressionType::Gzip))
        .await
        .unwrap();

    // Flip one byte in the middle of a segment file.
    let segment = find_segment(&dir.path().join(result.backup_id.as_str()));
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&segment, bytes).unwrap();

    let target = broker.unique_topic("corrupt-target");
    match restore(
        &kafka,
        &store,
        RestoreRequest::new(&result.backup_id, &target),
    )
    .await
    {
        Err(DomainError::CorruptArchive { backup_id, .. }) => {
            assert_eq!(backup_id, result.backup_id.as_str())
        }
        other => panic!("expected a corrupt-archive error, got {other:?}"),
    }
    assert!(
        !kafka.topic_exists(&target).await.unwrap(),
        "nothing may be created"
    );
    broker.delete_topic(&topic).await;
}

fn find_segment(dir: &std::path::Path) -> std::path::PathBuf {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "seg") {
                return path;
            }
        }
    }
    panic!("no segment file under {}", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_append_preserve_offsets_and_source_offset_header() {
    let broker = TestBroker::get().await;
    let kafka = cluster(broker);
    let (_dir, store) = store();
    let topic = broker.unique_topic("append");
    broker.create_topic(&topic, 2).await;
    fill_simple(broker, &topic, 200, 2).await;
    let full = backup(&kafka, &store, request(&topic, CompressionType::Zstd))
        .await
        .unwrap();

    // Offsets preserved into a new topic: the source starts at 0 without gaps.
    let target = broker.unique_topic("append-target");
    let mut req = RestoreRequest::new(&full.backup_id, &target);
    req.preserve_offsets = true;
    req.include_source_offset_header = true;
    let first = restore(&kafka, &store, req).await.unwrap();
    assert!(first.offsets_preserved);
    assert_eq!(first.messages_restored, 200);
    let got = broker.consume_all(&target).await;
    for r in &got {
        let header = r
            .headers
            .iter()
            .find(|(k, _)| k == SOURCE_OFFSET_HEADER)
            .unwrap();
        assert_eq!(header.1.as_deref(), Some(r.offset.to_string().as_bytes()));
    }

    // Again into the same, now non-empty topic: a conflict naming target_topic.
    match restore(
        &kafka,
        &store,
        RestoreRequest::new(&full.backup_id, &target),
    )
    .await
    {
        Err(DomainError::Conflict { field, .. }) => {
            assert_eq!(field.as_deref(), Some("target_topic"))
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Appending is allowed when asked for.
    let mut req = RestoreRequest::new(&full.backup_id, &target);
    req.if_exists = IfExists::Append;
    let second = restore(&kafka, &store, req).await.unwrap();
    assert!(!second.topic_created);
    assert_eq!(second.messages_restored, 200);
    assert_eq!(broker.consume_all(&target).await.len(), 400);
    for p in &second.partitions_created {
        assert_eq!((p.start_offset, p.end_offset), (100, 200), "{p:?}");
    }

    // A backup that starts at offset 10 cannot keep its offsets.
    let mut req = request(&topic, CompressionType::None);
    req.start_offset = Offset::At(10);
    let partial = backup(&kafka, &store, req).await.unwrap();
    let mut req = RestoreRequest::new(&partial.backup_id, broker.unique_topic("po-refused"));
    req.preserve_offsets = true;
    match restore(&kafka, &store, req).await {
        Err(DomainError::Validation(v)) => assert_eq!(v.field, "preserve_offsets"),
        other => panic!("expected a validation error, got {other:?}"),
    }

    // Partition subset and until_time: partition 1 only, records up to BASE_TS + 49 s.
    let target2 = broker.unique_topic("subset-target");
    let mut req = RestoreRequest::new(&full.backup_id, &target2);
    req.partitions = Some(vec![1]);
    req.until_time = Some(Utc.timestamp_millis_opt(BASE_TS + 49_000).unwrap());
    let subset = restore(&kafka, &store, req).await.unwrap();
    assert_eq!(subset.messages_restored, 50);
    let got = broker.consume_all(&target2).await;
    assert!(got.iter().all(|r| r.partition == 1));
    assert!(got.iter().all(|r| r.timestamp.unwrap() <= BASE_TS + 49_000));
    broker.delete_topic(&topic).await;
    broker.delete_topic(&target).await;
    broker.delete_topic(&target2).await;
}

/// The engine behind the domain traits, as the API and CLI hold it: `Arc<dyn Engine>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_runs_backup_and_restore_through_the_domain_traits() {
    use kvault_domain::operations::Engine;
    let broker = TestBroker::get().await;
    let (_dir, store) = store();
    let id = ClusterId::parse("test").unwrap();
    let engine: Arc<dyn Engine> = Arc::new(
        kvault_kafka::KafkaEngine::new(
            [(id.clone(), ClusterConfig::new(broker.bootstrap()))],
            store.clone(),
        )
        .unwrap(),
    );
    assert_eq!(engine.ids(), vec![id.clone()]);
    let source = broker.unique_topic("engine");
    broker.create_topic(&source, 2).await;
    let produced = fill_varied(broker, &source, 500, 2).await;
    assert!(engine.topic_exists(&id, &source).await.unwrap());

    let plan = request(&source, CompressionType::Zstd)
        .validate(BackupDefaults::default(), Utc::now())
        .unwrap();
    let backed_up = engine
        .backup(&id, plan, OperationControl::new())
        .await
        .unwrap();
    assert_eq!(backed_up.total_messages, produced.len() as u64);

    let target = broker.unique_topic("engine-restored");
    let mut req = RestoreRequest::new(&backed_up.backup_id, &target);
    req.rate_limit_per_second = Some(10_000_000);
    let restored = engine
        .restore(&id, req.validate().unwrap(), OperationControl::new())
        .await
        .unwrap();
    assert_eq!(restored.messages_restored, produced.len() as u64);
    assert_same(&produced, &broker.consume_all(&target).await);

    let unknown = ClusterId::parse("nowhere").unwrap();
    let err = engine.ping(&unknown).await.expect_err("unknown cluster");
    assert_eq!(err.kind(), kvault_domain::ErrorKind::NotFound);
}

/// A cluster nobody listens on is `Kafka { Unavailable }` (a 503 / retryable exit code for
/// callers), not an unclassified Kafka error.
#[tokio::test]
async fn an_unreachable_cluster_is_classified_unavailable() {
    use kvault_domain::error::KafkaFailure;
    use kvault_domain::operations::Engine;
    let (_dir, store) = store();
    let id = ClusterId::parse("down").unwrap();
    // A port that was free a moment ago: nothing accepts connections there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let engine: Arc<dyn Engine> = Arc::new(
        kvault_kafka::KafkaEngine::new(
            [(id.clone(), ClusterConfig::new(format!("127.0.0.1:{port}")))],
            store,
        )
        .unwrap(),
    );
    let err = engine
        .topic_exists(&id, "anything")
        .await
        .expect_err("nothing listens there");
    assert_eq!(
        err.kind(),
        kvault_domain::ErrorKind::Kafka(KafkaFailure::Unavailable),
        "{err}"
    );
}

/// Restoring into an existing empty topic whose layout differs from what the request asks:
/// the restore goes into the topic as it is, and the result says what was not applied.
/// Records older than the target's retention: the restore warns (a new topic under the
/// backed-up retention, or an existing one under its own); `retention_override: -1` creates
/// the topic keeping them forever and there is nothing to warn about; an override for a topic
/// that exists is refused before anything is produced.
#[tokio::test]
async fn old_records_and_the_targets_retention() {
    let broker = TestBroker::get().await;
    let (_dir, store) = store();
    let c = cluster(broker);
    let source = broker.unique_topic("retention");
    // A day of retention; the records are from 2025 (BASE_TS), far older.
    broker
        .create_topic_with(&source, 1, &[("retention.ms", "86400000")])
        .await;
    fill_simple(broker, &source, 20, 1).await;
    let produced = 20;
    let backup = backup(&c, &store, request(&source, CompressionType::Lz4))
        .await
        .unwrap();
    assert_eq!(
        backup_configs(&store, backup.backup_id.as_str())
            .await
            .get("retention.ms"),
        Some(&"86400000".to_owned())
    );

    let warned = restore(
        &c,
        &store,
        RestoreRequest::new(&backup.backup_id, broker.unique_topic("retention-new")),
    )
    .await
    .unwrap();
    assert_eq!(warned.messages_restored, produced);
    assert!(
        warned
            .warnings
            .iter()
            .any(|w| w.contains("retention.ms (86400000 ms)") && w.contains("retention_override")),
        "{:?}",
        warned.warnings
    );

    let kept_topic = broker.unique_topic("retention-kept");
    let mut req = RestoreRequest::new(&backup.backup_id, &kept_topic);
    req.retention_override = Some(-1);
    let kept = restore(&c, &store, req).await.unwrap();
    assert_eq!(kept.messages_restored, produced);
    assert!(kept.warnings.is_empty(), "{:?}", kept.warnings);
    let admin = c.admin().unwrap();
    assert_eq!(
        admin
            .topic_configs(&kept_topic)
            .await
            .unwrap()
            .get("retention.ms"),
        Some(&"-1".to_owned())
    );

    // Appending to an existing topic with a short retention warns the same way.
    let mut append = RestoreRequest::new(&backup.backup_id, &source);
    append.if_exists = IfExists::Append;
    let appended = restore(&c, &store, append.clone()).await.unwrap();
    assert!(
        appended.warnings.iter().any(|w| w.contains("retention.ms")),
        "{:?}",
        appended.warnings
    );
    // An override cannot apply to an existing topic: refused, nothing written.
    let before = broker.watermarks(&source, 0).await;
    append.retention_override = Some(-1);
    match restore(&c, &store, append).await {
        Err(DomainError::Validation(e)) => assert_eq!(e.field, "retention_override"),
        other => panic!("expected a validation error, got {other:?}"),
    }
    assert_eq!(broker.watermarks(&source, 0).await, before);
}

async fn backup_configs(store: &Arc<dyn ArchiveStore>, id: &str) -> BTreeMap<String, String> {
    let id = kvault_domain::BackupId::parse(id).unwrap();
    store.manifest(&id).await.unwrap().topic.configs
}

/// The target's broker killed (SIGKILL) mid-restore: the restore fails within a bound set by
/// the producer's delivery timeout — `message.timeout.ms`, a cluster property (kvault's default
/// 30 s; 5 s here) — and the error names the partitions and counts written and the topic the
/// restore created (which cannot be deleted while its broker is gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_whose_target_broker_dies_fails_in_bounded_time() {
    let source = TestBroker::get().await;
    let (_dir, store) = store();
    let c = cluster(source);
    let topic = source.unique_topic("broker-loss");
    source.create_topic(&topic, 2).await;
    fill_simple(source, &topic, 3000, 2).await;
    let backup = backup(&c, &store, request(&topic, CompressionType::Lz4))
        .await
        .unwrap();

    let doomed = TestBroker::start_new().await;
    let mut config = ClusterConfig::new(doomed.bootstrap());
    config
        .properties
        .insert("message.timeout.ms".into(), "5000".into());
    let target = KafkaCluster::connect(ClusterId::parse("doomed").unwrap(), &config).unwrap();
    let mut req = RestoreRequest::new(&backup.backup_id, "restored-then-lost");
    // 500 a second: six seconds of producing, the broker dies two seconds in.
    req.rate_limit_per_second = Some(500);
    let plan = req.validate().unwrap();
    let running = tokio::spawn(async move {
        engine(&target, &store)
            .restore(target.id(), plan, OperationControl::new())
            .await
    });
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    doomed.kill();
    let killed = std::time::Instant::now();
    let outcome = running.await.unwrap();
    let took = killed.elapsed();
    let error = outcome.expect_err("a restore into a dead broker cannot succeed");
    eprintln!("restore failed {took:?} after the kill: {error}");
    assert!(
        took < std::time::Duration::from_secs(45),
        "{took:?}: {error}"
    );
    let message = error.to_string();
    assert!(
        message.contains("records were written: partition "),
        "{message}"
    );
    assert!(message.contains("created by this restore"), "{message}");
}

#[tokio::test]
async fn an_existing_topic_keeps_its_layout_and_the_result_says_so() {
    let broker = TestBroker::get().await;
    let (_dir, store) = store();
    let c = KafkaCluster::connect(
        ClusterId::parse("test").unwrap(),
        &ClusterConfig::new(broker.bootstrap()),
    )
    .unwrap();
    let source = broker.unique_topic("layout");
    broker.create_topic(&source, 2).await;
    let produced = fill_varied(broker, &source, 50, 2).await;
    let plan = request(&source, CompressionType::Zstd)
        .validate(BackupDefaults::default(), Utc::now())
        .unwrap();
    let backup = engine(&c, &store)
        .backup(c.id(), plan, OperationControl::new())
        .await
        .unwrap();

    let target = broker.unique_topic("layout-existing");
    broker.create_topic(&target, 2).await;
    let mut req = RestoreRequest::new(&backup.backup_id, &target);
    req.target_partitions = Some(6);
    req.replication_factor = Some(3);
    let restored = engine(&c, &store)
        .restore(c.id(), req.validate().unwrap(), OperationControl::new())
        .await
        .expect("an empty existing topic takes the restore");
    assert_eq!(restored.messages_restored, produced.len() as u64);
    assert!(!restored.topic_created);
    let warnings = restored.warnings.join("\n");
    assert!(
        warnings.contains("target_partitions 6 was not applied"),
        "{warnings}"
    );
    assert!(
        warnings.contains("replication_factor 3 was not applied"),
        "{warnings}"
    );
    assert_eq!(broker.partition_count(&target).await, Some(2));
}

/// The size limit holds for the archive as a whole: partitions each smaller than one block
/// (never checked while running) still fail the backup when together they pass the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_partitions_cannot_slip_past_the_size_limit() {
    let broker = TestBroker::get().await;
    let kafka = cluster(broker);
    let (_dir, store) = store();
    let topic = broker.unique_topic("small-parts");
    broker.create_topic(&topic, 4).await;
    // ~300 KB of distinct values per partition, well under one 1 MiB block each.
    let records: Vec<TestRecord> = (0..120)
        .map(|i| TestRecord {
            partition: Some(i % 4),
            value: Some(format!("{i:0>10000}").into_bytes()),
            ..TestRecord::default()
        })
        .collect();
    broker.produce(&topic, &records).await;
    let plan = request(&topic, CompressionType::None)
        .validate(
            BackupDefaults {
                max_bytes: Some(500_000),
                ..BackupDefaults::default()
            },
            Utc::now(),
        )
        .unwrap();
    let err = engine(&kafka, &store)
        .backup(kafka.id(), plan, OperationControl::new())
        .await
        .expect_err("1.2 MB in four partitions is over a 500 KB limit");
    assert!(matches!(err, DomainError::LimitExceeded { .. }), "{err:?}");
    assert!(store.list().await.unwrap().is_empty(), "nothing is listed");
}
