//! [`AppState`]: what every request shares — the job engine's state ([`EngineState`], which
//! it dereferences to, so a handler writes `state.runner`), authentication, the request limits
//! and what only routes use (record filters, the lag board). The API reaches Kafka and the
//! archives only through the domain's traits; the binary (the composition root) decides which
//! implementations those are, and tests hand in an in-memory engine.

use std::sync::Arc;

use kvault_domain::ports::{ConsumerLag, RecordFilters};
use kvault_domain::{ClusterId, Job, JobId, JobState};

use crate::engine::state::EngineState;
use crate::error::ApiError;
use crate::http::address_limit::AddressLimiter;
use crate::http::auth::{Authed, Authenticator};
use crate::telemetry::lag::LagBoard;

/// Shared by every request.
pub struct AppState {
    /// What the job engine shares; also what the background loops get.
    pub core: Arc<EngineState>,
    pub auth: Authenticator,
    /// Requests without a valid token, per client address.
    pub anonymous: AddressLimiter,
    pub filters: Arc<dyn RecordFilters>,
    pub lag: Arc<dyn ConsumerLag>,
    /// The last consumer-lag reading of every group in `monitoring.groups`.
    pub lag_board: Arc<LagBoard>,
    /// Permits for reads of record contents (`browse.max_concurrent`).
    pub browses: Arc<tokio::sync::Semaphore>,
}

impl std::ops::Deref for AppState {
    type Target = EngineState;

    fn deref(&self) -> &EngineState {
        &self.core
    }
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
            .jobs()
            .get(id)
            .await
            .map_err(ApiError::internal)?
            .filter(|j| visible_to(&j.job, auth))
            .ok_or_else(|| ApiError::not_found("job_id", id, format!("job '{id}' not found")))?;
        let mut job = stored.job;
        job.attempts = self
            .runner
            .jobs()
            .attempts(id)
            .await
            .map_err(ApiError::internal)?;
        if job.state == JobState::Running {
            if let Some(progress) = self.runner.progress(id) {
                job.progress = progress;
            }
        }
        Ok(job)
    }
}

/// Whether `auth`'s `clusters` claim lets it see `job`: a job on no cluster, or one whose
/// cluster — for a migration, either of its two — the token may touch.
pub(crate) fn visible_to<R>(job: &Job, auth: &Authed<R>) -> bool {
    match (&job.cluster_id, &job.target_cluster_id) {
        (None, None) => true,
        (source, target) => [source, target]
            .into_iter()
            .flatten()
            .any(|c| auth.may_touch(c)),
    }
}
