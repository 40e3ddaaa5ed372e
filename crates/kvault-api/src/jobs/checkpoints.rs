//! Job checkpoints: what a running job has done that a later attempt may continue from (a
//! backup's cut and committed segments, `kvault_domain::backup_resume`). Only the job's owner
//! writes one, under its lease, so a replica that lost the job can never change what the
//! replica that took it over resumes from.

use kvault_domain::job::{CheckpointSink, OperationControl};
use kvault_domain::JobId;
use sqlx::Row;

use super::{JobStore, Lease, StoreError};

impl JobStore {
    /// Stores `checkpoint` for running job `id` if `lease` still holds it; `Ok(false)` when it
    /// does not (taken over, or ended).
    pub async fn save_checkpoint(
        &self,
        lease: &Lease,
        id: JobId,
        checkpoint: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET checkpoint = $1 WHERE id = $2 AND owner = $3 AND state = 'running'",
        )
        .bind(checkpoint.to_string())
        .bind(id.to_string())
        .bind(lease.owner.clone())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The checkpoint job `id` last stored, if any.
    pub async fn checkpoint(&self, id: JobId) -> Result<Option<serde_json::Value>, StoreError> {
        let row = sqlx::query("SELECT checkpoint FROM jobs WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let raw: Option<String> = row.try_get("checkpoint")?;
        raw.map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(|e| StoreError::Corrupt {
                id: id.to_string(),
                reason: format!("checkpoint: {e}"),
            })
    }
}

/// Stores the checkpoints job `id` hands to `control` with the job, as they come (the latest
/// one wins when they come faster than the database takes them), under `lease`: once another
/// replica holds the job, nothing more is stored. The task runs on `jobs` and ends with the
/// operation (when its control, and the sender with it, is gone).
pub(crate) fn keep_checkpoints(
    store: &JobStore,
    lease: &Lease,
    jobs: &tokio::runtime::Handle,
    id: JobId,
    control: &OperationControl,
) {
    let (tx, mut rx) = tokio::sync::watch::channel(None::<serde_json::Value>);
    control.on_checkpoint(CheckpointSink::new(move |value| {
        tx.send_replace(Some(value));
    }));
    let (store, lease) = (store.clone(), lease.clone());
    jobs.spawn(async move {
        while rx.changed().await.is_ok() {
            let Some(value) = rx.borrow_and_update().clone() else {
                continue;
            };
            match store.save_checkpoint(&lease, id, &value).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(job_id = %id, error = %e, "could not store a job checkpoint; the next one is tried")
                }
            }
        }
    });
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use chrono::Utc;
    use kvault_domain::JobKind;

    use super::*;
    use crate::jobs::NewJob;

    /// Only the holder of a job's lease stores its checkpoint: once another replica took the
    /// job over, the old holder's checkpoints are refused and the new one's stored.
    pub(crate) async fn exercise_checkpoints(store: &JobStore) {
        let (a, b) = (
            Lease::new("a", Duration::from_millis(200)),
            Lease::new("b", Duration::from_secs(10)),
        );
        let job = NewJob {
            id: JobId::new(),
            kind: JobKind::Backup,
            cluster_id: Some("c".into()),
            target_cluster_id: None,
            subject: "s".into(),
            request: serde_json::json!({}),
            created_at: Utc::now(),
            backup_id: Some("b1".into()),
        };
        assert!(store.admit(&job, &a, None).await.unwrap());
        assert_eq!(store.checkpoint(job.id).await.unwrap(), None);
        let first = serde_json::json!({"cut": [1, 2], "segments": {}});
        assert!(store.save_checkpoint(&a, job.id, &first).await.unwrap());
        assert_eq!(store.checkpoint(job.id).await.unwrap(), Some(first.clone()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let claimed = store.claim_expired(&b).await.unwrap();
        assert_eq!(claimed.map(|c| c.job.id), Some(job.id));
        let late = serde_json::json!({"cut": [9, 9]});
        assert!(!store.save_checkpoint(&a, job.id, &late).await.unwrap());
        assert_eq!(store.checkpoint(job.id).await.unwrap(), Some(first));
        let second = serde_json::json!({"cut": [1, 2], "segments": {"0": []}});
        assert!(store.save_checkpoint(&b, job.id, &second).await.unwrap());
        assert_eq!(store.checkpoint(job.id).await.unwrap(), Some(second));
    }
}
