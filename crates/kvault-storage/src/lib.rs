//! kvault's archive format and its local-filesystem store.
//!
//! A backup is a directory holding `manifest.json` (serde of [`kvault_domain::Manifest`]) and
//! per-partition segment files; `docs/archive-format.md` gives the byte layout. The modules:
//!
//! - [`format`]: the fixed-size file header, block header and trailer, and the limits.
//! - `record`: the encoding of one record inside an uncompressed block.
//! - `codec`: block compression (none, gzip, snappy, lz4, zstd) with bounded decompression.
//! - `segment`: writing a segment (blocks + trailer, hashed) and reading it back validated.
//! - [`store`]: [`LocalArchiveStore`], the [`ArchiveStore`](kvault_domain::ports::ArchiveStore)
//!   implementation: `.partial` staging, atomic commit, list, read, verify, delete.
//! - [`backend`]: the segment sink/source seams (files here, objects elsewhere) and the
//!   commit protocol.
//! - `partial`: unfinished backups' staging directories, their writer lock and the sweep.
//! - `verify`: the full check and the fast bytes-only integrity check, in parallel.
//! - [`fuzzing`]: in-memory entry points used by the fuzz target, tests and benches.
//! - [`error`]: [`StorageError`], mapped onto `DomainError` at the trait boundary.
//!
//! The format code, writers and readers are synchronous; the async `ArchiveStore` methods run
//! the store's `blocking_*` methods on blocking threads.

pub mod backend;
mod codec;
pub mod error;
pub mod format;
pub mod fuzzing;
mod partial;
mod record;
mod segment;
pub mod store;
mod verify;

pub use error::{Location, StorageError};
pub use store::{LocalArchiveStore, LocalStoreOptions};
