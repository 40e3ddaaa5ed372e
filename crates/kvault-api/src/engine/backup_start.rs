//! Starting a backup job, for the backup route and for scheduled runs alike: checks the request
//! against the archives and the cluster (parent of an incremental backup, free backup id,
//! existing topic), then admits the job and runs it through `kvault_domain::start`, which
//! decides between one topic and a set (as it does for the takeover and the CLI).
//!
//! The job's stored request records the uid the server gave the archive (`archive_uid`) or
//! the set (`set_uid`): takeover and schedule retention act only on the archives carrying it.

use std::sync::Arc;

use chrono::Utc;
use kvault_domain::backup::BackupPlan;
use kvault_domain::backup_set::BackupSetPlan;
use kvault_domain::restore_set::set_members;
use kvault_domain::start::{run_backup, BackupWork};
use kvault_domain::{BackupId, BackupRequest, ClusterId, DomainError, JobId, JobKind};
use tokio::task::JoinHandle;

use crate::engine::jobs::RunClaim;
use crate::engine::outcome::to_json;
use crate::engine::runner::{JobOutcome, JobSpec};
use crate::engine::state::EngineState;
use crate::error::ApiError;

/// Who starts a backup: the token's subject, and for a scheduled run its claim.
pub(crate) struct Starter {
    pub subject: String,
    pub claim: Option<RunClaim>,
}

/// Checks `request` and starts it on `cluster` (the caller checked the token may touch it).
pub(crate) async fn start_backup(
    state: &Arc<EngineState>,
    cluster: ClusterId,
    request: BackupRequest,
    starter: Starter,
) -> Result<(JobId, JoinHandle<JobOutcome>), ApiError> {
    let work = request.plan(
        state.settings.backup.request_defaults(),
        Utc::now(),
        state.settings.workers.set_parallelism,
    )?;
    let (backup_id, recorded) = match &work {
        BackupWork::Topic(plan) => {
            check_topic_backup(state, &cluster, plan).await?;
            (
                plan.backup_id.to_string(),
                (ARCHIVE_UID, plan.archive_uid.clone()),
            )
        }
        BackupWork::Set(plan) => {
            check_set_backup(state, &cluster, plan).await?;
            (plan.set_id.to_string(), (SET_UID, plan.set_uid.clone()))
        }
    };
    let capacity = state.limits.capacity(JobKind::Backup, cluster.as_str());
    let (engine, archives, totals) = (
        state.engine.clone(),
        state.archives.clone(),
        state.archive_totals.clone(),
    );
    // A scheduled run that finds nothing new writes no archive (see `kvault_domain::backup`).
    let skip_unchanged = starter.claim.is_some();
    state
        .runner
        .start_claimed(
            spec(&cluster, &request, starter.subject, backup_id, recorded)?,
            Some(capacity),
            starter.claim,
            move |control| async move {
                let (engine, archives) = (engine.as_ref(), archives.as_ref());
                let done =
                    run_backup(engine, archives, &cluster, work, control, skip_unchanged).await;
                totals.invalidate();
                to_json(&done?)
            },
        )
        .await
}

/// A one-topic backup: its `incremental_from` parent continues this topic of this cluster,
/// its backup id is free, its topic exists.
async fn check_topic_backup(
    state: &EngineState,
    cluster: &ClusterId,
    plan: &BackupPlan,
) -> Result<(), ApiError> {
    if let Some(parent) = &plan.incremental_from {
        let parent = state
            .archives
            .manifest(parent)
            .await
            .map_err(|e| parent_error(e, parent, "backup"))?;
        kvault_domain::chain::continue_chain(&parent, cluster, &plan.topic)?;
    }
    refuse_taken_id(state, &plan.backup_id).await?;
    require_topic(state, cluster, &plan.topic).await
}

/// A backup set: an incremental set's parent is a set of the same cluster, and its id names
/// no backup and no set.
async fn check_set_backup(
    state: &EngineState,
    cluster: &ClusterId,
    plan: &BackupSetPlan,
) -> Result<(), ApiError> {
    if let Some(parent) = &plan.parent_set {
        let members = set_members(state.archives.as_ref(), parent.as_str())
            .await
            .map_err(|e| parent_error(e, parent, "backup set"))?;
        if let Some(other) = members.iter().find(|m| m.cluster_id != cluster.as_str()) {
            return Err(ApiError::from(kvault_domain::ValidationError::new(
                "incremental_from",
                parent,
                format!(
                    "is a backup set of cluster {}, not {cluster}",
                    other.cluster_id
                ),
            )));
        }
    }
    refuse_taken_id(state, &plan.set_id).await?;
    refuse_taken_set(state, &plan.set_id).await
}

/// The key of the stored request that records a one-topic backup's archive uid.
pub(crate) const ARCHIVE_UID: &str = "archive_uid";
/// The key of the stored request that records a backup set's uid.
pub(crate) const SET_UID: &str = "set_uid";

fn spec(
    cluster: &ClusterId,
    request: &BackupRequest,
    subject: String,
    backup_id: String,
    (key, uid): (&str, String),
) -> Result<JobSpec, ApiError> {
    let mut stored = to_json(request)?;
    if let Some(fields) = stored.as_object_mut() {
        fields.insert(key.to_owned(), uid.into());
    }
    Ok(JobSpec {
        kind: JobKind::Backup,
        cluster_id: Some(cluster.to_string()),
        target_cluster_id: None,
        subject,
        request: stored,
        backup_id: Some(backup_id),
    })
}

/// The archive or set uid a backup job's stored request recorded (`None`: a job stored before
/// kvault recorded uids).
pub(crate) fn recorded_uid(stored: &serde_json::Value) -> Option<String> {
    [ARCHIVE_UID, SET_UID]
        .iter()
        .find_map(|key| stored.get(key).and_then(serde_json::Value::as_str))
        .map(str::to_owned)
}

/// A backup job's stored request as the user posted it (without the recorded uid), and the uid.
pub(crate) fn split_recorded(
    stored: &serde_json::Value,
) -> Result<(BackupRequest, Option<String>), ApiError> {
    let uid = recorded_uid(stored);
    let mut posted = stored.clone();
    if let Some(fields) = posted.as_object_mut() {
        fields.remove(ARCHIVE_UID);
        fields.remove(SET_UID);
    }
    let request = serde_json::from_value(posted)
        .map_err(|e| ApiError::internal(format!("stored backup request: {e}")))?;
    Ok((request, uid))
}

/// 404 naming `topic` when it does not exist on `cluster`.
pub(crate) async fn require_topic(
    state: &EngineState,
    cluster: &ClusterId,
    topic: &str,
) -> Result<(), ApiError> {
    if state.engine.topic_exists(cluster, topic).await? {
        return Ok(());
    }
    Err(ApiError::not_found(
        "topic",
        topic,
        format!("topic '{topic}' does not exist on cluster '{cluster}'"),
    ))
}

/// 409 when a backup (or set) named `id` exists.
async fn refuse_taken_id(state: &EngineState, id: &BackupId) -> Result<(), ApiError> {
    match state.archives.manifest(id).await {
        Ok(_) => Err(
            ApiError::conflict(format!("a backup named '{id}' already exists")).on("backup_id", id),
        ),
        Err(DomainError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// 409 when any archive names set `id`: a set id names one set only (the store refuses a
/// concurrent second set too, see `kvault_domain::backup_set`).
async fn refuse_taken_set(state: &EngineState, id: &BackupId) -> Result<(), ApiError> {
    match set_members(state.archives.as_ref(), id.as_str()).await {
        Err(DomainError::NotFound { .. }) => Ok(()),
        Ok(_) | Err(DomainError::Conflict { .. }) => Err(ApiError::conflict(format!(
            "backup set id '{id}' is taken: archives of a set with that id exist; choose \
             another backup_id"
        ))
        .on("backup_id", id)),
        Err(e) => Err(e.into()),
    }
}

/// A missing `incremental_from` parent is a 404 naming the field.
fn parent_error(error: DomainError, parent: &BackupId, what: &str) -> ApiError {
    match error {
        DomainError::NotFound { .. } => ApiError::not_found(
            "incremental_from",
            parent,
            format!("{what} '{parent}' (incremental_from) not found"),
        ),
        other => other.into(),
    }
}
