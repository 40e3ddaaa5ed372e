//! [`LocalArchiveStore`]: backups as directories on a local filesystem, written under
//! `{id}.partial/` and renamed into place once every file is durable.

use std::collections::{HashSet, VecDeque};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kvault_domain::error::DomainResult;
use kvault_domain::job::OperationControl;
use kvault_domain::manifest::FORMAT_VERSION;
use kvault_domain::ports::{
    ArchiveSpec, ArchiveStore, ArchiveWriter, PartitionWriter, ReadBounds, RecordReader,
    VerifyReport,
};
use kvault_domain::{
    BackupId, CompressionType, DomainError, Manifest, PartitionManifest, Record, SegmentInfo,
};

use crate::backend::{FileSinks, FileSource, SegmentSink, SegmentSinks, SourceReader};
use crate::codec::Encoder;
use crate::error::{Result, StorageError};
use crate::format::MAX_BLOCK_RAW_LEN;
use crate::format::MAX_HEADERS_PER_RECORD;
use crate::format::MAX_MANIFEST_LEN;
use crate::partial::{self, PartialLock, LOCK_FILE};
use crate::record::encoded_len;
use crate::segment::{BlockBuilder, SegmentReader, SegmentWriter};
use crate::verify::{self, check_segment, open_segment, VerifyMode};

mod partition_writer;
mod ports;
mod reader;
mod tombstone;
mod writer;

use partition_writer::LocalPartitionWriter;
use reader::PartitionReader;
#[cfg(test)]
use tombstone::{is_tombstone, tombstone_name};
use writer::{LocalArchiveWriter, OpenSegment, WriterShared};

pub(crate) const MANIFEST_FILE: &str = "manifest.json";
/// Suffix of a backup directory still being written. Ids ending in it are refused so a
/// finished backup can never be mistaken for an unfinished one.
pub const PARTIAL_SUFFIX: &str = ".partial";
/// Largest block size an option may ask for: half the format's block limit, so a block of
/// small records plus the record that overflows it always fits.
pub const MAX_BLOCK_SIZE: usize = (MAX_BLOCK_RAW_LEN / 2) as usize;
pub(crate) const IO_BUFFER: usize = 256 << 10;
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
        store.sweep_abandoned();
        Ok(store)
    }

    /// Removes the staging directories of backups whose writer is gone (killed, crashed),
    /// never one still being written; returns how many it removed. Runs at open; the API
    /// calls it periodically too.
    pub fn sweep_abandoned(&self) -> usize {
        partial::sweep_abandoned(&self.base, PARTIAL_SUFFIX)
    }

    pub fn base_path(&self) -> &Path {
        &self.base
    }

    pub(crate) fn final_dir(&self, id: &str) -> PathBuf {
        self.base.join(id)
    }

    fn partial_dir(&self, id: &str) -> PathBuf {
        self.base.join(format!("{id}{PARTIAL_SUFFIX}"))
    }

    pub(crate) fn load_manifest(&self, id: &str) -> Result<Manifest> {
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
        // An abandoned partial of this id (its writer was killed) must not block the id.
        if partial.exists() {
            partial::remove_if_abandoned(&partial);
        }
        // `create_dir` (not `_all`) fails if the directory exists, which makes two racing
        // creates of one id resolve to exactly one winner.
        match fs::create_dir(&partial) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StorageError::BackupExists(id))
            }
            Err(e) => return Err(StorageError::io(&partial, e)),
        }
        let lock = match PartialLock::acquire(&partial) {
            Ok(lock) => lock,
            Err(e) => {
                let _ = fs::remove_dir_all(&partial);
                return Err(StorageError::io(partial.join(LOCK_FILE), e));
            }
        };
        Ok(LocalArchiveWriter {
            lock: Some(lock),
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
        let writer = store.blocking_create(spec(id)).expect("create");
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
            .blocking_delete(&BackupId::parse("b1").expect("id"))
            .expect("delete");
        assert_eq!(names(tmp.path()), vec!["b2".to_owned()]);
        // The id is free again at once.
        backup(&store, "b1");
        assert_eq!(store.blocking_list().expect("list").len(), 2);
    }

    #[test]
    fn a_crashed_delete_hides_the_backup_and_is_swept_on_open_and_create() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = LocalArchiveStore::new(tmp.path()).expect("store");
        let tombstone = crashed_delete(&store, "gone");
        assert!(tombstone.join(MANIFEST_FILE).is_file());
        // Invisible and not blocking its id, even before any sweep.
        assert!(store.blocking_list().expect("list").is_empty());
        assert!(matches!(
            store.blocking_manifest(&BackupId::parse("gone").expect("id")),
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
