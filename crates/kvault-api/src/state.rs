//! [`AppState`]: what every request shares. The API reaches Kafka and the archives only through
//! the domain's traits ([`Engine`], [`ArchiveStore`]); the binary (the composition root) decides
//! which implementations those are, and tests hand in an in-memory engine.

use std::sync::Arc;

use kvault_domain::operations::Engine;
use kvault_domain::ports::ArchiveStore;
use kvault_domain::{ClusterId, Job, JobId, JobState};

use crate::auth::{Authed, Authenticator};
use crate::configuration::Settings;
use crate::error::ApiError;
use crate::routes::metrics::ArchiveTotalsCache;
use crate::runner::{JobRunner, Limits};

/// The adapters the API runs on: the operations engine and the archive store it writes to.
/// Built by the caller of [`crate::Application::build`].
#[derive(Clone)]
pub struct Adapters {
    pub engine: Arc<dyn Engine>,
    pub archives: Arc<dyn ArchiveStore>,
}

/// Shared by every request.
pub struct AppState {
    pub settings: Settings,
    pub auth: Authenticator,
    pub runner: Arc<JobRunner>,
    pub limits: Limits,
    pub engine: Arc<dyn Engine>,
    pub store: Arc<dyn ArchiveStore>,
    pub archive_totals: Arc<ArchiveTotalsCache>,
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
