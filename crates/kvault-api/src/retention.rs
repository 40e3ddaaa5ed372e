//! Retention: deletes backups older than `backup.retention_days` (never one a running job
//! uses) and removes what killed writers left behind, on a timer next to the server.

use std::time::Duration;

use actix_web::web;
use chrono::{DateTime, Utc};
use kvault_domain::ports::ArchiveStore;
use kvault_domain::BackupId;

use crate::state::AppState;

/// Deletes backups older than `retention_days` (none when it is 0), skipping backups a running
/// job uses. Returns the ids deleted.
pub async fn sweep_retention(
    store: &dyn ArchiveStore,
    retention_days: u32,
    now: DateTime<Utc>,
    in_use: impl Fn(&str) -> bool,
) -> Result<Vec<String>, kvault_domain::DomainError> {
    if retention_days == 0 {
        return Ok(Vec::new());
    }
    let cutoff = now - chrono::Duration::days(i64::from(retention_days));
    let mut deleted = Vec::new();
    for manifest in store.list().await? {
        if manifest.finished_at >= cutoff || in_use(&manifest.backup_id) {
            continue;
        }
        let id = BackupId::parse(&manifest.backup_id)?;
        store.delete(&id).await?;
        tracing::info!(backup_id = %id, finished_at = %manifest.finished_at, retention_days, "backup expired and deleted");
        deleted.push(manifest.backup_id);
    }
    Ok(deleted)
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
        let swept = sweep_retention(store.as_ref(), days, Utc::now(), |id| {
            runner.uses_backup(id)
        })
        .await;
        match swept {
            Ok(deleted) => {
                if !deleted.is_empty() {
                    state.archive_totals.invalidate();
                }
            }
            Err(e) => tracing::error!(error = %e, "retention sweep failed"),
        }
    }
}
