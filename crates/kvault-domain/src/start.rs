//! One way to run a backup or a restore, whoever starts it: the API's routes and scheduler,
//! the takeover of a job whose replica stopped, and the CLI. The decision between one topic
//! (one archive) and a set is made here once — [`BackupRequest::plan`], [`plan_restore`] —
//! and [`run_backup`] and [`run_restore`] run either on the [`Engine`] or through
//! [`crate::backup_set`] and [`crate::restore_set`].

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::backup::{
    BackupDefaults, BackupOutcome, BackupPlan, BackupRequest, BackupResult, NothingNewResult,
};
use crate::backup_set::{run_backup_set, BackupSetPlan, BackupSetResult};
use crate::error::{DomainError, DomainResult, ValidationError};
use crate::ids::{BackupId, ClusterId};
use crate::job::OperationControl;
use crate::manifest::Manifest;
use crate::operations::Engine;
use crate::ports::ArchiveStore;
use crate::restore::{RestorePlan, RestoreRequest, RestoreResult};
use crate::restore_set::{run_restore_set, set_members, RestoreSetPlan, RestoreSetResult};

/// A validated backup request: one topic, or a set.
pub enum BackupWork {
    Topic(BackupPlan),
    Set(BackupSetPlan),
}

impl BackupRequest {
    /// Validates the request as what it names: a set (`topics` or `topic_pattern`), whose
    /// topics are backed up `set_parallelism` at a time (`workers.set_parallelism`), or one
    /// topic.
    pub fn plan(
        &self,
        defaults: BackupDefaults,
        now: DateTime<Utc>,
        set_parallelism: usize,
    ) -> Result<BackupWork, ValidationError> {
        if self.is_set() {
            let mut plan = self.validate_set(defaults, now)?;
            plan.parallelism = set_parallelism;
            Ok(BackupWork::Set(plan))
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

/// A validated restore request: of one archive, or of a backup set.
pub enum RestoreWork {
    /// One archive; its manifest as read.
    Archive {
        plan: RestorePlan,
        manifest: Box<Manifest>,
    },
    /// A backup set; its members as read.
    Set {
        plan: RestoreSetPlan,
        members: Vec<Manifest>,
    },
}

/// What `request` restores: the archive of its backup id, or else the set of that id, whose
/// topics are restored `set_parallelism` at a time (`workers.set_restore_parallelism`). A request that
/// can only be one archive's is validated first, so its 400 comes before a 404.
pub async fn plan_restore(
    archives: &dyn ArchiveStore,
    request: &RestoreRequest,
    set_parallelism: usize,
) -> DomainResult<RestoreWork> {
    let checked = (!request.may_name_a_set())
        .then(|| request.validate())
        .transpose()?;
    let id = BackupId::parse(&request.backup_id)?;
    match archives.manifest(&id).await {
        Ok(manifest) => {
            let plan = match checked {
                Some(plan) => plan,
                None => request.validate()?,
            };
            let manifest = Box::new(manifest);
            Ok(RestoreWork::Archive { plan, manifest })
        }
        Err(DomainError::NotFound { .. }) => {
            let members = set_members(archives, id.as_str()).await?;
            let mut plan = request.validate_set(&members)?;
            plan.parallelism = set_parallelism;
            Ok(RestoreWork::Set { plan, members })
        }
        Err(e) => Err(e),
    }
}

/// What a restore did, serialized as its documented result.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum RestoreDone {
    Archive(RestoreResult),
    Set(RestoreSetResult),
}

/// Runs `work` into `cluster`.
pub async fn run_restore(
    engine: &dyn Engine,
    cluster: &ClusterId,
    work: RestoreWork,
    control: OperationControl,
) -> DomainResult<RestoreDone> {
    match work {
        RestoreWork::Archive { plan, .. } => Ok(RestoreDone::Archive(
            engine.restore(cluster, plan, control).await?,
        )),
        RestoreWork::Set { plan, .. } => Ok(RestoreDone::Set(
            run_restore_set(engine, cluster, plan, control).await?,
        )),
    }
}
