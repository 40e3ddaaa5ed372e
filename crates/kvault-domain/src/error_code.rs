//! [`ErrorCode`]: the stable name of every kind of failure, as the documented error body's
//! `error` field carries it, a failed job stores it, and the CLI turns it into an exit code.
//! The names never change once published; the HTTP status each one answers with is the API's
//! business (kvault-api's `error` module), the exit code the CLI's.

use serde::{Deserialize, Serialize};

use crate::error::{DomainError, KafkaFailure, StorageFailure};

/// A failure's stable name. Serialized as the variant's name (`"NotFound"`); a name this
/// version does not know (one a newer server stored) reads back as `InternalError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub enum ErrorCode {
    /// A request field is wrong; `details` names it.
    ValidationError,
    /// A request the server could not read (malformed query or path).
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    /// A rate or concurrency limit; `Retry-After` says when to come back.
    TooManyRequests,
    /// A limit retrying cannot help with (`max_backup_size_gb`, say).
    LimitExceeded,
    /// A record read's time budget ran out before anything matched.
    BudgetExceeded,
    CorruptArchive,
    Cancelled,
    /// A job taken over from a replica that stopped could not continue exactly.
    Interrupted,
    /// The server cannot serve now (its job database is unreachable).
    Unavailable,
    KafkaUnavailable,
    KafkaAuthenticationFailed,
    KafkaTlsFailed,
    KafkaUnauthorized,
    KafkaError,
    StorageFull,
    StorageUnavailable,
    StorageAccessDenied,
    StorageMissing,
    StorageError,
    /// A server-side failure; the message holds only an error id for the log.
    #[serde(other)]
    InternalError,
}

impl ErrorCode {
    /// The stable name, as serialized (also a metrics label).
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            ValidationError => "ValidationError",
            BadRequest => "BadRequest",
            Unauthorized => "Unauthorized",
            Forbidden => "Forbidden",
            NotFound => "NotFound",
            MethodNotAllowed => "MethodNotAllowed",
            Conflict => "Conflict",
            PayloadTooLarge => "PayloadTooLarge",
            UnsupportedMediaType => "UnsupportedMediaType",
            TooManyRequests => "TooManyRequests",
            LimitExceeded => "LimitExceeded",
            BudgetExceeded => "BudgetExceeded",
            CorruptArchive => "CorruptArchive",
            Cancelled => "Cancelled",
            Interrupted => "Interrupted",
            Unavailable => "Unavailable",
            KafkaUnavailable => "KafkaUnavailable",
            KafkaAuthenticationFailed => "KafkaAuthenticationFailed",
            KafkaTlsFailed => "KafkaTlsFailed",
            KafkaUnauthorized => "KafkaUnauthorized",
            KafkaError => "KafkaError",
            StorageFull => "StorageFull",
            StorageUnavailable => "StorageUnavailable",
            StorageAccessDenied => "StorageAccessDenied",
            StorageMissing => "StorageMissing",
            StorageError => "StorageError",
            InternalError => "InternalError",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl DomainError {
    /// The stable code of this error's root cause (context does not change it).
    pub fn code(&self) -> ErrorCode {
        match self.root() {
            Self::Validation(_) => ErrorCode::ValidationError,
            Self::NotFound { .. } => ErrorCode::NotFound,
            Self::Conflict { .. } => ErrorCode::Conflict,
            // Retrying cannot help with a limit that names no wait: not "too many requests".
            Self::LimitExceeded {
                retry_after_secs: 0,
                ..
            } => ErrorCode::LimitExceeded,
            Self::LimitExceeded { .. } => ErrorCode::TooManyRequests,
            Self::CorruptArchive { .. } => ErrorCode::CorruptArchive,
            Self::Cancelled => ErrorCode::Cancelled,
            Self::Interrupted { .. } => ErrorCode::Interrupted,
            Self::Kafka { failure, .. } => kafka_code(*failure),
            Self::Storage { failure, .. } => storage_code(*failure),
            _ => ErrorCode::InternalError,
        }
    }
}

fn kafka_code(failure: KafkaFailure) -> ErrorCode {
    match failure {
        KafkaFailure::Unavailable => ErrorCode::KafkaUnavailable,
        KafkaFailure::Authentication => ErrorCode::KafkaAuthenticationFailed,
        KafkaFailure::Tls => ErrorCode::KafkaTlsFailed,
        KafkaFailure::Authorization => ErrorCode::KafkaUnauthorized,
        _ => ErrorCode::KafkaError,
    }
}

fn storage_code(failure: StorageFailure) -> ErrorCode {
    match failure {
        StorageFailure::Full => ErrorCode::StorageFull,
        StorageFailure::Unavailable => ErrorCode::StorageUnavailable,
        StorageFailure::PermissionDenied => ErrorCode::StorageAccessDenied,
        StorageFailure::Missing => ErrorCode::StorageMissing,
        _ => ErrorCode::StorageError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_stable_names_and_read_back() {
        for code in [
            ErrorCode::ValidationError,
            ErrorCode::KafkaAuthenticationFailed,
            ErrorCode::StorageFull,
            ErrorCode::Interrupted,
            ErrorCode::InternalError,
        ] {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, serde_json::json!(code.as_str()));
            assert_eq!(serde_json::from_value::<ErrorCode>(json).unwrap(), code);
        }
        // A name from a newer version is an internal error here, not a failure to read.
        let unknown = serde_json::from_value::<ErrorCode>(serde_json::json!("Whatever")).unwrap();
        assert_eq!(unknown, ErrorCode::InternalError);
    }

    #[test]
    fn the_root_cause_decides_the_code() {
        let e = DomainError::conflict("target holds messages").context("after 5 records");
        assert_eq!(e.code(), ErrorCode::Conflict);
        let busy = |secs| DomainError::LimitExceeded {
            message: "busy".into(),
            retry_after_secs: secs,
        };
        assert_eq!(busy(0).code(), ErrorCode::LimitExceeded);
        assert_eq!(busy(3).code(), ErrorCode::TooManyRequests);
        let storage = DomainError::Storage {
            failure: StorageFailure::Missing,
            message: "no bucket".into(),
            source: None,
        };
        assert_eq!(storage.code(), ErrorCode::StorageMissing);
        assert_eq!(DomainError::internal("x").code(), ErrorCode::InternalError);
    }
}
