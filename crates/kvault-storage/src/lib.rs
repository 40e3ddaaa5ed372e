//! kvault's archive format and its stores: a local directory, or object storage (S3 and
//! S3-compatible servers, Azure Blob).
//!
//! A backup is a directory holding `manifest.json` (serde of [`kvault_domain::Manifest`]) and
//! per-partition segment files; `docs/archive-format.md` gives the byte layout. The modules:
//!
//! - [`format`]: the fixed-size file header, block header and trailer, and the limits.
//! - `record`: the encoding of one record inside an uncompressed block.
//! - `codec`: block compression (none, gzip, snappy, lz4, zstd) with bounded decompression.
//! - `segment`: writing a segment (blocks + trailer, hashed) and reading it back validated.
//! - [`store`]: [`Store`], the [`ArchiveStore`](kvault_domain::ports::ArchiveStore)
//!   implementation over a backend: staging, commit, list, read, delete, and (`store::verify`)
//!   the full check and the fast bytes-only integrity check, in parallel.
//! - [`backend`]: where the bytes live and the commit protocol every backend keeps:
//!   [`backend::local`] (directories, `.partial` staging, rename to commit) and
//!   [`backend::object`] (objects through `object_store`, multipart uploads, create-only
//!   manifest).
//! - [`fuzzing`]: in-memory entry points used by the fuzz target, tests and benches.
//! - [`error`]: [`StorageError`] (with [`error::ObjectError`] for object storage calls),
//!   mapped onto `DomainError` at the trait boundary.
//!
//! The format code, writers and readers are synchronous; the async `ArchiveStore` methods run
//! the store's `blocking_*` methods on blocking threads.

pub mod backend;
mod codec;
pub mod error;
pub mod format;
pub mod fuzzing;
mod record;
mod segment;
pub mod store;

pub use codec::CodecError;
pub use error::{Location, StorageError};
pub use record::RecordError;
pub use store::{Store, StoreOptions};
