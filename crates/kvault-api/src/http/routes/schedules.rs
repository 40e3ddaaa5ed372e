//! Backup schedules (extension resource): create, list, show, delete. The runs themselves are
//! started by `crate::engine::scheduler` and are ordinary backup jobs (`GET /api/kafka/jobs`).

use actix_web::http::header;
use actix_web::{delete, get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use kvault_domain::schedule::ScheduleRequest;
use kvault_domain::{JobId, JobState};
use serde::Serialize;
use utoipa::ToSchema;

use crate::engine::backup_start::require_topic;
use crate::engine::jobs::{JobStore, NewSchedule, StoreError, StoredSchedule};
use crate::error::{ApiError, ErrorBody};
use crate::http::auth::{Authed, Operator, Viewer};
use crate::http::extract::ApiJson;
use crate::http::state::AppState;

/// How many recent runs a schedule shows.
const RECENT_RUNS: i64 = 20;

/// A schedule as stored, with when it runs next and what its runs did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleView {
    #[serde(flatten)]
    pub schedule: ScheduleRequest,
    /// The schedule's immutable uid. A schedule created under the name of a deleted one gets
    /// a fresh uid: the old schedule's runs are never its runs.
    pub uid: String,
    /// The token subject that created the schedule; its runs are started on its behalf.
    pub created_by: String,
    #[serde(with = "kvault_domain::time::rfc3339_seconds")]
    pub created_at: DateTime<Utc>,
    /// `null` when a cron expression never matches again.
    #[serde(with = "kvault_domain::time::rfc3339_seconds_option")]
    pub next_run_at: Option<DateTime<Utc>>,
    /// The newest completed run's backup: the tip of the chain. Restore it (or pass
    /// `schedule_id` to restore) to restore the whole chain.
    pub latest_backup_id: Option<String>,
    /// Why the last due run could not start, if it could not (it was skipped).
    pub last_error: Option<String>,
    /// The latest runs, newest first (at most 20).
    pub runs: Vec<ScheduleRun>,
}

/// One run of a schedule: a backup job.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleRun {
    pub job_id: JobId,
    pub state: JobState,
    pub backup_id: Option<String>,
    #[serde(with = "kvault_domain::time::rfc3339_seconds")]
    pub started_at: DateTime<Utc>,
    #[serde(with = "kvault_domain::time::rfc3339_seconds_option")]
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleList {
    pub schedules: Vec<ScheduleView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeletedSchedule {
    pub schedule_id: String,
    pub deleted: bool,
}

/// Create a backup schedule: incremental backups of a topic (or set of topics) on an interval
/// or a cron expression.
#[utoipa::path(
    post, path = "/api/kafka/schedules", tag = "schedules", request_body = ScheduleRequest,
    responses(
        (status = 201, description = "Created; `Location` names it", body = ScheduleView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "Unknown cluster or topic", body = ErrorBody),
        (status = 409, description = "schedule_id already exists", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
#[post("/api/kafka/schedules")]
pub async fn create_schedule(
    auth: Authed<Operator>,
    body: ApiJson<ScheduleRequest>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let request = body.0;
    let cluster = state.cluster(&request.cluster_id, &auth, "cluster_id")?;
    let now = Utc::now();
    let plan = request.validate(state.settings.backup.request_defaults(), now)?;
    plan.check_floor(state.settings.schedules.min_interval(), now)?;
    if !plan.request.topic.is_empty() {
        require_topic(&state.core, &cluster, &plan.request.topic).await?;
    }
    let id = plan.schedule_id.to_string();
    let new = NewSchedule::planned(&plan, auth.subject(), now);
    let store = state.runner.jobs();
    if !store
        .create_schedule(&new)
        .await
        .map_err(ApiError::internal)?
    {
        return Err(
            ApiError::conflict(format!("schedule '{id}' already exists")).on("schedule_id", &id),
        );
    }
    tracing::info!(schedule_id = %id, subject = auth.subject(), "backup schedule created");
    let stored = store.schedule(&id).await.map_err(ApiError::internal)?;
    let stored = stored.ok_or_else(|| ApiError::internal("the new schedule vanished"))?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/kafka/schedules/{id}")))
        .json(describe(store, stored).await.map_err(ApiError::internal)?))
}

/// List the schedules of the clusters the token may touch.
#[utoipa::path(
    get, path = "/api/kafka/schedules", tag = "schedules",
    responses((status = 200, body = ScheduleList), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
#[get("/api/kafka/schedules")]
pub async fn list_schedules(
    auth: Authed<Viewer>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let stored = state
        .runner
        .jobs()
        .schedules()
        .await
        .map_err(ApiError::internal)?;
    let mut schedules = Vec::new();
    for schedule in stored
        .into_iter()
        .filter(|s| auth.may_touch(s.cluster_id.as_str()))
    {
        let view = describe(state.runner.jobs(), schedule).await;
        schedules.push(view.map_err(ApiError::internal)?);
    }
    Ok(HttpResponse::Ok().json(ScheduleList { schedules }))
}

/// One schedule, with its next run and its latest runs.
#[utoipa::path(
    get, path = "/api/kafka/schedules/{schedule_id}", tag = "schedules",
    params(("schedule_id" = String, Path)),
    responses((status = 200, body = ScheduleView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
#[get("/api/kafka/schedules/{schedule_id}")]
pub async fn get_schedule(
    auth: Authed<Viewer>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let schedule = visible(&state, &path, &auth).await?;
    let view = describe(state.runner.jobs(), schedule).await;
    Ok(HttpResponse::Ok().json(view.map_err(ApiError::internal)?))
}

/// Delete a schedule: no further runs. A run in progress finishes; backups already taken stay.
#[utoipa::path(
    delete, path = "/api/kafka/schedules/{schedule_id}", tag = "schedules",
    params(("schedule_id" = String, Path)),
    responses(
        (status = 200, body = DeletedSchedule), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)
    ),
    security(("bearer" = []))
)]
#[delete("/api/kafka/schedules/{schedule_id}")]
pub async fn delete_schedule(
    auth: Authed<Operator>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let schedule = visible(&state, &path, &auth).await?;
    state
        .runner
        .jobs()
        .delete_schedule(schedule.id.as_str())
        .await
        .map_err(ApiError::internal)?;
    tracing::info!(schedule_id = %schedule.id, subject = auth.subject(), "backup schedule deleted");
    Ok(HttpResponse::Ok().json(DeletedSchedule {
        schedule_id: schedule.id.to_string(),
        deleted: true,
    }))
}

/// The schedule `id`; 404 when unknown or outside the token's `clusters` claim.
pub(crate) async fn visible<R>(
    state: &AppState,
    id: &str,
    auth: &Authed<R>,
) -> Result<StoredSchedule, ApiError> {
    state
        .runner
        .jobs()
        .schedule(id)
        .await
        .map_err(ApiError::internal)?
        .filter(|s| auth.may_touch(s.cluster_id.as_str()))
        .ok_or_else(|| ApiError::not_found("schedule_id", id, format!("schedule '{id}' not found")))
}

/// The newest completed run's backup id of schedule `schedule_id` (the schedule that has this
/// name now: runs of a deleted schedule of the same name are not its runs), if any.
pub async fn latest_backup(
    jobs: &JobStore,
    schedule_id: &str,
) -> Result<Option<String>, StoreError> {
    let Some(schedule) = jobs.schedule(schedule_id).await? else {
        return Ok(None);
    };
    let runs = jobs.schedule_runs(&schedule.uid, true, 1).await?;
    Ok(runs.into_iter().next().and_then(|run| run.backup_id))
}

/// The schedule with its latest runs (also what `kvault schedule show` prints).
pub async fn describe(jobs: &JobStore, stored: StoredSchedule) -> Result<ScheduleView, StoreError> {
    let schedule: ScheduleRequest =
        serde_json::from_value(stored.request.clone()).map_err(|e| StoreError::Corrupt {
            id: stored.id.to_string(),
            reason: e.to_string(),
        })?;
    let runs = jobs.schedule_runs(&stored.uid, false, RECENT_RUNS).await?;
    let latest = jobs.schedule_runs(&stored.uid, true, 1).await?;
    Ok(ScheduleView {
        schedule,
        uid: stored.uid,
        latest_backup_id: latest.into_iter().next().and_then(|run| run.backup_id),
        created_by: stored.subject,
        created_at: stored.created_at,
        next_run_at: stored.next_run_at,
        last_error: stored.last_error,
        runs: runs
            .into_iter()
            .map(|run| ScheduleRun {
                job_id: run.job.id,
                state: run.job.state,
                backup_id: run.backup_id,
                started_at: run.job.created_at,
                finished_at: run.job.finished_at,
            })
            .collect(),
    })
}
