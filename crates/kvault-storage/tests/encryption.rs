//! Encrypted archives: byte-exact round trips per codec, no plaintext in any object, and every
//! tampering (flipped ciphertext, swapped block, cut segment, wrong or missing key) refused
//! before a record is handed out, even when the attacker fixed every checksum and the manifest.
//! Re-wrapping and crypto-shredding change only the manifest's key record.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kvault_domain::job::OperationControl;
use kvault_domain::ports::ReadBounds;
use kvault_domain::{BackupId, CompressionType, DomainError, Record, StorageFailure};
use kvault_storage::crypt::{Kek, LocalKeys};
use kvault_storage::format::{BlockHeader, BLOCK_HEADER_LEN, FILE_HEADER_LEN, TRAILER_LEN};
use kvault_storage::{Store, StoreOptions};
use sha2::{Digest, Sha256};

const MARKER: &[u8] = b"MARKER-4c6f7265-plaintext";
const CODECS: [CompressionType; 5] = [
    CompressionType::None,
    CompressionType::Gzip,
    CompressionType::Snappy,
    CompressionType::Lz4,
    CompressionType::Zstd,
];

fn kek(byte: u8) -> Kek {
    Kek::parse(&hex::encode([byte; 32])).unwrap()
}

/// A store in `dir` holding `keys` (id, key byte), encrypting under `active`.
fn store(dir: &Path, keys: &[(&str, u8)], active: Option<&str>) -> Store {
    let plain = Store::local_with_options(
        dir,
        StoreOptions {
            block_size: 1024,
            segment_size: 8 * 1024,
        },
    )
    .unwrap();
    if keys.is_empty() {
        return plain;
    }
    let keys = keys
        .iter()
        .map(|(id, b)| (id.to_string(), kek(*b)))
        .collect();
    plain.with_keys(Arc::new(LocalKeys::new(keys, active).unwrap()))
}

fn records() -> Vec<Record> {
    let mut recs: Vec<Record> = (0..600).map(common::record).collect();
    recs[123].value = Some(MARKER.to_vec());
    recs
}

fn write(store: &Store, id: &str, codec: CompressionType) -> Vec<Record> {
    let w = store.blocking_create(common::spec(id, codec, 1)).unwrap();
    let mut p = w.partition(0).unwrap();
    let recs = records();
    for r in &recs {
        p.append(r).unwrap();
    }
    let pm = p.finish(0, 600).unwrap();
    assert!(pm.segments.len() >= 3);
    w.commit(vec![pm], chrono::Utc::now()).unwrap();
    recs
}

fn id(s: &str) -> BackupId {
    BackupId::parse(s).unwrap()
}

fn read_all(store: &Store, backup: &str) -> Result<Vec<Record>, DomainError> {
    store
        .blocking_read_partition(&id(backup), 0, ReadBounds::default())?
        .collect()
}

fn files(dir: &Path) -> Vec<PathBuf> {
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

/// The key-unavailable error's message, after checking its kind.
fn key_unavailable(e: DomainError) -> String {
    match e {
        DomainError::Storage {
            failure: StorageFailure::KeyUnavailable,
            message,
            ..
        } => message,
        other => panic!("expected KeyUnavailable, got {other:?}"),
    }
}

#[test]
fn encrypted_round_trip_per_codec_is_byte_exact_and_hides_the_plaintext() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path(), &[("k1", 1)], Some("k1"));
    for codec in CODECS {
        let name = format!("enc-{codec}");
        let written = write(&s, &name, codec);
        assert_eq!(read_all(&s, &name).unwrap(), written, "{codec}");
        let m = s.blocking_manifest(&id(&name)).unwrap();
        assert_eq!(m.format_version, 2);
        let enc = m.encryption.as_ref().unwrap();
        assert_eq!(
            (enc.scheme.as_str(), enc.key_id.as_str()),
            ("aes-256-gcm", "k1")
        );
        let report = s
            .blocking_verify(&id(&name), &OperationControl::default())
            .unwrap();
        assert!(report.valid, "{report:?}");
        assert_eq!(report.authenticated, Some(true));
        assert_eq!(report.messages_checked, 600);
    }
    // Not in any object: segments, manifests.
    for f in files(tmp.path()) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(MARKER.len()).any(|w| w == MARKER),
            "{} holds the plaintext",
            f.display()
        );
    }
    // The control: the same record in a plain archive is visible with codec none.
    let plain = store(&tmp.path().join("plain"), &[], None);
    write(&plain, "p", CompressionType::None);
    let all: Vec<u8> = files(&tmp.path().join("plain/p"))
        .iter()
        .flat_map(|f| std::fs::read(f).unwrap())
        .collect();
    assert!(all.windows(MARKER.len()).any(|w| w == MARKER));
}

#[test]
fn plain_archives_stay_readable_and_a_missing_or_wrong_key_reads_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = store(tmp.path(), &[], None);
    let written = write(&plain, "old", CompressionType::Lz4);
    let keyed = store(tmp.path(), &[("k1", 1)], Some("k1"));
    assert_eq!(read_all(&keyed, "old").unwrap(), written);
    let report = keyed
        .blocking_verify(&id("old"), &OperationControl::default())
        .unwrap();
    assert!(report.valid && report.authenticated.is_none(), "{report:?}");

    write(&keyed, "new", CompressionType::Zstd);
    // No keys at all, and the right id with other key bytes: refused at open, naming both.
    let wrong = store(tmp.path(), &[("k1", 2)], Some("k1"));
    let other_id = store(tmp.path(), &[("k2", 1)], Some("k2"));
    for (what, s) in [("none", &plain), ("wrong", &wrong), ("other id", &other_id)] {
        let err = s
            .blocking_read_partition(&id("new"), 0, ReadBounds::default())
            .err()
            .unwrap_or_else(|| panic!("{what}: opened"));
        let message = key_unavailable(err);
        assert!(
            message.contains("'new'") && message.contains("'k1'"),
            "{what}: {message}"
        );
        // The pre-restore check refuses too.
        let err = s
            .blocking_verify_integrity(&id("new"), &OperationControl::default())
            .unwrap_err();
        key_unavailable(err);
        // verify still checks the structure and the ciphertext's checksums.
        let report = s
            .blocking_verify(&id("new"), &OperationControl::default())
            .unwrap();
        assert!(report.valid, "{what}: {report:?}");
        assert_eq!(report.authenticated, Some(false), "{what}");
        assert!(report.segments_checked >= 3);
    }
    let message = key_unavailable(read_all(&wrong, "new").unwrap_err());
    assert!(message.contains("does not unwrap"), "{message}");
    assert!(!format!("{wrong:?}").contains("0202"));
}

// ---- tampering, with every checksum fixed up as an attacker would ---------------------------

/// Where segment `n` of backup `b1` is, and the manifest path.
fn paths(dir: &Path, n: usize) -> (PathBuf, PathBuf, String) {
    let manifest = dir.join("b1/manifest.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    let file = v["partitions"][0]["segments"][n]["file"]
        .as_str()
        .unwrap()
        .to_owned();
    (dir.join("b1").join(&file), manifest, file)
}

/// Rewrites segment `n`'s manifest entry to match `bytes` (SHA-256, size, and `edit`), and
/// writes the segment.
fn forge(dir: &Path, n: usize, bytes: &[u8], edit: &dyn Fn(&mut serde_json::Value)) {
    let (seg, manifest, _) = paths(dir, n);
    std::fs::write(&seg, bytes).unwrap();
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    let entry = &mut v["partitions"][0]["segments"][n];
    entry["sha256"] = hex::encode(Sha256::digest(bytes)).into();
    entry["size_bytes"] = bytes.len().into();
    edit(entry);
    std::fs::write(&manifest, serde_json::to_vec(&v).unwrap()).unwrap();
}

/// Start positions of every block header of a sealed segment.
fn block_starts(seg: &[u8]) -> Vec<usize> {
    let mut pos = FILE_HEADER_LEN;
    let mut out = Vec::new();
    while &seg[pos..pos + 4] == b"KVBK" {
        out.push(pos);
        pos += BLOCK_HEADER_LEN + header(seg, pos).compressed_len as usize;
    }
    out
}

fn header(seg: &[u8], pos: usize) -> BlockHeader {
    BlockHeader::decode(seg[pos..pos + BLOCK_HEADER_LEN].try_into().unwrap()).0
}

/// Asserts the archive is refused before any record of it is handed out: the pre-restore
/// check fails, and a read fails (at the latest at the damaged segment) naming the key.
fn refused(s: &Store, what: &str, needle: &str) {
    let report = s
        .blocking_verify_integrity(&id("b1"), &OperationControl::default())
        .unwrap();
    assert!(!report.valid, "{what}: the pre-restore check passed");
    assert!(
        report.problems.iter().any(|p| p.contains(needle)),
        "{what}: {:?}",
        report.problems
    );
    let err = read_all(s, "b1").unwrap_err();
    match err {
        DomainError::CorruptArchive { backup_id, reason } => {
            assert_eq!(backup_id, "b1");
            assert!(reason.contains(needle), "{what}: {reason}");
        }
        other => panic!("{what}: {other:?}"),
    }
    let full = s
        .blocking_verify(&id("b1"), &OperationControl::default())
        .unwrap();
    assert!(!full.valid, "{what}");
}

#[test]
fn a_flipped_ciphertext_byte_is_refused_though_its_crcs_were_fixed() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path(), &[("k1", 1)], Some("k1"));
    write(&s, "b1", CompressionType::None);
    let (seg, _, _) = paths(tmp.path(), 1);
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = block_starts(&bytes)[1];
    let mut h = header(&bytes, at);
    let data = at + BLOCK_HEADER_LEN;
    bytes[data + 20] ^= 0x01;
    h.data_crc = crc32c::crc32c(&bytes[data..data + h.compressed_len as usize]);
    bytes[at..data].copy_from_slice(&h.encode());
    forge(tmp.path(), 1, &bytes, &|_| {});
    refused(
        &s,
        "flipped byte",
        "failed authentication under the data key wrapped by key 'k1'",
    );
}

#[test]
fn a_block_swapped_in_from_another_archive_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path(), &[("k1", 1)], Some("k1"));
    write(&s, "b1", CompressionType::None);
    write(&s, "b2", CompressionType::None);
    // Same records, same layout, same key-encryption key: only the data keys differ.
    let (seg, _, file) = paths(tmp.path(), 1);
    let original = std::fs::read(&seg).unwrap();
    let mut bytes = original.clone();
    let theirs = std::fs::read(tmp.path().join("b2").join(&file)).unwrap();
    let (a, b) = (block_starts(&bytes), block_starts(&theirs));
    assert_eq!(a, b);
    bytes[a[1]..a[2]].copy_from_slice(&theirs[b[1]..b[2]]);
    forge(tmp.path(), 1, &bytes, &|_| {});
    refused(&s, "swapped block", "block 1");

    // The data of two blocks of this segment swapped, lengths and CRCs fixed up: refused.
    let bytes = original;
    let starts = block_starts(&bytes);
    let (h0, h1) = (header(&bytes, starts[0]), header(&bytes, starts[1]));
    let data = |i: usize| {
        let start = starts[i] + BLOCK_HEADER_LEN;
        let len = header(&bytes, starts[i]).compressed_len as usize;
        bytes[start..start + len].to_vec()
    };
    let (d0, d1) = (data(0), data(1));
    let moved = |h: BlockHeader, from: BlockHeader| BlockHeader {
        data_crc: from.data_crc,
        compressed_len: from.compressed_len,
        ..h
    };
    let mut swapped = bytes[..FILE_HEADER_LEN].to_vec();
    for (h, d) in [(moved(h0, h1), &d1), (moved(h1, h0), &d0)] {
        swapped.extend_from_slice(&h.encode());
        swapped.extend_from_slice(d);
    }
    swapped.extend_from_slice(&bytes[starts[2]..]);
    forge(tmp.path(), 1, &swapped, &|_| {});
    refused(&s, "reordered blocks", "failed authentication");
}

#[test]
fn a_segment_cut_after_a_block_with_a_forged_trailer_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path(), &[("k1", 1)], Some("k1"));
    write(&s, "b1", CompressionType::Zstd);
    let (seg, _, _) = paths(tmp.path(), 0);
    let bytes = std::fs::read(&seg).unwrap();
    let starts = block_starts(&bytes);
    // Keep the first two blocks; a trailer whose counts and CRC match them.
    let kept: Vec<BlockHeader> = starts[..2].iter().map(|p| header(&bytes, *p)).collect();
    let mut cut = bytes[..starts[2]].to_vec();
    let mut trailer = [0u8; TRAILER_LEN];
    trailer[0..4].copy_from_slice(b"KVEN");
    trailer[4..12].copy_from_slice(&2u64.to_le_bytes());
    let records: u64 = kept.iter().map(|h| u64::from(h.record_count)).sum();
    trailer[12..20].copy_from_slice(&records.to_le_bytes());
    let raw: u64 = kept.iter().map(|h| u64::from(h.raw_len)).sum();
    trailer[20..28].copy_from_slice(&raw.to_le_bytes());
    let crc = crc32c::crc32c(&trailer[..28]);
    trailer[28..32].copy_from_slice(&crc.to_le_bytes());
    cut.extend_from_slice(&trailer);
    // The seal cannot be made without the key: any 28 bytes, here the old seal.
    cut.extend_from_slice(&bytes[bytes.len() - 28..]);
    let last = kept[1];
    forge(tmp.path(), 0, &cut, &|e| {
        e["block_count"] = 2.into();
        e["message_count"] = records.into();
        e["last_offset"] = last.last_offset.into();
    });
    refused(&s, "cut segment", "failed authentication");
    // Cut without a forged trailer: plainly truncated.
    forge(tmp.path(), 0, &bytes[..starts[2]], &|_| {});
    let err = read_all(&s, "b1").unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn sealed_segments_under_a_manifest_stripped_of_its_key_record_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path(), &[("k1", 1)], Some("k1"));
    write(&s, "b1", CompressionType::Lz4);
    let (_, manifest, _) = paths(tmp.path(), 0);
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("encryption");
    std::fs::write(&manifest, serde_json::to_vec(&v).unwrap()).unwrap();
    assert!(read_all(&s, "b1")
        .unwrap_err()
        .to_string()
        .contains("without an encryption record"));
    v["format_version"] = 1.into();
    std::fs::write(&manifest, serde_json::to_vec(&v).unwrap()).unwrap();
    let err = read_all(&s, "b1").unwrap_err().to_string();
    assert!(
        err.contains("segment encryption: expected plain, found encrypted"),
        "{err}"
    );
}

// ---- re-wrap and crypto-shredding -------------------------------------------------------------

#[test]
fn rewrap_then_read_without_the_old_key_and_shred_makes_it_unreadable() {
    let tmp = tempfile::tempdir().unwrap();
    let both = store(tmp.path(), &[("k1", 1), ("k2", 2)], Some("k1"));
    let written = write(&both, "b1", CompressionType::Snappy);
    let segments_before: Vec<Vec<u8>> = files(&tmp.path().join("b1"))
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "seg"))
        .map(|f| std::fs::read(f).unwrap())
        .collect();

    let done = both.blocking_rewrap(&id("b1"), "k2").unwrap();
    assert!(done.changed && done.from_key_id == "k1" && done.to_key_id == "k2");
    assert!(!both.blocking_rewrap(&id("b1"), "k2").unwrap().changed);
    let segments_after: Vec<Vec<u8>> = files(&tmp.path().join("b1"))
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "seg"))
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    assert_eq!(segments_before, segments_after, "segments were rewritten");

    let only_new = store(tmp.path(), &[("k2", 2)], Some("k2"));
    assert_eq!(read_all(&only_new, "b1").unwrap(), written);
    let only_old = store(tmp.path(), &[("k1", 1)], Some("k1"));
    assert!(key_unavailable(read_all(&only_old, "b1").unwrap_err()).contains("'k2'"));
    // A key the provider does not hold: nothing changes.
    key_unavailable(only_new.blocking_rewrap(&id("b1"), "k9").unwrap_err());
    assert_eq!(read_all(&only_new, "b1").unwrap(), written);

    let shredded = only_new.blocking_shred(&id("b1")).unwrap();
    let enc = shredded.encryption.unwrap();
    assert!(enc.wrapped_key.is_none() && enc.shredded_at.is_some());
    let message = key_unavailable(read_all(&only_new, "b1").unwrap_err());
    assert!(message.contains("crypto-shredded"), "{message}");
    key_unavailable(
        only_new
            .blocking_verify_integrity(&id("b1"), &OperationControl::default())
            .unwrap_err(),
    );
    // Listed, and its manifest readable, until it is deleted.
    assert_eq!(only_new.blocking_list().unwrap().len(), 1);
    let plain = store(&tmp.path().join("plain"), &[], None);
    write(&plain, "b1", CompressionType::None);
    assert!(plain.blocking_shred(&id("b1")).is_err());
}
