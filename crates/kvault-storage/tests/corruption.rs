//! Flipped, truncated and extended bytes in segments and manifests produce the right typed
//! error, naming the file, block and byte position.

mod common;

use kvault_domain::job::OperationControl;

use kvault_domain::ports::ReadBounds;
use kvault_domain::{BackupId, Compression, CompressionType, DomainError, Record};
use kvault_storage::format::{
    BlockHeader, FileHeader, BLOCK_HEADER_LEN, FILE_HEADER_LEN, MAX_BLOCK_RAW_LEN,
};
use kvault_storage::fuzzing::{encode_segment, read_segment_bytes};
use kvault_storage::{StorageError, Store, StoreOptions};

fn records() -> Vec<Record> {
    (0..200).map(common::record).collect()
}

fn segment(codec: CompressionType) -> Vec<u8> {
    encode_segment(&records(), Compression::new(codec, None).unwrap(), 2048).unwrap()
}

/// Start positions of every block header.
fn block_starts(seg: &[u8]) -> Vec<usize> {
    let mut pos = FILE_HEADER_LEN;
    let mut out = Vec::new();
    while &seg[pos..pos + 4] == b"KVBK" {
        out.push(pos);
        let clen = u32::from_le_bytes(seg[pos + 44..pos + 48].try_into().unwrap()) as usize;
        pos += BLOCK_HEADER_LEN + clen;
    }
    out
}

fn header_at(seg: &[u8], pos: usize) -> BlockHeader {
    BlockHeader::decode(seg[pos..pos + BLOCK_HEADER_LEN].try_into().unwrap()).0
}

fn put_header(seg: &mut [u8], pos: usize, h: &BlockHeader) {
    seg[pos..pos + BLOCK_HEADER_LEN].copy_from_slice(&h.encode());
}

#[test]
fn header_damage_is_named() {
    for codec in CompressionType::ALL {
        let valid = segment(codec);

        let mut s = valid.clone();
        s[0] ^= 0x20;
        assert!(
            matches!(read_segment_bytes(&s), Err(StorageError::BadMagic { .. })),
            "{codec}"
        );

        let mut s = valid.clone();
        s[5] ^= 1;
        match read_segment_bytes(&s) {
            Err(StorageError::HeaderChecksum {
                what: "file header",
                at,
                ..
            }) => assert_eq!(at.pos, 0),
            other => panic!("{codec}: {other:?}"),
        }

        let mut s = valid.clone();
        s.truncate(10);
        assert!(
            matches!(read_segment_bytes(&s), Err(StorageError::Truncated { .. })),
            "{codec}"
        );
    }
}

#[test]
fn newer_major_versions_and_unknown_codecs_are_refused() {
    let mut s = segment(CompressionType::Lz4);
    let h = FileHeader {
        major: 2,
        minor: 0,
        codec_id: 3,
    };
    s[..FILE_HEADER_LEN].copy_from_slice(&h.encode());
    match read_segment_bytes(&s) {
        Err(StorageError::UnsupportedVersion {
            major: 2,
            supported: 1,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // A newer minor version of the same major is readable.
    let h = FileHeader {
        major: 1,
        minor: 7,
        codec_id: 3,
    };
    s[..FILE_HEADER_LEN].copy_from_slice(&h.encode());
    assert_eq!(read_segment_bytes(&s).unwrap().records, records());

    let h = FileHeader {
        major: 1,
        minor: 0,
        codec_id: 9,
    };
    s[..FILE_HEADER_LEN].copy_from_slice(&h.encode());
    assert!(matches!(
        read_segment_bytes(&s),
        Err(StorageError::UnknownCodec { code: 9, .. })
    ));
}

#[test]
fn block_damage_names_block_and_position() {
    for codec in CompressionType::ALL {
        let valid = segment(codec);
        let starts = block_starts(&valid);
        assert!(starts.len() >= 3, "{codec}: {} blocks", starts.len());

        // Block header field flipped: header CRC.
        let mut s = valid.clone();
        s[starts[1] + 10] ^= 4;
        match read_segment_bytes(&s) {
            Err(StorageError::HeaderChecksum {
                what: "block header",
                at,
                ..
            }) => {
                assert_eq!((at.block, at.pos), (Some(1), starts[1] as u64), "{codec}");
                assert_eq!(at.file, "<memory>");
            }
            other => panic!("{codec}: {other:?}"),
        }

        // Compressed data flipped: data CRC.
        let mut s = valid.clone();
        s[starts[2] + BLOCK_HEADER_LEN + 3] ^= 0x80;
        match read_segment_bytes(&s) {
            Err(StorageError::BlockChecksum { at, .. }) => {
                assert_eq!((at.block, at.pos), (Some(2), starts[2] as u64), "{codec}")
            }
            other => panic!("{codec}: {other:?}"),
        }

        // Marker damaged.
        let mut s = valid.clone();
        s[starts[1]] = b'X';
        assert!(
            matches!(read_segment_bytes(&s), Err(StorageError::BadMarker { .. })),
            "{codec}"
        );
    }
}

#[test]
fn truncation_and_extension_are_detected() {
    for codec in CompressionType::ALL {
        let valid = segment(codec);
        let starts = block_starts(&valid);
        let trailer = valid.len() - 32;

        // Exactly at a block boundary: only the missing trailer tells.
        for cut in [starts[1], starts[2], trailer] {
            match read_segment_bytes(&valid[..cut]) {
                Err(StorageError::Truncated { what, at }) => {
                    assert!(what.contains("no trailer"), "{codec}: {what}");
                    assert_eq!(at.pos, cut as u64);
                }
                other => panic!("{codec} cut {cut}: {other:?}"),
            }
        }
        // Inside a header, inside data, inside the trailer.
        for cut in [
            starts[1] + 2,
            starts[1] + 20,
            starts[1] + BLOCK_HEADER_LEN + 1,
            trailer + 5,
            valid.len() - 1,
        ] {
            assert!(
                matches!(
                    read_segment_bytes(&valid[..cut]),
                    Err(StorageError::Truncated { .. })
                ),
                "{codec} cut {cut}"
            );
        }
        // Extended.
        let mut s = valid.clone();
        s.push(0);
        match read_segment_bytes(&s) {
            Err(StorageError::TrailingBytes { at }) => assert_eq!(at.pos, valid.len() as u64),
            other => panic!("{codec}: {other:?}"),
        }
        let mut s = valid.clone();
        s.extend_from_slice(&valid[starts[0]..starts[1]]);
        assert!(
            matches!(
                read_segment_bytes(&s),
                Err(StorageError::TrailingBytes { .. })
            ),
            "{codec}"
        );

        // Trailer field flipped.
        let mut s = valid.clone();
        s[trailer + 6] ^= 1;
        assert!(matches!(
            read_segment_bytes(&s),
            Err(StorageError::HeaderChecksum {
                what: "trailer",
                ..
            })
        ));
    }
}

#[test]
fn lies_with_valid_checksums_are_caught() {
    let valid = segment(CompressionType::None);
    let starts = block_starts(&valid);

    // A raw length above the limit is refused before any allocation.
    let mut s = valid.clone();
    let mut h = header_at(&s, starts[0]);
    h.raw_len = MAX_BLOCK_RAW_LEN + 1;
    put_header(&mut s, starts[0], &h);
    assert!(matches!(
        read_segment_bytes(&s),
        Err(StorageError::LimitExceeded {
            what: "block raw length",
            ..
        })
    ));

    // One record fewer than the data holds.
    let mut s = valid.clone();
    let mut h = header_at(&s, starts[0]);
    h.record_count -= 1;
    put_header(&mut s, starts[0], &h);
    assert!(
        matches!(read_segment_bytes(&s), Err(StorageError::Mismatch { .. })),
        "{:?}",
        read_segment_bytes(&s)
    );

    // Offsets out of order between blocks.
    let mut s = valid.clone();
    let mut h = header_at(&s, starts[1]);
    h.first_offset = 0;
    put_header(&mut s, starts[1], &h);
    assert!(matches!(
        read_segment_bytes(&s),
        Err(StorageError::OffsetOrder { .. })
    ));

    // A non-UTF-8 header name, with both CRCs recomputed (codec none: data = raw records).
    let mut s = valid.clone();
    let data = starts[0] + BLOCK_HEADER_LEN;
    let name = s[data..].windows(5).position(|w| w == b"trace").unwrap() + data;
    s[name] = 0xff;
    let mut h = header_at(&s, starts[0]);
    h.data_crc = crc32c::crc32c(&s[data..data + h.compressed_len as usize]);
    put_header(&mut s, starts[0], &h);
    match read_segment_bytes(&s) {
        // The decoder's own error stays the source: the UTF-8 error, typed.
        Err(StorageError::BadRecord {
            source: kvault_storage::RecordError::HeaderName { source, .. },
            index: 0,
            ..
        }) => assert!(source.to_string().contains("invalid utf-8"), "{source}"),
        other => panic!("{other:?}"),
    }
}

// ---- store level -------------------------------------------------------------------------

fn small_store(dir: &std::path::Path) -> Store {
    Store::local_with_options(
        dir,
        StoreOptions {
            block_size: 1024,
            segment_size: 8 * 1024,
        },
    )
    .unwrap()
}

fn write_backup(store: &Store, id: &str) -> Vec<Record> {
    let w = store
        .blocking_create(common::spec(id, CompressionType::Zstd, 1))
        .unwrap();
    let mut p = w.partition(0).unwrap();
    let recs: Vec<Record> = (0..600).map(common::record).collect();
    for r in &recs {
        p.append(r).unwrap();
    }
    let pm = p.finish(0, 600).unwrap();
    assert!(pm.segments.len() >= 3);
    w.commit(vec![pm], chrono::Utc::now()).unwrap();
    recs
}

fn read_all(store: &Store, id: &BackupId) -> Result<Vec<Record>, DomainError> {
    store
        .blocking_read_partition(id, 0, ReadBounds::default())?
        .collect()
}

fn corrupt_reason(e: DomainError) -> String {
    match e {
        DomainError::CorruptArchive { backup_id, reason } => {
            assert_eq!(backup_id, "b1");
            reason
        }
        other => panic!("expected CorruptArchive, got {other:?}"),
    }
}

#[test]
fn damaged_segment_files_fail_reads_and_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small_store(tmp.path());
    write_backup(&store, "b1");
    let id = BackupId::parse("b1").unwrap();
    let manifest = store.blocking_manifest(&id).unwrap();
    let seg = &manifest.partitions[0].segments[1];
    let path = tmp.path().join("b1").join(&seg.file);
    let original = std::fs::read(&path).unwrap();

    for (name, bytes) in [
        ("flip", {
            let mut b = original.clone();
            b[100] ^= 1;
            b
        }),
        ("truncate", original[..original.len() - 32].to_vec()),
        ("extend", [original.clone(), vec![1, 2, 3]].concat()),
    ] {
        std::fs::write(&path, &bytes).unwrap();
        let reason = corrupt_reason(read_all(&store, &id).unwrap_err());
        assert!(reason.contains(&seg.file), "{name}: {reason}");
        let control = OperationControl::default();
        for report in [
            store.blocking_verify(&id, &control).unwrap(),
            store.blocking_verify_integrity(&id, &control).unwrap(),
        ] {
            assert!(!report.valid, "{name}");
            assert_eq!(report.problems.len(), 1, "{name}: {:?}", report.problems);
            assert!(
                report.problems[0].contains(&seg.file),
                "{name}: {:?}",
                report.problems
            );
        }
    }
    std::fs::write(&path, &original).unwrap();
    assert!(
        store
            .blocking_verify(&id, &OperationControl::default())
            .unwrap()
            .valid
    );
    std::fs::remove_file(&path).unwrap();
    assert!(
        !store
            .blocking_verify(&id, &OperationControl::default())
            .unwrap()
            .valid
    );
}

#[test]
fn damaged_manifests_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small_store(tmp.path());
    let recs = write_backup(&store, "b1");
    let id = BackupId::parse("b1").unwrap();
    let path = tmp.path().join("b1/manifest.json");
    let original = std::fs::read_to_string(&path).unwrap();
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value = serde_json::from_str(&original).unwrap();
        f(&mut v);
        std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    };

    // Truncated JSON: manifest() is corrupt, verify reports, list skips it.
    std::fs::write(&path, &original[..original.len() / 2]).unwrap();
    corrupt_reason(store.blocking_manifest(&id).unwrap_err());
    let report = store
        .blocking_verify(&id, &OperationControl::default())
        .unwrap();
    assert!(
        !report.valid && report.problems[0].contains("manifest"),
        "{report:?}"
    );
    assert!(store.blocking_list().unwrap().is_empty());

    // Newer format version.
    edit(&|v| v["format_version"] = 2.into());
    assert!(corrupt_reason(store.blocking_manifest(&id).unwrap_err()).contains("newer"));

    // SHA-256 of a segment changed: caught when that segment has been read.
    edit(&|v| v["partitions"][0]["segments"][0]["sha256"] = "00".repeat(32).into());
    let mut reader = store
        .blocking_read_partition(&id, 0, ReadBounds::default())
        .unwrap();
    let err = reader.find_map(Result::err).unwrap();
    assert!(corrupt_reason(err).contains("SHA-256"));
    assert!(
        !store
            .blocking_verify(&id, &OperationControl::default())
            .unwrap()
            .valid
    );

    // A count that does not add up.
    edit(&|v| v["partitions"][0]["message_count"] = 1.into());
    let report = store
        .blocking_verify(&id, &OperationControl::default())
        .unwrap();
    assert!(
        !report.valid && report.problems.iter().any(|p| p.contains("message count")),
        "{report:?}"
    );

    // A segment path that escapes the backup.
    edit(&|v| v["partitions"][0]["segments"][0]["file"] = "../../etc/passwd".into());
    assert!(corrupt_reason(store.blocking_manifest(&id).unwrap_err()).contains("safe relative"));

    // Another backup's id.
    edit(&|v| v["backup_id"] = "b2".into());
    corrupt_reason(store.blocking_manifest(&id).unwrap_err());

    std::fs::write(&path, &original).unwrap();
    assert_eq!(read_all(&store, &id).unwrap(), recs);
}

/// The fast check reads every byte but decodes nothing; both checks report progress and stop
/// with `Cancelled` when their control is cancelled.
#[test]
fn integrity_check_counts_like_verify_reports_progress_and_honours_cancel() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small_store(tmp.path());
    write_backup(&store, "b1");
    let id = BackupId::parse("b1").unwrap();
    let full_control = OperationControl::default();
    let full = store.blocking_verify(&id, &full_control).unwrap();
    let fast_control = OperationControl::default();
    let fast = store.blocking_verify_integrity(&id, &fast_control).unwrap();
    assert!(full.valid && fast.valid, "{full:?} {fast:?}");
    assert_eq!(fast, full);
    assert_eq!(full.messages_checked, 600);
    for control in [&full_control, &fast_control] {
        assert_eq!(control.messages(), 600);
        assert_eq!(control.bytes(), full.bytes_checked);
    }

    let cancelled = OperationControl::default();
    cancelled.cancel();
    for result in [
        store.blocking_verify(&id, &cancelled),
        store.blocking_verify_integrity(&id, &cancelled),
    ] {
        assert!(matches!(result, Err(DomainError::Cancelled)), "{result:?}");
    }
}
