//! A restore continued from a start record, on the test broker, without replicas: the target is
//! prepared as a killed attempt would have left it (a prefix of each partition's records, or
//! all of them), and the continued restore must produce exactly the rest; a target someone
//! else wrote into, or records re-partitioned by key hash, end `Interrupted` before anything
//! is produced. (The kill tests with real replicas are in `tests/resume.rs` at the root.)

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::{backup, cluster, engine, request, store};
use kvault_domain::job::OperationControl;
use kvault_domain::operations::RestoreOperation;
use kvault_domain::restore::RestoreRequest;
use kvault_domain::resume::{JobJournal, StartRecord, TopicResume};
use kvault_domain::{CompressionType, DomainError, DomainResult, IfExists, PartitionMapping};
use kvault_testkit::{ConsumedRecord, TestBroker, TestRecord};

const PARTITIONS: i32 = 3;

/// A journal in memory: what "earlier attempts" recorded, and what this one records.
#[derive(Default)]
struct MemJournal {
    prior: BTreeMap<String, StartRecord>,
    started: Mutex<Vec<StartRecord>>,
    resumed: Mutex<Vec<TopicResume>>,
}

#[async_trait]
impl JobJournal for MemJournal {
    fn is_takeover(&self) -> bool {
        !self.prior.is_empty()
    }
    fn start_record(&self, target_topic: &str) -> Option<StartRecord> {
        self.prior.get(target_topic).cloned()
    }
    async fn record_start(&self, record: StartRecord) -> DomainResult<()> {
        self.started.lock().unwrap().push(record);
        Ok(())
    }
    async fn record_resume(&self, found: TopicResume) -> DomainResult<()> {
        self.resumed.lock().unwrap().push(found);
        Ok(())
    }
    fn finished(&self, _: &str) -> Option<serde_json::Value> {
        None
    }
    async fn record_finished(&self, _: &str, _: serde_json::Value) -> DomainResult<()> {
        Ok(())
    }
}

fn record(i: usize) -> TestRecord {
    TestRecord {
        partition: Some((i % PARTITIONS as usize) as i32),
        key: (i % 7 != 0).then(|| format!("k{i}").into_bytes()),
        value: (i % 13 != 0).then(|| vec![i as u8; i % 30]),
        headers: vec![("h".into(), Some(vec![1, 2])), ("n".into(), None)],
        timestamp: Some(1_700_000_000_000 + i as i64),
    }
}

fn as_test_record(r: &ConsumedRecord) -> TestRecord {
    TestRecord {
        partition: Some(r.partition),
        key: r.key.clone(),
        value: r.value.clone(),
        headers: r.headers.clone(),
        timestamp: r.timestamp,
    }
}

fn by_partition(records: Vec<ConsumedRecord>) -> Vec<Vec<ConsumedRecord>> {
    let mut out = vec![Vec::new(); PARTITIONS as usize];
    for r in records {
        out[r.partition as usize].push(r);
    }
    out
}

fn content(r: &ConsumedRecord) -> impl PartialEq + std::fmt::Debug + '_ {
    (&r.key, &r.value, &r.headers, r.timestamp)
}

struct Source {
    kafka: kvault_kafka::KafkaCluster,
    _dir: tempfile::TempDir,
    store: Arc<dyn kvault_domain::ports::ArchiveStore>,
    backup_id: String,
    records: Vec<Vec<ConsumedRecord>>,
}

async fn source(broker: &TestBroker, n: usize) -> Source {
    let kafka = cluster(broker);
    let (dir, store) = store();
    let topic = broker.unique_topic("resume-src");
    broker.create_topic(&topic, PARTITIONS).await;
    let records: Vec<TestRecord> = (0..n).map(record).collect();
    broker.produce(&topic, &records).await;
    let result = backup(&kafka, &store, request(&topic, CompressionType::Zstd))
        .await
        .expect("backup");
    Source {
        kafka,
        _dir: dir,
        store,
        backup_id: result.backup_id.to_string(),
        records: by_partition(broker.consume_all(&topic).await),
    }
}

/// Restores `src` into `target` as an attempt continuing from `prior` (none: a first attempt).
async fn restore_with(
    src: &Source,
    target: &str,
    prior: Option<StartRecord>,
    append: bool,
) -> (DomainResult<kvault_domain::RestoreResult>, Arc<MemJournal>) {
    let mut journal = MemJournal::default();
    if let Some(start) = prior {
        journal.prior.insert(target.to_owned(), start);
    }
    let journal = Arc::new(journal);
    let mut req = RestoreRequest::new(&src.backup_id, target);
    req.rate_limit_per_second = Some(10_000_000);
    if append {
        req.if_exists = IfExists::Append;
    }
    let control = OperationControl::with_journal(journal.clone());
    let result = engine(&src.kafka, &src.store)
        .restore(src.kafka.id(), req.validate().unwrap(), control)
        .await;
    (result, journal)
}

/// Each target partition holds `held` records, then every source record once, in order.
async fn assert_exactly_once(broker: &TestBroker, target: &str, src: &Source, held: usize) {
    let got = by_partition(broker.consume_all(target).await);
    for (p, records) in got.iter().enumerate() {
        assert_eq!(records.len(), held + src.records[p].len(), "partition {p}");
        for (got, want) in records[held..].iter().zip(&src.records[p]) {
            assert_eq!(content(got), content(want), "partition {p}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_continued_restore_produces_exactly_the_records_not_yet_on_the_target() {
    let broker = TestBroker::get().await;
    let src = source(broker, 3_000).await;

    // A first attempt records its start before producing, then restores everything.
    let whole = broker.unique_topic("resume-whole");
    let (result, journal) = restore_with(&src, &whole, None, false).await;
    assert_eq!(result.expect("restore").messages_restored, 3_000);
    let start = journal.started.lock().unwrap()[0].clone();
    assert!(start.topic_created);
    assert_eq!(start.mapping, PartitionMapping::Identity);
    assert_eq!(
        start.base_offsets,
        (0..PARTITIONS).map(|p| (p, 0)).collect()
    );
    assert_eq!(start.archives.len(), 1);

    // Continued after it finished: nothing more is produced, the result is the same.
    let (again, journal) = restore_with(&src, &whole, Some(start.clone()), false).await;
    let again = again.expect("continued");
    assert_eq!(again.messages_restored, 3_000);
    assert_eq!(again.partitions_created[0].start_offset, 0);
    assert_exactly_once(broker, &whole, &src, 0).await;
    let resumed = journal.resumed.lock().unwrap().clone();
    let already: u64 = resumed[0]
        .partitions
        .iter()
        .map(|p| p.already_written)
        .sum();
    assert_eq!(already, 3_000);

    // Killed part way: a different prefix of each partition is there.
    let part = broker.unique_topic("resume-part");
    broker.create_topic(&part, PARTITIONS).await;
    let prefix: Vec<TestRecord> = (0..PARTITIONS as usize)
        .flat_map(|p| src.records[p][..[0, 1, 517][p]].iter().map(as_test_record))
        .collect();
    broker.produce(&part, &prefix).await;
    let mut prior = start.clone();
    prior.target_topic = part.clone();
    let (result, journal) = restore_with(&src, &part, Some(prior.clone()), false).await;
    let result = result.expect("continued");
    assert_eq!(result.messages_restored, 3_000);
    assert_exactly_once(broker, &part, &src, 0).await;
    let resumed = journal.resumed.lock().unwrap().clone();
    let skipped: Vec<u64> = resumed[0]
        .partitions
        .iter()
        .map(|p| p.already_written)
        .collect();
    assert_eq!(skipped, vec![0, 1, 517]);
    assert!(journal.started.lock().unwrap().is_empty(), "no new start");

    // Appending: the base offsets recorded at the start are where the job's records begin.
    let appended = broker.unique_topic("resume-append");
    broker.create_topic(&appended, PARTITIONS).await;
    let held: Vec<TestRecord> = (0..PARTITIONS as usize * 5)
        .map(|i| TestRecord {
            partition: Some((i % PARTITIONS as usize) as i32),
            ..TestRecord::kv(format!("held-{i}"), "x")
        })
        .collect();
    broker.produce(&appended, &held).await;
    let prefix: Vec<TestRecord> = (0..PARTITIONS as usize)
        .flat_map(|p| src.records[p][..200].iter().map(as_test_record))
        .collect();
    broker.produce(&appended, &prefix).await;
    let mut prior = start.clone();
    prior.target_topic = appended.clone();
    prior.topic_created = false;
    prior.base_offsets = (0..PARTITIONS).map(|p| (p, 5)).collect();
    let (result, _) = restore_with(&src, &appended, Some(prior), true).await;
    assert_eq!(result.expect("continued").messages_restored, 3_000);
    assert_exactly_once(broker, &appended, &src, 5).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn what_cannot_be_proved_ends_interrupted_before_anything_is_produced() {
    let broker = TestBroker::get().await;
    let src = source(broker, 600).await;
    let start = |topic: &str, mapping| StartRecord {
        target_topic: topic.to_owned(),
        topic_created: true,
        mapping,
        base_offsets: (0..PARTITIONS).map(|p| (p, 0)).collect(),
        archives: Vec::new(),
        source_cut: BTreeMap::new(),
    };
    let interrupted = |r: &DomainResult<kvault_domain::RestoreResult>| matches!(r, Err(e) if matches!(e.root(), DomainError::Interrupted { .. }));
    // The recorded archives are read from the backup itself.
    let probe = broker.unique_topic("resume-probe");
    let (_, journal) = restore_with(&src, &probe, None, false).await;
    let archives = journal.started.lock().unwrap()[0].archives.clone();

    // Another writer's record where the job's last record should be.
    let foreign = broker.unique_topic("resume-foreign");
    broker.create_topic(&foreign, PARTITIONS).await;
    let mut prefix: Vec<TestRecord> = src.records[1][..10].iter().map(as_test_record).collect();
    prefix.push(TestRecord {
        partition: Some(1),
        ..TestRecord::kv("not-ours", "x")
    });
    broker.produce(&foreign, &prefix).await;
    let mut prior = start(&foreign, PartitionMapping::Identity);
    prior.archives = archives.clone();
    let (result, _) = restore_with(&src, &foreign, Some(prior), false).await;
    assert!(interrupted(&result), "{result:?}");
    let total: usize = broker.consume_all(&foreign).await.len();
    assert_eq!(total, 11, "nothing was produced");

    // Another archive than the one the job started with.
    let other = broker.unique_topic("resume-other-archive");
    broker.create_topic(&other, PARTITIONS).await;
    let mut prior = start(&other, PartitionMapping::Identity);
    prior.archives = vec![(src.backup_id.clone(), Some("another-uid".into()))];
    let (result, _) = restore_with(&src, &other, Some(prior), false).await;
    assert!(interrupted(&result), "{result:?}");

    // Re-partitioned by key hash with records already there: which landed is unprovable...
    let hashed = broker.unique_topic("resume-hashed");
    broker.create_topic(&hashed, PARTITIONS).await;
    broker
        .produce(
            &hashed,
            &src.records[0][..3]
                .iter()
                .map(as_test_record)
                .collect::<Vec<_>>(),
        )
        .await;
    let mut prior = start(&hashed, PartitionMapping::Murmur2);
    prior.archives = archives.clone();
    let (result, _) = restore_with(&src, &hashed, Some(prior.clone()), false).await;
    assert!(interrupted(&result), "{result:?}");
    // ... but with nothing there yet it simply runs.
    let empty = broker.unique_topic("resume-hashed-empty");
    broker.create_topic(&empty, PARTITIONS).await;
    prior.target_topic = empty.clone();
    let (result, _) = restore_with(&src, &empty, Some(prior), false).await;
    assert_eq!(result.expect("nothing had landed").messages_restored, 600);
}

/// `per_partition` records on each partition, stamped `ts0 + i`.
fn stamped(label: &str, per_partition: usize, ts0: i64) -> Vec<TestRecord> {
    (0..PARTITIONS)
        .flat_map(|p| {
            (0..per_partition).map(move |i| TestRecord {
                partition: Some(p),
                timestamp: Some(ts0 + i as i64),
                ..TestRecord::kv(format!("{label}-{p}-{i}"), vec![i as u8; i % 9])
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_continued_point_in_time_restore_of_a_chain_is_exact() {
    let broker = TestBroker::get().await;
    let kafka = cluster(broker);
    let (dir, store) = store();
    let topic = broker.unique_topic("resume-chain");
    broker.create_topic(&topic, PARTITIONS).await;
    let t0 = 1_700_000_000_000;
    broker.produce(&topic, &stamped("a", 300, t0)).await;
    let full = backup(&kafka, &store, request(&topic, CompressionType::Lz4))
        .await
        .expect("full");
    broker
        .produce(&topic, &stamped("b", 200, t0 + 10_000))
        .await;
    let mut req = request(&topic, CompressionType::Zstd);
    req.incremental_from = Some(full.backup_id.to_string());
    let second = backup(&kafka, &store, req).await.expect("incremental 1");
    broker
        .produce(&topic, &stamped("c", 200, t0 + 20_000))
        .await;
    let mut req = request(&topic, CompressionType::Zstd);
    req.incremental_from = Some(second.backup_id.to_string());
    let tip = backup(&kafka, &store, req).await.expect("incremental 2");
    let src = Source {
        kafka,
        _dir: dir,
        store,
        backup_id: tip.backup_id.to_string(),
        records: Vec::new(),
    };
    let until = chrono::DateTime::from_timestamp_millis(t0 + 10_100).unwrap();
    let restore_until = |target: String, prior: Option<StartRecord>| {
        let src = &src;
        async move {
            let mut journal = MemJournal::default();
            if let Some(start) = prior {
                journal.prior.insert(target.clone(), start);
            }
            let journal = Arc::new(journal);
            let mut req = RestoreRequest::new(&src.backup_id, &target);
            req.rate_limit_per_second = Some(10_000_000);
            req.until_time = Some(until);
            let control = OperationControl::with_journal(journal.clone());
            let plan = req.validate().unwrap();
            let result = engine(&src.kafka, &src.store)
                .restore(src.kafka.id(), plan, control)
                .await;
            (result, journal)
        }
    };
    // The reference: an attempt that never stopped (a: 300, b up to +100: 101 per partition).
    let whole = broker.unique_topic("resume-chain-whole");
    let (result, journal) = restore_until(whole.clone(), None).await;
    assert_eq!(result.expect("restore").messages_restored, 401 * 3);
    let start = journal.started.lock().unwrap()[0].clone();
    assert_eq!(
        start.archives.len(),
        3,
        "every link of the chain is recorded"
    );
    let expected = by_partition(broker.consume_all(&whole).await);

    // Killed part way through the second link on one partition, the first on another.
    let part = broker.unique_topic("resume-chain-part");
    broker.create_topic(&part, PARTITIONS).await;
    let prefix: Vec<TestRecord> = (0..PARTITIONS as usize)
        .flat_map(|p| expected[p][..[350, 120, 0][p]].iter().map(as_test_record))
        .collect();
    broker.produce(&part, &prefix).await;
    let mut prior = start;
    prior.target_topic = part.clone();
    let (result, journal) = restore_until(part.clone(), Some(prior)).await;
    assert_eq!(result.expect("continued").messages_restored, 401 * 3);
    let skipped: Vec<u64> = journal.resumed.lock().unwrap()[0]
        .partitions
        .iter()
        .map(|p| p.already_written)
        .collect();
    assert_eq!(skipped, vec![350, 120, 0]);
    let got = by_partition(broker.consume_all(&part).await);
    for p in 0..PARTITIONS as usize {
        let got: Vec<_> = got[p].iter().map(|r| (r.offset, content(r))).collect();
        let want: Vec<_> = expected[p].iter().map(|r| (r.offset, content(r))).collect();
        assert_eq!(got, want, "partition {p}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_continued_restore_commits_the_groups_as_a_run_that_never_stopped() {
    use kvault_domain::groups::{GroupChoice, GroupTranslationStatus};

    let broker = TestBroker::get().await;
    let kafka = cluster(broker);
    let (dir, store) = store();
    let topic = broker.unique_topic("resume-groups");
    broker.create_topic(&topic, PARTITIONS).await;
    broker
        .produce(&topic, &(0..900).map(record).collect::<Vec<_>>())
        .await;
    let group = broker.unique_topic("resume-group");
    broker
        .commit_group(&group, &topic, &[(0, 120), (1, 7), (2, 300)])
        .await;
    let result = backup(&kafka, &store, request(&topic, CompressionType::Lz4))
        .await
        .expect("backup");
    let src = Source {
        kafka,
        _dir: dir,
        store,
        backup_id: result.backup_id.to_string(),
        records: by_partition(broker.consume_all(&topic).await),
    };
    let restore_groups = |target: String, prior: Option<StartRecord>| {
        let src = &src;
        let group = group.clone();
        async move {
            let mut journal = MemJournal::default();
            if let Some(start) = prior {
                journal.prior.insert(target.clone(), start);
            }
            let journal = Arc::new(journal);
            let mut req = RestoreRequest::new(&src.backup_id, &target);
            req.rate_limit_per_second = Some(10_000_000);
            req.restore_consumer_groups = Some(GroupChoice::Only(vec![group]));
            let control = OperationControl::with_journal(journal.clone());
            let plan = req.validate().unwrap();
            let result = engine(&src.kafka, &src.store)
                .restore(src.kafka.id(), plan, control)
                .await;
            (result.expect("restore"), journal)
        }
    };
    let whole = broker.unique_topic("resume-groups-whole");
    let (reference, journal) = restore_groups(whole.clone(), None).await;
    let start = journal.started.lock().unwrap()[0].clone();
    let outcome = |r: &kvault_domain::RestoreResult| {
        let g = &r.consumer_groups_restored[0];
        let at: Vec<(i32, i64)> = g
            .partitions
            .iter()
            .map(|p| (p.partition, p.target_offset))
            .collect();
        (g.status, at)
    };
    let expected = outcome(&reference);
    assert_eq!(expected.0, GroupTranslationStatus::Translated);
    assert_eq!(expected.1, vec![(0, 120), (1, 7), (2, 300)]);

    // The earlier attempt died after committing the groups: committed again, same outcome.
    let (again, _) = restore_groups(whole.clone(), Some(start.clone())).await;
    assert_eq!(outcome(&again), expected, "{again:?}");

    // Killed mid-copy: the records already there are mapped where they landed.
    let part = broker.unique_topic("resume-groups-part");
    broker.create_topic(&part, PARTITIONS).await;
    let prefix: Vec<TestRecord> = (0..PARTITIONS as usize)
        .flat_map(|p| src.records[p][..[150, 3, 0][p]].iter().map(as_test_record))
        .collect();
    broker.produce(&part, &prefix).await;
    let mut prior = start;
    prior.target_topic = part.clone();
    let (continued, _) = restore_groups(part.clone(), Some(prior)).await;
    assert_eq!(outcome(&continued), expected, "{continued:?}");
    assert_eq!(
        broker.group_offsets(&group, &part, PARTITIONS).await,
        vec![Some(120), Some(7), Some(300)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_continued_filtered_migration_skips_exactly_the_copies_already_there() {
    use kvault_domain::migrate::{MessageTransformation, MigrateRequest, OnEvaluationError};

    let broker = TestBroker::get().await;
    let kafka = cluster(broker);
    let source = broker.unique_topic("resume-mig-src");
    broker.create_topic(&source, PARTITIONS).await;
    broker
        .produce(&source, &(0..1_200).map(record).collect::<Vec<_>>())
        .await;
    let request = |target: &str| MigrateRequest {
        source_cluster: "test".into(),
        source_topic: source.clone(),
        target_cluster: "test".into(),
        target_topic: target.into(),
        max_messages: None,
        // Drops the records without a key: the skip counts copies, not source records.
        transformation: Some(MessageTransformation {
            filter_expression: Some("!key_is_null".into()),
            ..MessageTransformation::default()
        }),
        rate_limit_per_second: None,
        on_error: OnEvaluationError::Skip,
        translate_consumer_groups: Vec::new(),
        consumer_groups_mode: Default::default(),
        if_exists: Default::default(),
    };
    let run = |target: String, prior: Option<StartRecord>| {
        let (kafka, req) = (&kafka, request(&target));
        async move {
            let mut journal = MemJournal::default();
            if let Some(start) = prior {
                journal.prior.insert(target.clone(), start);
            }
            let journal = Arc::new(journal);
            let control = OperationControl::with_journal(journal.clone());
            let result = kvault_kafka::migrate(kafka, kafka, "m".into(), req, control).await;
            (result, journal)
        }
    };
    let whole = broker.unique_topic("resume-mig-whole");
    let (reference, journal) = run(whole.clone(), None).await;
    let reference = reference.expect("migration");
    let start = journal.started.lock().unwrap()[0].clone();
    assert_eq!(start.source_cut.len(), PARTITIONS as usize);
    let copies = by_partition(broker.consume_all(&whole).await);

    let part = broker.unique_topic("resume-mig-part");
    broker.create_topic(&part, PARTITIONS).await;
    let prefix: Vec<TestRecord> = (0..PARTITIONS as usize)
        .flat_map(|p| copies[p][..[0, 1, 250][p]].iter().map(as_test_record))
        .collect();
    broker.produce(&part, &prefix).await;
    let mut prior = start.clone();
    prior.target_topic = part.clone();
    let (continued, _) = run(part.clone(), Some(prior.clone())).await;
    let continued = continued.expect("continued");
    assert_eq!(
        (
            continued.messages_read,
            continued.messages_filtered,
            continued.messages_written
        ),
        (
            reference.messages_read,
            reference.messages_filtered,
            reference.messages_written
        )
    );
    let got = by_partition(broker.consume_all(&part).await);
    for p in 0..PARTITIONS as usize {
        let got: Vec<_> = got[p].iter().map(|r| (r.offset, content(r))).collect();
        let want: Vec<_> = copies[p].iter().map(|r| (r.offset, content(r))).collect();
        assert_eq!(got, want, "partition {p}");
    }

    // A record that is not the migration's where its last copy should be.
    let foreign = broker.unique_topic("resume-mig-foreign");
    broker.create_topic(&foreign, PARTITIONS).await;
    let mut prefix: Vec<TestRecord> = copies[2][..20].iter().map(as_test_record).collect();
    prefix.push(TestRecord {
        partition: Some(2),
        ..TestRecord::kv("not-ours", "x")
    });
    broker.produce(&foreign, &prefix).await;
    prior.target_topic = foreign.clone();
    let (result, _) = run(foreign.clone(), Some(prior)).await;
    assert!(
        matches!(&result, Err(e) if matches!(e.root(), DomainError::Interrupted { .. })),
        "{result:?}"
    );
    assert_eq!(broker.consume_all(&foreign).await.len(), 21);
}
