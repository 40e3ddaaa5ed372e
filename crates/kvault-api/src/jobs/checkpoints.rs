//! A backup's checkpoints (what a taken-over backup continues from: its cut and the segments
//! its first attempt committed, `kvault_domain::backup_resume`), kept in the job's journal.
//! The operation notes them as it goes without waiting; one task per job writes the latest
//! into the journal, under the job's lease like every journal write, so a replica that lost
//! the job can never change what the replica that took it over resumes from.

use std::sync::Arc;

use kvault_domain::DomainError;
use tokio::sync::watch;

use super::journal::JournalWriter;

/// Starts the task on `jobs` that writes the checkpoints sent on the returned channel into
/// the journal, the latest one winning when they come faster than the database takes them.
/// It stops once the job is another replica's (or ended), and when the sender, held by the
/// operation's journal, is gone.
pub(super) fn keeper(
    writer: Arc<JournalWriter>,
    jobs: &tokio::runtime::Handle,
) -> watch::Sender<Option<serde_json::Value>> {
    let (tx, mut rx) = watch::channel(None::<serde_json::Value>);
    jobs.spawn(async move {
        while rx.changed().await.is_ok() {
            let Some(value) = rx.borrow_and_update().clone() else {
                continue;
            };
            match writer.update(|state| state.checkpoint = Some(value)).await {
                Ok(()) => {}
                Err(DomainError::Cancelled) => return,
                Err(e) => {
                    tracing::warn!(job_id = %writer.id(), error = %e, "could not store a job checkpoint; the next one is tried")
                }
            }
        }
    });
    tx
}
