//! [`AppState`]: what every request shares. The API reaches Kafka and the archives only through
//! the domain's traits ([`Engine`], [`ArchiveStore`]); the binary (the composition root) decides
//! which implementations those are, and tests hand in an in-memory engine.

use std::sync::Arc;

use kvault_domain::operations::Engine;
use kvault_domain::ports::{ArchiveStore, RecordFilters};
use kvault_domain::{ClusterId, Job, JobId, JobKind, JobState};

use crate::auth::{Authed, Authenticator};
use crate::configuration::Settings;
use crate::error::ApiError;
use chrono::{Datelike, TimeZone, Utc};

use crate::routes::metrics::{round2, ArchiveTotals, ArchiveTotalsCache, MetricsResponse};
use crate::runner::{JobRunner, Limits};

/// The adapters the API runs on: the operations engine, the archive store it writes to, and
/// the record-filter compiler the records route uses. Built by the caller of
/// [`crate::Application::build`].
#[derive(Clone)]
pub struct Adapters {
    pub engine: Arc<dyn Engine>,
    pub archives: Arc<dyn ArchiveStore>,
    pub filters: Arc<dyn RecordFilters>,
}

/// Shared by every request.
pub struct AppState {
    pub settings: Settings,
    pub auth: Authenticator,
    pub runner: Arc<JobRunner>,
    pub limits: Limits,
    pub engine: Arc<dyn Engine>,
    pub store: Arc<dyn ArchiveStore>,
    pub filters: Arc<dyn RecordFilters>,
    pub archive_totals: Arc<ArchiveTotalsCache>,
    pub retention: crate::retention::RetentionCounters,
}

impl AppState {
    /// The configured cluster `id`: 404 when unknown, 403 when the token may not touch it.
    /// `field` names the request field the id came from, for the error body.
    pub(crate) fn cluster<R>(
        &self,
        id: &str,
        auth: &Authed<R>,
        field: &str,
    ) -> Result<ClusterId, ApiError> {
        let not_configured =
            || ApiError::not_found(field, id, format!("cluster '{id}' is not configured"));
        let cluster = ClusterId::parse(id).map_err(|_| not_configured())?;
        if !self.engine.knows(&cluster) {
            return Err(not_configured());
        }
        auth.require_cluster(id)?;
        Ok(cluster)
    }

    /// The job as stored, with live progress when it runs here; 404 when unknown or when the
    /// token's `clusters` claim excludes its cluster (a restricted token cannot even learn it exists).
    pub(crate) async fn job<R>(&self, id: JobId, auth: &Authed<R>) -> Result<Job, ApiError> {
        let stored = self
            .runner
            .store()
            .get(id)
            .await
            .map_err(ApiError::internal)?
            .filter(|j| {
                j.job
                    .cluster_id
                    .as_deref()
                    .is_none_or(|c| auth.may_touch(c))
            })
            .ok_or_else(|| ApiError::not_found("job_id", id, format!("job '{id}' not found")))?;
        let mut job = stored.job;
        if job.state == JobState::Running {
            if let Some(progress) = self.runner.progress(id) {
                job.progress = progress;
            }
        }
        Ok(job)
    }
}

impl AppState {
    pub(crate) async fn archive_totals(&self) -> Result<ArchiveTotals, ApiError> {
        if let Some(t) = self.archive_totals.get() {
            return Ok(t);
        }
        let manifests = self.store.list().await?;
        let totals = ArchiveTotals {
            backups: manifests.len() as u64,
            raw_bytes: manifests.iter().map(|m| m.total_raw_bytes()).sum(),
            compressed_bytes: manifests.iter().map(|m| m.total_compressed_bytes()).sum(),
        };
        self.archive_totals.put(totals);
        Ok(totals)
    }

    pub(crate) async fn metrics(&self) -> Result<MetricsResponse, ApiError> {
        let now = Utc::now();
        let midnight = Utc
            .with_ymd_and_hms(now.year(), now.month(), now.day(), 0, 0, 0)
            .single()
            .unwrap_or(now);
        let stats = self
            .runner
            .store()
            .backup_stats(midnight)
            .await
            .map_err(ApiError::internal)?;
        let store = self.runner.store();
        let running = |kind| async move { store.running(kind).await.map_err(ApiError::internal) };
        // Counted in the job table, like `active_backups`: every replica's jobs.
        let active_restores = running(JobKind::Restore).await?.max(0) as u64;
        let active_migrations = running(JobKind::Migrate).await?.max(0) as u64;
        let totals = self.archive_totals().await?;
        let (raw, compressed) = (totals.raw_bytes, totals.compressed_bytes);
        let ended = stats.completed + stats.failed;
        Ok(MetricsResponse {
            active_backups: stats.running.max(0) as u64,
            completed_backups_today: stats.completed_since.max(0) as u64,
            total_backup_size_gb: (compressed as f64 / 1e9 * 1e6).round() / 1e6,
            average_backup_duration_ms: stats.average_duration_ms.max(0.0).round() as u64,
            compression_savings_percent: if raw == 0 {
                0.0
            } else {
                round2((1.0 - compressed as f64 / raw as f64) * 100.0)
            },
            error_rate_percent: if ended == 0 {
                0.0
            } else {
                round2(stats.failed as f64 * 100.0 / ended as f64)
            },
            total_backups: totals.backups,
            active_restores,
            active_migrations,
        })
    }
}
