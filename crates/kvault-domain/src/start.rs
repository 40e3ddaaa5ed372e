//! One way to run a backup, whoever starts it: the API's backup route and scheduler, the
//! takeover of a job whose replica stopped, and the CLI. The decision between one topic and
//! a backup set is made here once ([`BackupRequest::plan`]), and [`run_backup`] runs either on
//! the [`Engine`] (one topic) or through [`crate::backup_set`] (a set).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::backup::{
    BackupDefaults, BackupOutcome, BackupPlan, BackupRequest, BackupResult, NothingNewResult,
};
use crate::backup_set::{run_backup_set, BackupSetPlan, BackupSetResult};
use crate::error::{DomainResult, ValidationError};
use crate::ids::ClusterId;
use crate::job::OperationControl;
use crate::operations::Engine;
use crate::ports::ArchiveStore;

/// A validated backup request: one topic, or a set.
pub enum BackupWork {
    Topic(BackupPlan),
    Set(BackupSetPlan),
}

impl BackupRequest {
    /// Validates the request as what it names: a set (`topics` or `topic_pattern`) or one
    /// topic.
    pub fn plan(
        &self,
        defaults: BackupDefaults,
        now: DateTime<Utc>,
    ) -> Result<BackupWork, ValidationError> {
        if self.is_set() {
            Ok(BackupWork::Set(self.validate_set(defaults, now)?))
        } else {
            Ok(BackupWork::Topic(self.validate(defaults, now)?))
        }
    }
}

/// What a backup did, serialized as its documented result.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum BackupDone {
    Written(BackupResult),
    /// A scheduled incremental run found no record since the run it continues.
    NothingNew(NothingNewResult),
    Set(BackupSetResult),
}

/// Runs `work` on `cluster`, writing into `archives`. With `skip_unchanged` (a scheduled
/// run) a one-topic incremental backup that finds nothing new writes no archive.
pub async fn run_backup(
    engine: &dyn Engine,
    archives: &dyn ArchiveStore,
    cluster: &ClusterId,
    work: BackupWork,
    control: OperationControl,
    skip_unchanged: bool,
) -> DomainResult<BackupDone> {
    match work {
        BackupWork::Set(plan) => {
            let result = run_backup_set(engine, archives, cluster, plan, control).await?;
            Ok(BackupDone::Set(result))
        }
        BackupWork::Topic(plan) if skip_unchanged => {
            match engine
                .backup_unless_unchanged(cluster, plan, control)
                .await?
            {
                BackupOutcome::Written(result) => Ok(BackupDone::Written(result)),
                BackupOutcome::NothingNew(unchanged) => Ok(BackupDone::NothingNew(unchanged)),
            }
        }
        BackupWork::Topic(plan) => Ok(BackupDone::Written(
            engine.backup(cluster, plan, control).await?,
        )),
    }
}
