//! The four documented operations: backup, restore, migrate, drain. Each checks its input,
//! takes a concurrency permit and runs as a job; by default the response waits for the job.

use actix_web::{post, web, HttpRequest, HttpResponse};
use chrono::Utc;
use kvault_domain::job::OperationControl;
use kvault_domain::operations::{DrainPlan, MigrationPlan};
use kvault_domain::restore_transform::{ExcludedKey, MaskAction};
use kvault_domain::{
    BackupId, BackupRequest, DomainError, DrainRequest, DrainResult, JobKind, MigrateRequest,
    MigrateResult, RestoreRequest,
};

use crate::engine::backup_start::{start_backup, Starter};
use crate::engine::jobs::JobTarget;
use crate::engine::outcome::to_json;
use crate::engine::runner::JobSpec;
use crate::engine::takeover::writers::MIGRATION_ID_KEY;
use crate::error::{ApiError, ErrorBody};
use crate::http::auth::{Admin, Authed, Operator};
use crate::http::extract::{wants_wait, ApiJson, RunQuery, WaitQuery};
use crate::http::routes::backup_sets::BackupResponse;
use crate::http::routes::respond::respond;
pub use crate::http::routes::respond::AcceptedJob;
use crate::http::routes::restore_sets::{start_restore_set, RestoreResponse};
use crate::http::state::AppState;

/// Back up a topic.
#[utoipa::path(
    post,
    path = "/api/kafka/clusters/{cluster_id}/backup",
    tag = "operations",
    params(("cluster_id" = String, Path, description = "Cluster id from the `clusters:` config"), WaitQuery),
    request_body = BackupRequest,
    responses(
        (status = 200, description = "Backup finished (for `topics` / `topic_pattern`: a backup set's result)", body = BackupResponse),
        (status = 202, description = "Accepted (`?wait=false`); poll `Location`", body = AcceptedJob),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "Unknown cluster or topic", body = ErrorBody),
        (status = 409, description = "backup_id already exists", body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 500, body = ErrorBody),
        (status = 502, description = "The cluster refused kvault's credentials (`KafkaAuthenticationFailed`) or ACLs (`KafkaUnauthorized`), or the TLS handshake failed (`KafkaTlsFailed`: unknown CA, hostname mismatch, expired certificate)", body = ErrorBody),
        (status = 503, description = "No broker of the cluster answered (`KafkaUnavailable`), or the job database or the archive store is unavailable", body = ErrorBody)
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
    let cluster = state.cluster(&path.into_inner(), &auth, "cluster_id")?;
    let starter = Starter {
        subject: auth.subject().to_owned(),
        claim: None,
    };
    let (id, handle) = start_backup(&state.core, cluster, body.0, starter).await?;
    respond(wants_wait(&req, &query), JobKind::Backup, id, handle).await
}

/// Restore a backup into a topic.
#[utoipa::path(
    post,
    path = "/api/kafka/clusters/{cluster_id}/restore",
    tag = "operations",
    params(("cluster_id" = String, Path, description = "Cluster id from the `clusters:` config"), RunQuery),
    request_body = RestoreRequest,
    responses(
        (status = 200, description = "Restore finished (for a backup set: the set's result); with `?dry_run=true` the plan (`RestoreDryRun`), nothing written", body = RestoreResponse),
        (status = 202, description = "Accepted (`?wait=false`); poll `Location`", body = AcceptedJob),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "Unknown cluster or backup", body = ErrorBody),
        (status = 409, description = "Target topic holds messages, or another restore or migration is writing into it", body = ErrorBody),
        (status = 422, description = "The backup is corrupt", body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 500, body = ErrorBody),
        (status = 502, description = "The cluster refused kvault's credentials (`KafkaAuthenticationFailed`) or ACLs (`KafkaUnauthorized`), or the TLS handshake failed (`KafkaTlsFailed`: unknown CA, hostname mismatch, expired certificate)", body = ErrorBody),
        (status = 503, description = "No broker of the cluster answered (`KafkaUnavailable`), or the job database or the archive store is unavailable", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
#[post("/api/kafka/clusters/{cluster_id}/restore")]
pub async fn restore(
    auth: Authed<Admin>,
    path: web::Path<String>,
    query: web::Query<RunQuery>,
    req: HttpRequest,
    body: ApiJson<RestoreRequest>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let cluster_id = path.into_inner();
    let cluster = state.cluster(&cluster_id, &auth, "cluster_id")?;
    let mut request = with_checked_transform(&state, body.0)?;
    if let Some(schedule_id) = &request.schedule_id {
        request.backup_id = schedule_tip(&state, &auth, schedule_id, &request.backup_id).await?;
    }
    // A request that can only be a set restore is checked against the backups first; any
    // other is validated first (its 400s come before a 404).
    let checked = (!request.may_name_a_set())
        .then(|| request.validate())
        .transpose()?;
    let backup_id = BackupId::parse(&request.backup_id)?;
    // The backup's source cluster must be inside the token's claim too, or a token scoped to
    // `staging` could restore a `prod` backup. 404, like GET, so there is no existence oracle.
    let manifest = match state.archives.manifest(&backup_id).await {
        Ok(manifest) => manifest,
        // Not one archive: perhaps a backup set (which says why target_topic does not apply).
        Err(DomainError::NotFound { .. }) if query.is_dry_run() => {
            return Err(set_dry_run_refused(&state, &backup_id).await)
        }
        Err(DomainError::NotFound { .. }) => {
            return start_restore_set(&auth, cluster, request, (&req, &query.wait()), &state).await
        }
        Err(e) => return Err(e.into()),
    };
    // One archive: a set-only request is validated as a single restore now, which names
    // what is missing (target_topic) or does not apply (topic_prefix, topic_mapping).
    let plan = match checked {
        Some(plan) => plan,
        None => request.validate()?,
    };
    if !auth.may_touch(&manifest.cluster_id) {
        return Err(ApiError::not_found(
            "backup_id",
            &plan.backup_id,
            format!("backup '{}' not found", plan.backup_id),
        ));
    }
    if query.is_dry_run() {
        let control = OperationControl::new();
        let planned = state
            .engine
            .restore_dry_run(&cluster, plan, control)
            .await?;
        return Ok(HttpResponse::Ok().json(planned));
    }
    let capacity = state.limits.capacity(JobKind::Restore, &cluster_id);
    let backup_id = plan.backup_id.to_string();
    let target = JobTarget::new(cluster.clone(), plan.target_topic.clone());
    let engine = state.engine.clone();
    let (id, handle) = state
        .runner
        .start_writer(
            JobSpec {
                kind: JobKind::Restore,
                cluster_id: Some(cluster_id),
                target_cluster_id: None,
                subject: auth.subject().to_owned(),
                request: to_json(&request)?,
                backup_id: Some(backup_id),
            },
            &[target],
            capacity,
            move |control| async move {
                let result = engine.restore(&cluster, plan, control).await?;
                to_json(&result)
            },
        )
        .await?;
    let wait = wants_wait(&req, &query.wait());
    respond(wait, JobKind::Restore, id, handle).await
}

/// Compiles a restore's `filter_expression` (the CEL of migrate and browse) and checks that a
/// `hash` mask has its key configured and that every stored key list named exists, so that
/// each mistake is a 400 before a job exists, for
/// one archive and for a set alike.
fn with_checked_transform(
    state: &AppState,
    request: RestoreRequest,
) -> Result<RestoreRequest, ApiError> {
    if let Some(expr) = &request.filter_expression {
        state
            .filters
            .compile(expr)
            .map_err(|e| kvault_domain::ValidationError {
                field: "filter_expression".to_owned(),
                ..e
            })?;
    }
    let hashing = request
        .mask
        .iter()
        .flatten()
        .position(|rule| rule.action == MaskAction::Hash);
    if let (Some(i), None) = (hashing, &state.settings.masking.hmac_key) {
        return Err(kvault_domain::ValidationError::new(
            format!("mask[{i}].action"),
            "hash",
            "needs masking.hmac_key in the configuration (KVAULT__MASKING__HMAC_KEY), and none is set",
        )
        .into());
    }
    for (i, entry) in request.exclude_keys.iter().flatten().enumerate() {
        match entry {
            ExcludedKey::List { list } if !state.settings.masking.key_lists.contains_key(list) => {
                return Err(kvault_domain::ValidationError::new(
                    format!("exclude_keys[{i}].list"),
                    list,
                    "is not a list of masking.key_lists in the configuration",
                )
                .into())
            }
            _ => {}
        }
    }
    Ok(request)
}

/// A dry run plans the restore of one backup: no backup and no set of that id is the real
/// run's 404; a set is a 400 (its members can be dry-run one by one).
async fn set_dry_run_refused(state: &AppState, backup_id: &BackupId) -> ApiError {
    let store = state.archives.as_ref();
    if let Err(e) = kvault_domain::restore_set::set_members(store, backup_id.as_str()).await {
        return e.into();
    }
    ApiError::bad_request(
        "dry_run",
        true,
        format!(
            "backup '{backup_id}' is not one archive: a dry run plans the restore of a single \
             backup; dry-run each topic of a backup set by its own backup_id"
        ),
    )
}

/// Copy messages between topics, possibly across clusters, with optional CEL transformation.
#[utoipa::path(
    post,
    path = "/api/kafka/migrate",
    tag = "operations",
    params(RunQuery),
    request_body = MigrateRequest,
    responses(
        (status = 200, description = "Migration finished; with `?dry_run=true` the plan (`MigrateDryRun`), nothing written", body = MigrateResponse),
        (status = 202, description = "Accepted (`?wait=false`); poll `Location`", body = AcceptedJob),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "Unknown cluster or topic", body = ErrorBody),
        (status = 409, description = "Target topic holds messages, or another restore or migration is writing into it", body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 500, body = ErrorBody),
        (status = 502, description = "The cluster refused kvault's credentials (`KafkaAuthenticationFailed`) or ACLs (`KafkaUnauthorized`), or the TLS handshake failed (`KafkaTlsFailed`: unknown CA, hostname mismatch, expired certificate)", body = ErrorBody),
        (status = 503, description = "No broker of the cluster answered (`KafkaUnavailable`), or the job database or the archive store is unavailable", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
#[post("/api/kafka/migrate")]
pub async fn migrate(
    auth: Authed<Admin>,
    query: web::Query<RunQuery>,
    req: HttpRequest,
    body: ApiJson<MigrateRequest>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let request = body.0;
    let mut stored = to_json(&request)?;
    let migration_id = MigrationPlan::generate_id(Utc::now());
    // Kept with the job, so a replica continuing it reports the same id.
    if let Some(fields) = stored.as_object_mut() {
        fields.insert(MIGRATION_ID_KEY.into(), migration_id.clone().into());
    }
    let plan = MigrationPlan::new(request, migration_id)?;
    state.cluster(plan.source.as_str(), &auth, "source_cluster")?;
    state.cluster(plan.target.as_str(), &auth, "target_cluster")?;
    if query.is_dry_run() {
        let planned = state
            .engine
            .migrate_dry_run(plan, OperationControl::new())
            .await?;
        return Ok(HttpResponse::Ok().json(planned));
    }
    let capacity = state.limits.capacity(JobKind::Migrate, "");
    let source_cluster = plan.source.to_string();
    let target_cluster = plan.target.to_string();
    let target = JobTarget::new(plan.target.clone(), plan.request.target_topic.clone());
    let engine = state.engine.clone();
    let (id, handle) = state
        .runner
        .start_writer(
            JobSpec {
                kind: JobKind::Migrate,
                cluster_id: Some(source_cluster),
                target_cluster_id: Some(target_cluster),
                subject: auth.subject().to_owned(),
                request: stored,
                backup_id: None,
            },
            &[target],
            capacity,
            move |control| async move {
                let result: MigrateResult = engine.migrate(plan, control).await?;
                to_json(&result)
            },
        )
        .await?;
    let wait = wants_wait(&req, &query.wait());
    respond(wait, JobKind::Migrate, id, handle).await
}

/// What `POST /migrate` answers: the documented result, or with `?dry_run=true` the plan.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum MigrateResponse {
    Migrated(MigrateResult),
    DryRun(kvault_domain::dry_run::MigrateDryRun),
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
        (status = 429, body = ErrorBody), (status = 500, body = ErrorBody),
        (status = 502, description = "The cluster refused kvault's credentials (`KafkaAuthenticationFailed`) or ACLs (`KafkaUnauthorized`), or the TLS handshake failed (`KafkaTlsFailed`: unknown CA, hostname mismatch, expired certificate)", body = ErrorBody),
        (status = 503, description = "No broker of the cluster answered (`KafkaUnavailable`), or the job database or the archive store is unavailable", body = ErrorBody)
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
    let stored = to_json(&request)?;
    let plan = DrainPlan::new(request)?;
    let capacity = state.limits.capacity(JobKind::Drain, &cluster_id);
    let engine = state.engine.clone();
    let (id, handle) = state
        .runner
        .start(
            JobSpec {
                kind: JobKind::Drain,
                cluster_id: Some(cluster_id),
                target_cluster_id: None,
                subject: auth.subject().to_owned(),
                request: stored,
                backup_id: None,
            },
            Some(capacity),
            move |control| async move {
                let result: DrainResult = engine.drain(&cluster, plan, control).await?;
                to_json(&result)
            },
        )
        .await?;
    respond(wants_wait(&req, &query), JobKind::Drain, id, handle).await
}

/// The backup a restore by `schedule_id` starts from: the schedule's newest completed run
/// (restoring it restores the whole chain).
async fn schedule_tip(
    state: &AppState,
    auth: &Authed<Admin>,
    schedule_id: &str,
    backup_id: &str,
) -> Result<String, ApiError> {
    if !backup_id.is_empty() {
        return Err(ApiError::bad_request(
            "schedule_id",
            schedule_id,
            "give either backup_id or schedule_id, not both",
        ));
    }
    let schedule = crate::http::routes::schedules::visible(state, schedule_id, auth).await?;
    crate::http::routes::schedules::latest_backup(state.runner.jobs(), schedule.id.as_str())
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::not_found(
                "schedule_id",
                schedule_id,
                format!("schedule '{schedule_id}' has no completed run yet"),
            )
        })
}
