//! [`Store`]: the archive format over a [`Backend`]: create, stage, commit, list, read,
//! verify and delete backups, the same on a local disk and in object storage.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kvault_domain::error::DomainResult;
use kvault_domain::job::OperationControl;
use kvault_domain::manifest::{ENCRYPTED_FORMAT_VERSION, FORMAT_VERSION};
use kvault_domain::ports::{
    ArchiveSpec, ArchiveStore, ArchiveWriter, BlockReader, PartitionWriter, ReadBounds,
    RecordReader, Resumed, VerifyReport,
};
use kvault_domain::record_block::{RecordBlock, RecordView};
use kvault_domain::{
    BackupId, CompressionType, DomainError, Manifest, PartitionManifest, Record, SegmentInfo,
};

use crate::backend::local::{LocalBackend, MANIFEST_FILE, PARTIAL_SUFFIX};
use crate::backend::{Backend, SegmentSink, SegmentSinks, Staging};
use crate::codec::Encoder;
use crate::crypt::{ArchiveKey, KeyProvider};
use crate::error::{Result, StorageError};
use crate::format::{
    is_safe_relative, MAX_BLOCK_RAW_LEN, MAX_HEADERS_PER_RECORD, MAX_MANIFEST_LEN,
};
use crate::record::encoded_len;
use crate::segment::{BlockBuilder, SegmentWriter};

mod catalog;
mod keys;
mod partition_writer;
mod ports;
mod reader;
mod verify;
mod writer;

pub use keys::Rewrapped;
use partition_writer::StorePartitionWriter;
use reader::{PartitionReader, PartitionRecords};
use verify::{check_segment, open_segment, VerifyMode};
use writer::{OpenSegment, StoreWriter};

/// Largest block size an option may ask for: half the format's block limit, so a block of
/// small records plus the record that overflows it always fits.
pub const MAX_BLOCK_SIZE: usize = (MAX_BLOCK_RAW_LEN / 2) as usize;

/// Tuning for how segments are cut. The defaults suit production; tests use small values to
/// exercise block and segment boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Target uncompressed bytes per block (default 1 MiB, at most [`MAX_BLOCK_SIZE`]). A
    /// block is cut before a record would push it past this size; one larger record gets a
    /// block of its own.
    pub block_size: usize,
    /// A new segment starts once the current one reaches this many bytes (default 128 MiB).
    /// Smaller segments let a restore skip more by timestamp.
    pub segment_size: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            block_size: 1 << 20,
            segment_size: 128 << 20,
        }
    }
}

impl StoreOptions {
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

/// Backups in the archive format, wherever a [`Backend`] keeps them:
/// `{root}/{backup_id}/manifest.json` plus `{root}/{backup_id}/p{partition}/{first_offset:020}.seg`.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    options: StoreOptions,
    /// Manifests already read, shared by the store's clones.
    catalog: Arc<catalog::Catalog>,
    /// Key-encryption keys: with them new archives are encrypted and encrypted ones read.
    keys: Option<Arc<dyn KeyProvider>>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.backend.location())
            .field("options", &self.options)
            .field("encrypts", &self.keys.is_some())
            .finish()
    }
}

impl Store {
    /// A store on `backend`.
    pub fn on(backend: Arc<dyn Backend>, options: StoreOptions) -> Result<Self> {
        options.validate()?;
        Ok(Self {
            backend,
            options,
            catalog: Arc::default(),
            keys: None,
        })
    }

    /// The same store with key-encryption keys: archives created from now on are encrypted
    /// under the provider's active key, and encrypted archives are read with its keys.
    pub fn with_keys(mut self, keys: Arc<dyn KeyProvider>) -> Self {
        self.keys = Some(keys);
        self
    }

    /// A store in local directory `base`, created if missing, with default options.
    pub fn local(base: impl Into<PathBuf>) -> Result<Self> {
        Self::local_with_options(base, StoreOptions::default())
    }

    /// A store in local directory `base`, created if missing.
    pub fn local_with_options(base: impl Into<PathBuf>, options: StoreOptions) -> Result<Self> {
        options.validate()?;
        Self::on(Arc::new(LocalBackend::open(base)?), options)
    }

    /// Where the backups are (`file:///…`, `s3://bucket/prefix`), without credentials.
    pub fn location(&self) -> String {
        self.backend.location()
    }

    /// Removes what dead writers and interrupted deletes left behind, never a backup still
    /// being written; returns how many it removed. Runs at open; the API calls it
    /// periodically too.
    pub fn sweep_abandoned(&self) -> usize {
        self.backend.sweep_abandoned()
    }

    pub(crate) fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    pub(crate) fn load_manifest(&self, id: &str) -> Result<Manifest> {
        let Some(bytes) = self.backend.read_manifest(id, MAX_MANIFEST_LEN)? else {
            return Err(StorageError::BackupNotFound(id.to_owned()));
        };
        self.parse_manifest(id, &bytes)
    }

    /// Parses and checks manifest `bytes` of backup `id`.
    pub(crate) fn parse_manifest(&self, id: &str, bytes: &[u8]) -> Result<Manifest> {
        let label = format!("{id}/{MANIFEST_FILE}");
        let bad = |reason: String| StorageError::BadManifest {
            file: label.clone(),
            reason,
        };
        if bytes.len() as u64 > MAX_MANIFEST_LEN {
            return Err(bad(format!("larger than {MAX_MANIFEST_LEN} bytes")));
        }
        // Read the version before the schema, so a newer manifest is reported as such rather
        // than as a parse error.
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let version = value
            .get("format_version")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| bad("format_version is missing or not a number".into()))?;
        if version > u64::from(ENCRYPTED_FORMAT_VERSION) {
            return Err(StorageError::ManifestVersion {
                file: label,
                found: u32::try_from(version).unwrap_or(u32::MAX),
                supported: ENCRYPTED_FORMAT_VERSION,
            });
        }
        let manifest: Manifest = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        // A version-2 manifest without its key record (or the reverse) would let a reader
        // take sealed segments for plain ones, or plain segments for an encrypted archive's.
        if (version == u64::from(ENCRYPTED_FORMAT_VERSION)) != manifest.encryption.is_some() {
            return Err(bad(format!(
                "format_version {version} {} an encryption record",
                if manifest.encryption.is_some() {
                    "with"
                } else {
                    "without"
                }
            )));
        }
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
        self.partition_of(&manifest, partition, bounds)
    }

    /// A reader of `partition` of the archive `manifest` describes (read by this store
    /// earlier); its segment paths are checked as a loaded manifest's are.
    fn partition_of(
        &self,
        manifest: &Manifest,
        partition: i32,
        bounds: ReadBounds,
    ) -> Result<PartitionReader> {
        let id = manifest.backup_id.as_str();
        let p = manifest
            .partition(partition)
            .ok_or_else(|| StorageError::PartitionNotFound {
                backup_id: id.to_owned(),
                partition,
            })?;
        if let Some(bad) = p.segments.iter().find(|s| !is_safe_relative(&s.file)) {
            return Err(StorageError::BadManifest {
                file: format!("{id}/{MANIFEST_FILE}"),
                reason: format!("segment path {:?} is not a safe relative path", bad.file),
            });
        }
        let key = self.archive_key(manifest)?;
        Ok(PartitionReader {
            store: self.clone(),
            backup_id: id.to_owned(),
            codec: manifest.compression.codec,
            encrypted: manifest.encryption.is_some(),
            key,
            segments: p.segments.iter().cloned().collect(),
            bounds,
            current: None,
            decoded: None,
            prev_offset: None,
            failed: false,
        })
    }

    fn create_inner(&self, spec: ArchiveSpec) -> Result<StoreWriter> {
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
        Encoder::new(spec.compression).map_err(|e| StorageError::InvalidInput {
            field: "compression_level",
            value: format!("{:?}", spec.compression.level),
            message: e.to_string(),
        })?;
        let crypt = self.new_archive_key(&id, &spec.archive_uid)?;
        let staging = self.backend.begin(&id)?;
        Ok(StoreWriter {
            staging,
            spec,
            options: self.options,
            taken: Mutex::new(HashSet::new()),
            adopted: BTreeMap::new(),
            crypt,
        })
    }

    /// A writer of `spec` that resumes a dead writer's staging, keeping of `committed` what
    /// the backend could (see [`Backend::begin_resume`]); the kept segments, renamed.
    fn resume_inner(
        &self,
        spec: ArchiveSpec,
        committed: BTreeMap<i32, Vec<SegmentInfo>>,
    ) -> Result<(StoreWriter, BTreeMap<i32, Vec<SegmentInfo>>)> {
        let id = spec.backup_id.as_str().to_owned();
        // The dead writer's data key is not in its checkpoint: an encrypted backup starts over
        // under a new key instead of keeping segments nobody could read.
        let crypt = self.new_archive_key(&id, &spec.archive_uid)?;
        let committed = if crypt.is_some() {
            BTreeMap::new()
        } else {
            committed
        };
        let asked: crate::backend::Adoption = committed
            .iter()
            .map(|(p, segments)| {
                let files = segments.iter().map(|s| (s.file.clone(), s.size_bytes));
                (*p, files.collect())
            })
            .collect();
        let (staging, kept) = self.backend.begin_resume(&id, &asked)?;
        let mut adopted = BTreeMap::new();
        for (partition, segments) in committed {
            let names = kept.get(&partition).map_or(&[][..], Vec::as_slice);
            let renamed: Vec<SegmentInfo> = segments
                .into_iter()
                .zip(names)
                .map(|(s, file)| SegmentInfo {
                    file: file.clone(),
                    ..s
                })
                .collect();
            if !renamed.is_empty() {
                adopted.insert(partition, renamed);
            }
        }
        let writer = StoreWriter {
            staging,
            spec,
            options: self.options,
            taken: Mutex::new(HashSet::new()),
            adopted: adopted.clone(),
            crypt,
        };
        Ok((writer, adopted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::tombstone::tombstone_name;
    use kvault_domain::{Compression, TopicMetadata};
    use std::fs;
    use std::path::Path;

    fn spec(id: &str) -> ArchiveSpec {
        ArchiveSpec {
            backup_id: BackupId::parse(id).expect("valid id"),
            archive_uid: kvault_domain::ids::new_uid(),
            cluster_id: kvault_domain::ClusterId::parse("local").expect("cluster id"),
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
            consumer_groups: Vec::new(),
            backup_set: None,
            chain: None,
        }
    }

    /// Writes and commits a one-record backup.
    fn backup(store: &Store, id: &str) {
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
    fn crashed_delete(store: &Store, base: &Path, id: &str) -> PathBuf {
        backup(store, id);
        let tombstone = base.join(tombstone_name(id));
        fs::rename(base.join(id), &tombstone).expect("rename");
        tombstone
    }

    #[test]
    fn delete_leaves_nothing_and_frees_the_id() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = Store::local(tmp.path()).expect("store");
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
        let store = Store::local(tmp.path()).expect("store");
        let tombstone = crashed_delete(&store, tmp.path(), "gone");
        assert!(tombstone.join(MANIFEST_FILE).is_file());
        // Invisible and not blocking its id, even before any sweep.
        assert!(store.blocking_list().expect("list").is_empty());
        assert!(matches!(
            store.blocking_manifest(&BackupId::parse("gone").expect("id")),
            Err(kvault_domain::DomainError::NotFound { .. })
        ));

        // Opening the store sweeps it.
        let reopened = Store::local(tmp.path()).expect("reopen");
        assert!(!tombstone.exists());
        assert!(names(tmp.path()).is_empty());

        // So does creating a backup (of any id).
        let tombstone = crashed_delete(&reopened, tmp.path(), "gone");
        backup(&reopened, "other");
        assert!(!tombstone.exists());
        assert_eq!(names(tmp.path()), vec!["other".to_owned()]);
    }

    #[test]
    fn the_sweep_leaves_other_hidden_entries_alone() {
        let tmp = tempfile::tempdir().expect("tempdir");
        for kept in [".snapshot", ".deleting-1", ".b.deleting-x1", "b.deleting-1"] {
            fs::create_dir(tmp.path().join(kept)).expect("mkdir");
        }
        fs::write(tmp.path().join(".b.deleting-1"), b"a file").expect("write");
        let store = Store::local(tmp.path()).expect("store");
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
