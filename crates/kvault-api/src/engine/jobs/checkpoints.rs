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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use chrono::Utc;
    use kvault_domain::resume::{JobJournal, StartRecord};
    use kvault_domain::{JobId, JobKind, PartitionMapping};
    use serde_json::json;

    use crate::engine::jobs::{JobStore, JournalState, Lease, NewJob, StoredJournal};

    async fn stored(store: &JobStore, id: JobId) -> JournalState {
        JournalState::from_stored(store.get(id).await.unwrap().unwrap().journal.as_ref())
    }

    /// Checkpoints land in the journal, the latest one winning, next to what else the journal
    /// records; a journal of a replica that does not hold the job writes nothing.
    #[tokio::test(flavor = "multi_thread")]
    async fn checkpoints_are_kept_in_the_journal_by_the_lease_holder_only() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/jobs.db?mode=rwc", dir.path().display());
        let store = JobStore::connect(&url, 2).await.unwrap();
        let lease = Lease::new("a", Duration::from_secs(30));
        let job = NewJob {
            id: JobId::new(),
            kind: JobKind::Backup,
            cluster_id: Some("local".into()),
            target_cluster_id: None,
            subject: "t".into(),
            request: json!({}),
            created_at: Utc::now(),
            backup_id: Some("b1".into()),
        };
        assert!(store.admit(&job, &lease, None).await.unwrap());
        let jobs = tokio::runtime::Handle::current();
        let journal = |owner: &str| {
            StoredJournal::new(store.clone(), owner, job.id, 1, JournalState::default())
                .keeping_checkpoints(&jobs)
        };
        let (holder, stranger) = (journal("a"), journal("b"));
        stranger.note_checkpoint(json!({"from": "b"}));
        holder.note_checkpoint(json!({"segments": 1}));
        holder.note_checkpoint(json!({"segments": 2}));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while stored(&store, job.id).await.checkpoint != Some(json!({"segments": 2})) {
            assert!(
                std::time::Instant::now() < deadline,
                "checkpoint never stored"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let start = StartRecord {
            target_topic: "t".into(),
            topic_created: true,
            mapping: PartitionMapping::Identity,
            base_offsets: BTreeMap::from([(0, 0)]),
            archives: Vec::new(),
            source_cut: BTreeMap::new(),
        };
        holder.record_start(start).await.unwrap();
        let state = stored(&store, job.id).await;
        assert_eq!(state.checkpoint, Some(json!({"segments": 2})));
        assert!(state.started.contains_key("t"));
        // The stranger's write was refused: it records nothing, and is told so.
        let refused = stranger.record_finished("t", json!({})).await.unwrap_err();
        assert!(matches!(refused, kvault_domain::DomainError::Cancelled));
    }
}
