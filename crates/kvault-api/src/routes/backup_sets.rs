//! Backup sets through the documented backup route: a request with `topics` or
//! `topic_pattern` instead of `topic` runs as one backup job whose result is a
//! [`BackupSetResult`] (see `kvault_domain::backup_set`).

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use kvault_domain::backup_set::{run_backup_set, BackupSetResult};
use kvault_domain::{BackupRequest, BackupResult, ClusterId, DomainError, JobKind};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Authed, Operator};
use crate::error::ApiError;
use crate::extract::{wants_wait, WaitQuery};
use crate::routes::respond::{respond, to_json};
use crate::runner::JobSpec;
use crate::state::AppState;

/// What `POST /clusters/{id}/backup` answers: the documented result for one topic, or a set's.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum BackupResponse {
    Topic(BackupResult),
    Set(BackupSetResult),
}

/// Starts a backup set as one job (the caller checked the cluster and the token).
pub(crate) async fn start_backup_set(
    auth: &Authed<Operator>,
    cluster: ClusterId,
    request: BackupRequest,
    (req, query): (&HttpRequest, &WaitQuery),
    state: &web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let plan = request.validate_set(state.settings.backup.request_defaults(), Utc::now())?;
    let set_id = plan.set_id.clone();
    match state.store.manifest(&set_id).await {
        Ok(_) => {
            return Err(
                ApiError::conflict(format!("a backup named '{set_id}' already exists"))
                    .on("backup_id", &set_id),
            )
        }
        Err(DomainError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let capacity = state.limits.capacity(JobKind::Backup, cluster.as_str());
    let (engine, store, totals) = (
        state.engine.clone(),
        state.store.clone(),
        state.archive_totals.clone(),
    );
    let (id, handle) = state
        .runner
        .start(
            JobSpec {
                kind: JobKind::Backup,
                cluster_id: Some(cluster.to_string()),
                target_cluster_id: None,
                subject: auth.subject().to_owned(),
                request: to_json(&request)?,
                backup_id: Some(set_id.to_string()),
            },
            Some(capacity),
            move |control| async move {
                let result =
                    run_backup_set(engine.as_ref(), store.as_ref(), &cluster, plan, control).await;
                totals.invalidate();
                to_json(&result?)
            },
        )
        .await?;
    respond(wants_wait(req, query), JobKind::Backup, id, handle).await
}
