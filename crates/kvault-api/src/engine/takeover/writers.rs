//! Taking over a restore or migration: the job continues on this replica exactly where the
//! target shows it got (see `kvault_domain::resume`). What the job recorded before its first
//! produce comes from its journal; the operation itself reads the target and decides per
//! partition, or ends the job `interrupted` with the reason where that cannot be proved.
//!
//! Before it reads the target, a continued job waits one lease period: the replica that ran it
//! may be cut off rather than dead, and stops its copy once its renewal has failed for a lease
//! period (see `workers`), so by then it no longer produces. Records it still produced after
//! that would land at offsets this attempt expects for its own records, which stops this
//! attempt `interrupted` (never a duplicate reported as success). A job recorded by a version
//! without a journal ends `interrupted`, as it did then.

use std::sync::Arc;

use std::time::Duration;

use kvault_domain::job::OperationControl;
use kvault_domain::operations::MigrationPlan;
use kvault_domain::start::{plan_restore, run_restore};
use kvault_domain::{DomainError, MigrateRequest, RestoreRequest};

use super::{cluster_of, interrupted, labels_of};
use crate::engine::jobs::{JournalState, StoredJob};
use crate::engine::outcome::to_json;
use crate::engine::state::EngineState;
use crate::error::ApiError;

/// The key under which the migrate route keeps the migration id in the stored request, so a
/// continued migration reports the id its first attempt was given.
pub(crate) const MIGRATION_ID_KEY: &str = "migration_id";

/// Continues a restore (one topic, or a backup set) taken over from another replica.
pub(crate) async fn resume_restore(
    state: &Arc<EngineState>,
    job: &StoredJob,
) -> Result<(), ApiError> {
    let Some(recorded) = job.journal.as_ref() else {
        return Err(interrupted(job));
    };
    let recorded = JournalState::from_stored(Some(recorded));
    let cluster = cluster_of(job)?;
    let request: RestoreRequest = serde_json::from_value(job.job.request.clone())
        .map_err(|e| ApiError::internal(format!("stored restore request: {e}")))?;
    let parallelism = state.settings.workers.set_restore_parallelism;
    let work = plan_restore(state.archives.as_ref(), &request, parallelism).await?;
    let engine = state.engine.clone();
    let wait = wait_for(state, &recorded);
    let attempt = (job.attempts, recorded);
    state.runner.launch_attempt(
        job.job.id,
        labels_of(job),
        attempt,
        move |control| async move {
            outlast_old_owner(wait, &control).await?;
            to_json(&run_restore(engine.as_ref(), &cluster, work, control).await?)
        },
    );
    Ok(())
}

/// Continues a migration taken over from another replica.
pub(crate) fn resume_migrate(state: &Arc<EngineState>, job: &StoredJob) -> Result<(), ApiError> {
    let Some(recorded) = job.journal.as_ref() else {
        return Err(interrupted(job));
    };
    let recorded = JournalState::from_stored(Some(recorded));
    let mut stored = job.job.request.clone();
    let migration_id = stored
        .as_object_mut()
        .and_then(|o| o.remove(MIGRATION_ID_KEY))
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| MigrationPlan::generate_id(job.job.created_at));
    let request: MigrateRequest = serde_json::from_value(stored)
        .map_err(|e| ApiError::internal(format!("stored migrate request: {e}")))?;
    let plan = MigrationPlan::new(request, migration_id)?;
    let engine = state.engine.clone();
    let wait = wait_for(state, &recorded);
    state.runner.launch_attempt(
        job.job.id,
        labels_of(job),
        (job.attempts, recorded),
        move |control| async move {
            outlast_old_owner(wait, &control).await?;
            to_json(&engine.migrate(plan, control).await?)
        },
    );
    Ok(())
}

/// How long a continued job waits before it reads the target: a lease period when an earlier
/// attempt may have produced (it recorded a start), else not at all.
fn wait_for(state: &EngineState, recorded: &JournalState) -> Duration {
    if recorded.started.is_empty() {
        Duration::ZERO
    } else {
        state.settings.workers.lease_ttl()
    }
}

async fn outlast_old_owner(wait: Duration, control: &OperationControl) -> Result<(), ApiError> {
    let until = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < until {
        if control.is_cancelled() {
            return Err(DomainError::Cancelled.into());
        }
        tokio::time::sleep(Duration::from_millis(100).min(wait)).await;
    }
    Ok(())
}
