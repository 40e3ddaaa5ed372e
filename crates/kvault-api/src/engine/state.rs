//! [`EngineState`]: what the job engine shares — the settings, the job runner and its limits,
//! and the domain's ports it runs operations on ([`Engine`], [`ArchiveStore`]) — and the
//! monitoring figures computed from the job table and the archives. The HTTP edge holds it
//! inside its own state; the background loops (takeover, scheduler, retention) get it alone.

use std::sync::Arc;

use chrono::{Datelike, TimeZone, Utc};
use kvault_domain::operations::Engine;
use kvault_domain::ports::ArchiveStore;

use crate::configuration::Settings;
use crate::engine::runner::{JobRunner, Limits};
use crate::error::ApiError;
use crate::telemetry::figures::{ArchiveTotals, ArchiveTotalsCache, FiguresCache, MetricsSnapshot};
use crate::telemetry::{RetentionCounters, Telemetry};

/// What the job engine runs on.
pub struct EngineState {
    pub settings: Settings,
    pub runner: Arc<JobRunner>,
    pub limits: Limits,
    pub engine: Arc<dyn Engine>,
    pub archives: Arc<dyn ArchiveStore>,
    pub archive_totals: Arc<ArchiveTotalsCache>,
    pub figures: FiguresCache,
    pub retention: RetentionCounters,
    /// This process's metrics (jobs, HTTP, refusals).
    pub telemetry: Arc<Telemetry>,
}

impl EngineState {
    /// The current figures: the shared snapshot, or a new one when it is stale.
    pub(crate) async fn figures(&self) -> Result<Arc<MetricsSnapshot>, ApiError> {
        let versions = || (self.runner.changes(), self.archive_totals.version());
        self.figures
            .get_or_refresh(versions, self.compute_figures())
            .await
    }

    async fn compute_figures(&self) -> Result<MetricsSnapshot, ApiError> {
        let now = Utc::now();
        let midnight = Utc
            .with_ymd_and_hms(now.year(), now.month(), now.day(), 0, 0, 0)
            .single()
            .unwrap_or(now);
        // Counted in the job table: every replica's jobs.
        let jobs = self
            .runner
            .jobs()
            .figures(midnight)
            .await
            .map_err(ApiError::internal)?;
        let archives = self
            .archive_totals
            .get_or_load(async {
                Ok::<_, ApiError>(ArchiveTotals::of(&self.archives.list().await?))
            })
            .await?;
        Ok(MetricsSnapshot::new(jobs, archives))
    }
}
