//! Runs operations as jobs: stores them as `running`, runs them on tokio tasks with an
//! [`OperationControl`] for live progress and cancellation, records how they ended, and enforces
//! the concurrency limits (per cluster for backups, restores and drains; global for migrations).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use actix_web::http::StatusCode;
use chrono::Utc;
use kvault_domain::error::ErrorKind;
use kvault_domain::job::OperationControl;
use kvault_domain::{JobId, JobKind, JobProgress, JobState};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::configuration::Settings;
use crate::error::{ApiError, ErrorBody};
use crate::jobs::{JobStore, NewJob};

/// Seconds a client is told to wait when a concurrency limit is reached.
const BUSY_RETRY_AFTER_SECS: u64 = 5;

/// How a job ended, as the synchronous caller sees it.
pub type Outcome = Result<serde_json::Value, ApiError>;

/// A job in flight in this process.
struct Live {
    control: OperationControl,
    started: Instant,
    kind: JobKind,
    /// The backup the job reads or writes, so a running job's backup cannot be deleted.
    backup_id: Option<String>,
}

/// Concurrency limits. Permits travel with the job and are released when it ends.
pub struct Limits {
    per_cluster: Mutex<HashMap<(JobKind, String), Arc<Semaphore>>>,
    migrations: Arc<Semaphore>,
    backups: usize,
    restores: usize,
    drains: usize,
    migrations_max: usize,
}

impl Limits {
    pub fn new(settings: &Settings) -> Self {
        Self {
            per_cluster: Mutex::new(HashMap::new()),
            migrations: Arc::new(Semaphore::new(settings.limits.max_concurrent_migrations)),
            backups: settings.backup.max_concurrent_backups,
            restores: settings.limits.max_concurrent_restores,
            drains: settings.limits.max_concurrent_drains,
            migrations_max: settings.limits.max_concurrent_migrations,
        }
    }

    /// A permit for one more `kind` job on `cluster` (migrations ignore the cluster), or 429.
    pub fn acquire(&self, kind: JobKind, cluster: &str) -> Result<OwnedSemaphorePermit, ApiError> {
        let (sem, max, scope) = match kind {
            JobKind::Migrate => (
                self.migrations.clone(),
                self.migrations_max,
                "in total".to_owned(),
            ),
            other => {
                let max = match other {
                    JobKind::Backup => self.backups,
                    JobKind::Restore => self.restores,
                    // Verify jobs only read local files; they share the drain budget.
                    _ => self.drains,
                };
                let mut map = self
                    .per_cluster
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let sem = map
                    .entry((other, cluster.to_owned()))
                    .or_insert_with(|| Arc::new(Semaphore::new(max)))
                    .clone();
                (sem, max, format!("on cluster '{cluster}'"))
            }
        };
        sem.try_acquire_owned().map_err(|_| {
            ApiError::too_many(
                format!(
                    "at most {max} concurrent {} operations are allowed {scope}",
                    kind.as_str()
                ),
                BUSY_RETRY_AFTER_SECS,
            )
        })
    }
}

/// Starts jobs and answers questions about the ones in flight.
pub struct JobRunner {
    store: JobStore,
    live: Mutex<HashMap<JobId, Live>>,
}

/// What to start.
pub struct JobSpec {
    pub kind: JobKind,
    pub cluster_id: Option<String>,
    pub subject: String,
    pub request: serde_json::Value,
    pub backup_id: Option<String>,
}

impl JobRunner {
    pub fn new(store: JobStore) -> Self {
        Self {
            store,
            live: Mutex::new(HashMap::new()),
        }
    }

    pub fn store(&self) -> &JobStore {
        &self.store
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Live>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores the job, then runs `op` on a task. The permit is held until the job's end is
    /// stored. The handle yields the outcome for a caller that waits.
    pub async fn start<F, Fut>(
        self: &Arc<Self>,
        spec: JobSpec,
        permit: Option<OwnedSemaphorePermit>,
        op: F,
    ) -> Result<(JobId, JoinHandle<Outcome>), ApiError>
    where
        F: FnOnce(OperationControl) -> Fut,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let id = JobId::new();
        let created_at = Utc::now();
        self.store
            .insert(&NewJob {
                id,
                kind: spec.kind,
                cluster_id: spec.cluster_id.clone(),
                subject: spec.subject.clone(),
                request: spec.request,
                created_at,
            })
            .await
            .map_err(ApiError::internal)?;
        let control = OperationControl::new();
        let started = Instant::now();
        self.live().insert(
            id,
            Live {
                control: control.clone(),
                started,
                kind: spec.kind,
                backup_id: spec.backup_id,
            },
        );
        tracing::info!(job_id = %id, kind = spec.kind.as_str(), cluster = ?spec.cluster_id, subject = %spec.subject, "job started");
        let fut = op(control.clone());
        let runner = Arc::clone(self);
        let handle = tokio::spawn(async move {
            let outcome = fut.await;
            runner.record_end(id, &control, started, &outcome).await;
            drop(permit);
            outcome
        });
        Ok((id, handle))
    }

    /// Stores how a job ended (state, result or error body, progress, duration) and forgets
    /// its live state.
    async fn record_end(
        &self,
        id: JobId,
        control: &OperationControl,
        started: Instant,
        outcome: &Outcome,
    ) {
        let elapsed = started.elapsed();
        let progress = control.snapshot(elapsed.as_secs_f64());
        let (state, result, error) = match outcome {
            Ok(value) => (JobState::Completed, Some(value.clone()), None),
            Err(e) => {
                let state = if control.is_cancelled() || e.cause == Some(ErrorKind::Cancelled) {
                    JobState::Cancelled
                } else {
                    JobState::Failed
                };
                let body = serde_json::json!({
                    "status": e.status.as_u16(),
                    "body": e.body(),
                });
                (state, None, Some(body))
            }
        };
        let duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let stored = self
            .store
            .finish(
                id,
                state,
                result.as_ref(),
                error.as_ref(),
                progress,
                Utc::now(),
                duration_ms,
            )
            .await;
        match stored {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(job_id = %id, "job ended after it was marked as ended elsewhere")
            }
            Err(e) => {
                tracing::error!(job_id = %id, error = %e, "could not record the end of a job")
            }
        }
        self.live().remove(&id);
        match outcome {
            Ok(_) => {
                tracing::info!(job_id = %id, state = state.as_str(), duration_ms, messages = progress.messages, "job ended")
            }
            Err(e) => {
                tracing::warn!(job_id = %id, state = state.as_str(), duration_ms, error = %e, "job ended")
            }
        }
    }

    /// Live progress of a job running in this process.
    pub fn progress(&self, id: JobId) -> Option<JobProgress> {
        self.live()
            .get(&id)
            .map(|l| l.control.snapshot(l.started.elapsed().as_secs_f64()))
    }

    /// Asks a running job to stop; false when it is not running here.
    pub fn cancel(&self, id: JobId) -> bool {
        match self.live().get(&id) {
            Some(l) => {
                l.control.cancel();
                true
            }
            None => false,
        }
    }

    /// Jobs of `kind` running in this process.
    pub fn running(&self, kind: JobKind) -> usize {
        self.live().values().filter(|l| l.kind == kind).count()
    }

    /// True when a running job reads or writes `backup_id`.
    pub fn uses_backup(&self, backup_id: &str) -> bool {
        self.live()
            .values()
            .any(|l| l.backup_id.as_deref() == Some(backup_id))
    }
}

/// Rebuilds the HTTP error stored with a failed job.
pub fn stored_error(error: &serde_json::Value) -> ApiError {
    let status = error
        .get("status")
        .and_then(serde_json::Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match error
        .get("body")
        .cloned()
        .map(serde_json::from_value::<ErrorBody>)
    {
        Some(Ok(body)) => ApiError::from_body(status, &body),
        _ => ApiError::internal("a stored job error is unreadable"),
    }
}

/// Awaits a job's task and turns a panic into an opaque 500.
pub async fn wait(handle: JoinHandle<Outcome>) -> Outcome {
    match handle.await {
        Ok(outcome) => outcome,
        Err(e) => Err(ApiError::internal(format!("job task failed: {e}"))),
    }
}
