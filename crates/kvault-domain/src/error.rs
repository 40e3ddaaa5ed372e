//! Typed errors shared by every layer. Each variant maps to one documented HTTP status in the
//! API layer; the CLI prints the message and exits non-zero.

use serde::Serialize;

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

/// What can go wrong with an operation, independent of which layer noticed it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DomainError {
    /// The request itself is wrong (400).
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// A named thing does not exist: cluster, topic, backup, job, consumer group (404).
    #[error("{kind} '{name}' not found")]
    NotFound { kind: &'static str, name: String },
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
    /// Kafka said no, or could not be reached.
    #[error("kafka: {0}")]
    Kafka(String),
    /// The archive store failed (disk full, permissions, ...).
    #[error("storage: {0}")]
    Storage(String),
    /// Anything else; the message is for logs, not for clients.
    #[error("internal: {0}")]
    Internal(String),
}

impl DomainError {
    pub fn not_found(kind: &'static str, name: impl Into<String>) -> Self {
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
}

pub type DomainResult<T> = Result<T, DomainError>;
