//! Typed storage errors, each naming the file, block and byte position at fault, and their
//! mapping onto [`DomainError`] at the [`ArchiveStore`](kvault_domain::ports::ArchiveStore)
//! boundary.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use kvault_domain::{CompressionType, DomainError, StorageFailure};

use crate::codec::CodecError;
use crate::record::RecordError;

mod object;
mod paths;
use object::object_into_domain;
pub use object::ObjectError;
use paths::path_inside_backup;

/// Where in an archive a problem was found.
///
/// `file` is relative to the store's base directory (`{backup_id}/p0/…seg`), or `<memory>` for
/// in-memory reads, so its first path component is the backup id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    /// Index of the block (0-based) when the problem is inside or at a block.
    pub block: Option<u64>,
    /// Byte position in the file where the damaged structure starts.
    pub pos: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.block {
            Some(b) => write!(f, "{} block {} at byte {}", self.file, b, self.pos),
            None => write!(f, "{} at byte {}", self.file, self.pos),
        }
    }
}

/// Everything the archive layer can report. Corruption variants say what was expected and
/// what was found; none of them are produced by a panic path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The operating system refused an operation.
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file does not start with the segment magic: not a kvault segment.
    #[error("{at}: bad segment magic {found:02x?}")]
    BadMagic { at: Location, found: [u8; 4] },
    /// The segment was written by a newer (or unknown) major format version.
    #[error(
        "{at}: unsupported segment format version {major}.{minor} (this build reads {supported}.x)"
    )]
    UnsupportedVersion {
        at: Location,
        major: u16,
        minor: u16,
        supported: u16,
    },
    /// The codec id in the segment header is not one this build knows.
    #[error("{at}: unknown codec id {code}")]
    UnknownCodec { at: Location, code: u8 },
    /// The segment's codec differs from the one the manifest records.
    #[error("{at}: segment codec {found} differs from manifest codec {expected}")]
    CodecMismatch {
        at: Location,
        expected: CompressionType,
        found: CompressionType,
    },
    /// A fixed-size header (file header, block header or trailer) failed its own CRC32C.
    #[error("{at}: {what} checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    HeaderChecksum {
        at: Location,
        what: &'static str,
        stored: u32,
        computed: u32,
    },
    /// A block's compressed bytes failed their CRC32C.
    #[error(
        "{at}: block data checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
    )]
    BlockChecksum {
        at: Location,
        stored: u32,
        computed: u32,
    },
    /// The file ended before a complete structure (or before its trailer).
    #[error("{at}: truncated: file ends inside {what}")]
    Truncated { at: Location, what: &'static str },
    /// Bytes follow the segment trailer.
    #[error("{at}: unexpected bytes after the segment trailer")]
    TrailingBytes { at: Location },
    /// Neither a block header nor the trailer starts here.
    #[error("{at}: expected a block or trailer marker, found {found:02x?}")]
    BadMarker { at: Location, found: [u8; 4] },
    /// A length or count exceeds the format's documented maximum; refused before allocating.
    #[error("{at}: {what} is {value}, above the limit of {max}")]
    LimitExceeded {
        at: Location,
        what: &'static str,
        value: u64,
        max: u64,
    },
    /// The codec could not decompress a block, or produced the wrong length.
    #[error("{at}: {codec} decompression failed: {source}")]
    Decompress {
        at: Location,
        codec: CompressionType,
        #[source]
        source: CodecError,
    },
    /// A record inside a decompressed block is malformed (bad length, bad enum value,
    /// non-UTF-8 header name, ...).
    #[error("{at}: record {index} of the block: {source}")]
    BadRecord {
        at: Location,
        index: u64,
        #[source]
        source: RecordError,
    },
    /// A count, offset or timestamp differs from what a header, trailer or manifest states.
    #[error("{at}: {what}: expected {expected}, found {found}")]
    Mismatch {
        at: Location,
        what: &'static str,
        expected: String,
        found: String,
    },
    /// Record offsets must strictly increase within a segment and across segments.
    #[error("{at}: offset {found} does not follow offset {previous}")]
    OffsetOrder {
        at: Location,
        previous: i64,
        found: i64,
    },
    /// The whole file's SHA-256 differs from the manifest.
    #[error("{file}: SHA-256 mismatch (manifest {expected}, file {actual})")]
    Sha256Mismatch {
        file: String,
        expected: String,
        actual: String,
    },
    /// `manifest.json` cannot be parsed, is too large, or contradicts itself or its directory.
    #[error("{file}: bad manifest: {reason}")]
    BadManifest { file: String, reason: String },
    /// The manifest was written by a newer format version.
    #[error("{file}: manifest format version {found} is newer than supported {supported}")]
    ManifestVersion {
        file: String,
        found: u32,
        supported: u32,
    },
    /// No finished backup with this id.
    #[error("backup '{0}' not found")]
    BackupNotFound(String),
    /// The backup exists but has no such partition.
    #[error("backup '{backup_id}' has no partition {partition}")]
    PartitionNotFound { backup_id: String, partition: i32 },
    /// A backup (finished or still being written) already uses this id.
    #[error("backup '{0}' already exists")]
    BackupExists(String),
    /// A writer for this partition of this backup was already handed out.
    #[error("partition {partition} of backup '{backup_id}' is already being written")]
    PartitionTaken { backup_id: String, partition: i32 },
    /// Records must be appended in strictly increasing offset order.
    #[error("partition {partition}: offset {found} appended after offset {previous}")]
    AppendOrder {
        partition: i32,
        previous: i64,
        found: i64,
    },
    /// One record is larger than a block may be.
    #[error("partition {partition}: record at offset {offset} encodes to {size} bytes, above the limit of {max}")]
    RecordTooLarge {
        partition: i32,
        offset: i64,
        size: u64,
        max: u64,
    },
    /// The operation was cancelled through its control.
    #[error("cancelled")]
    Cancelled,
    /// One record carries more headers than a reader would accept.
    #[error("partition {partition}: record at offset {offset} has {count} headers, above the limit of {max}")]
    TooManyHeaders {
        partition: i32,
        offset: i64,
        count: usize,
        max: usize,
    },
    /// A compressor failed while writing (not a property of the data on disk).
    #[error("{codec} compression failed: {source}")]
    Compress {
        codec: CompressionType,
        #[source]
        source: CodecError,
    },
    /// An object storage request failed (bucket missing, access denied, endpoint
    /// unreachable after retries, ...).
    #[error("object storage: {0}")]
    Object(ObjectError),
    /// The manifest changed while it was being replaced (another re-wrap, shred or delete).
    #[error("backup '{0}' changed meanwhile; try again")]
    ManifestChanged(String),
    /// A sealed block or trailer failed authentication under the archive's data key: its bytes
    /// (or its header) were changed, it was moved from another place or archive, or the
    /// segment was cut and given a forged trailer.
    #[error("{at}: failed authentication under the data key wrapped by key '{key_id}' (tampered with, moved, or cut)")]
    Authentication { at: Location, key_id: String },
    /// A sealed segment was read without the archive's key.
    #[error("{at}: the segment is encrypted and no key was given to read it")]
    NoKey { at: Location },
    /// An encrypted archive's data key cannot be unwrapped, so nothing of it can be read.
    #[error("backup '{backup_id}' is encrypted under key '{key_id}': {reason}")]
    KeyUnavailable {
        backup_id: String,
        key_id: String,
        reason: String,
    },
    /// Object storage retention (S3 Object Lock) keeps the backup until `until`.
    #[error("backup '{backup_id}' is locked by object storage retention until {until}: it cannot be deleted or changed before then")]
    ArchiveLocked {
        backup_id: String,
        until: chrono::DateTime<chrono::Utc>,
    },
    /// The caller passed something the store cannot use (bad options, a reserved id, a
    /// commit naming files that were never written).
    #[error("{field}: {message}")]
    InvalidInput {
        field: &'static str,
        value: String,
        message: String,
    },
}

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// True when the archive's bytes are damaged or inconsistent (as opposed to an I/O
    /// failure, a missing backup or a caller error).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Self::BadMagic { .. }
                | Self::UnsupportedVersion { .. }
                | Self::UnknownCodec { .. }
                | Self::CodecMismatch { .. }
                | Self::HeaderChecksum { .. }
                | Self::BlockChecksum { .. }
                | Self::Truncated { .. }
                | Self::TrailingBytes { .. }
                | Self::BadMarker { .. }
                | Self::LimitExceeded { .. }
                | Self::Decompress { .. }
                | Self::BadRecord { .. }
                | Self::Mismatch { .. }
                | Self::OffsetOrder { .. }
                | Self::Sha256Mismatch { .. }
                | Self::BadManifest { .. }
                | Self::ManifestVersion { .. }
                | Self::Authentication { .. }
        )
    }

    /// Converts to the domain error for a backup, naming `backup_id` in corruption errors.
    pub fn into_domain(self, backup_id: &str) -> DomainError {
        if self.is_corruption() {
            return DomainError::CorruptArchive {
                backup_id: backup_id.to_owned(),
                reason: self.to_string(),
            };
        }
        match self {
            Self::Io { path, source } => io_into_domain(&path, source, backup_id),
            Self::Object(e) => object_into_domain(e, backup_id),
            Self::Cancelled => DomainError::Cancelled,
            Self::BackupNotFound(id) => {
                DomainError::not_found(kvault_domain::error::Missing::Backup, id)
            }
            Self::PartitionNotFound {
                backup_id,
                partition,
            } => DomainError::not_found(
                kvault_domain::error::Missing::Partition,
                format!("{backup_id}/{partition}"),
            ),
            Self::BackupExists(id) => {
                DomainError::conflict_on(format!("backup '{id}' already exists"), "backup_id", id)
            }
            e @ (Self::PartitionTaken { .. } | Self::ManifestChanged(_)) => {
                DomainError::conflict(e.to_string())
            }
            Self::InvalidInput {
                field,
                value,
                message,
            } => kvault_domain::ValidationError::new(field, value, message).into(),
            e @ (Self::KeyUnavailable { .. } | Self::NoKey { .. }) => DomainError::Storage {
                failure: StorageFailure::KeyUnavailable,
                message: e.to_string(),
                source: None,
            },
            e @ Self::ArchiveLocked { .. } => DomainError::Storage {
                failure: StorageFailure::Locked,
                message: e.to_string(),
                source: None,
            },
            e @ (Self::AppendOrder { .. }
            | Self::RecordTooLarge { .. }
            | Self::TooManyHeaders { .. }) => DomainError::internal(e.to_string()),
            e => DomainError::storage(e.to_string()),
        }
    }

    /// The backup id an error is about, when it can tell.
    fn backup_id(&self) -> String {
        let from_file = |f: &str| f.split('/').next().unwrap_or_default().to_owned();
        match self {
            Self::BackupNotFound(id) | Self::BackupExists(id) | Self::ManifestChanged(id) => {
                id.clone()
            }
            Self::PartitionNotFound { backup_id, .. }
            | Self::PartitionTaken { backup_id, .. }
            | Self::KeyUnavailable { backup_id, .. }
            | Self::ArchiveLocked { backup_id, .. } => backup_id.clone(),
            Self::Sha256Mismatch { file, .. }
            | Self::BadManifest { file, .. }
            | Self::ManifestVersion { file, .. } => from_file(file),
            Self::BadMagic { at, .. }
            | Self::UnsupportedVersion { at, .. }
            | Self::UnknownCodec { at, .. }
            | Self::CodecMismatch { at, .. }
            | Self::HeaderChecksum { at, .. }
            | Self::BlockChecksum { at, .. }
            | Self::Truncated { at, .. }
            | Self::TrailingBytes { at }
            | Self::BadMarker { at, .. }
            | Self::LimitExceeded { at, .. }
            | Self::Decompress { at, .. }
            | Self::BadRecord { at, .. }
            | Self::Mismatch { at, .. }
            | Self::OffsetOrder { at, .. }
            | Self::Authentication { at, .. }
            | Self::NoKey { at } => from_file(&at.file),
            _ => String::new(),
        }
    }
}

impl From<StorageError> for DomainError {
    fn from(e: StorageError) -> Self {
        let id = e.backup_id();
        e.into_domain(&id)
    }
}

/// Maps an I/O failure onto its typed [`StorageFailure`]. The message names the backup and
/// the file relative to the archive root, so clients never see where the root lives.
fn io_into_domain(path: &Path, source: io::Error, backup_id: &str) -> DomainError {
    // Object storage failures travel through `io::Write` as `io::Error`s; unwrap them.
    if source.get_ref().is_some_and(|e| e.is::<ObjectError>()) {
        if let Some(Ok(e)) = source.into_inner().map(|e| e.downcast::<ObjectError>()) {
            return object_into_domain(*e, backup_id);
        }
        return DomainError::storage(format!("backup '{backup_id}': object storage failed"));
    }
    let inside = path_inside_backup(path, backup_id);
    let failure = match source.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => StorageFailure::Full,
        io::ErrorKind::PermissionDenied => StorageFailure::PermissionDenied,
        // Outside any backup, a missing path is the archive root itself.
        io::ErrorKind::NotFound if inside.is_none() => StorageFailure::Missing,
        _ => StorageFailure::Other,
    };
    let message = match inside {
        Some(file) => format!("backup '{backup_id}': i/o error on {file}: {source}"),
        None if backup_id.is_empty() => format!("archive root: i/o error: {source}"),
        None => format!("backup '{backup_id}': i/o error in the archive root: {source}"),
    };
    DomainError::Storage {
        failure,
        message,
        source: Some(Box::new(source)),
    }
}

pub(crate) type Result<T, E = StorageError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_onto_the_documented_domain_variants() {
        let at = Location {
            file: "b7/p0/00000000000000000000.seg".into(),
            block: Some(3),
            pos: 99,
        };
        let e = StorageError::BlockChecksum {
            at,
            stored: 1,
            computed: 2,
        };
        assert!(e
            .to_string()
            .contains("b7/p0/00000000000000000000.seg block 3 at byte 99"));
        match DomainError::from(e) {
            DomainError::CorruptArchive { backup_id, reason } => {
                assert_eq!(backup_id, "b7");
                assert!(reason.contains("checksum"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            DomainError::from(StorageError::io("/x", io::Error::other("disk full"))),
            DomainError::Storage { .. }
        ));
        let failure_of =
            |path: &str, kind: io::ErrorKind| match StorageError::io(path, io::Error::from(kind))
                .into_domain("b1")
            {
                DomainError::Storage {
                    failure,
                    message,
                    source,
                } => {
                    assert!(source.is_some());
                    assert!(!message.contains("/srv/vault"), "{message}");
                    (failure, message)
                }
                other => panic!("{other:?}"),
            };
        let seg = "/srv/vault/b1.partial/p0/0.seg";
        let (full, message) = failure_of(seg, io::ErrorKind::StorageFull);
        assert_eq!(full, StorageFailure::Full);
        assert!(message.contains("backup 'b1'") && message.contains("b1.partial/p0/0.seg"));
        assert_eq!(
            failure_of(seg, io::ErrorKind::QuotaExceeded).0,
            StorageFailure::Full
        );
        assert_eq!(
            failure_of(seg, io::ErrorKind::PermissionDenied).0,
            StorageFailure::PermissionDenied
        );
        assert_eq!(
            failure_of("/srv/vault", io::ErrorKind::NotFound).0,
            StorageFailure::Missing
        );
        assert_eq!(
            failure_of(seg, io::ErrorKind::NotFound).0,
            StorageFailure::Other
        );
        assert!(matches!(
            StorageError::BackupNotFound("b".into()).into_domain("b"),
            DomainError::NotFound {
                kind: kvault_domain::error::Missing::Backup,
                ..
            }
        ));
        match StorageError::BackupExists("b".into()).into_domain("b") {
            DomainError::Conflict { field, value, .. } => {
                assert_eq!(
                    (field.as_deref(), value.as_deref()),
                    (Some("backup_id"), Some("b"))
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
