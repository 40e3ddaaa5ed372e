//! Job routes: list (filter by kind, state, cluster), get (with live progress), cancel.

use actix_web::{get, post, web, HttpResponse};
use kvault_domain::{Job, JobId, JobKind, JobState};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::engine::jobs::JobFilter;
use crate::error::{ApiError, ErrorBody};
use crate::http::auth::{Authed, Operator, Role, Viewer};
use crate::http::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// backup, restore, migrate, drain or verify.
    pub kind: Option<String>,
    /// running, completed, failed, cancelled or interrupted.
    pub state: Option<String>,
    pub cluster_id: Option<String>,
    /// At most this many jobs, newest first (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<Job>,
}

fn parse_job_id(raw: &str) -> Result<JobId, ApiError> {
    uuid::Uuid::parse_str(raw)
        .map(JobId)
        .map_err(|_| ApiError::bad_request("job_id", raw, "job ids are UUIDs"))
}

/// List jobs, newest first.
#[utoipa::path(
    get, path = "/api/kafka/jobs", tag = "jobs", params(JobQuery),
    responses((status = 200, body = JobList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
#[get("/api/kafka/jobs")]
pub async fn list_jobs(
    auth: Authed<Viewer>,
    query: web::Query<JobQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let kind = query
        .kind
        .as_deref()
        .map(|k| {
            k.parse::<JobKind>()
                .map_err(|e| ApiError::bad_request("kind", k, e))
        })
        .transpose()?;
    let job_state = query
        .state
        .as_deref()
        .map(|s| {
            s.parse::<JobState>()
                .map_err(|e| ApiError::bad_request("state", s, e))
        })
        .transpose()?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "limit",
            limit,
            "must be between 1 and 1000",
        ));
    }
    let stored = state
        .runner
        .jobs()
        .list(&JobFilter {
            kind,
            state: job_state,
            cluster_id: query.cluster_id.clone(),
            allowed_clusters: auth.allowed_clusters().map(<[String]>::to_vec),
            limit,
        })
        .await
        .map_err(ApiError::internal)?;
    let jobs = stored
        .into_iter()
        .map(|s| s.job)
        .filter(|j| crate::http::state::visible_to(j, &auth))
        .map(|mut j| {
            if let Some(p) = state.runner.progress(j.id) {
                j.progress = p;
            }
            j
        })
        .collect();
    Ok(HttpResponse::Ok().json(JobList { jobs }))
}

/// One job: state, progress (messages, bytes, rate), result or error.
#[utoipa::path(
    get, path = "/api/kafka/jobs/{job_id}", tag = "jobs",
    params(("job_id" = String, Path, description = "Job UUID")),
    responses((status = 200, body = Job), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
#[get("/api/kafka/jobs/{job_id}")]
pub async fn get_job(
    auth: Authed<Viewer>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_job_id(&path)?;
    Ok(HttpResponse::Ok().json(state.job(id, &auth).await?))
}

/// Ask a running job to stop. It ends as `cancelled` at its next checkpoint; a cancelled backup
/// leaves no archive behind.
#[utoipa::path(
    post, path = "/api/kafka/jobs/{job_id}/cancel", tag = "jobs",
    params(("job_id" = String, Path, description = "Job UUID")),
    responses(
        (status = 202, description = "Cancellation requested", body = Job),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The job has already ended", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
#[post("/api/kafka/jobs/{job_id}/cancel")]
pub async fn cancel_job(
    auth: Authed<Operator>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_job_id(&path)?;
    let job = state.job(id, &auth).await?;
    // Cancelling is as strong as starting: restore and migrate need an admin to start, so an
    // operator may not stop them halfway either.
    let needed = match job.kind {
        JobKind::Restore | JobKind::Migrate => Role::Admin,
        _ => Role::Operator,
    };
    if !auth.has_role(needed) {
        return Err(ApiError::forbidden(format!(
            "cancelling a {} job needs role {}",
            job.kind.as_str(),
            needed.as_str()
        ))
        .on("job_id", id));
    }
    if job.state.is_terminal() || !state.runner.cancel(id) {
        return Err(ApiError::conflict(format!(
            "job '{id}' is {} and cannot be cancelled",
            job.state.as_str()
        ))
        .on("job_id", id));
    }
    tracing::info!(job_id = %id, subject = auth.subject(), "job cancellation requested");
    Ok(HttpResponse::Accepted().json(job))
}
