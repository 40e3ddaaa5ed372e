//! Admin routes over an encrypted backup's key record: re-wrapping its data key under another
//! key-encryption key, and crypto-shredding it. Both rewrite only the manifest; both are
//! audited (`kvault::audit` log target) with who did it.

use actix_web::{post, web, HttpResponse};
use chrono::{DateTime, Utc};
use kvault_domain::ports::Rewrapped;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::backups::manifest;
use crate::error::{ApiError, ErrorBody};
use crate::http::auth::{Admin, Authed};
use crate::http::extract::ApiJson;
use crate::http::state::AppState;

/// The body of `POST /backups/{backup_id}/keys/rewrap`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RewrapRequest {
    /// The key-encryption key (one of `encryption.keys`) to wrap the data key under.
    pub to_key_id: String,
}

/// What a shred left: the key record without its wrapped key.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ShreddedBackup {
    pub backup_id: String,
    /// The key that had wrapped the destroyed data key.
    pub key_id: String,
    pub shredded_at: Option<DateTime<Utc>>,
}

/// Re-wrap an encrypted backup's data key under another key, without rewriting its data.
#[utoipa::path(
    post, path = "/api/kafka/backups/{backup_id}/keys/rewrap", tag = "backups",
    params(("backup_id" = String, Path)), request_body = RewrapRequest,
    responses(
        (status = 200, body = Rewrapped), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)
    ),
    security(("bearer" = []))
)]
#[post("/api/kafka/backups/{backup_id}/keys/rewrap")]
pub async fn rewrap_backup_key(
    auth: Authed<Admin>,
    path: web::Path<String>,
    body: ApiJson<RewrapRequest>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // 404 as well for a token whose `clusters` claim excludes the backup's cluster.
    let (id, _) = manifest(&state, &path, &auth).await?;
    let done = state.archives.rewrap_key(&id, &body.0.to_key_id).await?;
    tracing::info!(
        target: "kvault::audit",
        backup_id = %id,
        from = %done.from_key_id,
        to = %done.to_key_id,
        changed = done.changed,
        subject = auth.subject(),
        "backup data key re-wrapped"
    );
    Ok(HttpResponse::Ok().json(done))
}

/// Crypto-shred an encrypted backup: destroy its wrapped data key, for good.
#[utoipa::path(
    post, path = "/api/kafka/backups/{backup_id}/shred", tag = "backups",
    params(("backup_id" = String, Path)),
    responses(
        (status = 200, body = ShreddedBackup), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 423, description = "S3 Object Lock keeps the backup (and its wrapped key)", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
#[post("/api/kafka/backups/{backup_id}/shred")]
pub async fn shred_backup(
    auth: Authed<Admin>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (id, _) = manifest(&state, &path, &auth).await?;
    let shredded = state.archives.shred_key(&id).await?;
    let (key_id, shredded_at) = shredded
        .encryption
        .map(|e| (e.key_id, e.shredded_at))
        .unwrap_or_default();
    tracing::warn!(
        target: "kvault::audit",
        backup_id = %id,
        key_id = %key_id,
        subject = auth.subject(),
        "backup crypto-shredded: its data key was destroyed"
    );
    Ok(HttpResponse::Ok().json(ShreddedBackup {
        backup_id: id.to_string(),
        key_id,
        shredded_at,
    }))
}
