//! The kvault model: what a backup, restore, migration and drain *are*, independent of Kafka
//! client libraries, file formats or HTTP.
//!
//! - [`offset`], [`compression`], [`ids`]: small value types that validate themselves.
//! - [`cluster`]: how to reach a cluster (the `clusters:` config entries).
//! - [`record`]: one Kafka record as bytes (nullable key and value, ordered headers);
//!   [`record_block`]: records sharing one buffer, as an archive block decodes them.
//! - [`backup`], [`restore`], [`migrate`], [`drain`]: the documented request and result shapes,
//!   with their defaults and `validate()` methods.
//! - [`backup_set`], [`restore_set`]: many topics in one backup call (all or nothing), and
//!   restoring them together.
//! - [`restore_transform`]: filtered, sampled, masked restores (test environments).
//! - [`chain`]: incremental backups, their chains, and point-in-time restores over them.
//! - [`schedule`]: backup schedules, whose runs continue one chain (continuous backups).
//! - [`manifest`]: the description of a finished backup (topic metadata, per-partition ranges,
//!   segment index) that storage persists and restore plans from.
//! - [`groups`]: which consumer groups travel with a backup, restore or migration, and what
//!   happened to each.
//! - [`dry_run`]: what a restore or migration would do, as a dry run answers it.
//! - [`job`]: long-running operations, their states and progress; [`resume`]: what a restore
//!   or migration records so that the replica taking its job over continues it exactly;
//!   [`backup_resume`]: the checkpoint a backup keeps so that its takeover keeps the
//!   segments already committed.
//! - [`operations`]: backup, restore, migrate and drain as traits ([`operations::Engine`]),
//!   which the Kafka layer implements and the API and CLI call.
//! - [`ports`]: what the operations need from the outside ([`ports::ArchiveStore`]), which
//!   the storage layer implements.
//! - [`browse`]: reading records straight out of a backup (JSON view, cursor, paging).
//! - [`error`]: typed validation and operation errors, each naming the field and value at fault;
//!   [`error_code`]: the stable name of each kind of failure ([`ErrorCode`]).
//!
//! This crate does no I/O and knows no framework: `serde` shapes are the contract, and the
//! `openapi` feature adds `utoipa` schemas for the HTTP layer.

pub mod backup;
pub mod backup_planning;
pub mod backup_resume;
pub mod backup_set;
pub mod browse;
pub mod cel_limits;
pub mod chain;
pub mod cluster;
pub mod compression;
pub mod drain;
pub mod dry_run;
pub mod error;
pub mod error_code;
pub mod fanout;
mod field_checks;
pub mod groups;
pub mod ids;
pub mod job;
pub mod manifest;
pub mod migrate;
pub mod offset;
pub mod operation_status;
pub mod operations;
pub mod ports;
pub mod record;
pub mod record_block;
pub mod restore;
pub mod restore_planning;
pub mod restore_set;
pub mod restore_transform;
pub mod resume;
pub mod schedule;
pub mod side_by_side;
pub mod start;
pub mod time;

pub use backup::{BackupRequest, BackupResult, PartitionBackupResult};
pub use cluster::ClusterConfig;
pub use compression::{Compression, CompressionType};
pub use drain::{DrainRequest, DrainResult, DrainStatus, DrainStrategy, PartitionLag};
pub use error::{
    DomainError, DomainResult, ErrorKind, KafkaFailure, StorageFailure, ValidationError,
};
pub use error_code::ErrorCode;
pub use ids::{BackupId, ClusterId, ScheduleId};
pub use job::{Job, JobAttempt, JobId, JobKind, JobProgress, JobState, OperationStatus};
pub use manifest::{Manifest, PartitionManifest, SegmentInfo, TopicMetadata};
pub use migrate::{MessageTransformation, MigrateRequest, MigrateResult};
pub use offset::Offset;
pub use record::{Header, Record, TimestampType};
pub use restore::{IfExists, PartitionMapping, RestoreRequest, RestoreResult};
