//! Backup sets through the documented backup route: a request with `topics` or
//! `topic_pattern` instead of `topic` runs as one backup job (started by `crate::engine::backup_start`)
//! whose result is a [`BackupSetResult`] (see `kvault_domain::backup_set`).

use kvault_domain::backup_set::BackupSetResult;
use kvault_domain::BackupResult;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What `POST /clusters/{id}/backup` answers: the documented result for one topic, or a set's.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum BackupResponse {
    Topic(BackupResult),
    Set(BackupSetResult),
}
