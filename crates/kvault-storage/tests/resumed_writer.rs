//! A backup resumed after its writer stopped, on both backends: a writer process killed with
//! SIGKILL mid-partition, whose finished segments (as it reported them) are kept by the
//! resumed writer while its unfinished segment goes; the resumed archive reads back exactly the
//! records an uninterrupted writer would have written and verifies. On S3 also the fencing: a
//! writer that is still alive when the backup is resumed can neither commit nor touch the
//! resumed attempt's objects.

mod common;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use kvault_domain::job::OperationControl;
use kvault_domain::ports::{ArchiveSpec, ArchiveWriter, ReadBounds};
use kvault_domain::{BackupId, CompressionType, PartitionManifest, Record, SegmentInfo};
use kvault_storage::backend::object::{ObjectBackend, ObjectConfig, MIN_PART_SIZE};
use kvault_storage::{Store, StoreOptions};
use kvault_testkit::s3::{TestS3, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY};

const OPTIONS: StoreOptions = StoreOptions {
    block_size: 4096,
    segment_size: 16 * 1024,
};
const RECORDS: i64 = 3_000;
/// Where the killed writer stops: past several finished segments, inside an open one.
const KILLED_AT: i64 = 2_500;
const CHILD_ENV: &str = "KVAULT_TEST_RESUME_TARGET";
const UID: &str = "0c0ffee0-0000-4000-8000-000000000001";

fn s3_config(endpoint: &str, bucket: &str) -> ObjectConfig {
    ObjectConfig {
        url: format!("s3://{bucket}/vault"),
        endpoint: Some(endpoint.to_owned()),
        region: Some("us-east-1".into()),
        allow_http: true,
        access_key_id: Some(S3_ACCESS_KEY_ID.into()),
        secret_access_key: Some(S3_SECRET_ACCESS_KEY.into()),
        part_size: MIN_PART_SIZE,
        // Long: a resume must not depend on the old lease going stale.
        abandoned_after: Duration::from_secs(600),
        max_retries: 1,
        retry_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(20),
        ..ObjectConfig::default()
    }
}

/// A store on `target`: a directory, or `endpoint bucket`.
fn store_on(target: &str) -> Store {
    match target.split_once(' ') {
        Some((endpoint, bucket)) => Store::on(
            Arc::new(ObjectBackend::connect(&s3_config(endpoint, bucket)).unwrap()),
            OPTIONS,
        )
        .unwrap(),
        None => Store::local_with_options(target, OPTIONS).unwrap(),
    }
}

fn spec() -> ArchiveSpec {
    let mut spec = common::spec("resumed", CompressionType::Zstd, 2);
    spec.archive_uid = UID.into();
    spec
}

/// Appends `range` of `partition`; the finished segments.
fn append(
    writer: &dyn ArchiveWriter,
    partition: i32,
    range: std::ops::Range<i64>,
) -> Box<dyn kvault_domain::ports::PartitionWriter> {
    let mut pw = writer.partition(partition).unwrap();
    for o in range {
        pw.append(&common::record(o)).unwrap();
    }
    pw
}

/// The child side: partition 0 whole, partition 1 up to [`KILLED_AT`]; prints the finished
/// segments as the checkpoint would record them, then waits to be killed.
#[test]
#[ignore = "a child process of the resumed-writer tests, not a test"]
fn write_until_killed() {
    let Ok(target) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = store_on(&target);
    let writer = store.blocking_create(spec()).unwrap();
    let p0 = append(writer.as_ref(), 0, 0..RECORDS);
    let p1 = append(writer.as_ref(), 1, 0..KILLED_AT);
    let finished: BTreeMap<i32, Vec<SegmentInfo>> = BTreeMap::from([
        (0, p0.finished_segments().to_vec()),
        (1, p1.finished_segments().to_vec()),
    ]);
    println!("checkpoint {}", serde_json::to_string(&finished).unwrap());
    std::thread::sleep(Duration::from_secs(120));
    drop((p0, p1, writer));
}

/// Runs the child on `target` and kills it once it has printed its checkpoint.
fn killed_writer(target: &str) -> BTreeMap<i32, Vec<SegmentInfo>> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "write_until_killed", "--ignored", "--nocapture"])
        .env(CHILD_ENV, target)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let line = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("checkpoint ").map(str::to_owned))
        .expect("the child never reported its checkpoint");
    child.kill().unwrap();
    child.wait().unwrap();
    serde_json::from_str(&line).unwrap()
}

/// Resumes the backup from `finished`, writes what the kept segments do not hold, commits.
fn resume_and_commit(
    store: &Store,
    finished: BTreeMap<i32, Vec<SegmentInfo>>,
) -> Vec<PartitionManifest> {
    let (writer, kept) = store.blocking_resume(spec(), finished.clone()).unwrap();
    for (p, segments) in &finished {
        let kept = kept.get(p).map_or(0, Vec::len);
        assert_eq!(
            kept,
            segments.len(),
            "partition {p}: every finished segment is kept"
        );
    }
    let next = |p: i32| {
        kept.get(&p)
            .and_then(|s| s.last())
            .map_or(0, |s| s.last_offset + 1)
    };
    let mut manifests = Vec::new();
    for p in 0..2 {
        let pw = append(writer.as_ref(), p, next(p)..RECORDS);
        manifests.push(pw.finish(0, RECORDS).unwrap());
    }
    writer
        .commit(manifests.clone(), chrono::Utc::now())
        .unwrap()
        .partitions
}

fn read_back(store: &Store) -> Vec<Record> {
    let id = BackupId::parse("resumed").unwrap();
    let mut out = Vec::new();
    for p in 0..2 {
        for r in store
            .blocking_read_partition(&id, p, ReadBounds::default())
            .unwrap()
        {
            out.push(r.unwrap());
        }
    }
    out
}

fn expected() -> Vec<Record> {
    (0..2)
        .flat_map(|_| (0..RECORDS).map(common::record))
        .collect()
}

fn check_resumed(store: &Store, target: &str) {
    let finished = killed_writer(target);
    assert!(
        finished[&1].len() >= 2,
        "the killed writer had finished segments: {finished:?}"
    );
    let partitions = resume_and_commit(store, finished.clone());
    assert_eq!(
        read_back(store),
        expected(),
        "every record exactly once, byte for byte"
    );
    let id = BackupId::parse("resumed").unwrap();
    let report = store
        .blocking_verify(&id, &OperationControl::new())
        .unwrap();
    assert!(report.valid, "{:?}", report.problems);
    assert_eq!(report.messages_checked, 2 * RECORDS as u64);
    for p in &partitions {
        assert!(p.contiguous, "partition {}", p.partition);
        assert_eq!(p.message_count, RECORDS as u64);
        let shas: Vec<&str> = finished[&p.partition]
            .iter()
            .map(|s| s.sha256.as_str())
            .collect();
        let kept: Vec<&str> = p.segments[..shas.len()]
            .iter()
            .map(|s| s.sha256.as_str())
            .collect();
        assert_eq!(
            kept, shas,
            "the kept segments are the finished ones, unchanged"
        );
    }
    assert_eq!(
        store.sweep_abandoned(),
        0,
        "nothing of the killed writer is left to sweep"
    );
}

#[test]
fn a_killed_local_writer_is_resumed_from_its_finished_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_on(&dir.path().display().to_string());
    check_resumed(&store, &dir.path().display().to_string());
    // Only the committed backup is left in the directory.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["resumed".to_owned()]);
}

#[test]
fn a_killed_s3_writer_is_resumed_from_its_finished_segments() {
    let server = TestS3::shared();
    let bucket = server.fresh_bucket("resume");
    let target = format!("{} {bucket}", server.endpoint());
    let store = store_on(&target);
    check_resumed(&store, &target);
    assert_eq!(
        server.open_uploads(&bucket),
        0,
        "the killed writer's upload was aborted"
    );
}

#[test]
fn on_s3_a_writer_still_alive_is_fenced_off_by_the_resume() {
    let server = TestS3::shared();
    let bucket = server.fresh_bucket("fence");
    let target = format!("{} {bucket}", server.endpoint());
    let (old_store, new_store) = (store_on(&target), store_on(&target));
    let old = old_store.blocking_create(spec()).unwrap();
    let mut p0 = append(old.as_ref(), 0, 0..KILLED_AT);
    let finished = BTreeMap::from([(0, p0.finished_segments().to_vec())]);
    // The job system decided the old writer is gone; it is not.
    let (writer, kept) = new_store.blocking_resume(spec(), finished).unwrap();
    assert!(!kept[&0].is_empty());
    // The old writer can no longer finish a segment or commit.
    let more: Result<(), _> = (KILLED_AT..RECORDS).try_for_each(|o| p0.append(&common::record(o)));
    let old_outcome = more
        .and_then(|()| p0.finish(0, RECORDS))
        .and_then(|m| old.commit(vec![m], chrono::Utc::now()));
    assert!(old_outcome.is_err(), "a fenced writer committed");
    let next = kept[&0].last().unwrap().last_offset + 1;
    let manifests: Vec<PartitionManifest> = (0..2)
        .map(|p| {
            let from = if p == 0 { next } else { 0 };
            append(writer.as_ref(), p, from..RECORDS)
                .finish(0, RECORDS)
                .unwrap()
        })
        .collect();
    writer.commit(manifests, chrono::Utc::now()).unwrap();
    assert_eq!(read_back(&new_store), expected());
    let id = BackupId::parse("resumed").unwrap();
    assert!(
        new_store
            .blocking_verify(&id, &OperationControl::new())
            .unwrap()
            .valid
    );
}
