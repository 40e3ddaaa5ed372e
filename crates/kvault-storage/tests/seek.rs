//! Seeking inside a partition: `from_offset` and `from_timestamp` skip whole segments by the
//! manifest's ranges (never opening them) and earlier blocks without decoding them.

mod common;

use std::time::Instant;

use kvault_domain::ports::ReadBounds;
use kvault_domain::{BackupId, CompressionType, Record};
use kvault_storage::{Store, StoreOptions};

fn id(s: &str) -> BackupId {
    BackupId::parse(s).unwrap()
}

fn store(dir: &std::path::Path) -> Store {
    Store::local_with_options(
        dir,
        StoreOptions {
            block_size: 4096,
            segment_size: 32 * 1024,
        },
    )
    .unwrap()
}

fn read(store: &Store, b: &str, bounds: ReadBounds) -> Vec<Record> {
    store
        .blocking_read_partition(&id(b), 0, bounds)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// Writes `n` records (offsets 0..n) to partition 0 of backup `name`; returns the manifest.
fn write(store: &Store, name: &str, n: i64) -> (Vec<Record>, kvault_domain::PartitionManifest) {
    let w = store
        .blocking_create(common::spec(name, CompressionType::Lz4, 1))
        .unwrap();
    let mut p = w.partition(0).unwrap();
    let recs: Vec<Record> = (0..n).map(common::record).collect();
    for r in &recs {
        p.append(r).unwrap();
    }
    let pm = p.finish(0, n).unwrap();
    w.commit(vec![pm.clone()], chrono::Utc::now()).unwrap();
    (recs, pm)
}

#[test]
fn from_offset_near_the_end_reads_only_the_last_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store(tmp.path());
    let (recs, pm) = write(&store, "seek", 3_000);
    let segs = &pm.segments;
    assert!(segs.len() >= 4, "{} segments", segs.len());
    let last = &segs[segs.len() - 1];
    let from = last.last_offset - 10;
    let bounds = ReadBounds {
        from_offset: Some(from),
        ..ReadBounds::default()
    };
    let expected: Vec<Record> = recs.iter().filter(|r| r.offset >= from).cloned().collect();
    assert_eq!(read(&store, "seek", bounds), expected);

    // Destroy every earlier segment: the seek never opens them, so it still succeeds.
    for s in &segs[..segs.len() - 1] {
        std::fs::write(tmp.path().join("seek").join(&s.file), b"garbage").unwrap();
    }
    assert_eq!(read(&store, "seek", bounds), expected);
    let all: Result<Vec<_>, _> = store
        .blocking_read_partition(&id("seek"), 0, ReadBounds::default())
        .unwrap()
        .collect();
    assert!(all.is_err(), "a full read meets the destroyed segments");
}

#[test]
fn from_timestamp_skips_earlier_records() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store(tmp.path());
    let (recs, pm) = write(&store, "ts", 3_000);
    let from = pm.segments[2].min_timestamp + 5;
    let bounds = ReadBounds {
        from_timestamp: Some(from),
        ..ReadBounds::default()
    };
    let expected: Vec<Record> = recs
        .iter()
        .filter(|r| r.timestamp >= from)
        .cloned()
        .collect();
    assert_eq!(read(&store, "ts", bounds), expected);
}

/// Not an assertion on time: prints how long the last 100 records of a large partition take
/// by seek and by reading from the start (run with `--nocapture` to see it).
#[test]
fn seek_timing_last_100_records() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store(tmp.path());
    let n = 100_000;
    let (_, pm) = write(&store, "big", n);
    let t = Instant::now();
    let sought = read(
        &store,
        "big",
        ReadBounds {
            from_offset: Some(n - 100),
            ..ReadBounds::default()
        },
    );
    let by_seek = t.elapsed();
    let t = Instant::now();
    let scanned: Vec<Record> = read(&store, "big", ReadBounds::default())
        .into_iter()
        .filter(|r| r.offset >= n - 100)
        .collect();
    let by_scan = t.elapsed();
    assert_eq!(sought, scanned);
    assert_eq!(sought.len(), 100);
    println!(
        "last 100 of {n} records in {} segments: seek {by_seek:?}, scan from start {by_scan:?}",
        pm.segments.len()
    );
}

/// The block reader (what restore produces from) hands out exactly the records the record
/// reader does, under every kind of bound, in blocks that are never empty.
#[test]
fn blocks_hold_the_same_records_as_the_record_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store(tmp.path());
    let (recs, pm) = write(&store, "blocks", 3_000);
    let mid = pm.segments[2].min_timestamp + 5;
    let bounds = [
        ReadBounds::default(),
        ReadBounds {
            from_offset: Some(1_234),
            ..ReadBounds::default()
        },
        ReadBounds {
            from_timestamp: Some(mid),
            until_timestamp: Some(mid + 700),
            ..ReadBounds::default()
        },
    ];
    for bounds in bounds {
        let mut blocks = 0;
        let mut from_blocks = Vec::new();
        for block in store
            .blocking_read_partition_blocks(&id("blocks"), 0, bounds)
            .unwrap()
        {
            let block = block.unwrap();
            assert!(!block.is_empty(), "an empty block was handed out");
            blocks += 1;
            from_blocks.extend(block.to_records());
        }
        let expected: Vec<Record> = recs
            .iter()
            .filter(|r| bounds.admits(r.offset, r.timestamp))
            .cloned()
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(from_blocks, expected, "{bounds:?}");
        assert_eq!(read(&store, "blocks", bounds), expected, "{bounds:?}");
        assert!(blocks > 1, "{bounds:?}: {blocks} block(s)");
    }
}
