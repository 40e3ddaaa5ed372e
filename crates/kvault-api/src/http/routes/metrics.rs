//! Monitoring: the documented `GET /api/kafka/metrics`, Prometheus text at `/metrics`, and the
//! unauthenticated `/health` (liveness) and `/ready` (database reachable) probes.

use actix_web::http::StatusCode;
use actix_web::{get, web, FromRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::http::auth::{Authed, Viewer};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// The documented backup metrics, plus `total_backups`, `active_restores`, `active_migrations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MetricsResponse {
    /// Backups running now.
    pub active_backups: u64,
    /// Backups that completed since 00:00 UTC today.
    pub completed_backups_today: u64,
    /// Compressed size of every stored backup, in GB (10^9 bytes).
    pub total_backup_size_gb: f64,
    /// Mean duration of completed backup jobs.
    pub average_backup_duration_ms: u64,
    /// `(1 - compressed / raw) * 100` over every stored backup.
    pub compression_savings_percent: f64,
    /// Failed or interrupted backup jobs as a share of all ended backup jobs.
    pub error_rate_percent: f64,
    pub total_backups: u64,
    pub active_restores: u64,
    pub active_migrations: u64,
}

/// Backup metrics computed from the job store and the archives.
#[utoipa::path(
    get, path = "/api/kafka/metrics", tag = "monitoring",
    responses((status = 200, body = MetricsResponse), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
#[get("/api/kafka/metrics")]
pub async fn metrics(
    _auth: Authed<Viewer>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(&state.figures().await?.summary))
}

/// Prometheus text exposition (format 0.0.4): unauthenticated like `/health` (counts only, no
/// data), unless `server.metrics_auth` requires a viewer token. The metrics are listed in
/// docs/api.md.
#[utoipa::path(
    get, path = "/metrics", tag = "monitoring",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain"),
        (status = 401, description = "No valid token while `server.metrics_auth` is on", body = ErrorBody),
        (status = 429, description = "Too many requests from this client address", body = ErrorBody)
    )
)]
#[get("/metrics")]
pub async fn prometheus(
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if state.settings.server.metrics_auth {
        // Same check as every other route: a viewer token, rate-limited per subject.
        Authed::<Viewer>::from_request(&req, &mut actix_web::dev::Payload::None).await?;
    } else {
        state.anonymous.check(&req)?;
    }
    let figures = state.figures().await?;
    // Work done by running jobs since the last scrape is counted now, not only at their end.
    state.runner.flush_progress();
    let body = state
        .telemetry
        .encode(crate::telemetry::snapshot::families(&state, &figures));
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(body))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    pub status: String,
}

/// Liveness: the process answers.
#[utoipa::path(
    get, path = "/health", tag = "monitoring",
    responses(
        (status = 200, body = HealthResponse),
        (status = 429, description = "Too many requests from this client address", body = ErrorBody)
    )
)]
#[get("/health")]
pub async fn health(
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.anonymous.check(&req)?;
    Ok(HttpResponse::Ok().json(HealthResponse {
        status: "ok".into(),
    }))
}

/// Readiness: the job database answers.
#[utoipa::path(
    get, path = "/ready", tag = "monitoring",
    responses(
        (status = 200, body = HealthResponse),
        (status = 429, description = "Too many requests from this client address", body = ErrorBody),
        (status = 503, body = ErrorBody)
    )
)]
#[get("/ready")]
pub async fn ready(
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.anonymous.check(&req)?;
    state.runner.store().ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            "the job database is not reachable",
        )
    })?;
    Ok(HttpResponse::Ok().json(HealthResponse {
        status: "ready".into(),
    }))
}
