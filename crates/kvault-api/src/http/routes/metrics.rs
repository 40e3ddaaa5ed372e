//! Monitoring: the documented `GET /api/kafka/metrics`, Prometheus text at `/metrics`, and the
//! unauthenticated `/health` (liveness) and `/ready` (database reachable) probes.

use actix_web::{get, web, FromRequest, HttpResponse};
use kvault_domain::ErrorCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::http::auth::{Authed, Viewer};
use crate::http::state::AppState;
use crate::telemetry::figures::MetricsResponse;
use crate::telemetry::snapshot::{families, Local};

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
    let local = Local {
        clusters: state.settings.clusters.keys().map(String::as_str).collect(),
        in_flight: state.runner.in_flight(),
        retention: &state.retention,
        figures: &state.figures,
        lag: &state.lag_board,
    };
    let body = state.telemetry.encode(families(&local, &figures));
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
    state.runner.jobs().ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check failed");
        ApiError::new(ErrorCode::Unavailable, "the job database is not reachable")
    })?;
    Ok(HttpResponse::Ok().json(HealthResponse {
        status: "ready".into(),
    }))
}
