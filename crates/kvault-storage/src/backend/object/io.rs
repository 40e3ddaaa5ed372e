//! Running `object_store`'s async calls from the store's blocking code (their errors become
//! [`ObjectError`]s, in `crate::error::object`).
//!
//! The store is synchronous (its writers are fed from blocking threads), `object_store` is
//! async. Every call runs on one process-wide runtime of its own and the calling thread waits
//! for it. Because that runtime is never the caller's, waiting cannot deadlock even when a
//! caller is itself a runtime thread, and the runtime is never dropped inside an async
//! context (which would panic).

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::Runtime;

pub(super) use crate::error::ObjectError;

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
    futures::executor::block_on(task)
        .map_err(|e| ObjectError::new(String::new(), object_store::Error::JoinError { source: e }))
}

/// Spawns `future` on the I/O runtime without waiting (the lease heartbeat).
pub(super) fn spawn(future: impl Future<Output = ()> + Send + 'static) {
    io_runtime().spawn(future);
}
