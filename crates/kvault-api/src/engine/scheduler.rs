//! The scheduler: on every replica, a loop that starts the due runs of backup schedules (see
//! `kvault_domain::schedule`). Every replica looks; the claim taken with the run's admission
//! (`crate::engine::jobs::RunClaim`) lets exactly one start each due run, and none while a run of the
//! same schedule still goes on. A run is an ordinary backup job, incremental from the
//! schedule's last completed run; if its replica dies, the job is taken over like any other.
//!
//! A due run that cannot start (its topic was deleted, its cluster left the config) is skipped
//! to the next due time and the reason kept on the schedule (`last_error`). One that finds the
//! backup limit full stays due and starts as soon as there is room.
//!
//! A schedule's runs are the jobs carrying its uid (never an older schedule's of the same
//! name), and a run continues the tip only when the archive under the tip's backup id is the
//! one that run wrote (its recorded uid): otherwise the run is a full backup.

use std::sync::Arc;

use std::time::Duration;

use actix_web::http::StatusCode;
use chrono::{DateTime, Utc};
use kvault_domain::restore_set::set_members;
use kvault_domain::schedule::{run_backup_id, ScheduleRequest};
use kvault_domain::{BackupId, DomainError, JobId};

use crate::engine::backup_start::{recorded_uid, start_backup, Starter};
use crate::engine::jobs::{RunClaim, StoredSchedule};
use crate::engine::state::EngineState;
use crate::error::ApiError;

/// How often each replica looks for due runs.
const TICK: Duration = Duration::from_secs(1);

pub(crate) async fn schedule_loop(state: Arc<EngineState>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if state.runner.is_handing_over() {
            continue;
        }
        let now = Utc::now();
        match state.runner.jobs().due_schedules(now).await {
            Ok(due) => {
                for schedule in due {
                    start_due_run(&state, schedule, now).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not look for due backup schedules"),
        }
    }
}

/// Starts `schedule`'s due run, or says why not.
async fn start_due_run(state: &Arc<EngineState>, schedule: StoredSchedule, now: DateTime<Utc>) {
    let Some(due) = schedule.next_run_at else {
        return;
    };
    let due_ms = due.timestamp_millis();
    let request: Result<ScheduleRequest, _> = serde_json::from_value(schedule.request.clone());
    let (request, cadence) = match request
        .map_err(|e| e.to_string())
        .and_then(|r| r.cadence().map(|c| (r, c)).map_err(|e| e.to_string()))
    {
        Ok(parsed) => parsed,
        Err(e) => {
            skip(
                state,
                &schedule,
                due_ms,
                None,
                &format!("unreadable schedule: {e}"),
            )
            .await;
            return;
        }
    };
    // Missed due times (every replica was down) are not made up: one run covers them all. A
    // schedule stored before the floor was raised still runs at most once per floor.
    let floor = chrono::Duration::from_std(state.settings.schedules.min_interval())
        .unwrap_or_else(|_| chrono::Duration::seconds(60));
    let next_ms = cadence
        .next_after(now)
        .map(|t| t.max(now + floor).timestamp_millis());
    match start_run(state, &schedule, &request, (due_ms, next_ms), now).await {
        Ok(job_id) => {
            tracing::info!(schedule_id = %schedule.id, %job_id, "scheduled backup run started");
        }
        // Another replica started it, or a run of this schedule still goes on.
        Err(e) if e.status == StatusCode::CONFLICT && e.field.is_none() => {}
        Err(e) if e.status == StatusCode::TOO_MANY_REQUESTS => {
            tracing::debug!(schedule_id = %schedule.id, "scheduled run waits for a backup slot");
        }
        Err(e) => skip(state, &schedule, due_ms, next_ms, &e.message).await,
    }
}

async fn skip(
    state: &EngineState,
    schedule: &StoredSchedule,
    due_ms: i64,
    next_ms: Option<i64>,
    why: &str,
) {
    tracing::warn!(schedule_id = %schedule.id, error = %why, "scheduled backup run could not start; skipped to the next one");
    let skipped = state
        .runner
        .jobs()
        .skip_run(schedule.id.as_str(), due_ms, next_ms, why)
        .await;
    if let Err(e) = skipped {
        tracing::warn!(schedule_id = %schedule.id, error = %e, "could not record a skipped run");
    }
}

/// Starts one run: incremental from the last completed run whose backup still exists (a full
/// backup when there is none), under a claim naming that run.
async fn start_run(
    state: &Arc<EngineState>,
    schedule: &StoredSchedule,
    request: &ScheduleRequest,
    (due_ms, next_ms): (i64, Option<i64>),
    now: DateTime<Utc>,
) -> Result<JobId, ApiError> {
    let tip = state
        .runner
        .jobs()
        .schedule_runs(&schedule.uid, true, 1)
        .await
        .map_err(ApiError::internal)?
        .into_iter()
        .next();
    let parent = match tip.as_ref().and_then(|run| run.backup_id.as_deref()) {
        Some(id) => {
            let recorded = tip.as_ref().and_then(|run| recorded_uid(&run.job.request));
            existing_backup(state, &BackupId::parse(id)?, recorded, request).await?
        }
        None => None,
    };
    let cluster = schedule.cluster_id.clone();
    if !state.engine.knows(&cluster) {
        return Err(ApiError::not_found(
            "cluster_id",
            &cluster,
            format!("cluster '{cluster}' is no longer configured"),
        ));
    }
    let backup = request.run_request(run_backup_id(&schedule.id, now), parent.as_ref());
    let starter = Starter {
        subject: schedule.subject.clone(),
        claim: Some(RunClaim {
            schedule_id: schedule.id.clone(),
            schedule_uid: schedule.uid.clone(),
            due_at_ms: due_ms,
            next_run_at_ms: next_ms,
            tip_job_id: tip.map(|run| run.job.id),
        }),
    };
    let (id, _ends_on_its_own) = start_backup(state, cluster, backup, starter).await?;
    Ok(id)
}

/// `id` if that backup (or, for a schedule of several topics, that set) still exists and is
/// the one the last run wrote: it carries the uid the run recorded (`recorded`; a run
/// recorded before kvault kept uids matches an archive without one).
async fn existing_backup(
    state: &EngineState,
    id: &BackupId,
    recorded: Option<String>,
    request: &ScheduleRequest,
) -> Result<Option<BackupId>, ApiError> {
    let found = if request.topic.is_empty() {
        set_members(state.archives.as_ref(), id.as_str())
            .await
            .map(|members| members[0].set_uid().map(str::to_owned))
    } else {
        state.archives.manifest(id).await.map(|m| m.archive_uid)
    };
    match found {
        Ok(uid) if uid == recorded => Ok(Some(id.clone())),
        Ok(uid) => {
            tracing::warn!(backup_id = %id, found_uid = ?uid, recorded_uid = ?recorded, "the last run's backup id now names another archive; this run is a full backup");
            Ok(None)
        }
        // Two sets under the run's id: neither is followed.
        Err(DomainError::NotFound { .. }) | Err(DomainError::Conflict { .. }) => {
            tracing::warn!(backup_id = %id, "the last run's backup is gone; this run is a full backup");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}
