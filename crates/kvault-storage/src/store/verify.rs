//! Verification of a finished backup: the full check (decode every record, compare every
//! count) and the fast integrity check (SHA-256 per segment, CRC32C per block over the
//! compressed bytes, nothing decompressed). Segments are independent, so both check them in
//! parallel; both stop with `Cancelled` when asked and report progress as they go.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use kvault_domain::error::DomainResult;
use kvault_domain::job::OperationControl;
use kvault_domain::ports::VerifyReport;
use kvault_domain::{BackupId, CompressionType, DomainError, PartitionManifest, SegmentInfo};

use super::Store;
use crate::backend::{Backend, SegmentSource, SourceReader};
use crate::crypt::ArchiveKey;
use crate::error::{Location, Result, StorageError};
use crate::segment::{SegmentReader, SegmentStats};

/// How deep a verification looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VerifyMode {
    /// Decompress and decode every block; compare payload sizes too.
    Decode,
    /// Check the bytes only: header CRCs, block CRC32C, segment SHA-256 and the counts the
    /// block headers carry.
    BytesOnly,
}

/// One segment to check, with the last offset of the segment before it in its partition.
struct SegmentJob<'a> {
    info: &'a SegmentInfo,
    prev: Option<i64>,
}

/// Verifies backup `id` of `store` in `mode`.
pub(crate) fn verify_archive(
    store: &Store,
    id: &BackupId,
    control: &OperationControl,
    mode: VerifyMode,
) -> DomainResult<VerifyReport> {
    let id = id.as_str();
    let mut report = VerifyReport {
        backup_id: id.to_owned(),
        valid: true,
        segments_checked: 0,
        blocks_checked: 0,
        messages_checked: 0,
        bytes_checked: 0,
        problems: Vec::new(),
        authenticated: None,
    };
    let manifest = match store.load_manifest(id) {
        Ok(m) => m,
        Err(e) if e.is_corruption() => {
            report.valid = false;
            report.problems.push(e.to_string());
            return Ok(report);
        }
        Err(e) => return Err(e.into_domain(id)),
    };
    let jobs = segment_jobs(&manifest);
    let codec = manifest.compression.codec;
    let encrypted = manifest.encryption.is_some();
    let (key, mode) = match (store.archive_key(&manifest), mode) {
        (Ok(key), mode) => (key, mode),
        // Without the key, verify still checks structure and the ciphertext's checksums; the
        // pre-restore check fails instead, since a restore could not read a block.
        (Err(_), VerifyMode::Decode) => (None, VerifyMode::BytesOnly),
        (Err(e), VerifyMode::BytesOnly) => return Err(e.into_domain(id)),
    };
    report.authenticated = encrypted.then_some(key.is_some());
    let check = |job: &SegmentJob| {
        let label = format!("{id}/{}", job.info.file);
        let reader = open_segment(
            store.backend(),
            id,
            &job.info.file,
            &label,
            (codec, encrypted, key.as_ref()),
        )?;
        let stats = check_segment_file(reader, job.prev, mode, control)?;
        check_segment(&stats, job.info, &label, mode == VerifyMode::Decode)?;
        Ok(stats)
    };
    for outcome in run_parallel(&jobs, check) {
        match outcome {
            Ok(stats) => {
                report.segments_checked += 1;
                report.blocks_checked += stats.blocks;
                report.messages_checked += stats.records;
                report.bytes_checked += stats.size;
            }
            Err(StorageError::Cancelled) => return Err(DomainError::Cancelled),
            Err(e) if io_is_fatal(&e) => return Err(e.into_domain(id)),
            Err(e) => report.problems.push(e.to_string()),
        }
    }
    for p in &manifest.partitions {
        report.problems.extend(check_partition_totals(id, p));
    }
    report.valid = report.problems.is_empty();
    Ok(report)
}

/// Every segment of the manifest, each with the last offset before it in its partition.
fn segment_jobs(manifest: &kvault_domain::Manifest) -> Vec<SegmentJob<'_>> {
    manifest
        .partitions
        .iter()
        .flat_map(|p| {
            let prevs = std::iter::once(None).chain(p.segments.iter().map(|s| Some(s.last_offset)));
            p.segments
                .iter()
                .zip(prevs)
                .map(|(info, prev)| SegmentJob { info, prev })
        })
        .collect()
}

/// I/O failures other than a missing segment file are the store's, not the archive's.
fn io_is_fatal(e: &StorageError) -> bool {
    matches!(e, StorageError::Io { source, .. } if source.kind() != std::io::ErrorKind::NotFound)
}

/// Runs `check` over `jobs` on up to `available_parallelism` threads; results keep job order.
fn run_parallel<J: Sync, T: Send>(
    jobs: &[J],
    check: impl Fn(&J) -> Result<T> + Sync,
) -> Vec<Result<T>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(jobs.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<T>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                let outcome = check(job);
                results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(outcome);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .flatten()
        .collect()
}

/// Reads one whole segment file, checking every block (decoded or bytes only).
fn check_segment_file(
    mut reader: StoredSegmentReader,
    prev: Option<i64>,
    mode: VerifyMode,
    control: &OperationControl,
) -> Result<SegmentStats> {
    reader.set_prev_offset(prev);
    loop {
        if control.is_cancelled() {
            return Err(StorageError::Cancelled);
        }
        let before = reader.stats().records;
        let more = match mode {
            VerifyMode::Decode => reader.next_block(None)?.is_some(),
            VerifyMode::BytesOnly => reader.check_next_block()?.is_some(),
        };
        if !more {
            break;
        }
        let block = reader.stats();
        control.add(block.records - before, 0);
    }
    control.add(0, reader.stats().size);
    Ok(reader.stats().clone())
}

/// A segment reader over whatever backend holds the segment.
pub(crate) type StoredSegmentReader = SegmentReader<SourceReader<Box<dyn SegmentSource>>>;

/// What the manifest says a segment must be: its codec, whether it is sealed, and the key
/// that opens it (when the archive is encrypted and the key is available).
pub(crate) type Expected<'a> = (CompressionType, bool, Option<&'a ArchiveKey>);

/// Opens segment `file` of backup `id` for streaming, checking its codec and encryption
/// against the manifest's, with the key that authenticates its blocks.
pub(crate) fn open_segment(
    backend: &dyn Backend,
    id: &str,
    file: &str,
    label: &str,
    (codec, encrypted, key): Expected<'_>,
) -> Result<StoredSegmentReader> {
    let source = backend.open_segment(id, file)?;
    let mut reader = SegmentReader::open(SourceReader::new(source, backend.read_window()), label)?;
    if reader.sealed() != encrypted {
        let says = |sealed: bool| if sealed { "encrypted" } else { "plain" }.to_owned();
        return Err(StorageError::Mismatch {
            at: Location {
                file: label.to_owned(),
                block: None,
                pos: 4,
            },
            what: "segment encryption",
            expected: says(encrypted),
            found: says(reader.sealed()),
        });
    }
    if let Some(key) = key {
        reader.set_key(key.segment(file));
    }
    if reader.codec() != codec {
        return Err(StorageError::CodecMismatch {
            at: Location {
                file: label.to_owned(),
                block: None,
                pos: 8,
            },
            expected: codec,
            found: reader.codec(),
        });
    }
    Ok(reader)
}

/// Compares what was read from a whole segment file with the manifest's description of it.
pub(crate) fn check_segment(
    stats: &SegmentStats,
    info: &SegmentInfo,
    label: &str,
    payload_complete: bool,
) -> Result<()> {
    if stats.sha256 != info.sha256 {
        return Err(StorageError::Sha256Mismatch {
            file: label.to_owned(),
            expected: info.sha256.clone(),
            actual: stats.sha256.clone(),
        });
    }
    let opt = |v: Option<i64>| v.map_or_else(|| "none".to_owned(), |v| v.to_string());
    let mut checks = vec![
        (
            "segment size",
            info.size_bytes.to_string(),
            stats.size.to_string(),
        ),
        (
            "segment block count",
            info.block_count.to_string(),
            stats.blocks.to_string(),
        ),
        (
            "segment message count",
            info.message_count.to_string(),
            stats.records.to_string(),
        ),
        (
            "segment first offset",
            info.first_offset.to_string(),
            opt(stats.first_offset),
        ),
        (
            "segment last offset",
            info.last_offset.to_string(),
            opt(stats.last_offset),
        ),
        (
            "segment min timestamp",
            info.min_timestamp.to_string(),
            opt(stats.min_timestamp),
        ),
        (
            "segment max timestamp",
            info.max_timestamp.to_string(),
            opt(stats.max_timestamp),
        ),
    ];
    if payload_complete {
        checks.push((
            "segment raw bytes",
            info.raw_bytes.to_string(),
            stats.payload.to_string(),
        ));
    }
    for (what, expected, found) in checks {
        if expected != found {
            return Err(StorageError::Mismatch {
                at: Location {
                    file: label.to_owned(),
                    block: None,
                    pos: stats.size,
                },
                what,
                expected,
                found,
            });
        }
    }
    Ok(())
}

/// The partition's totals must agree with its segment list.
fn check_partition_totals(id: &str, p: &PartitionManifest) -> Vec<String> {
    let segs = &p.segments;
    let sum = |f: fn(&SegmentInfo) -> u64| segs.iter().map(f).sum::<u64>();
    let mut problems = Vec::new();
    let mut check = |what: &str, expected: String, found: String| {
        if expected != found {
            problems.push(format!(
                "{id} partition {}: {what}: manifest says {expected}, segments add up to {found}",
                p.partition
            ));
        }
    };
    check(
        "message count",
        p.message_count.to_string(),
        sum(|s| s.message_count).to_string(),
    );
    check(
        "raw bytes",
        p.raw_bytes.to_string(),
        sum(|s| s.raw_bytes).to_string(),
    );
    check(
        "compressed bytes",
        p.compressed_bytes.to_string(),
        sum(|s| s.size_bytes).to_string(),
    );
    check(
        "first offset",
        format!("{:?}", p.first_offset),
        format!("{:?}", segs.first().map(|s| s.first_offset)),
    );
    check(
        "last offset",
        format!("{:?}", p.last_offset),
        format!("{:?}", segs.last().map(|s| s.last_offset)),
    );
    problems
}
