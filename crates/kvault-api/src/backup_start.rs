//! Starting a backup job, for the backup route and for scheduled runs alike: checks the request
//! against the archives and the cluster (parent of an incremental backup, free backup id,
//! existing topic), then admits the job and runs it. A one-topic backup runs on the engine, a
//! backup set through `kvault_domain::backup_set`.
//!
//! The job's stored request records the uid the server gave the archive (`archive_uid`) or
//! the set (`set_uid`): takeover and schedule retention act only on the archives carrying it.

use actix_web::web;
use chrono::Utc;
use kvault_domain::backup::BackupOutcome;
use kvault_domain::backup_set::run_backup_set;
use kvault_domain::restore_set::set_members;
use kvault_domain::{BackupId, BackupRequest, ClusterId, DomainError, JobId, JobKind};
use tokio::task::JoinHandle;

use crate::error::ApiError;
use crate::jobs::RunClaim;
use crate::routes::respond::to_json;
use crate::runner::{JobSpec, Outcome};
use crate::state::AppState;

/// Who starts a backup: the token's subject, and for a scheduled run its claim.
pub(crate) struct Starter {
    pub subject: String,
    pub claim: Option<RunClaim>,
}

/// Checks `request` and starts it on `cluster` (the caller checked the token may touch it).
pub(crate) async fn start_backup(
    state: &web::Data<AppState>,
    cluster: ClusterId,
    request: BackupRequest,
    starter: Starter,
) -> Result<(JobId, JoinHandle<Outcome>), ApiError> {
    if request.is_set() {
        return start_backup_set(state, cluster, request, starter).await;
    }
    let plan = request.validate(state.settings.backup.request_defaults(), Utc::now())?;
    if let Some(parent) = &plan.incremental_from {
        let parent = state
            .store
            .manifest(parent)
            .await
            .map_err(|e| parent_error(e, parent, "backup"))?;
        kvault_domain::chain::continue_chain(&parent, cluster.as_str(), &plan.topic)?;
    }
    refuse_taken_id(state, &plan.backup_id).await?;
    require_topic(state, &cluster, &plan.topic).await?;
    let capacity = state.limits.capacity(JobKind::Backup, cluster.as_str());
    let totals = state.archive_totals.clone();
    let engine = state.engine.clone();
    let backup_id = plan.backup_id.to_string();
    let recorded = (ARCHIVE_UID, plan.archive_uid.clone());
    // A scheduled run that finds nothing new writes no archive (see `kvault_domain::backup`).
    let skip_unchanged = starter.claim.is_some();
    state
        .runner
        .start_claimed(
            spec(&cluster, &request, starter.subject, backup_id, recorded)?,
            Some(capacity),
            starter.claim,
            move |control| async move {
                let outcome = if skip_unchanged {
                    engine
                        .backup_unless_unchanged(&cluster, plan, control)
                        .await
                } else {
                    engine
                        .backup(&cluster, plan, control)
                        .await
                        .map(BackupOutcome::Written)
                };
                totals.invalidate();
                match outcome? {
                    BackupOutcome::Written(result) => to_json(&result),
                    BackupOutcome::NothingNew(unchanged) => to_json(&unchanged),
                }
            },
        )
        .await
}

/// A backup set as one job; an incremental set's parent must be a set of the same cluster.
async fn start_backup_set(
    state: &web::Data<AppState>,
    cluster: ClusterId,
    request: BackupRequest,
    starter: Starter,
) -> Result<(JobId, JoinHandle<Outcome>), ApiError> {
    let mut plan = request.validate_set(state.settings.backup.request_defaults(), Utc::now())?;
    plan.parallelism = state.settings.workers.set_parallelism;
    if let Some(parent) = &plan.parent_set {
        let members = set_members(state.store.as_ref(), parent.as_str())
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
    refuse_taken_set(state, &plan.set_id).await?;
    let capacity = state.limits.capacity(JobKind::Backup, cluster.as_str());
    let (engine, store, totals) = (
        state.engine.clone(),
        state.store.clone(),
        state.archive_totals.clone(),
    );
    let set_id = plan.set_id.to_string();
    let recorded = (SET_UID, plan.set_uid.clone());
    state
        .runner
        .start_claimed(
            spec(&cluster, &request, starter.subject, set_id, recorded)?,
            Some(capacity),
            starter.claim,
            move |control| async move {
                let result =
                    run_backup_set(engine.as_ref(), store.as_ref(), &cluster, plan, control).await;
                totals.invalidate();
                to_json(&result?)
            },
        )
        .await
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
    state: &AppState,
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
async fn refuse_taken_id(state: &AppState, id: &BackupId) -> Result<(), ApiError> {
    match state.store.manifest(id).await {
        Ok(_) => Err(
            ApiError::conflict(format!("a backup named '{id}' already exists")).on("backup_id", id),
        ),
        Err(DomainError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// 409 when any archive names set `id`: a set id names one set only (the store refuses a
/// concurrent second set too, see `kvault_domain::backup_set`).
async fn refuse_taken_set(state: &AppState, id: &BackupId) -> Result<(), ApiError> {
    match set_members(state.store.as_ref(), id.as_str()).await {
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
