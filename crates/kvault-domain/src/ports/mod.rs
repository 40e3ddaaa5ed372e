//! The ports: traits the outer layers implement so the model never knows them.
//!
//! - [`archive`]: where backups live ([`ArchiveStore`]); implemented by `kvault-storage`
//!   (local files, object storage).
//! - [`filter`]: CEL record filters ([`RecordFilters`]); implemented by `kvault-kafka`.
//! - [`lag`]: consumer-group lag read without joining the group ([`ConsumerLag`]);
//!   implemented by `kvault-kafka`.
//!
//! The operations themselves (backup, restore, migrate, drain) are traits too, in
//! [`crate::operations`]; `kvault-kafka` implements them over these ports.

pub mod archive;
pub mod filter;
pub mod lag;

pub use archive::{
    ArchiveSpec, ArchiveStore, ArchiveWriter, BlockReader, PartitionWriter, ReadBounds,
    RecordReader, Resumed, Rewrapped, VerifyReport,
};
pub use filter::{FilterFailure, RecordFilter, RecordFilters};
pub use lag::{ConsumerLag, GroupLag, PartitionPosition};
