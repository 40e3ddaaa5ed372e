//! A job's attempts (`job_attempts`: one row at admission, one more per takeover) and its
//! journal column: the statements behind `GET /jobs/{id}`'s `attempts` and behind
//! [`super::StoredJournal`]. Every write is fenced by ownership: only the replica holding the
//! job's lease changes its journal or its attempt's notes.

use chrono::{TimeZone, Utc};
use kvault_domain::{JobAttempt, JobId};
use sqlx::{Any, Row, Transaction};

use super::{JobStore, StoreError};

impl JobStore {
    /// Notes attempt `attempt` of job `id`, started now (by the database's clock) on `owner`.
    pub(super) async fn note_attempt(
        &self,
        tx: &mut Transaction<'_, Any>,
        id: &str,
        attempt: u64,
        owner: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO job_attempts (job_id, attempt, owner, started_at_ms) \
             VALUES ($1, $2, $3, {}) ON CONFLICT DO NOTHING",
            self.now_ms()
        ))
        .bind(id.to_owned())
        .bind(super::clamp_i64(attempt))
        .bind(owner.to_owned())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Every attempt at job `id`, oldest first.
    pub async fn attempts(&self, id: JobId) -> Result<Vec<JobAttempt>, StoreError> {
        let rows = sqlx::query(
            "SELECT attempt, owner, started_at_ms, resumed_from FROM job_attempts \
             WHERE job_id = $1 ORDER BY attempt",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let corrupt = |reason: String| StoreError::Corrupt {
            id: id.to_string(),
            reason,
        };
        rows.iter()
            .map(|row| {
                let ms: i64 = row.try_get("started_at_ms")?;
                let resumed: Option<String> = row.try_get("resumed_from")?;
                Ok(JobAttempt {
                    attempt: row.try_get::<i64, _>("attempt")?.max(1) as u64,
                    started_at: Utc
                        .timestamp_millis_opt(ms)
                        .single()
                        .ok_or_else(|| corrupt(format!("bad attempt time {ms}")))?,
                    replica: row.try_get("owner")?,
                    resumed_from: resumed
                        .map(|raw| serde_json::from_str(&raw))
                        .transpose()
                        .map_err(|e| corrupt(format!("resumed_from: {e}")))?,
                })
            })
            .collect()
    }

    /// Stores job `id`'s journal; false when `owner` no longer holds the running job.
    pub async fn write_journal(
        &self,
        owner: &str,
        id: JobId,
        journal: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET journal = $1 WHERE id = $2 AND owner = $3 AND state = 'running'",
        )
        .bind(journal.to_string())
        .bind(id.to_string())
        .bind(owner.to_owned())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Notes where attempt `attempt` of job `id` continued; false when `owner` no longer holds
    /// the running job.
    pub async fn write_resumed_from(
        &self,
        owner: &str,
        id: JobId,
        attempt: u64,
        resumed_from: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE job_attempts SET resumed_from = $1 WHERE job_id = $2 AND attempt = $3 \
             AND EXISTS (SELECT 1 FROM jobs WHERE id = $2 AND owner = $4 AND state = 'running')",
        )
        .bind(resumed_from.to_string())
        .bind(id.to_string())
        .bind(super::clamp_i64(attempt))
        .bind(owner.to_owned())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
