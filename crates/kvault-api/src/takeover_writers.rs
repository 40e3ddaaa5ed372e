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

use std::time::Duration;

use actix_web::web;
use kvault_domain::job::OperationControl;
use kvault_domain::operations::MigrationPlan;
use kvault_domain::restore_set::{run_restore_set, set_members};
use kvault_domain::{BackupId, DomainError, MigrateRequest, RestoreRequest};

use crate::error::ApiError;
use crate::jobs::{JournalState, StoredJob};
use crate::routes::respond::to_json;
use crate::routes::restore_sets::may_name_a_set;
use crate::state::AppState;
use crate::takeover::{cluster_of, interrupted, labels_of};

/// The key under which the migrate route keeps the migration id in the stored request, so a
/// continued migration reports the id its first attempt was given.
pub(crate) const MIGRATION_ID_KEY: &str = "migration_id";

/// Continues a restore (one topic, or a backup set) taken over from another replica.
pub(crate) async fn resume_restore(
    state: &web::Data<AppState>,
    job: &StoredJob,
) -> Result<(), ApiError> {
    let Some(recorded) = job.journal.as_ref() else {
        return Err(interrupted(job));
    };
    let recorded = JournalState::from_stored(Some(recorded));
    let cluster = cluster_of(job)?;
    let request: RestoreRequest = serde_json::from_value(job.job.request.clone())
        .map_err(|e| ApiError::internal(format!("stored restore request: {e}")))?;
    let id = BackupId::parse(&request.backup_id)?;
    let single = if may_name_a_set(&request) {
        None
    } else {
        match state.store.manifest(&id).await {
            Ok(_) => Some(request.validate()?),
            Err(DomainError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        }
    };
    let engine = state.engine.clone();
    let wait = wait_for(state, &recorded);
    let attempt = (job.attempts, recorded);
    let labels = labels_of(job);
    if let Some(plan) = single {
        state
            .runner
            .launch_attempt(job.job.id, labels, attempt, move |control| async move {
                outlast_old_owner(wait, &control).await?;
                to_json(&engine.restore(&cluster, plan, control).await?)
            });
        return Ok(());
    }
    let members = set_members(state.store.as_ref(), id.as_str()).await?;
    let mut plan = request.validate_set(&members)?;
    plan.parallelism = state.settings.workers.set_parallelism;
    state
        .runner
        .launch_attempt(job.job.id, labels, attempt, move |control| async move {
            outlast_old_owner(wait, &control).await?;
            to_json(&run_restore_set(engine.as_ref(), &cluster, plan, control).await?)
        });
    Ok(())
}

/// Continues a migration taken over from another replica.
pub(crate) fn resume_migrate(state: &web::Data<AppState>, job: &StoredJob) -> Result<(), ApiError> {
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
fn wait_for(state: &AppState, recorded: &JournalState) -> Duration {
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
