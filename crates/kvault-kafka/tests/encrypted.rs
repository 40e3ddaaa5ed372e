//! Encrypted backups on the test broker: a backup and restore per codec is byte-exact through
//! an encrypting store; a restore without the key, with a tampered block, after a re-wrap
//! (old key gone) and after a crypto-shred behaves as documented, creating nothing when it
//! refuses.

use std::collections::BTreeMap;
use std::sync::Arc;

use kvault_domain::ports::ArchiveStore;
use kvault_domain::restore::RestoreRequest;
use kvault_domain::{BackupId, CompressionType, DomainError, StorageFailure};
use kvault_storage::crypt::{Kek, LocalKeys};
use kvault_storage::Store;
use kvault_testkit::{ConsumedRecord, TestBroker, TestRecord};
use sha2::Digest;

mod common;

use common::{backup, cluster, request, restore};

const BASE_TS: i64 = 1_750_000_000_000;
const MARKER: &[u8] = b"MARKER-plaintext-7d1f";

/// A store in `dir` with keys (id, key byte), encrypting under `active`.
fn keyed(dir: &std::path::Path, keys: &[(&str, u8)], active: &str) -> Store {
    let keys = keys
        .iter()
        .map(|(id, b)| (id.to_string(), Kek::parse(&hex::encode([*b; 32])).unwrap()))
        .collect();
    Store::local(dir)
        .unwrap()
        .with_keys(Arc::new(LocalKeys::new(keys, Some(active)).unwrap()))
}

fn record(i: usize) -> TestRecord {
    TestRecord {
        partition: Some((i % 3) as i32),
        key: match i % 4 {
            0 => None,
            1 => Some(Vec::new()),
            _ => Some(vec![0xff, (i % 256) as u8]),
        },
        value: match i % 5 {
            0 => None,
            1 => Some(Vec::new()),
            2 if i == 7 => Some(MARKER.to_vec()),
            _ => Some(format!("value-{i}-{}", "y".repeat(i % 50)).into_bytes()),
        },
        headers: match i % 3 {
            0 => vec![("h".into(), None), ("h".into(), Some(vec![]))],
            _ => Vec::new(),
        },
        timestamp: Some(BASE_TS + i as i64),
    }
}

fn assert_same(expected: &BTreeMap<(i32, i64), TestRecord>, got: &[ConsumedRecord]) {
    assert_eq!(got.len(), expected.len(), "record count");
    for r in got {
        let want = &expected[&(r.partition, r.offset)];
        assert_eq!(
            (&r.key, &r.value, &r.headers, r.timestamp),
            (&want.key, &want.value, &want.headers, want.timestamp),
            "record {}/{}",
            r.partition,
            r.offset
        );
    }
}

fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_round_trip_per_codec_is_byte_exact() {
    let broker = TestBroker::get().await;
    let kafka = cluster(broker);
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ArchiveStore> = Arc::new(keyed(dir.path(), &[("k1", 1)], "k1"));
    let source = broker.unique_topic("enc");
    broker.create_topic(&source, 3).await;
    let records: Vec<TestRecord> = (0..3_000).map(record).collect();
    let placed = broker.produce(&source, &records).await;
    let expected: BTreeMap<_, _> = placed.into_iter().zip(records).collect();
    for codec in [
        CompressionType::None,
        CompressionType::Gzip,
        CompressionType::Snappy,
        CompressionType::Lz4,
        CompressionType::Zstd,
    ] {
        let result = backup(&kafka, &store, request(&source, codec))
            .await
            .unwrap();
        let archive = dir.path().join(result.backup_id.as_str());
        for f in files(&archive) {
            let bytes = std::fs::read(&f).unwrap();
            assert!(
                !bytes.windows(MARKER.len()).any(|w| w == MARKER),
                "{codec}: {} holds the plaintext",
                f.display()
            );
        }
        let target = broker.unique_topic(&format!("enc-{codec}-restored"));
        let restored = restore(
            &kafka,
            &store,
            RestoreRequest::new(&result.backup_id, &target),
        )
        .await
        .unwrap();
        assert_eq!(restored.messages_restored, expected.len() as u64, "{codec}");
        assert_same(&expected, &broker.consume_all(&target).await);
        broker.delete_topic(&target).await;
    }
    broker.delete_topic(&source).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_without_the_key_or_of_a_tampered_block_produce_nothing() {
    let broker = TestBroker::get().await;
    let kafka = cluster(broker);
    let dir = tempfile::tempdir().unwrap();
    let both = keyed(dir.path(), &[("k1", 1), ("k2", 2)], "k1");
    let store: Arc<dyn ArchiveStore> = Arc::new(both.clone());
    let source = broker.unique_topic("enc-refused");
    broker.create_topic(&source, 3).await;
    let records: Vec<TestRecord> = (0..2_000).map(record).collect();
    let placed = broker.produce(&source, &records).await;
    let expected: BTreeMap<_, _> = placed.into_iter().zip(records).collect();
    let result = backup(&kafka, &store, request(&source, CompressionType::Lz4))
        .await
        .unwrap();
    let id = BackupId::parse(result.backup_id.as_str()).unwrap();

    // No key of that id here: refused, nothing created.
    let other: Arc<dyn ArchiveStore> = Arc::new(keyed(dir.path(), &[("k3", 3)], "k3"));
    let target = broker.unique_topic("enc-refused-target");
    match restore(
        &kafka,
        &other,
        RestoreRequest::new(&result.backup_id, &target),
    )
    .await
    {
        Err(e) => match e.root() {
            DomainError::Storage {
                failure: StorageFailure::KeyUnavailable,
                message,
                ..
            } => assert!(message.contains("'k1'") && message.contains(result.backup_id.as_str())),
            other => panic!("{other:?}"),
        },
        Ok(r) => panic!("restored without the key: {r:?}"),
    }
    assert!(!kafka.topic_exists(&target).await.unwrap());

    // Re-wrapped under k2, then read with k2 alone.
    both.blocking_rewrap(&id, "k2").unwrap();
    let only_k2: Arc<dyn ArchiveStore> = Arc::new(keyed(dir.path(), &[("k2", 2)], "k2"));
    restore(
        &kafka,
        &only_k2,
        RestoreRequest::new(&result.backup_id, &target),
    )
    .await
    .unwrap();
    assert_same(&expected, &broker.consume_all(&target).await);
    broker.delete_topic(&target).await;

    // A flipped ciphertext byte with its CRCs and the manifest's SHA-256 fixed up.
    let manifest_path = dir
        .path()
        .join(result.backup_id.as_str())
        .join("manifest.json");
    let original_manifest = std::fs::read(&manifest_path).unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(&original_manifest).unwrap();
    let file = m["partitions"][0]["segments"][0]["file"]
        .as_str()
        .unwrap()
        .to_owned();
    let seg_path = dir.path().join(result.backup_id.as_str()).join(&file);
    let original_segment = std::fs::read(&seg_path).unwrap();
    let mut seg = original_segment.clone();
    let block = 16; // the first block header, right after the file header
    let len = u32::from_le_bytes(seg[block + 44..block + 48].try_into().unwrap()) as usize;
    let data = block + 56;
    seg[data + 12] ^= 0x40;
    let crc = crc32c::crc32c(&seg[data..data + len]);
    seg[block + 48..block + 52].copy_from_slice(&crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&seg[block..block + 52]);
    seg[block + 52..block + 56].copy_from_slice(&header_crc.to_le_bytes());
    std::fs::write(&seg_path, &seg).unwrap();
    m["partitions"][0]["segments"][0]["sha256"] = hex::encode(sha2::Sha256::digest(&seg)).into();
    std::fs::write(&manifest_path, serde_json::to_vec(&m).unwrap()).unwrap();
    match restore(
        &kafka,
        &only_k2,
        RestoreRequest::new(&result.backup_id, &target),
    )
    .await
    {
        Err(e) => match e.root() {
            DomainError::CorruptArchive { reason, .. } => {
                assert!(
                    reason.contains("authentication") && reason.contains("'k2'"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        },
        Ok(r) => panic!("restored a tampered archive: {r:?}"),
    }
    assert!(!kafka.topic_exists(&target).await.unwrap());
    std::fs::write(&seg_path, &original_segment).unwrap();
    std::fs::write(&manifest_path, &original_manifest).unwrap();

    // Shredded: never again.
    only_k2.shred_key(&id).await.unwrap();
    match restore(
        &kafka,
        &only_k2,
        RestoreRequest::new(&result.backup_id, &target),
    )
    .await
    {
        Err(e) => assert!(e.to_string().contains("crypto-shredded"), "{e}"),
        Ok(r) => panic!("restored a shredded archive: {r:?}"),
    }
    assert!(!kafka.topic_exists(&target).await.unwrap());
    broker.delete_topic(&source).await;
}
