//! One writer per target: the topics a restore or migration writes into are stored with its
//! job (`job_targets`), and admission refuses a job one of whose topics a running job holds.
//! The check and the insert run in the admission transaction, under the admission lock, so of
//! two replicas admitting writers into one topic at the same moment exactly one succeeds.

use std::collections::BTreeSet;

use kvault_domain::job::JobId;
use kvault_domain::ClusterId;
use sqlx::{Any, Transaction};

use super::StoreError;

/// A topic a job writes into.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct JobTarget {
    pub cluster_id: ClusterId,
    pub topic: String,
}

impl JobTarget {
    pub fn new(cluster_id: ClusterId, topic: impl Into<String>) -> Self {
        Self {
            cluster_id,
            topic: topic.into(),
        }
    }
}

/// The running job that holds a topic a new job asked to write into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldTarget {
    pub target: JobTarget,
    pub job_id: JobId,
    /// `restore` or `migrate`.
    pub kind: String,
}

/// The running job writing into one of `targets`, if any.
pub(super) async fn holder(
    tx: &mut Transaction<'_, Any>,
    targets: &[JobTarget],
) -> Result<Option<HeldTarget>, StoreError> {
    for target in targets {
        let held: Option<(String, String)> = sqlx::query_as(
            "SELECT t.job_id, j.kind FROM job_targets t JOIN jobs j ON j.id = t.job_id \
             WHERE t.cluster_id = $1 AND t.topic = $2 AND j.state = 'running' LIMIT 1",
        )
        .bind(target.cluster_id.as_str().to_owned())
        .bind(target.topic.clone())
        .fetch_optional(&mut **tx)
        .await?;
        if let Some((job_id, kind)) = held {
            let uuid = uuid::Uuid::parse_str(&job_id).map_err(|e| StoreError::Corrupt {
                id: job_id.clone(),
                reason: e.to_string(),
            })?;
            return Ok(Some(HeldTarget {
                target: target.clone(),
                job_id: JobId(uuid),
                kind,
            }));
        }
    }
    Ok(None)
}

/// Stores `targets` as job `job_id`'s.
pub(super) async fn record(
    tx: &mut Transaction<'_, Any>,
    job_id: JobId,
    targets: &[JobTarget],
) -> Result<(), StoreError> {
    let distinct: BTreeSet<&JobTarget> = targets.iter().collect();
    for target in distinct {
        sqlx::query("INSERT INTO job_targets (job_id, cluster_id, topic) VALUES ($1, $2, $3)")
            .bind(job_id.to_string())
            .bind(target.cluster_id.as_str().to_owned())
            .bind(target.topic.clone())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
