//! The ports: traits the outer layers implement so the model never knows them.
//!
//! - [`archive`]: where backups live ([`ArchiveStore`]); implemented by `kvault-storage`
//!   (local files, object storage).
//! - [`filter`]: CEL record filters ([`RecordFilters`]); implemented by `kvault-kafka`.
//!
//! The operations themselves (backup, restore, migrate, drain) are traits too, in
//! [`crate::operations`]; `kvault-kafka` implements them over these ports.

pub mod archive;
pub mod filter;

pub use archive::{
    ArchiveSpec, ArchiveStore, ArchiveWriter, PartitionWriter, ReadBounds, RecordReader,
    VerifyReport,
};
pub use filter::{RecordFilter, RecordFilters};
