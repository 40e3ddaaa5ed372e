//! Typed errors shared by every layer. Each [`ErrorKind`] maps to one documented HTTP status in
//! the API layer and one exit code in the CLI; adapters keep their own error as the `source`, so
//! the root cause survives all the way to the log line.

use std::error::Error as StdError;

use serde::Serialize;

/// A boxed error from a lower layer (librdkafka, I/O, object storage), kept as a source.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Bad input: names the field and the value that was refused, so the caller can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub value: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, value: impl ToString, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            value: value.to_string(),
            message: message.into(),
        }
    }
}

/// Why Kafka failed, as far as a caller can act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum KafkaFailure {
    /// No broker answered: down, unreachable, or timed out (retry later, check the address).
    Unavailable,
    /// SASL authentication failed: the broker refused the credentials (check the user and
    /// password), or a secret file could not be read.
    Authentication,
    /// The TLS handshake failed: the broker's certificate is signed by an unknown CA, names
    /// another host, has expired, or the listener does not speak TLS (check the certificates
    /// and `security.protocol`).
    Tls,
    /// The broker refused the operation (ACLs).
    Authorization,
    /// Anything else the broker said no to.
    Other,
}

/// Why the archive store failed, as far as a caller can act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum StorageFailure {
    /// No space left on the device / quota exceeded.
    Full,
    /// Permission or access denied (file mode, bucket policy, credentials).
    PermissionDenied,
    /// The store could not be reached (object storage endpoint down, retries exhausted).
    Unavailable,
    /// The bucket or base directory does not exist.
    Missing,
    /// An encrypted archive's data key cannot be unwrapped: the key-encryption key it names is
    /// not configured, a different key is configured under that id, or the archive was
    /// crypto-shredded. Nothing was read.
    KeyUnavailable,
    /// The archive is locked by object storage retention (S3 Object Lock) and cannot be
    /// deleted or changed until the lock expires.
    Locked,
    /// Anything else.
    Other,
}

/// What can go wrong with an operation, independent of which layer noticed it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DomainError {
    /// The request itself is wrong (400).
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// A named thing does not exist: cluster, topic, backup, job, consumer group (404).
    #[error("{kind} '{name}' not found")]
    NotFound { kind: Missing, name: String },
    /// The request conflicts with existing state, e.g. a non-empty target topic (409).
    #[error("{message}")]
    Conflict {
        message: String,
        field: Option<String>,
        value: Option<String>,
    },
    /// A concurrency or rate limit is reached (429).
    #[error("{message}")]
    LimitExceeded {
        message: String,
        retry_after_secs: u64,
    },
    /// The archive failed an integrity check (checksums, counts, format).
    #[error("backup '{backup_id}' is corrupt: {reason}")]
    CorruptArchive { backup_id: String, reason: String },
    /// The operation was cancelled by a user.
    #[error("operation cancelled")]
    Cancelled,
    /// A job taken over from a replica that stopped cannot continue exactly where it left
    /// off (the target changed meanwhile, or records were re-partitioned): it ends
    /// `interrupted` with the reason, and the target is left as it is for inspection (503).
    #[error("{message}")]
    Interrupted { message: String },
    /// Kafka said no, or could not be reached.
    #[error("kafka: {message}")]
    Kafka {
        failure: KafkaFailure,
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    /// The archive store failed (disk full, permissions, bucket missing, ...).
    #[error("storage: {message}")]
    Storage {
        failure: StorageFailure,
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    /// Anything else; the message is for logs, not for clients.
    #[error("internal: {message}")]
    Internal {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    /// Another error with what the operation had done when it happened. The kind is the
    /// inner error's, so a conflict found mid-run is still a conflict.
    #[error("{context}: {source}")]
    WithContext {
        context: String,
        /// Machine-readable facts for the error body's `details` (e.g. records per partition).
        details: Option<serde_json::Value>,
        #[source]
        source: Box<DomainError>,
    },
}

/// What was not found: each kind names the request field a caller used for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Missing {
    Cluster,
    Topic,
    Backup,
    Job,
    ConsumerGroup,
    Partition,
}

impl Missing {
    /// The request field that named the missing thing, for the error body's `details.field`.
    pub fn field(self) -> &'static str {
        match self {
            Missing::Cluster => "cluster_id",
            Missing::Topic => "topic",
            Missing::Backup => "backup_id",
            Missing::Job => "job_id",
            Missing::ConsumerGroup => "group_id",
            Missing::Partition => "partitions",
        }
    }
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Missing::Cluster => "cluster",
            Missing::Topic => "topic",
            Missing::Backup => "backup",
            Missing::Job => "job",
            Missing::ConsumerGroup => "consumer group",
            Missing::Partition => "partition",
        })
    }
}

/// The kind of an error, for mapping onto statuses and exit codes without matching strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum ErrorKind {
    Validation,
    NotFound,
    Conflict,
    LimitExceeded,
    CorruptArchive,
    Cancelled,
    Interrupted,
    Kafka(KafkaFailure),
    Storage(StorageFailure),
    Internal,
}

impl DomainError {
    pub fn not_found(kind: Missing, name: impl Into<String>) -> Self {
        Self::NotFound {
            kind,
            name: name.into(),
        }
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict {
            message: message.into(),
            field: None,
            value: None,
        }
    }

    pub fn conflict_on(
        message: impl Into<String>,
        field: impl Into<String>,
        value: impl ToString,
    ) -> Self {
        Self::Conflict {
            message: message.into(),
            field: Some(field.into()),
            value: Some(value.to_string()),
        }
    }

    /// A Kafka failure of kind [`KafkaFailure::Other`] without a source.
    pub fn kafka(message: impl Into<String>) -> Self {
        Self::Kafka {
            failure: KafkaFailure::Other,
            message: message.into(),
            source: None,
        }
    }

    /// A storage failure of kind [`StorageFailure::Other`] without a source.
    pub fn storage(message: impl Into<String>) -> Self {
        Self::Storage {
            failure: StorageFailure::Other,
            message: message.into(),
            source: None,
        }
    }

    /// See [`DomainError::Interrupted`].
    pub fn interrupted(message: impl Into<String>) -> Self {
        Self::Interrupted {
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal {
            message: message.into(),
            source: None,
        }
    }

    /// Wraps `self` with what the operation was doing; the kind stays `self`'s.
    pub fn context(self, context: impl Into<String>) -> Self {
        Self::WithContext {
            context: context.into(),
            details: None,
            source: Box::new(self),
        }
    }

    /// Like [`DomainError::context`], with machine-readable details for the error body.
    pub fn context_with(self, context: impl Into<String>, details: serde_json::Value) -> Self {
        Self::WithContext {
            context: context.into(),
            details: Some(details),
            source: Box::new(self),
        }
    }

    /// The innermost error: what actually went wrong, under any context layers.
    pub fn root(&self) -> &DomainError {
        match self {
            Self::WithContext { source, .. } => source.root(),
            other => other,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self.root() {
            Self::Validation(_) => ErrorKind::Validation,
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::Conflict { .. } => ErrorKind::Conflict,
            Self::LimitExceeded { .. } => ErrorKind::LimitExceeded,
            Self::CorruptArchive { .. } => ErrorKind::CorruptArchive,
            Self::Cancelled => ErrorKind::Cancelled,
            Self::Interrupted { .. } => ErrorKind::Interrupted,
            Self::Kafka { failure, .. } => ErrorKind::Kafka(*failure),
            Self::Storage { failure, .. } => ErrorKind::Storage(*failure),
            Self::Internal { .. } | Self::WithContext { .. } => ErrorKind::Internal,
        }
    }

    /// The outermost `details` attached with [`DomainError::context_with`], if any.
    pub fn details(&self) -> Option<&serde_json::Value> {
        match self {
            Self::WithContext {
                details: Some(d), ..
            } => Some(d),
            Self::WithContext { source, .. } => source.details(),
            _ => None,
        }
    }
}

pub type DomainResult<T> = Result<T, DomainError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_the_kind_and_the_details() {
        let e = DomainError::conflict_on("topic holds messages", "target_topic", "t")
            .context_with("restore stopped", serde_json::json!({"written": {"0": 5}}))
            .context("job 1");
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert_eq!(e.details().unwrap()["written"]["0"], 5);
        assert!(e
            .to_string()
            .starts_with("job 1: restore stopped: topic holds"));
        assert!(matches!(e.root(), DomainError::Conflict { .. }));
    }

    #[test]
    fn failures_are_kinds_of_their_own() {
        let e = DomainError::Kafka {
            failure: KafkaFailure::Unavailable,
            message: "no broker".into(),
            source: Some("connection refused".into()),
        };
        assert_eq!(e.kind(), ErrorKind::Kafka(KafkaFailure::Unavailable));
        assert_eq!(
            e.source().map(|s| s.to_string()).as_deref(),
            Some("connection refused")
        );
        assert_eq!(
            DomainError::storage("x").kind(),
            ErrorKind::Storage(StorageFailure::Other)
        );
        assert_eq!(DomainError::internal("x").kind(), ErrorKind::Internal);
    }
}
