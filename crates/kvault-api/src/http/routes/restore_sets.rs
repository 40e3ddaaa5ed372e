//! Restoring a backup set through the documented restore route: `backup_id` names the set and
//! `target_topic` is left out (or `topic_prefix` / `topic_mapping` rename the topics). One
//! restore job restores every topic (see `kvault_domain::restore_set`).

use actix_web::{web, HttpRequest, HttpResponse};
use kvault_domain::restore_set::{run_restore_set, set_members, RestoreSetResult};
use kvault_domain::{BackupId, ClusterId, JobKind, RestoreRequest, RestoreResult};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::engine::jobs::JobTarget;
use crate::engine::outcome::to_json;
use crate::engine::runner::JobSpec;
use crate::error::ApiError;
use crate::http::auth::{Admin, Authed};
use crate::http::extract::{wants_wait, WaitQuery};
use crate::http::routes::respond::respond;
use crate::http::state::AppState;

/// What `POST /clusters/{id}/restore` answers: the documented result, or a set's.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum RestoreResponse {
    Topic(RestoreResult),
    Set(RestoreSetResult),
    /// With `?dry_run=true`: the plan.
    DryRun(kvault_domain::dry_run::RestoreDryRun),
}

/// Starts the restore of set `request.backup_id` as one job (the caller found no single
/// backup of that id).
pub(crate) async fn start_restore_set(
    auth: &Authed<Admin>,
    cluster: ClusterId,
    request: RestoreRequest,
    (req, query): (&HttpRequest, &WaitQuery),
    state: &web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = BackupId::parse(&request.backup_id)?;
    let members = set_members(state.archives.as_ref(), id.as_str()).await?;
    // As for one backup: a set from a cluster outside the token's claim does not exist.
    if members.iter().any(|m| !auth.may_touch(&m.cluster_id)) {
        return Err(ApiError::not_found(
            "backup_id",
            &id,
            format!("backup '{id}' not found"),
        ));
    }
    let mut plan = request.validate_set(&members)?;
    plan.parallelism = state.settings.workers.set_restore_parallelism;
    let capacity = state.limits.capacity(JobKind::Restore, cluster.as_str());
    // Every topic of the set is the job's from the start, not only the one it is on.
    let targets: Vec<JobTarget> = plan
        .members
        .iter()
        .map(|m| JobTarget::new(cluster.clone(), m.target_topic.clone()))
        .collect();
    let engine = state.engine.clone();
    let (job_id, handle) = state
        .runner
        .start_writer(
            JobSpec {
                kind: JobKind::Restore,
                cluster_id: Some(cluster.to_string()),
                target_cluster_id: None,
                subject: auth.subject().to_owned(),
                request: to_json(&request)?,
                backup_id: Some(id.to_string()),
            },
            &targets,
            capacity,
            move |control| async move {
                let result = run_restore_set(engine.as_ref(), &cluster, plan, control).await?;
                to_json(&result)
            },
        )
        .await?;
    respond(wants_wait(req, query), JobKind::Restore, job_id, handle).await
}
