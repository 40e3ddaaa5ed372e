//! The documented concurrency limits as capacities the job store checks at admission, and the
//! answers to a refused admission: 429 for a full one, 409 for a target topic another job
//! writes into or a scheduled run that is not due.

use kvault_domain::JobKind;

use crate::configuration::Settings;
use crate::engine::jobs::{Admission, Capacity, HeldTarget, Verdict};
use crate::error::ApiError;

/// Seconds a client is told to wait when a concurrency limit is reached.
const BUSY_RETRY_AFTER_SECS: u64 = 5;

/// The documented concurrency limits (per cluster for backups, restores and drains; global
/// for migrations), as capacities the job store checks when it admits a job.
pub struct Limits {
    backups: usize,
    restores: usize,
    drains: usize,
    migrations: usize,
}

impl Limits {
    pub fn new(settings: &Settings) -> Self {
        Self {
            backups: settings.backup.max_concurrent_backups,
            restores: settings.limits.max_concurrent_restores,
            drains: settings.limits.max_concurrent_drains,
            migrations: settings.limits.max_concurrent_migrations,
        }
    }

    /// Room for one more `kind` job on `cluster` (migrations count across clusters).
    pub fn capacity(&self, kind: JobKind, cluster: &str) -> Capacity {
        let (max, cluster_id) = match kind {
            JobKind::Migrate => (self.migrations, None),
            JobKind::Backup => (self.backups, Some(cluster.to_owned())),
            JobKind::Restore => (self.restores, Some(cluster.to_owned())),
            // Verify jobs only read archives; they share the drain budget.
            _ => (self.drains, Some(cluster.to_owned())),
        };
        Capacity {
            kind,
            cluster_id,
            max,
        }
    }
}

/// The 429 for a full capacity.
pub(crate) fn busy(capacity: &Capacity) -> ApiError {
    let scope = match &capacity.cluster_id {
        Some(cluster) => format!("on cluster '{cluster}'"),
        None => "in total".to_owned(),
    };
    ApiError::too_many(
        format!(
            "at most {} concurrent {} operations are allowed {scope}",
            capacity.max,
            capacity.kind.as_str()
        ),
        BUSY_RETRY_AFTER_SECS,
    )
}

/// Why a job was not admitted, as the answer to its request.
pub(crate) fn refusal(verdict: &Verdict, capacity: Option<&Capacity>) -> ApiError {
    match (verdict.admission, &verdict.held, capacity) {
        (Admission::TargetHeld, Some(held), _) => target_held(held),
        (Admission::Full, _, Some(capacity)) => busy(capacity),
        (Admission::NotDue, _, _) => {
            ApiError::conflict("the scheduled run was started elsewhere or is no longer due")
        }
        _ => ApiError::internal(format!("job not admitted: {verdict:?}")),
    }
}

/// The 409 for a topic a running restore or migration writes into.
fn target_held(held: &HeldTarget) -> ApiError {
    let HeldTarget {
        target,
        job_id,
        kind,
    } = held;
    ApiError::conflict(format!(
        "{kind} job {job_id} is writing into topic '{}' on cluster '{}'; a topic has one \
         restore or migration at a time: wait for that job to end (GET /api/kafka/jobs/{job_id}) \
         and check the topic before writing into it again",
        target.topic, target.cluster_id
    ))
    .on("target_topic", &target.topic)
}
