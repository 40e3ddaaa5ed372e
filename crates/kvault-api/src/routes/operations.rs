//! The four documented operations: backup, restore, migrate, drain. Each checks its input,
//! takes a concurrency permit and runs as a job; by default the response waits for the job.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{post, web, HttpRequest, HttpResponse};
use chrono::Utc;
use kvault_domain::{
    BackupRequest, BackupResult, DomainError, DrainRequest, DrainResult, JobId, JobKind,
    MigrateRequest, MigrateResult, RestoreRequest, RestoreResult,
};
use kvault_kafka::KafkaCluster;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use utoipa::ToSchema;

use crate::auth::{Admin, Authed, Operator};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{wants_wait, ApiJson, WaitQuery};
use crate::runner::{self, JobSpec, Outcome};
use crate::startup::AppState;

/// The answer to `?wait=false` / `Prefer: respond-async`: where to poll.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AcceptedJob {
    pub job_id: JobId,
    pub kind: JobKind,
    pub state: String,
    /// `GET` this to follow the job.
    pub location: String,
}

/// Waits for the job, or answers 202 with a `Location`.
pub(crate) async fn respond(
    wait: bool,
    kind: JobKind,
    id: JobId,
    handle: JoinHandle<Outcome>,
) -> Result<HttpResponse, ApiError> {
    if wait {
        let value = runner::wait(handle).await?;
        return Ok(HttpResponse::Ok().json(value));
    }
    let location = format!("/api/kafka/jobs/{id}");
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, location.clone()))
        .json(AcceptedJob {
            job_id: id,
            kind,
            state: "running".into(),
            location,
        }))
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Outcome {
    serde_json::to_value(value).map_err(ApiError::internal)
}

impl AppState {
    /// The configured cluster, 404 when unknown, 403 when the token may not touch it.
    pub(crate) fn cluster<R>(
        &self,
        id: &str,
        auth: &Authed<R>,
        field: &str,
    ) -> Result<Arc<KafkaCluster>, ApiError> {
        let cluster = self.clusters.get(id).cloned().ok_or_else(|| {
            ApiError::not_found(field, id, format!("cluster '{id}' is not configured"))
        })?;
        auth.require_cluster(id)?;
        Ok(cluster)
    }
}

/// Back up a topic.
#[utoipa::path(
    post,
    path = "/api/kafka/clusters/{cluster_id}/backup",
    tag = "operations",
    params(("cluster_id" = String, Path, description = "Cluster id from the `clusters:` config"), WaitQuery),
    request_body = BackupRequest,
    responses(
        (status = 200, description = "Backup finished", body = BackupResult),
        (status = 202, description = "Accepted (`?wait=false`); poll `Location`", body = AcceptedJob),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "Unknown cluster or topic", body = ErrorBody),
        (status = 409, description = "backup_id already exists", body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 500, body = ErrorBody)
    ),
    security(("bearer" = []))
)]
#[post("/api/kafka/clusters/{cluster_id}/backup")]
pub async fn backup(
    auth: Authed<Operator>,
    path: web::Path<String>,
    query: web::Query<WaitQuery>,
    req: HttpRequest,
    body: ApiJson<BackupRequest>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let cluster_id = path.into_inner();
    let cluster = state.cluster(&cluster_id, &auth, "cluster_id")?;
    let request = body.0;
    let plan = request.validate(state.settings.backup.request_defaults(), Utc::now())?;
    let backup_id = plan.backup_id.clone();
    let store = state.store.clone();
    match store.manifest(&backup_id).await {
        Ok(_) => {
            return Err(
                ApiError::conflict(format!("backup '{backup_id}' already exists"))
                    .on("backup_id", &backup_id),
            )
        }
        Err(DomainError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    if !cluster.topic_exists(&plan.topic).await? {
        return Err(ApiError::not_found(
            "topic",
            &plan.topic,
            format!(
                "topic '{}' does not exist on cluster '{cluster_id}'",
                plan.topic
            ),
        ));
    }
    let permit = state.limits.acquire(JobKind::Backup, &cluster_id)?;
    let totals = state.archive_totals.clone();
    let (id, handle) = state
        .runner
        .start(
            JobSpec {
                kind: JobKind::Backup,
                cluster_id: Some(cluster_id),
                subject: auth.subject().to_owned(),
                request: to_json(&request)?,
                backup_id: Some(backup_id.to_string()),
            },
            Some(permit),
            move |control| async move {
                let result = cluster.backup(plan, store, control).await;
                totals.invalidate();
                to_json(&result?)
            },
        )
        .await?;
    respond(wants_wait(&req, &query), JobKind::Backup, id, handle).await
}

/// Restore a backup into a topic.
#[utoipa::path(
    post,
    path = "/api/kafka/clusters/{cluster_id}/restore",
    tag = "operations",
    params(("cluster_id" = String, Path, description = "Cluster id from the `clusters:` config"), WaitQuery),
    request_body = RestoreRequest,
    responses(
        (status = 200, description = "Restore finished", body = RestoreResult),
        (status = 202, description = "Accepted (`?wait=false`); poll `Location`", body = AcceptedJob),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "Unknown cluster or backup", body = ErrorBody),
        (status = 409, description = "Target topic holds messages", body = ErrorBody),
        (status = 422, description = "The backup is corrupt", body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 500, body = ErrorBody)
    ),
    security(("bearer" = []))
)]
#[post("/api/kafka/clusters/{cluster_id}/restore")]
pub async fn restore(
    auth: Authed<Admin>,
    path: web::Path<String>,
    query: web::Query<WaitQuery>,
    req: HttpRequest,
    body: ApiJson<RestoreRequest>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let cluster_id = path.into_inner();
    let cluster = state.cluster(&cluster_id, &auth, "cluster_id")?;
    let request = body.0;
    let plan = request.validate()?;
    let store = state.store.clone();
    // The backup's source cluster must be inside the token's claim too, or a token scoped to
    // `staging` could restore a `prod` backup. 404, like GET, so there is no existence oracle.
    let manifest = store.manifest(&plan.backup_id).await?;
    if !auth.may_touch(&manifest.cluster_id) {
        return Err(ApiError::not_found(
            "backup_id",
            &plan.backup_id,
            format!("backup '{}' not found", plan.backup_id),
        ));
    }
    let permit = state.limits.acquire(JobKind::Restore, &cluster_id)?;
    let backup_id = plan.backup_id.to_string();
    let (id, handle) = state
        .runner
        .start(
            JobSpec {
                kind: JobKind::Restore,
                cluster_id: Some(cluster_id),
                subject: auth.subject().to_owned(),
                request: to_json(&request)?,
                backup_id: Some(backup_id),
            },
            Some(permit),
            move |control| async move {
                let result = cluster.restore(plan, store, control).await?;
                to_json(&result)
            },
        )
        .await?;
    respond(wants_wait(&req, &query), JobKind::Restore, id, handle).await
}

/// Copy messages between topics, possibly across clusters, with optional CEL transformation.
#[utoipa::path(
    post,
    path = "/api/kafka/migrate",
    tag = "operations",
    params(WaitQuery),
    request_body = MigrateRequest,
    responses(
        (status = 200, description = "Migration finished", body = MigrateResult),
        (status = 202, description = "Accepted (`?wait=false`); poll `Location`", body = AcceptedJob),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "Unknown cluster or topic", body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 500, body = ErrorBody)
    ),
    security(("bearer" = []))
)]
#[post("/api/kafka/migrate")]
pub async fn migrate(
    auth: Authed<Admin>,
    query: web::Query<WaitQuery>,
    req: HttpRequest,
    body: ApiJson<MigrateRequest>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let request = body.0;
    request.validate()?;
    let source = state.cluster(&request.source_cluster, &auth, "source_cluster")?;
    let target = state.cluster(&request.target_cluster, &auth, "target_cluster")?;
    let permit = state.limits.acquire(JobKind::Migrate, "")?;
    let now = Utc::now();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let migration_id = format!("migration-{}-{}", now.timestamp_millis(), &suffix[..8]);
    let stored = to_json(&request)?;
    let (id, handle) = state
        .runner
        .start(
            JobSpec {
                kind: JobKind::Migrate,
                cluster_id: Some(request.source_cluster.clone()),
                subject: auth.subject().to_owned(),
                request: stored,
                backup_id: None,
            },
            Some(permit),
            move |control| async move {
                let result: MigrateResult =
                    kvault_kafka::migrate(&source, &target, migration_id, request, control).await?;
                to_json(&result)
            },
        )
        .await?;
    respond(wants_wait(&req, &query), JobKind::Migrate, id, handle).await
}

/// Watch a consumer group's lag until it drains or the timeout passes.
#[utoipa::path(
    post,
    path = "/api/kafka/clusters/{cluster_id}/drain",
    tag = "operations",
    params(("cluster_id" = String, Path, description = "Cluster id from the `clusters:` config"), WaitQuery),
    request_body = DrainRequest,
    responses(
        (status = 200, description = "Drained, or timed out (`status`)", body = DrainResult),
        (status = 202, description = "Accepted (`?wait=false`); poll `Location`", body = AcceptedJob),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "Unknown cluster, topic or group", body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 500, body = ErrorBody)
    ),
    security(("bearer" = []))
)]
#[post("/api/kafka/clusters/{cluster_id}/drain")]
pub async fn drain(
    auth: Authed<Operator>,
    path: web::Path<String>,
    query: web::Query<WaitQuery>,
    req: HttpRequest,
    body: ApiJson<DrainRequest>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let cluster_id = path.into_inner();
    let cluster = state.cluster(&cluster_id, &auth, "cluster_id")?;
    let request = body.0;
    request.validate()?;
    let permit = state.limits.acquire(JobKind::Drain, &cluster_id)?;
    let stored = to_json(&request)?;
    let (id, handle) = state
        .runner
        .start(
            JobSpec {
                kind: JobKind::Drain,
                cluster_id: Some(cluster_id),
                subject: auth.subject().to_owned(),
                request: stored,
                backup_id: None,
            },
            Some(permit),
            move |control| async move {
                let result: DrainResult = cluster.drain(request, control).await?;
                to_json(&result)
            },
        )
        .await?;
    respond(wants_wait(&req, &query), JobKind::Drain, id, handle).await
}
