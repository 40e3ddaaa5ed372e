//! What encryption costs the archive path: writes and reads the same records into a plain and
//! an encrypted store, alternating, in one run, and prints each side's time and the ratio
//! (the figure docs/performance.md quotes). Per codec in `ENC_CODECS` (default `none zstd`):
//! `cargo run --release -p kvault-storage --example encryption_cost`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use kvault_domain::ports::{ArchiveSpec, ReadBounds};
use kvault_domain::{
    BackupId, Compression, CompressionType, Header, Record, TimestampType, TopicMetadata,
};
use kvault_storage::crypt::{Kek, LocalKeys};
use kvault_storage::Store;

const RECORDS: i64 = 300_000;
const ROUNDS: usize = 3;

fn record(offset: i64) -> Record {
    Record {
        offset,
        timestamp: 1_700_000_000_000 + offset,
        timestamp_type: TimestampType::CreateTime,
        key: Some(format!("key-{}", offset % 1000).into_bytes()),
        value: Some(format!("{{\"n\":{offset},\"pad\":\"{:0>120}\"}}", offset * 7919).into_bytes()),
        headers: vec![Header {
            key: "trace".into(),
            value: Some(offset.to_le_bytes().to_vec()),
        }],
    }
}

fn spec(id: &str, codec: CompressionType) -> ArchiveSpec {
    ArchiveSpec {
        backup_id: BackupId::parse(id).expect("id"),
        archive_uid: kvault_domain::ids::new_uid(),
        cluster_id: kvault_domain::ClusterId::parse("local").expect("cluster id"),
        topic: TopicMetadata {
            name: "events".into(),
            partition_count: 1,
            replication_factor: 1,
            configs: BTreeMap::new(),
        },
        compression: Compression::new(codec, None).expect("codec"),
        include_keys: true,
        include_headers: true,
        created_at: Utc::now(),
        consumer_groups: Vec::new(),
        backup_set: None,
        chain: None,
    }
}

/// Write time and read time (every record decoded) of one archive.
fn round_trip(
    store: &Store,
    id: &str,
    records: &[Record],
    codec: CompressionType,
) -> (Duration, Duration) {
    let t = Instant::now();
    let writer = store.blocking_create(spec(id, codec)).expect("create");
    let mut w = writer.partition(0).expect("partition");
    for r in records {
        w.append(r).expect("append");
    }
    let part = w.finish(0, RECORDS).expect("finish");
    writer.commit(vec![part], Utc::now()).expect("commit");
    let write = t.elapsed();
    let t = Instant::now();
    let read = store
        .blocking_read_partition_blocks(&BackupId::parse(id).expect("id"), 0, ReadBounds::default())
        .expect("read")
        .map(|b| b.expect("block").len())
        .sum::<usize>();
    assert_eq!(read as i64, RECORDS);
    (write, t.elapsed())
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = Store::local(dir.path()).expect("store");
    let kek = Kek::parse(&"5a".repeat(32)).expect("key");
    let keys = LocalKeys::new([("bench".to_owned(), kek)].into(), Some("bench")).expect("keys");
    let sealed = Store::local(dir.path())
        .expect("store")
        .with_keys(Arc::new(keys));
    let records: Vec<Record> = (0..RECORDS).map(record).collect();
    let codecs = std::env::var("ENC_CODECS").unwrap_or_else(|_| "none zstd".into());
    for name in codecs.split_whitespace() {
        let codec: CompressionType = serde_json::from_value(name.into()).expect("codec name");
        let mut sums = [Duration::ZERO; 4];
        for round in 0..ROUNDS {
            let (pw, pr) = round_trip(&plain, &format!("plain-{name}-{round}"), &records, codec);
            let (sw, sr) = round_trip(&sealed, &format!("sealed-{name}-{round}"), &records, codec);
            for (sum, d) in sums.iter_mut().zip([pw, pr, sw, sr]) {
                *sum += d;
            }
        }
        let ratio = |a: Duration, b: Duration| b.as_secs_f64() / a.as_secs_f64();
        println!(
            "{name}: {RECORDS} records x {ROUNDS} rounds: write plain {:?} encrypted {:?} ({:.3}x), read plain {:?} encrypted {:?} ({:.3}x)",
            sums[0], sums[2], ratio(sums[0], sums[2]), sums[1], sums[3], ratio(sums[1], sums[3])
        );
    }
}
