//! Retention: deletes backups older than `backup.retention_days`, and the runs of schedules
//! older than their own `retention`, in one sweep over one listing (chains from their oldest
//! link only, see `kvault_domain::chain`; never one a running job uses, nor an earlier link of
//! a chain it reads), and removes what killed writers left behind, on a timer next to the
//! server.
//!
//! A schedule's runs are matched to archives by identity, not by name: the archive (or set)
//! uid each run's job recorded and the schedule's cluster. An archive that merely carries a
//! run's backup id (created later under a reused id, or on another cluster) is not the run's
//! and is never deleted by the schedule's retention.

use std::sync::Arc;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kvault_domain::chain::{deletable_by_retention, with_earlier_links, ExistingArchives};
use kvault_domain::ports::ArchiveStore;
use kvault_domain::schedule::ScheduleRequest;
use kvault_domain::{BackupId, Manifest};

use crate::engine::state::EngineState;

/// What one retention sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepOutcome {
    /// Backups deleted.
    pub deleted: Vec<String>,
    /// Backups whose delete failed, with why; the sweep went on past them.
    pub failed: Vec<(String, String)>,
    /// Expired backups that object storage retention still locks: left for a later sweep.
    pub locked: Vec<String>,
}

/// Deletes backups older than `retention_days` (none when it is 0), skipping backups a running
/// job uses. A failed delete is logged and reported, and the sweep goes on with the others.
pub async fn sweep_retention(
    store: &dyn ArchiveStore,
    retention_days: u32,
    now: DateTime<Utc>,
    in_use: impl Fn(&str) -> bool,
) -> Result<SweepOutcome, kvault_domain::DomainError> {
    sweep_expired(store, retention_days, &[], now, in_use).await
}

/// One schedule's retention, its cluster and its completed runs, newest first.
pub struct ScheduleRuns {
    pub retention: Duration,
    pub cluster_id: kvault_domain::ClusterId,
    pub runs: Vec<RecordedRun>,
}

/// What a completed run's job recorded about the archive (or set) it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRun {
    /// The backup id, or the set id of a run of several topics.
    pub backup_id: String,
    /// The archive uid, or the set uid; `None` for runs recorded before kvault kept uids,
    /// which match only archives without one.
    pub uid: Option<String>,
}

/// The cutoff of each schedule run but the newest, by run id (a set run's id is its set's),
/// with the identity an archive must have to be that run's.
struct RunCutoff<'a> {
    cutoff: DateTime<Utc>,
    uid: Option<&'a str>,
    cluster_id: &'a str,
}

impl RunCutoff<'_> {
    /// Whether `m` is the archive (or a member of the set) this run wrote.
    fn is_run_of(&self, m: &Manifest) -> bool {
        let uid = match &m.backup_set {
            Some(_) => m.set_uid(),
            None => m.archive_uid.as_deref(),
        };
        uid == self.uid && m.cluster_id == self.cluster_id
    }
}

/// One sweep over one listing of the archives: deletes backups older than `retention_days`
/// (0: none) and the runs of `schedules` that finished longer ago than their schedule's
/// `retention` (never a schedule's newest run: the next run continues it). Never a backup a
/// running job uses, nor an earlier link of a chain it reads, nor a link whose parent is kept.
pub async fn sweep_expired(
    store: &dyn ArchiveStore,
    retention_days: u32,
    schedules: &[ScheduleRuns],
    now: DateTime<Utc>,
    in_use: impl Fn(&str) -> bool,
) -> Result<SweepOutcome, kvault_domain::DomainError> {
    let mut outcome = SweepOutcome::default();
    let days_cutoff =
        (retention_days > 0).then(|| now - chrono::Duration::days(i64::from(retention_days)));
    let run_cutoffs: BTreeMap<&str, RunCutoff> = schedules
        .iter()
        .filter_map(|s| Some((s, now - chrono::Duration::from_std(s.retention).ok()?)))
        .flat_map(|(s, cutoff)| {
            s.runs.iter().skip(1).map(move |run| {
                let identity = RunCutoff {
                    cutoff,
                    uid: run.uid.as_deref(),
                    cluster_id: s.cluster_id.as_str(),
                };
                (run.backup_id.as_str(), identity)
            })
        })
        .collect();
    if days_cutoff.is_none() && run_cutoffs.is_empty() {
        return Ok(outcome);
    }
    let manifests = store.list().await?;
    let mut existing: ExistingArchives = manifests
        .iter()
        .map(|m| (m.backup_id.clone(), m.archive_uid.clone()))
        .collect();
    let kept = with_earlier_links(&manifests, |m| used(m, &in_use));
    let expired = |m: &Manifest| {
        let run = m
            .backup_set
            .as_ref()
            .map_or(m.backup_id.as_str(), |s| s.set_id.as_str());
        let run_cutoff = run_cutoffs
            .get(run)
            .filter(|r| r.is_run_of(m))
            .map(|r| r.cutoff);
        let cutoff = days_cutoff.into_iter().chain(run_cutoff).max();
        cutoff.is_some_and(|c| m.finished_at < c) && !kept.contains(&m.backup_id)
    };
    // A locked archive is not offered for deletion at all; it expires at a sweep after its
    // lock does (and keeps the chain links after it until then).
    let (locked, manifests): (Vec<Manifest>, Vec<Manifest>) = manifests
        .into_iter()
        .partition(|m| expired(m) && m.is_locked_at(now));
    outcome.locked = locked.into_iter().map(|m| m.backup_id).collect();
    delete_expired(store, manifests, expired, &mut existing, &mut outcome).await;
    Ok(outcome)
}

/// Whether a running job names `m`: the backup itself, or the set it belongs to. (A job
/// reading a chain also uses its earlier links: see `with_earlier_links`.)
fn used(m: &Manifest, in_use: &impl Fn(&str) -> bool) -> bool {
    in_use(&m.backup_id) || m.backup_set.as_ref().is_some_and(|s| in_use(&s.set_id))
}

/// Deletes the `expired` backups among `manifests` (newest first, as listed), oldest first so a
/// chain loses its oldest link before the next one is considered.
async fn delete_expired(
    store: &dyn ArchiveStore,
    mut manifests: Vec<Manifest>,
    expired: impl Fn(&Manifest) -> bool,
    existing: &mut ExistingArchives,
    outcome: &mut SweepOutcome,
) {
    manifests.reverse();
    for manifest in manifests {
        if !expired(&manifest) || !deletable_by_retention(&manifest, existing) {
            // Kept, or a link in the middle of a chain whose parent is still kept.
            continue;
        }
        let deleted = match BackupId::parse(&manifest.backup_id) {
            Ok(id) => store.delete(&id).await,
            Err(e) => Err(e.into()),
        };
        match deleted {
            Ok(()) => {
                existing.remove(&manifest.backup_id);
                tracing::info!(backup_id = %manifest.backup_id, finished_at = %manifest.finished_at, "backup expired and deleted");
                outcome.deleted.push(manifest.backup_id);
            }
            Err(e) => {
                tracing::error!(backup_id = %manifest.backup_id, error = %e, "expired backup could not be deleted; the sweep goes on");
                outcome.failed.push((manifest.backup_id, e.to_string()));
            }
        }
    }
}

pub(crate) async fn retention_loop(state: Arc<EngineState>) {
    let every = Duration::from_secs(state.settings.backup.retention_sweep_interval_secs.max(1));
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let days = state.settings.backup.retention_days;
        let (store, runner) = (state.archives.clone(), state.runner.clone());
        match store.sweep_abandoned().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "abandoned partial backups removed"),
            Err(e) => tracing::error!(error = %e, "sweep of abandoned partial backups failed"),
        }
        // Backups a job on any replica (this one included) reads or writes are kept; if the
        // database cannot say which, nothing is deleted this round.
        let in_use = match runner.jobs().backups_in_use().await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "retention sweep skipped: the job table is unreachable");
                continue;
            }
        };
        let schedules = schedule_runs(runner.jobs()).await;
        let in_use = |id: &str| in_use.contains(id);
        let swept = sweep_expired(store.as_ref(), days, &schedules, Utc::now(), in_use).await;
        match swept {
            Ok(outcome) => {
                let counters = &state.retention;
                counters
                    .deleted
                    .fetch_add(outcome.deleted.len() as u64, Ordering::Relaxed);
                counters
                    .failed
                    .fetch_add(outcome.failed.len() as u64, Ordering::Relaxed);
                if !outcome.deleted.is_empty() {
                    state.archive_totals.invalidate();
                }
            }
            Err(e) => tracing::error!(error = %e, "retention sweep failed"),
        }
    }
}

/// Every schedule with a `retention`, with its completed runs (newest first).
async fn schedule_runs(jobs: &crate::engine::jobs::JobStore) -> Vec<ScheduleRuns> {
    let schedules = match jobs.schedules().await {
        Ok(schedules) => schedules,
        Err(e) => {
            tracing::warn!(error = %e, "schedule retention skipped: the schedules are unreadable");
            return Vec::new();
        }
    };
    let mut with_retention = Vec::new();
    for schedule in schedules {
        let request = serde_json::from_value::<ScheduleRequest>(schedule.request);
        let Some(retention) = request.ok().and_then(|r| r.retention_span().ok().flatten()) else {
            continue;
        };
        match jobs.schedule_runs(&schedule.uid, true, 100_000).await {
            Ok(runs) => with_retention.push(ScheduleRuns {
                retention,
                cluster_id: schedule.cluster_id.clone(),
                runs: runs
                    .into_iter()
                    .filter_map(|run| {
                        Some(RecordedRun {
                            uid: crate::engine::backup_start::recorded_uid(&run.job.request),
                            backup_id: run.backup_id?,
                        })
                    })
                    .collect(),
            }),
            Err(e) => {
                tracing::warn!(schedule_id = %schedule.id, error = %e, "schedule retention skipped")
            }
        }
    }
    with_retention
}
