//! What a replica does with a job it took over from one that stopped (killed, cut off, shut
//! down). Reads are simply run again. A backup runs again under the same backup id: a backup
//! that was already committed is recorded as completed; otherwise it resumes from the
//! checkpoint its earlier attempt recorded with the job (same cut, the segments that attempt
//! committed kept, see `kvault_domain::backup_resume`), or, without one, the dead writer's
//! remains are discarded and the backup starts over (never two archives, never a half one
//! listed).
//! A backup set ends `interrupted` and its archives are deleted (see [`end_backup_set`]).
//! Archives are recognised by the uid the job recorded, never by name alone: an archive of the
//! job's backup id that carries another uid is not the job's and is left alone.
//! A restore or migration continues where the target shows it got (`writers`), or
//! ends `interrupted` with the reason where that cannot be proved.

use std::sync::Arc;

use chrono::Utc;
use kvault_domain::backup_planning::{backup_result, BackupRun};
use kvault_domain::backup_resume::BackupCheckpoint;
use kvault_domain::chain::verify_report;
use kvault_domain::operations::DrainPlan;
use kvault_domain::start::{run_backup, BackupWork};
use kvault_domain::ErrorCode;
use kvault_domain::{BackupId, ClusterId, DomainError, DrainRequest, JobKind, JobState};

use crate::engine::backup_start::split_recorded;
use crate::engine::jobs::{JournalState, StoredJob};
use crate::engine::outcome::to_json;
use crate::engine::state::EngineState;
use crate::error::ApiError;
use crate::telemetry::JobLabels;
use writers::{resume_migrate, resume_restore};

pub(crate) mod writers;

/// Resumes or ends `job`, which this replica now holds.
pub(crate) async fn resume(state: Arc<EngineState>, job: StoredJob) {
    let (id, kind) = (job.job.id, job.job.kind);
    tracing::warn!(job_id = %id, kind = kind.as_str(), attempt = job.attempts, "taking over a job whose replica stopped");
    let resumed = match kind {
        JobKind::Backup => resume_backup(&state, &job).await,
        JobKind::Verify => rerun_verify(&state, &job),
        JobKind::Drain => rerun_drain(&state, &job),
        JobKind::Restore => resume_restore(&state, &job).await,
        JobKind::Migrate => resume_migrate(&state, &job),
    };
    if let Err(error) = resumed {
        let state_after = if error.kind == ErrorCode::Interrupted {
            JobState::Interrupted
        } else {
            JobState::Failed
        };
        let body = serde_json::json!({"status": error.status.as_u16(), "body": error.body()});
        end(&state, &job, state_after, None, Some(&body)).await;
    }
}

/// Records the end of a taken-over job that did not run here.
async fn end(
    state: &EngineState,
    job: &StoredJob,
    ended: JobState,
    result: Option<&serde_json::Value>,
    error: Option<&serde_json::Value>,
) {
    let now = Utc::now();
    let duration = (now - job.job.created_at).num_milliseconds().max(0) as u64;
    let runner = &state.runner;
    let stored = runner
        .jobs()
        .finish(
            &runner.lease().owner,
            job.job.id,
            ended,
            result,
            error,
            job.job.progress,
            now,
            duration,
        )
        .await;
    match stored {
        Ok(true) => {
            let error_kind = error
                .and_then(|e| e.pointer("/body/error"))
                .and_then(serde_json::Value::as_str);
            state
                .telemetry
                .jobs
                .ended(&labels_of(job), ended, error_kind, None);
        }
        Ok(false) => {}
        // The lease runs out and the job is taken over again, so the ending is not lost.
        Err(e) => {
            tracing::error!(job_id = %job.job.id, error = %e, "could not record the end of a taken-over job")
        }
    }
}

/// The metric labels of a stored job.
pub(crate) fn labels_of(job: &StoredJob) -> JobLabels {
    JobLabels::new(job.job.kind, job.job.cluster_id.as_deref())
}

/// The ending of a restore or migration recorded before jobs kept a journal.
pub(crate) fn interrupted(job: &StoredJob) -> ApiError {
    ApiError::new(
        ErrorCode::Interrupted,
        format!(
            "the replica running this {} stopped (attempt {}); it had reported {} messages \
             written. The target may hold part of the data: inspect or delete it before \
             running the {} again",
            job.job.kind.as_str(),
            job.attempts - 1,
            job.job.progress.messages,
            job.job.kind.as_str()
        ),
    )
}

pub(crate) fn cluster_of(job: &StoredJob) -> Result<ClusterId, ApiError> {
    let id = job.job.cluster_id.as_deref().unwrap_or_default();
    ClusterId::parse(id).map_err(|e| ApiError::internal(format!("stored job cluster: {e}")))
}

async fn resume_backup(state: &Arc<EngineState>, job: &StoredJob) -> Result<(), ApiError> {
    let cluster = cluster_of(job)?;
    let (mut request, recorded_uid) = split_recorded(&job.job.request)?;
    request.backup_id = job.backup_id.clone().or(request.backup_id);
    let defaults = state.settings.backup.request_defaults();
    let parallelism = state.settings.workers.set_parallelism;
    let mut plan = match request.plan(defaults, Utc::now(), parallelism) {
        Ok(BackupWork::Topic(plan)) => plan,
        // A set is not resumed, whatever its request says today (see `end_backup_set`).
        Ok(BackupWork::Set(_)) => return Err(end_backup_set(state, job, recorded_uid).await),
        Err(_) if request.is_set() => return Err(end_backup_set(state, job, recorded_uid).await),
        Err(e) => return Err(e.into()),
    };
    if let Some(uid) = &recorded_uid {
        plan.archive_uid = uid.clone();
    }
    match state.archives.manifest(&plan.backup_id).await {
        // Another archive under the job's backup id: not the job's, so it is left alone.
        Ok(manifest) if recorded_uid.is_some() && manifest.archive_uid != recorded_uid => {
            return Err(ApiError::conflict(format!(
                "backup {} now holds another archive (uid {}) than the one this job wrote \
                 (uid {}); it was left alone and this backup was not run again",
                plan.backup_id,
                manifest.archive_uid.as_deref().unwrap_or("(none)"),
                plan.archive_uid
            ))
            .on("backup_id", &plan.backup_id));
        }
        // Committed before its replica could record it: record it now.
        Ok(manifest) => {
            let now = Utc::now();
            let run = BackupRun {
                backup_id: plan.backup_id.clone(),
                cluster_id: cluster.clone(),
                created_at: job.job.created_at,
                duration_ms: (now - job.job.created_at).num_milliseconds().max(0) as u64,
                warnings: vec![
                    "the replica that wrote this backup stopped before recording it; another \
                     replica recorded it from the committed archive"
                        .into(),
                ],
            };
            let result = to_json(&backup_result(&manifest, &[], run))?;
            end(state, job, JobState::Completed, Some(&result), None).await;
            return Ok(());
        }
        Err(DomainError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    // Resumed from what the dead writer recorded with the job, when it recorded anything of
    // this archive; otherwise its remains go and the backup starts over.
    plan.resume = resume_point(job, &plan.archive_uid);
    if plan.resume.is_none() {
        state.archives.discard_unfinished(&plan.backup_id).await?;
    }
    let (engine, archives, totals) = (
        state.engine.clone(),
        state.archives.clone(),
        state.archive_totals.clone(),
    );
    // This attempt's journal: where it continued is noted on its own attempt row.
    let attempt = (
        job.attempts,
        JournalState::from_stored(job.journal.as_ref()),
    );
    state.runner.launch_attempt(
        job.job.id,
        labels_of(job),
        attempt,
        move |control| async move {
            let (engine, archives) = (engine.as_ref(), archives.as_ref());
            let work = BackupWork::Topic(plan);
            let done = run_backup(engine, archives, &cluster, work, control, false).await;
            totals.invalidate();
            to_json(&done?)
        },
    );
    Ok(())
}

/// The checkpoint the job's earlier attempt recorded in its journal, if it is one of archive
/// `uid` (a job stored before kvault recorded uids has none to match, and starts over).
fn resume_point(job: &StoredJob, uid: &str) -> Option<BackupCheckpoint> {
    let stored = JournalState::from_stored(job.journal.as_ref()).checkpoint?;
    BackupCheckpoint::from_json(&stored).filter(|c| c.archive_uid == uid)
}

/// A backup set is not resumed (it may have hundreds of topics to go): the archives it had
/// committed are deleted, so no partial set stays listed, and the job ends `interrupted`. What
/// the dead writer of the topic in progress left is swept like any abandoned archive.
/// Only archives carrying the set uid the job recorded are the job's (a job stored before
/// kvault recorded uids matches archives without one).
async fn end_backup_set(state: &EngineState, job: &StoredJob, set_uid: Option<String>) -> ApiError {
    let set_id = job.backup_id.clone().unwrap_or_default();
    let mut deleted = 0;
    let members = state.archives.list().await.unwrap_or_default();
    for manifest in members.iter().filter(|m| {
        m.backup_set.as_ref().is_some_and(|s| s.set_id == set_id)
            && m.set_uid() == set_uid.as_deref()
    }) {
        if let Ok(id) = BackupId::parse(&manifest.backup_id) {
            if state.archives.delete(&id).await.is_ok() {
                deleted += 1;
            }
        }
    }
    // The dead writer's claim on the set id goes too: no writer of this set is alive.
    if let Ok(id) = BackupId::parse(&set_id) {
        if let Err(e) = state.archives.discard_unfinished(&id).await {
            tracing::warn!(set_id = %id, error = %e, "the set id's claim could not be removed; the sweep will");
        }
    }
    state.archive_totals.invalidate();
    ApiError::new(
        ErrorCode::Interrupted,
        format!(
            "the replica running backup set {set_id} stopped (attempt {}); the {deleted} archive(s) it had written were deleted: run the backup set again",
            job.attempts - 1
        ),
    )
}

fn rerun_verify(state: &Arc<EngineState>, job: &StoredJob) -> Result<(), ApiError> {
    let raw = job.backup_id.as_deref().unwrap_or_default();
    let id =
        BackupId::parse(raw).map_err(|e| ApiError::internal(format!("stored backup id: {e}")))?;
    let store = state.archives.clone();
    state
        .runner
        .launch(job.job.id, labels_of(job), move |control| async move {
            let manifest = store.manifest(&id).await?;
            let report = verify_report(store.as_ref(), &id, manifest, &control).await?;
            to_json(&report)
        });
    Ok(())
}

fn rerun_drain(state: &Arc<EngineState>, job: &StoredJob) -> Result<(), ApiError> {
    let cluster = cluster_of(job)?;
    let request: DrainRequest = serde_json::from_value(job.job.request.clone())
        .map_err(|e| ApiError::internal(format!("stored drain request: {e}")))?;
    let plan = DrainPlan::new(request)?;
    let engine = state.engine.clone();
    state
        .runner
        .launch(job.job.id, labels_of(job), move |control| async move {
            let result = engine.drain(&cluster, plan, control).await?;
            to_json(&result)
        });
    Ok(())
}
