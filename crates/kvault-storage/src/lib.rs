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
//! - [`fuzzing`]: in-memory entry points used by the fuzz target, tests and benches.
//! - [`error`]: [`StorageError`], mapped onto `DomainError` at the trait boundary.
//!
//! Everything is synchronous; async callers run it on blocking threads.

mod codec;
pub mod error;
pub mod format;
pub mod fuzzing;
mod record;
mod segment;
pub mod store;

pub use error::{Location, StorageError};
pub use store::{LocalArchiveStore, LocalStoreOptions};
