//! Running `object_store`'s async calls from the store's blocking code, and turning its
//! errors into ones a user can act on.
//!
//! The store is synchronous (its writers are fed from blocking threads), `object_store` is
//! async. Every call runs on one process-wide runtime of its own and the calling thread waits
//! for it. Because that runtime is never the caller's, waiting cannot deadlock even when a
//! caller is itself a runtime thread, and the runtime is never dropped inside an async
//! context (which would panic).

use std::fmt;
use std::future::Future;
use std::sync::OnceLock;

use kvault_domain::StorageFailure;
use tokio::runtime::Runtime;

/// The runtime object storage I/O runs on. Two workers: requests are network-bound.
fn io_runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kvault-object-io")
            .enable_all()
            .build()
            .unwrap_or_else(|e| {
                // Without threads nothing in the process works; say why and stop.
                tracing::error!(error = %e, "cannot start the object storage I/O runtime");
                std::process::abort()
            })
    })
}

/// Runs `future` on the I/O runtime and waits for its result.
pub(super) fn block_on<T: Send + 'static>(
    future: impl Future<Output = T> + Send + 'static,
) -> Result<T, ObjectError> {
    let task = io_runtime().spawn(future);
    futures::executor::block_on(task).map_err(|e| ObjectError {
        location: String::new(),
        source: object_store::Error::JoinError { source: e },
    })
}

/// Spawns `future` on the I/O runtime without waiting (the lease heartbeat).
pub(super) fn spawn(future: impl Future<Output = ()> + Send + 'static) {
    io_runtime().spawn(future);
}

/// An object storage call that failed, with the object (or prefix) it was about.
#[derive(Debug)]
pub struct ObjectError {
    /// `s3://bucket/prefix/id/file`: what the call was about.
    pub location: String,
    pub source: object_store::Error,
}

impl ObjectError {
    pub(super) fn new(location: impl Into<String>, source: object_store::Error) -> Self {
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
    pub(super) fn is_not_found(&self) -> bool {
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
