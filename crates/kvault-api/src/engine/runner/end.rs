//! How a job's end is recorded: stored once by the replica holding it (retrying until the
//! database takes it), released instead when the job was handed over or abandoned.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;
use kvault_domain::job::OperationControl;
use kvault_domain::JobId;

use super::{ending, JobOutcome, JobRunner};

impl JobRunner {
    /// Stores how a job ended (state, result or error body, progress, duration), retrying
    /// until the database takes it, then forgets its live state. A job a shutdown cancelled
    /// is handed over instead: its lease is released for another replica to take.
    pub(super) async fn record_end(
        &self,
        id: JobId,
        control: &OperationControl,
        started: Instant,
        outcome: &JobOutcome,
    ) {
        let elapsed = started.elapsed();
        let progress = control.snapshot(elapsed.as_secs_f64());
        // What it did here counts however it ends (handed over, abandoned or recorded).
        self.flush_progress();
        let (by_user, abandoned, labels) = match self.live().get(&id) {
            Some(l) => (l.cancelled_by_user, l.abandoned, Some(l.labels.clone())),
            None => (false, false, None),
        };
        if abandoned {
            // Another replica holds the job (or will, once it sees the lease expired).
            let _ = self.store.release(&self.lease, id).await;
            self.live().remove(&id);
            return;
        }
        if self.handing_over.load(Ordering::SeqCst) && control.is_cancelled() && !by_user {
            match self.store.release(&self.lease, id).await {
                Ok(_) => tracing::info!(job_id = %id, "job handed over at shutdown"),
                Err(e) => {
                    tracing::warn!(job_id = %id, error = %e, "could not release a job at shutdown; it is taken over once its lease expires")
                }
            }
            self.live().remove(&id);
            return;
        }
        let (state, result, error) = ending(control, outcome);
        let duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let mut wait = Duration::from_millis(200);
        loop {
            let stored = self
                .store
                .finish(
                    &self.lease.owner,
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
                Ok(true) => break,
                Ok(false) => {
                    tracing::warn!(job_id = %id, "job ended after another replica took it over or ended it");
                    break;
                }
                // The lease is renewed meanwhile (the job is still live here), so no other
                // replica takes the job over while its ending waits for the database.
                Err(e) => {
                    tracing::error!(job_id = %id, error = %e, retry_in_ms = wait.as_millis() as u64, "could not record the end of a job; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
        self.live().remove(&id);
        self.changes.fetch_add(1, Ordering::SeqCst);
        if let Some(labels) = &labels {
            let error_kind = outcome.as_ref().err().map(|e| e.kind.as_str());
            self.telemetry
                .jobs
                .ended(labels, state, error_kind, Some(elapsed));
        }
        match outcome {
            Ok(_) => {
                tracing::info!(job_id = %id, state = state.as_str(), duration_ms, messages = progress.messages, "job ended")
            }
            Err(e) => {
                tracing::warn!(job_id = %id, state = state.as_str(), duration_ms, error = %e, "job ended")
            }
        }
    }
}
