//! Retention: deletes backups older than `backup.retention_days` (chains from their oldest
//! link only, see `kvault_domain::chain`; never one a running job
//! uses) and removes what killed writers left behind, on a timer next to the server.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::web;
use chrono::{DateTime, Utc};
use kvault_domain::chain::deletable_by_retention;
use kvault_domain::ports::ArchiveStore;
use kvault_domain::BackupId;

use crate::state::AppState;

/// What one retention sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepOutcome {
    /// Backups deleted.
    pub deleted: Vec<String>,
    /// Backups whose delete failed, with why; the sweep went on past them.
    pub failed: Vec<(String, String)>,
}

/// Running totals of retention deletions, for `/metrics/prometheus`.
#[derive(Debug, Default)]
pub struct RetentionCounters {
    pub deleted: AtomicU64,
    pub failed: AtomicU64,
}

/// Deletes backups older than `retention_days` (none when it is 0), skipping backups a running
/// job uses. A failed delete is logged and reported, and the sweep goes on with the others.
pub async fn sweep_retention(
    store: &dyn ArchiveStore,
    retention_days: u32,
    now: DateTime<Utc>,
    in_use: impl Fn(&str) -> bool,
) -> Result<SweepOutcome, kvault_domain::DomainError> {
    let mut outcome = SweepOutcome::default();
    if retention_days == 0 {
        return Ok(outcome);
    }
    let cutoff = now - chrono::Duration::days(i64::from(retention_days));
    // Oldest first, so a chain loses its oldest link before the next one is considered.
    let mut manifests = store.list().await?;
    manifests.reverse();
    let mut existing: BTreeSet<String> = manifests.iter().map(|m| m.backup_id.clone()).collect();
    for manifest in manifests {
        if manifest.finished_at >= cutoff || in_use(&manifest.backup_id) {
            continue;
        }
        if !deletable_by_retention(&manifest, &existing) {
            // A link in the middle of a chain: its parent is still kept.
            continue;
        }
        let deleted = match BackupId::parse(&manifest.backup_id) {
            Ok(id) => store.delete(&id).await,
            Err(e) => Err(e.into()),
        };
        match deleted {
            Ok(()) => {
                existing.remove(&manifest.backup_id);
                tracing::info!(backup_id = %manifest.backup_id, finished_at = %manifest.finished_at, retention_days, "backup expired and deleted");
                outcome.deleted.push(manifest.backup_id);
            }
            Err(e) => {
                tracing::error!(backup_id = %manifest.backup_id, error = %e, "expired backup could not be deleted; the sweep goes on");
                outcome.failed.push((manifest.backup_id, e.to_string()));
            }
        }
    }
    Ok(outcome)
}

pub(crate) async fn retention_loop(state: web::Data<AppState>) {
    let every = Duration::from_secs(state.settings.backup.retention_sweep_interval_secs.max(1));
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let days = state.settings.backup.retention_days;
        let (store, runner) = (state.store.clone(), state.runner.clone());
        match store.sweep_abandoned().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "abandoned partial backups removed"),
            Err(e) => tracing::error!(error = %e, "sweep of abandoned partial backups failed"),
        }
        // Backups a job on any replica (this one included) reads or writes are kept; if the
        // database cannot say which, nothing is deleted this round.
        let in_use = match runner.store().backups_in_use().await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "retention sweep skipped: the job table is unreachable");
                continue;
            }
        };
        let swept =
            sweep_retention(store.as_ref(), days, Utc::now(), |id| in_use.contains(id)).await;
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
