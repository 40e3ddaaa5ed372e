//! [`ObjectError`]: an object storage call that failed, and what a user can do about it, read
//! off `object_store`'s error and, where the crate only passes the server's answer along, the
//! provider's error code (S3's or Azure's), and the domain error it becomes.

use std::fmt;

use kvault_domain::{DomainError, StorageFailure};

/// An object storage call that failed, with the object (or prefix) it was about.
#[derive(Debug)]
pub struct ObjectError {
    /// `s3://bucket/prefix/id/file`: what the call was about.
    pub location: String,
    pub source: object_store::Error,
}

impl ObjectError {
    pub(crate) fn new(location: impl Into<String>, source: object_store::Error) -> Self {
        Self {
            location: location.into(),
            source,
        }
    }

    /// What a user can do about it, read off the error's type and, where the crate only
    /// passes the server's answer along, its S3 error code.
    pub fn failure(&self) -> StorageFailure {
        use object_store::Error as E;
        let text = self.chain();
        match &self.source {
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => {
                StorageFailure::PermissionDenied
            }
            _ if is_missing_container(&text) => StorageFailure::Missing,
            _ if text.contains("AccessDenied")
                || text.contains("InvalidAccessKeyId")
                || text.contains("SignatureDoesNotMatch")
                || text.contains("AuthenticationFailed")
                || text.contains("AuthorizationFailure") =>
            {
                StorageFailure::PermissionDenied
            }
            E::Generic { .. } if is_unreachable(&text) => StorageFailure::Unavailable,
            _ => StorageFailure::Other,
        }
    }

    /// Whether the object is simply absent (not the bucket).
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self.source, object_store::Error::NotFound { .. })
            && !is_missing_container(&self.chain())
    }

    /// The error and its causes on one line.
    fn chain(&self) -> String {
        let mut text = self.source.to_string();
        let mut cause = std::error::Error::source(&self.source);
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        text
    }
}

/// S3's and Azure's codes for a bucket or container that does not exist.
fn is_missing_container(text: &str) -> bool {
    text.contains("NoSuchBucket") || text.contains("ContainerNotFound")
}

/// Connection failures, timeouts, throttling and server errors that outlasted the crate's
/// retries.
fn is_unreachable(text: &str) -> bool {
    [
        "retries",
        "error sending request",
        "connect",
        "timed out",
        "SlowDown",
        "503",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

impl fmt::Display for ObjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hint = match self.failure() {
            StorageFailure::Missing => " (the bucket or container does not exist)",
            StorageFailure::PermissionDenied => " (check the credentials and the bucket policy)",
            StorageFailure::Unavailable => " (the endpoint could not be reached; retries ran out)",
            _ => "",
        };
        write!(f, "{}: {}{hint}", self.location, self.source)
    }
}

impl std::error::Error for ObjectError {}

/// An object storage failure, typed by what the user can do about it. The message names the
/// bucket and key (never a credential).
pub(super) fn object_into_domain(e: ObjectError, backup_id: &str) -> DomainError {
    let message = if backup_id.is_empty() {
        format!("object storage: {e}")
    } else {
        format!("backup '{backup_id}': object storage: {e}")
    };
    DomainError::Storage {
        failure: e.failure(),
        message,
        source: Some(Box::new(e)),
    }
}
