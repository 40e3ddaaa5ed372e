//! Backup routes: list (filter by cluster, topic), manifest summary, delete, verify.

use actix_web::{delete, get, post, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use kvault_domain::chain::{middle_link_conflict, verify_report};
use kvault_domain::manifest::{BackupSetRef, ChainLink, ConsumerGroupOffsets};
use kvault_domain::ports::VerifyReport;
use kvault_domain::{BackupId, CompressionType, JobKind, Manifest};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::engine::outcome::to_json;
use crate::engine::runner::JobSpec;
use crate::error::{ApiError, ErrorBody};
use crate::http::auth::{Admin, Authed, Operator, Viewer};
use crate::http::extract::{wants_wait, WaitQuery};
use crate::http::routes::respond::{respond, AcceptedJob};
use crate::http::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BackupQuery {
    pub cluster_id: Option<String>,
    pub topic: Option<String>,
}

/// One partition of a backup.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BackupPartitionSummary {
    pub partition: i32,
    pub messages_count: u64,
    /// `[start_offset, end_offset)`: the range the backup covered.
    pub start_offset: i64,
    pub end_offset: i64,
    pub first_offset: Option<i64>,
    pub last_offset: Option<i64>,
    pub total_size_bytes: u64,
    pub compressed_size_bytes: u64,
    pub segments: usize,
}

/// A finished backup, from its manifest.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BackupSummary {
    pub backup_id: String,
    pub cluster_id: String,
    pub topic: String,
    pub compression: CompressionType,
    pub total_messages: u64,
    pub total_size_bytes: u64,
    pub compressed_size_bytes: u64,
    pub compression_ratio: f64,
    pub partition_count: i32,
    pub replication_factor: i16,
    pub include_keys: bool,
    pub include_headers: bool,
    #[serde(with = "kvault_domain::time::rfc3339_seconds")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "kvault_domain::time::rfc3339_seconds")]
    pub finished_at: DateTime<Utc>,
    /// Present on `GET /backups/{id}` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<Vec<BackupPartitionSummary>>,
    /// Extension, on `GET /backups/{id}` only: the consumer groups' committed offsets the
    /// backup recorded at its cut (absent when it recorded none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_groups: Option<Vec<ConsumerGroupOffsets>>,
    /// Extension: for an incremental backup, the link it forms in its chain (its parent, the
    /// chain's root, its place).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainLink>,
    /// Extension: for a member of a backup set, the set's id and topic count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_set: Option<BackupSetRef>,
    /// Extension: for an encrypted backup, the key that wraps its data key (and when it was
    /// crypto-shredded, if it was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<BackupEncryption>,
    /// Extension: when S3 Object Lock releases the backup. Until then its objects can be
    /// neither deleted nor overwritten, and `DELETE` and retention leave it (423
    /// `ArchiveLocked`). Absent when no lock was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable_until: Option<DateTime<Utc>>,
}

/// How a backup is encrypted, without the wrapped key itself.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BackupEncryption {
    /// The key-encryption key (one of `encryption.keys`) that wraps the backup's data key.
    pub key_id: String,
    /// Set once the backup was crypto-shredded: it can no longer be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shredded_at: Option<DateTime<Utc>>,
}

impl BackupSummary {
    pub fn from_manifest(m: &Manifest, with_partitions: bool) -> Self {
        let raw = m.total_raw_bytes();
        let compressed = m.total_compressed_bytes();
        Self {
            backup_id: m.backup_id.clone(),
            cluster_id: m.cluster_id.clone(),
            topic: m.topic.name.clone(),
            compression: m.compression.codec,
            total_messages: m.total_messages(),
            total_size_bytes: raw,
            compressed_size_bytes: compressed,
            compression_ratio: kvault_domain::backup::compression_ratio(raw, compressed),
            partition_count: m.topic.partition_count,
            replication_factor: m.topic.replication_factor,
            include_keys: m.include_keys,
            include_headers: m.include_headers,
            created_at: m.created_at,
            finished_at: m.finished_at,
            partitions: with_partitions.then(|| {
                m.partitions
                    .iter()
                    .map(|p| BackupPartitionSummary {
                        partition: p.partition,
                        messages_count: p.message_count,
                        start_offset: p.start_offset,
                        end_offset: p.end_offset,
                        first_offset: p.first_offset,
                        last_offset: p.last_offset,
                        total_size_bytes: p.raw_bytes,
                        compressed_size_bytes: p.compressed_bytes,
                        segments: p.segments.len(),
                    })
                    .collect()
            }),
            consumer_groups: (with_partitions && !m.consumer_groups.is_empty())
                .then(|| m.consumer_groups.clone()),
            chain: m.chain.clone(),
            backup_set: m.backup_set.clone(),
            encryption: m.encryption.as_ref().map(|e| BackupEncryption {
                key_id: e.key_id.clone(),
                shredded_at: e.shredded_at,
            }),
            immutable_until: m.immutable_until,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BackupList {
    pub backups: Vec<BackupSummary>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeletedBackup {
    pub backup_id: String,
    pub deleted: bool,
}

/// The manifest of `raw`, 404 (also for tokens whose `clusters` claim excludes its cluster).
pub(crate) async fn manifest<R>(
    state: &AppState,
    raw: &str,
    auth: &Authed<R>,
) -> Result<(BackupId, Manifest), ApiError> {
    let id = BackupId::parse(raw)?;
    let m = state.archives.manifest(&id).await?;
    if !auth.may_touch(&m.cluster_id) {
        return Err(ApiError::not_found(
            "backup_id",
            raw,
            format!("backup '{raw}' not found"),
        ));
    }
    Ok((id, m))
}

/// List finished backups, newest first.
#[utoipa::path(
    get, path = "/api/kafka/backups", tag = "backups", params(BackupQuery),
    responses((status = 200, body = BackupList), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
#[get("/api/kafka/backups")]
pub async fn list_backups(
    auth: Authed<Viewer>,
    query: web::Query<BackupQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let manifests = state.archives.list().await?;
    let backups = manifests
        .iter()
        .filter(|m| auth.may_touch(&m.cluster_id))
        .filter(|m| query.cluster_id.as_ref().is_none_or(|c| *c == m.cluster_id))
        .filter(|m| query.topic.as_ref().is_none_or(|t| *t == m.topic.name))
        .map(|m| BackupSummary::from_manifest(m, false))
        .collect();
    Ok(HttpResponse::Ok().json(BackupList { backups }))
}

/// A backup's manifest summary, per partition.
#[utoipa::path(
    get, path = "/api/kafka/backups/{backup_id}", tag = "backups",
    params(("backup_id" = String, Path)),
    responses((status = 200, body = BackupSummary), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
#[get("/api/kafka/backups/{backup_id}")]
pub async fn get_backup(
    auth: Authed<Viewer>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (_, m) = manifest(&state, &path, &auth).await?;
    Ok(HttpResponse::Ok().json(BackupSummary::from_manifest(&m, true)))
}

/// Delete a backup. Refused (409) while a job reads or writes it.
#[utoipa::path(
    delete, path = "/api/kafka/backups/{backup_id}", tag = "backups",
    params(("backup_id" = String, Path)),
    responses(
        (status = 200, body = DeletedBackup), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 423, description = "S3 Object Lock keeps the backup until `immutable_until`", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
#[delete("/api/kafka/backups/{backup_id}")]
pub async fn delete_backup(
    auth: Authed<Admin>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (id, m) = manifest(&state, &path, &auth).await?;
    auth.require_cluster(&m.cluster_id)?;
    // Every job is a row naming its backup, so the table knows every replica's jobs.
    let in_use = state
        .runner
        .jobs()
        .backups_in_use()
        .await
        .map_err(ApiError::internal)?
        .contains(id.as_str());
    if in_use {
        return Err(
            ApiError::conflict(format!("backup '{id}' is in use by a running job"))
                .on("backup_id", &id),
        );
    }
    // Only an incremental backup (it has a parent) can sit in the middle of a chain.
    if m.chain.is_some() {
        if let Some(reason) = middle_link_conflict(&m, &state.archives.list().await?) {
            return Err(ApiError::conflict(reason).on("backup_id", &id));
        }
    }
    let deleted = state.archives.delete(&id).await;
    state.archive_totals.invalidate();
    deleted?;
    tracing::info!(backup_id = %id, subject = auth.subject(), "backup deleted");
    Ok(HttpResponse::Ok().json(DeletedBackup {
        backup_id: id.to_string(),
        deleted: true,
    }))
}

/// Read the whole backup and check every checksum and count. Runs as a `verify` job.
#[utoipa::path(
    post, path = "/api/kafka/backups/{backup_id}/verify", tag = "backups",
    params(("backup_id" = String, Path), WaitQuery),
    responses(
        (status = 200, description = "`valid` says whether the archive is intact", body = VerifyReport),
        (status = 202, body = AcceptedJob),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody)
    ),
    security(("bearer" = []))
)]
#[post("/api/kafka/backups/{backup_id}/verify")]
pub async fn verify_backup(
    auth: Authed<Operator>,
    path: web::Path<String>,
    query: web::Query<WaitQuery>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (id, m) = manifest(&state, &path, &auth).await?;
    let capacity = state.limits.capacity(JobKind::Verify, &m.cluster_id);
    let store = state.archives.clone();
    let (job_id, handle) = state
        .runner
        .start(
            JobSpec {
                kind: JobKind::Verify,
                cluster_id: Some(m.cluster_id.clone()),
                target_cluster_id: None,
                subject: auth.subject().to_owned(),
                request: serde_json::json!({ "backup_id": id.as_str() }),
                backup_id: Some(id.to_string()),
            },
            Some(capacity),
            move |control| async move {
                to_json(&verify_report(store.as_ref(), &id, m, &control).await?)
            },
        )
        .await?;
    respond(wants_wait(&req, &query), JobKind::Verify, job_id, handle).await
}
