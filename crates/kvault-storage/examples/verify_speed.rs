//! Times the full `blocking_verify` (decode everything) against the bytes-only
//! `blocking_verify_integrity` on one zstd backup of 4 partitions, in one run so the ratio
//! holds on a loaded machine: `cargo run --release -p kvault-storage --example verify_speed`.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::Utc;
use kvault_domain::job::OperationControl;
use kvault_domain::ports::ArchiveSpec;
use kvault_domain::{
    BackupId, Compression, CompressionType, Header, Record, TimestampType, TopicMetadata,
};
use kvault_storage::Store;

const PARTITIONS: i32 = 4;
const RECORDS_PER_PARTITION: i64 = 250_000;

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

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::local(dir.path()).expect("store");
    let id = BackupId::parse("speed").expect("id");
    let writer = store
        .blocking_create(ArchiveSpec {
            backup_id: id.clone(),
            archive_uid: kvault_domain::ids::new_uid(),
            cluster_id: kvault_domain::ClusterId::parse("local").expect("cluster id"),
            topic: TopicMetadata {
                name: "events".into(),
                partition_count: PARTITIONS,
                replication_factor: 1,
                configs: BTreeMap::new(),
            },
            compression: Compression::new(CompressionType::Zstd, None).expect("zstd"),
            include_keys: true,
            include_headers: true,
            created_at: Utc::now(),
            consumer_groups: Vec::new(),
            backup_set: None,
            chain: None,
        })
        .expect("create");
    let mut parts = Vec::new();
    for p in 0..PARTITIONS {
        let mut w = writer.partition(p).expect("partition");
        for o in 0..RECORDS_PER_PARTITION {
            w.append(&record(o)).expect("append");
        }
        parts.push(w.finish(0, RECORDS_PER_PARTITION).expect("finish"));
    }
    let manifest = writer.commit(parts, Utc::now()).expect("commit");
    let bytes: u64 = manifest.partitions.iter().map(|p| p.compressed_bytes).sum();
    for round in 0..2 {
        let t = Instant::now();
        let full = store
            .blocking_verify(&id, &OperationControl::default())
            .expect("verify");
        let full_time = t.elapsed();
        let t = Instant::now();
        let fast = store
            .blocking_verify_integrity(&id, &OperationControl::default())
            .expect("integrity");
        let fast_time = t.elapsed();
        assert!(full.valid && fast.valid);
        println!(
            "round {round}: {} messages, {:.1} MiB on disk: full verify {:?}, integrity check {:?} ({:.1}x faster)",
            full.messages_checked,
            bytes as f64 / (1 << 20) as f64,
            full_time,
            fast_time,
            full_time.as_secs_f64() / fast_time.as_secs_f64()
        );
    }
}
