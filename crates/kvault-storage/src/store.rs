//! [`LocalArchiveStore`]: backups as directories on a local filesystem, written under
//! `{id}.partial/` and renamed into place once every file is durable.

use std::collections::{HashSet, VecDeque};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use kvault_domain::error::DomainResult;
use kvault_domain::manifest::FORMAT_VERSION;
use kvault_domain::ports::{
    ArchiveSpec, ArchiveStore, ArchiveWriter, PartitionWriter, ReadBounds, RecordReader,
    VerifyReport,
};
use kvault_domain::{BackupId, CompressionType, Manifest, PartitionManifest, Record, SegmentInfo};

use crate::codec::Encoder;
use crate::error::{Location, Result, StorageError};
use crate::format::MAX_BLOCK_RAW_LEN;
use crate::format::MAX_MANIFEST_LEN;
use crate::record::encoded_len;
use crate::segment::{BlockBuilder, SegmentReader, SegmentStats, SegmentWriter};

const MANIFEST_FILE: &str = "manifest.json";
/// Suffix of a backup directory still being written. Ids ending in it are refused so a
/// finished backup can never be mistaken for an unfinished one.
pub const PARTIAL_SUFFIX: &str = ".partial";
/// Largest block size an option may ask for: half the format's block limit, so a block of
/// small records plus the record that overflows it always fits.
pub const MAX_BLOCK_SIZE: usize = (MAX_BLOCK_RAW_LEN / 2) as usize;
const IO_BUFFER: usize = 256 << 10;
/// Marks a hidden directory as the remains of a delete: `.{id}.deleting-{nanos}`.
const TOMBSTONE_MARKER: &str = ".deleting-";

/// Tuning for how segments are cut. The defaults suit production; tests use small values to
/// exercise block and segment boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalStoreOptions {
    /// Target uncompressed bytes per block (default 1 MiB, at most [`MAX_BLOCK_SIZE`]). A
    /// block is cut before a record would push it past this size; one larger record gets a
    /// block of its own.
    pub block_size: usize,
    /// A new segment file starts once the current one reaches this many bytes
    /// (default 128 MiB). Smaller segments let a restore skip more by timestamp.
    pub segment_size: u64,
}

impl Default for LocalStoreOptions {
    fn default() -> Self {
        Self {
            block_size: 1 << 20,
            segment_size: 128 << 20,
        }
    }
}

impl LocalStoreOptions {
    fn validate(&self) -> Result<()> {
        if self.block_size == 0 || self.block_size > MAX_BLOCK_SIZE {
            return Err(StorageError::InvalidInput {
                field: "block_size",
                value: self.block_size.to_string(),
                message: format!("must be 1 to {MAX_BLOCK_SIZE} bytes"),
            });
        }
        if self.segment_size == 0 {
            return Err(StorageError::InvalidInput {
                field: "segment_size",
                value: "0".into(),
                message: "must be at least 1 byte".into(),
            });
        }
        Ok(())
    }
}

/// Backups on a local filesystem: `{base}/{backup_id}/manifest.json` plus
/// `{base}/{backup_id}/p{partition}/{first_offset:020}.seg` segment files.
#[derive(Debug, Clone)]
pub struct LocalArchiveStore {
    base: PathBuf,
    options: LocalStoreOptions,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |e| StorageError::io(path, e)
}

fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_err(path))
}

impl LocalArchiveStore {
    /// A store at `base`, created if missing, with default options.
    pub fn new(base: impl Into<PathBuf>) -> Result<Self, StorageError> {
        Self::with_options(base, LocalStoreOptions::default())
    }

    /// A store at `base`, created if missing.
    pub fn with_options(
        base: impl Into<PathBuf>,
        options: LocalStoreOptions,
    ) -> Result<Self, StorageError> {
        options.validate()?;
        let base = base.into();
        fs::create_dir_all(&base).map_err(io_err(&base))?;
        let store = Self { base, options };
        store.sweep_tombstones();
        Ok(store)
    }

    pub fn base_path(&self) -> &Path {
        &self.base
    }

    fn final_dir(&self, id: &str) -> PathBuf {
        self.base.join(id)
    }

    fn partial_dir(&self, id: &str) -> PathBuf {
        self.base.join(format!("{id}{PARTIAL_SUFFIX}"))
    }

    fn load_manifest(&self, id: &str) -> Result<Manifest> {
        let path = self.final_dir(id).join(MANIFEST_FILE);
        let label = format!("{id}/{MANIFEST_FILE}");
        let bad = |reason: String| StorageError::BadManifest {
            file: label.clone(),
            reason,
        };
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StorageError::BackupNotFound(id.to_owned()))
            }
            Err(e) => return Err(StorageError::io(&path, e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_MANIFEST_LEN + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err(&path))?;
        if bytes.len() as u64 > MAX_MANIFEST_LEN {
            return Err(bad(format!("larger than {MAX_MANIFEST_LEN} bytes")));
        }
        // Read the version before the schema, so a newer manifest is reported as such rather
        // than as a parse error.
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        let version = value
            .get("format_version")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| bad("format_version is missing or not a number".into()))?;
        if version > u64::from(FORMAT_VERSION) {
            return Err(StorageError::ManifestVersion {
                file: label,
                found: u32::try_from(version).unwrap_or(u32::MAX),
                supported: FORMAT_VERSION,
            });
        }
        let manifest: Manifest = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        if manifest.backup_id != id {
            return Err(bad(format!(
                "names backup '{}' but lives in directory '{id}'",
                manifest.backup_id
            )));
        }
        let mut seen = HashSet::new();
        for p in &manifest.partitions {
            if !seen.insert(p.partition) {
                return Err(bad(format!("partition {} is listed twice", p.partition)));
            }
            for s in &p.segments {
                if !is_safe_relative(&s.file) {
                    return Err(bad(format!(
                        "segment path {:?} is not a safe relative path",
                        s.file
                    )));
                }
            }
        }
        Ok(manifest)
    }

    fn open_partition(
        &self,
        id: &str,
        partition: i32,
        bounds: ReadBounds,
    ) -> Result<PartitionReader> {
        let manifest = self.load_manifest(id)?;
        let p = manifest
            .partition(partition)
            .ok_or_else(|| StorageError::PartitionNotFound {
                backup_id: id.to_owned(),
                partition,
            })?;
        Ok(PartitionReader {
            backup_id: id.to_owned(),
            dir: self.final_dir(id),
            codec: manifest.compression.codec,
            segments: p.segments.iter().cloned().collect(),
            until: bounds.until_timestamp,
            current: None,
            buffered: Vec::new().into_iter(),
            prev_offset: None,
            failed: false,
        })
    }

    fn verify_inner(&self, id: &str) -> Result<VerifyReport> {
        let mut report = VerifyReport {
            backup_id: id.to_owned(),
            valid: true,
            segments_checked: 0,
            blocks_checked: 0,
            messages_checked: 0,
            bytes_checked: 0,
            problems: Vec::new(),
        };
        let manifest = match self.load_manifest(id) {
            Ok(m) => m,
            Err(e) if e.is_corruption() => {
                report.valid = false;
                report.problems.push(e.to_string());
                return Ok(report);
            }
            Err(e) => return Err(e),
        };
        let dir = self.final_dir(id);
        for p in &manifest.partitions {
            let mut prev: Option<i64> = None;
            for info in &p.segments {
                let label = format!("{id}/{}", info.file);
                let result = read_whole_segment(
                    &dir.join(&info.file),
                    &label,
                    manifest.compression.codec,
                    prev,
                )
                .and_then(|stats| {
                    report.segments_checked += 1;
                    report.blocks_checked += stats.blocks;
                    report.messages_checked += stats.records;
                    report.bytes_checked += stats.size;
                    check_segment(&stats, info, &label, true)
                });
                if let Err(e) = result {
                    report.problems.push(e.to_string());
                }
                prev = Some(info.last_offset);
            }
            report.problems.extend(check_partition_totals(id, p));
        }
        report.valid = report.problems.is_empty();
        Ok(report)
    }

    fn create_inner(&self, spec: ArchiveSpec) -> Result<LocalArchiveWriter> {
        let id = spec.backup_id.as_str().to_owned();
        if id.ends_with(PARTIAL_SUFFIX) {
            return Err(StorageError::InvalidInput {
                field: "backup_id",
                value: id,
                message: format!(
                    "must not end with '{PARTIAL_SUFFIX}' (reserved for unfinished backups)"
                ),
            });
        }
        Encoder::new(spec.compression).map_err(|message| StorageError::InvalidInput {
            field: "compression_level",
            value: format!("{:?}", spec.compression.level),
            message,
        })?;
        self.sweep_tombstones();
        let final_dir = self.final_dir(&id);
        if final_dir.exists() {
            return Err(StorageError::BackupExists(id));
        }
        let partial = self.partial_dir(&id);
        // `create_dir` (not `_all`) fails if the directory exists, which makes two racing
        // creates of one id resolve to exactly one winner.
        match fs::create_dir(&partial) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StorageError::BackupExists(id))
            }
            Err(e) => return Err(StorageError::io(&partial, e)),
        }
        Ok(LocalArchiveWriter {
            shared: Arc::new(WriterShared {
                spec,
                dir: partial,
                options: self.options,
                taken: Mutex::new(HashSet::new()),
            }),
            base: self.base.clone(),
            final_dir,
            done: false,
        })
    }

    fn list_inner(&self) -> Result<Vec<Manifest>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.base).map_err(io_err(&self.base))? {
            let entry = entry.map_err(io_err(&self.base))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.ends_with(PARTIAL_SUFFIX) || BackupId::parse(&name).is_err() {
                continue;
            }
            if !entry.path().join(MANIFEST_FILE).is_file() {
                continue;
            }
            match self.load_manifest(&name) {
                Ok(m) => out.push(m),
                // One unreadable backup must not hide the others; verify reports it.
                Err(e) => {
                    tracing::warn!(backup_id = %name, error = %e, "skipping unreadable backup")
                }
            }
        }
        out.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| a.backup_id.cmp(&b.backup_id))
        });
        Ok(out)
    }

    fn delete_inner(&self, id: &str) -> Result<()> {
        let dir = self.final_dir(id);
        if !dir.join(MANIFEST_FILE).is_file() {
            return Err(StorageError::BackupNotFound(id.to_owned()));
        }
        // Renaming to a hidden tombstone is the commit point: one atomic step makes the
        // backup invisible and frees its id. A crash before it leaves the backup whole; a
        // crash after it leaves a tombstone that the next open or create sweeps away.
        let tombstone = self.base.join(tombstone_name(id));
        match fs::rename(&dir, &tombstone) {
            Ok(()) => {}
            // A concurrent delete of the same id won the rename.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StorageError::BackupNotFound(id.to_owned()))
            }
            Err(e) => return Err(StorageError::io(&dir, e)),
        }
        sync_dir(&self.base)?;
        // The backup is gone as far as anyone can see; failing to reclaim the space now is
        // not a failed delete, the tombstone is swept later.
        if let Err(e) = fs::remove_dir_all(&tombstone) {
            if tombstone.exists() {
                tracing::warn!(
                    path = %tombstone.display(),
                    error = %e,
                    "backup deleted but its files could not be removed yet; swept on next open"
                );
            }
        }
        Ok(())
    }

    /// Removes the tombstones of interrupted deletes, best effort: a tombstone never blocks
    /// an id or shows up in a listing, so a failure here only delays reclaiming the space.
    fn sweep_tombstones(&self) {
        let Ok(entries) = fs::read_dir(&self.base) else {
            return;
        };
        for entry in entries.flatten() {
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if !is_dir || !entry.file_name().to_str().is_some_and(is_tombstone) {
                continue;
            }
            let path = entry.path();
            match fs::remove_dir_all(&path) {
                Ok(()) => {}
                // Another sweep or the delete that made it got there first.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "could not remove the leftovers of a deleted backup"
                ),
            }
        }
    }
}

/// Whether `name` is exactly what [`tombstone_name`] makes, so the sweep never touches
/// another hidden entry someone keeps in the base directory.
fn is_tombstone(name: &str) -> bool {
    let Some((id, nanos)) = name
        .strip_prefix('.')
        .and_then(|rest| rest.rsplit_once(TOMBSTONE_MARKER))
    else {
        return false;
    };
    !nanos.is_empty() && nanos.bytes().all(|b| b.is_ascii_digit()) && BackupId::parse(id).is_ok()
}

/// The hidden name a backup directory is renamed to while it is deleted: it starts with '.',
/// which no backup id may, so it is never listed and never collides with an id; the time
/// makes repeated deletes of a re-created id distinct.
fn tombstone_name(id: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(".{id}{TOMBSTONE_MARKER}{nanos}")
}

/// Segment paths come from a file that might have been edited: only plain relative
/// components are allowed, so a manifest can never point outside its backup directory.
fn is_safe_relative(file: &str) -> bool {
    !file.is_empty()
        && file.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'))
        })
}

fn read_whole_segment(
    path: &Path,
    label: &str,
    codec: CompressionType,
    prev: Option<i64>,
) -> Result<SegmentStats> {
    let mut reader = open_segment(path, label, codec)?;
    reader.set_prev_offset(prev);
    while reader.next_block(None)?.is_some() {}
    Ok(reader.stats().clone())
}

fn open_segment(
    path: &Path,
    label: &str,
    codec: CompressionType,
) -> Result<SegmentReader<BufReader<File>>> {
    let file = File::open(path).map_err(io_err(path))?;
    let reader = SegmentReader::open(BufReader::with_capacity(IO_BUFFER, file), label)?;
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
fn check_segment(
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

impl ArchiveStore for LocalArchiveStore {
    fn create(&self, spec: ArchiveSpec) -> DomainResult<Box<dyn ArchiveWriter>> {
        let id = spec.backup_id.as_str().to_owned();
        match self.create_inner(spec) {
            Ok(w) => Ok(Box::new(w)),
            Err(e) => Err(e.into_domain(&id)),
        }
    }

    fn manifest(&self, id: &BackupId) -> DomainResult<Manifest> {
        self.load_manifest(id.as_str())
            .map_err(|e| e.into_domain(id.as_str()))
    }

    fn read_partition(
        &self,
        id: &BackupId,
        partition: i32,
        bounds: ReadBounds,
    ) -> DomainResult<Box<dyn RecordReader>> {
        match self.open_partition(id.as_str(), partition, bounds) {
            Ok(r) => Ok(Box::new(r)),
            Err(e) => Err(e.into_domain(id.as_str())),
        }
    }

    fn list(&self) -> DomainResult<Vec<Manifest>> {
        self.list_inner().map_err(|e| e.into_domain(""))
    }

    fn delete(&self, id: &BackupId) -> DomainResult<()> {
        self.delete_inner(id.as_str())
            .map_err(|e| e.into_domain(id.as_str()))
    }

    fn verify(&self, id: &BackupId) -> DomainResult<VerifyReport> {
        self.verify_inner(id.as_str())
            .map_err(|e| e.into_domain(id.as_str()))
    }
}

/// State shared by a backup's writer and its partition writers.
struct WriterShared {
    spec: ArchiveSpec,
    dir: PathBuf,
    options: LocalStoreOptions,
    taken: Mutex<HashSet<i32>>,
}

struct LocalArchiveWriter {
    shared: Arc<WriterShared>,
    base: PathBuf,
    final_dir: PathBuf,
    /// Set once committed or aborted, so `Drop` leaves the result alone.
    done: bool,
}

impl LocalArchiveWriter {
    fn id(&self) -> &str {
        self.shared.spec.backup_id.as_str()
    }

    fn partition_inner(&self, partition: i32) -> Result<LocalPartitionWriter> {
        let id = self.id().to_owned();
        {
            let mut taken = self
                .shared
                .taken
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !taken.insert(partition) {
                return Err(StorageError::PartitionTaken {
                    backup_id: id,
                    partition,
                });
            }
        }
        let rel_dir = format!("p{partition}");
        let dir = self.shared.dir.join(&rel_dir);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let encoder = Encoder::new(self.shared.spec.compression).map_err(|message| {
            StorageError::Compress {
                codec: self.shared.spec.compression.codec,
                message,
            }
        })?;
        Ok(LocalPartitionWriter {
            backup_id: id,
            partition,
            dir,
            rel_dir,
            options: self.shared.options,
            codec: self.shared.spec.compression.codec,
            encoder,
            block: BlockBuilder::default(),
            compressed: Vec::new(),
            segment: None,
            segments: Vec::new(),
            closed_bytes: 0,
            count: 0,
            first: None,
            last: None,
            payload: 0,
        })
    }

    fn commit_inner(
        &mut self,
        mut partitions: Vec<PartitionManifest>,
        finished_at: DateTime<Utc>,
    ) -> Result<Manifest> {
        let dir = self.shared.dir.clone();
        partitions.sort_by_key(|p| p.partition);
        if let Some(w) = partitions
            .windows(2)
            .find(|w| w[0].partition == w[1].partition)
        {
            return Err(StorageError::InvalidInput {
                field: "partitions",
                value: w[0].partition.to_string(),
                message: "partition listed twice".into(),
            });
        }
        // The manifest must describe files that exist: a caller passing a stale or foreign
        // PartitionManifest would otherwise produce a backup that can never be read.
        for s in partitions.iter().flat_map(|p| &p.segments) {
            let size = fs::metadata(dir.join(&s.file)).map(|m| m.len()).ok();
            if !is_safe_relative(&s.file) || size != Some(s.size_bytes) {
                return Err(StorageError::InvalidInput {
                    field: "partitions",
                    value: s.file.clone(),
                    message: "segment was not written by this backup (missing or different size)"
                        .into(),
                });
            }
        }
        let spec = &self.shared.spec;
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            backup_id: spec.backup_id.as_str().to_owned(),
            cluster_id: spec.cluster_id.clone(),
            topic: spec.topic.clone(),
            compression: spec.compression,
            include_keys: spec.include_keys,
            include_headers: spec.include_headers,
            created_at: spec.created_at,
            finished_at,
            partitions,
        };
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| StorageError::io(&dir, io::Error::other(e)))?;
        let path = dir.join(MANIFEST_FILE);
        let mut f = File::create(&path).map_err(io_err(&path))?;
        f.write_all(&json)
            .and_then(|()| f.sync_all())
            .map_err(io_err(&path))?;
        sync_dir(&dir)?;
        if self.final_dir.exists() {
            return Err(StorageError::BackupExists(self.id().to_owned()));
        }
        fs::rename(&dir, &self.final_dir).map_err(io_err(&dir))?;
        self.done = true;
        sync_dir(&self.base)?;
        Ok(manifest)
    }

    fn remove_partial(&mut self) -> Result<()> {
        self.done = true;
        match fs::remove_dir_all(&self.shared.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io(&self.shared.dir, e)),
        }
    }
}

impl ArchiveWriter for LocalArchiveWriter {
    fn partition(&self, partition: i32) -> DomainResult<Box<dyn PartitionWriter>> {
        match self.partition_inner(partition) {
            Ok(w) => Ok(Box::new(w)),
            Err(e) => Err(e.into_domain(self.id())),
        }
    }

    fn commit(
        mut self: Box<Self>,
        partitions: Vec<PartitionManifest>,
        finished_at: DateTime<Utc>,
    ) -> DomainResult<Manifest> {
        let id = self.id().to_owned();
        self.commit_inner(partitions, finished_at)
            .map_err(|e| e.into_domain(&id))
    }

    fn abort(mut self: Box<Self>) -> DomainResult<()> {
        let id = self.id().to_owned();
        self.remove_partial().map_err(|e| e.into_domain(&id))
    }
}

impl Drop for LocalArchiveWriter {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = self.remove_partial() {
                tracing::warn!(error = %e, "could not remove an abandoned partial backup");
            }
        }
    }
}

struct OpenSegment {
    writer: SegmentWriter<BufWriter<File>>,
    path: PathBuf,
    file: String,
}

/// Writes one partition: buffers one block of records, compresses it, appends it to the
/// current segment, and rolls segments at the size threshold.
struct LocalPartitionWriter {
    backup_id: String,
    partition: i32,
    dir: PathBuf,
    rel_dir: String,
    options: LocalStoreOptions,
    codec: CompressionType,
    encoder: Encoder,
    block: BlockBuilder,
    compressed: Vec<u8>,
    segment: Option<OpenSegment>,
    segments: Vec<SegmentInfo>,
    closed_bytes: u64,
    count: u64,
    first: Option<i64>,
    last: Option<i64>,
    payload: u64,
}

impl LocalPartitionWriter {
    fn append_inner(&mut self, r: &Record) -> Result<()> {
        if let Some(prev) = self.last {
            if r.offset <= prev {
                return Err(StorageError::AppendOrder {
                    partition: self.partition,
                    previous: prev,
                    found: r.offset,
                });
            }
        }
        let size = encoded_len(r);
        if size > u64::from(MAX_BLOCK_RAW_LEN) {
            return Err(StorageError::RecordTooLarge {
                partition: self.partition,
                offset: r.offset,
                size,
                max: MAX_BLOCK_RAW_LEN.into(),
            });
        }
        if !self.block.is_empty()
            && self.block.raw.len() as u64 + size > self.options.block_size as u64
        {
            self.flush_block()?;
        }
        self.block.push(r);
        self.first.get_or_insert(r.offset);
        self.last = Some(r.offset);
        self.count += 1;
        self.payload += r.payload_len();
        if self.block.raw.len() >= self.options.block_size {
            self.flush_block()?;
        }
        Ok(())
    }

    fn flush_block(&mut self) -> Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        self.encoder
            .compress(&self.block.raw, &mut self.compressed)
            .map_err(|message| StorageError::Compress {
                codec: self.codec,
                message,
            })?;
        if self.segment.is_none() {
            let name = format!("{:020}.seg", self.block.first_offset);
            let path = self.dir.join(&name);
            let file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(io_err(&path))?;
            let writer = SegmentWriter::new(BufWriter::with_capacity(IO_BUFFER, file), self.codec)
                .map_err(io_err(&path))?;
            self.segment = Some(OpenSegment {
                writer,
                path,
                file: format!("{}/{name}", self.rel_dir),
            });
        }
        if let Some(seg) = self.segment.as_mut() {
            seg.writer
                .write_block(&self.block, &self.compressed)
                .map_err(io_err(&seg.path))?;
            let full = seg.writer.size() >= self.options.segment_size;
            self.block.clear();
            if full {
                self.close_segment()?;
            }
        }
        Ok(())
    }

    fn close_segment(&mut self) -> Result<()> {
        let Some(seg) = self.segment.take() else {
            return Ok(());
        };
        let (buf, stats) = seg.writer.finish().map_err(io_err(&seg.path))?;
        let file = buf
            .into_inner()
            .map_err(|e| StorageError::io(&seg.path, e.into_error()))?;
        file.sync_all().map_err(io_err(&seg.path))?;
        self.closed_bytes += stats.size;
        self.segments.push(SegmentInfo {
            file: seg.file,
            sha256: stats.sha256,
            size_bytes: stats.size,
            block_count: stats.blocks,
            message_count: stats.records,
            first_offset: stats.first_offset.unwrap_or_default(),
            last_offset: stats.last_offset.unwrap_or_default(),
            min_timestamp: stats.min_timestamp.unwrap_or_default(),
            max_timestamp: stats.max_timestamp.unwrap_or_default(),
            raw_bytes: stats.payload,
        });
        Ok(())
    }

    fn finish_inner(&mut self, start_offset: i64, end_offset: i64) -> Result<PartitionManifest> {
        self.flush_block()?;
        self.close_segment()?;
        sync_dir(&self.dir)?;
        // Offsets strictly increase, so `count == last - first + 1` means no gap. An empty
        // partition has no gap among its (zero) records and is reported contiguous.
        let contiguous = match (self.first, self.last) {
            (Some(first), Some(last)) => {
                first == start_offset && last.abs_diff(first).checked_add(1) == Some(self.count)
            }
            _ => true,
        };
        Ok(PartitionManifest {
            partition: self.partition,
            start_offset,
            end_offset,
            first_offset: self.first,
            last_offset: self.last,
            message_count: self.count,
            raw_bytes: self.payload,
            compressed_bytes: self.closed_bytes,
            contiguous,
            segments: std::mem::take(&mut self.segments),
        })
    }
}

impl PartitionWriter for LocalPartitionWriter {
    fn append(&mut self, record: &Record) -> DomainResult<()> {
        self.append_inner(record)
            .map_err(|e| e.into_domain(&self.backup_id))
    }

    fn bytes_written(&self) -> u64 {
        self.closed_bytes + self.segment.as_ref().map_or(0, |s| s.writer.size())
    }

    fn finish(
        mut self: Box<Self>,
        start_offset: i64,
        end_offset: i64,
    ) -> DomainResult<PartitionManifest> {
        let id = self.backup_id.clone();
        self.finish_inner(start_offset, end_offset)
            .map_err(|e| e.into_domain(&id))
    }
}

/// Streams one partition's records, a block at a time, checking every segment against the
/// manifest when its last byte has been read.
struct PartitionReader {
    backup_id: String,
    dir: PathBuf,
    codec: CompressionType,
    segments: VecDeque<SegmentInfo>,
    until: Option<i64>,
    current: Option<(SegmentReader<BufReader<File>>, SegmentInfo)>,
    buffered: std::vec::IntoIter<Record>,
    prev_offset: Option<i64>,
    failed: bool,
}

impl PartitionReader {
    /// Loads the next block (or moves to the next segment). `Ok(false)` at the end.
    fn advance(&mut self) -> Result<bool> {
        if self.current.is_none() {
            let Some(info) = self.segments.pop_front() else {
                return Ok(false);
            };
            if self.until.is_some_and(|u| info.min_timestamp > u) {
                // Nothing in this segment can qualify; its records are skipped unread.
                self.prev_offset = Some(info.last_offset);
                return Ok(true);
            }
            let label = format!("{}/{}", self.backup_id, info.file);
            let mut reader = open_segment(&self.dir.join(&info.file), &label, self.codec)?;
            reader.set_prev_offset(self.prev_offset);
            self.current = Some((reader, info));
        }
        let Some((reader, info)) = self.current.as_mut() else {
            return Ok(false);
        };
        match reader.next_block(self.until)? {
            Some(records) => {
                self.buffered = records.into_iter();
            }
            None => {
                check_segment(
                    reader.stats(),
                    info,
                    reader.file(),
                    reader.payload_complete(),
                )?;
                self.prev_offset = Some(info.last_offset);
                self.current = None;
            }
        }
        Ok(true)
    }
}

impl Iterator for PartitionReader {
    type Item = DomainResult<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.failed {
                return None;
            }
            if let Some(r) = self.buffered.next() {
                if self.until.is_some_and(|u| r.timestamp > u) {
                    continue;
                }
                return Some(Ok(r));
            }
            match self.advance() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e.into_domain(&self.backup_id)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvault_domain::{Compression, TopicMetadata};

    fn spec(id: &str) -> ArchiveSpec {
        ArchiveSpec {
            backup_id: BackupId::parse(id).expect("valid id"),
            cluster_id: "local".into(),
            topic: TopicMetadata {
                name: "events".into(),
                partition_count: 1,
                replication_factor: 1,
                configs: Default::default(),
            },
            compression: Compression::new(CompressionType::None, None).expect("codec"),
            include_keys: true,
            include_headers: true,
            created_at: Utc::now(),
        }
    }

    /// Writes and commits a one-record backup.
    fn backup(store: &LocalArchiveStore, id: &str) {
        let writer = store.create(spec(id)).expect("create");
        let mut p = writer.partition(0).expect("partition");
        p.append(&Record {
            offset: 0,
            timestamp: 1,
            timestamp_type: kvault_domain::TimestampType::CreateTime,
            key: None,
            value: Some(b"v".to_vec()),
            headers: Vec::new(),
        })
        .expect("append");
        let pm = p.finish(0, 1).expect("finish");
        writer.commit(vec![pm], Utc::now()).expect("commit");
    }

    fn names(base: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(base)
            .expect("read base")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        names.sort();
        names
    }

    /// What a crash right after the tombstone rename leaves: a hidden directory with a full
    /// backup inside.
    fn crashed_delete(store: &LocalArchiveStore, id: &str) -> PathBuf {
        backup(store, id);
        let tombstone = store.base_path().join(tombstone_name(id));
        fs::rename(store.final_dir(id), &tombstone).expect("rename");
        tombstone
    }

    #[test]
    fn delete_leaves_nothing_and_frees_the_id() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = LocalArchiveStore::new(tmp.path()).expect("store");
        backup(&store, "b1");
        backup(&store, "b2");
        store
            .delete(&BackupId::parse("b1").expect("id"))
            .expect("delete");
        assert_eq!(names(tmp.path()), vec!["b2".to_owned()]);
        // The id is free again at once.
        backup(&store, "b1");
        assert_eq!(store.list().expect("list").len(), 2);
    }

    #[test]
    fn a_crashed_delete_hides_the_backup_and_is_swept_on_open_and_create() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = LocalArchiveStore::new(tmp.path()).expect("store");
        let tombstone = crashed_delete(&store, "gone");
        assert!(tombstone.join(MANIFEST_FILE).is_file());
        // Invisible and not blocking its id, even before any sweep.
        assert!(store.list().expect("list").is_empty());
        assert!(matches!(
            store.manifest(&BackupId::parse("gone").expect("id")),
            Err(kvault_domain::DomainError::NotFound { .. })
        ));

        // Opening the store sweeps it.
        let reopened = LocalArchiveStore::new(tmp.path()).expect("reopen");
        assert!(!tombstone.exists());
        assert!(names(tmp.path()).is_empty());

        // So does creating a backup (of any id).
        let tombstone = crashed_delete(&reopened, "gone");
        backup(&reopened, "other");
        assert!(!tombstone.exists());
        assert_eq!(names(tmp.path()), vec!["other".to_owned()]);
    }

    #[test]
    fn tombstone_names_are_recognised_exactly() {
        let name = tombstone_name("backup-1.x");
        assert!(name.starts_with(".backup-1.x.deleting-"), "{name}");
        assert!(is_tombstone(&name));
        for other in [
            ".deleting-1",
            ".b.deleting-",
            ".b.deleting-1a",
            "b.deleting-1",
            "..",
        ] {
            assert!(!is_tombstone(other), "{other}");
        }
    }

    #[test]
    fn the_sweep_leaves_other_hidden_entries_alone() {
        let tmp = tempfile::tempdir().expect("tempdir");
        for kept in [".snapshot", ".deleting-1", ".b.deleting-x1", "b.deleting-1"] {
            fs::create_dir(tmp.path().join(kept)).expect("mkdir");
        }
        fs::write(tmp.path().join(".b.deleting-1"), b"a file").expect("write");
        let store = LocalArchiveStore::new(tmp.path()).expect("store");
        backup(&store, "kept");
        assert_eq!(
            names(tmp.path()),
            vec![
                ".b.deleting-1",
                ".b.deleting-x1",
                ".deleting-1",
                ".snapshot",
                "b.deleting-1",
                "kept"
            ]
        );
    }
}
