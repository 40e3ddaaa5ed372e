//! Leases: how several replicas share one job table. A job is admitted as `running` and owned
//! by the replica that admitted it until its lease expires; the owner's heartbeat renews the
//! lease (and records progress); a replica takes over a job whose lease has expired (its owner
//! was killed, lost the network or the database). Only the owner records a job's end.
//!
//! Lease times are the database's: every write of `lease_expires_at_ms` and every expiry test
//! reads the database's clock in SQL, never a replica's, so a replica whose clock is off cannot
//! take over a live job nor keep a dead one's lease alive.
//!
//! Claims are compare-and-set updates (`... WHERE id = $1 AND lease expired`), which work the
//! same on PostgreSQL and SQLite: of two replicas claiming one job exactly one updates the row.
//! Admission under a concurrency limit counts running jobs and inserts in one transaction that
//! holds a PostgreSQL advisory lock, so N replicas together admit exactly the limit; the same
//! transaction refuses a writer into a topic another running job writes (`super::targets`).

use std::time::Duration;

use kvault_domain::{JobId, JobKind, JobProgress};

use super::schedules::RunClaim;
use super::targets::{self, HeldTarget, JobTarget};
use super::{clamp_i64, JobStore, NewJob, StoreError, StoredJob, COLUMNS};

/// Advisory lock key serializing admissions across replicas ("kvault" in ASCII).
const ADMISSION_LOCK: i64 = 0x6b_76_61_75_6c_74;

/// The database's clock in Unix milliseconds, as SQL. SQLite is one process on one machine, so
/// its clock is the local one.
const POSTGRES_NOW_MS: &str = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)";
const SQLITE_NOW_MS: &str = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";

/// Who holds leases and for how long each renewal lasts.
#[derive(Debug, Clone)]
pub struct Lease {
    pub owner: String,
    pub ttl: Duration,
}

impl Lease {
    pub fn new(owner: impl Into<String>, ttl: Duration) -> Self {
        Self {
            owner: owner.into(),
            ttl,
        }
    }

    fn ttl_ms(&self) -> i64 {
        clamp_i64(self.ttl.as_millis() as u64)
    }
}

/// What became of a job offered for admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// The concurrency limit is reached.
    Full,
    /// A scheduled run whose claim failed: another replica started it, a run of the schedule
    /// is still going, or the schedule changed or went away.
    NotDue,
    /// A running job writes into one of the job's target topics.
    TargetHeld,
}

/// An admission and, when refused as [`Admission::TargetHeld`], the job holding the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub admission: Admission,
    pub held: Option<HeldTarget>,
}

impl Verdict {
    fn of(admission: Admission) -> Self {
        Self {
            admission,
            held: None,
        }
    }
}

/// A concurrency limit a new job must fit under: at most `max` running jobs of `kind` on
/// `cluster_id` (on every cluster together when `None`).
#[derive(Debug, Clone)]
pub struct Capacity {
    pub kind: JobKind,
    pub cluster_id: Option<String>,
    pub max: usize,
}

impl JobStore {
    /// The database's clock in Unix milliseconds, as an SQL expression.
    pub(super) fn now_ms(&self) -> &'static str {
        if self.postgres {
            POSTGRES_NOW_MS
        } else {
            SQLITE_NOW_MS
        }
    }

    /// Stores `job` as `running` under `lease` if it fits `capacity`; `Ok(false)` when the
    /// limit is reached (nothing is stored).
    pub async fn admit(
        &self,
        job: &NewJob,
        lease: &Lease,
        capacity: Option<&Capacity>,
    ) -> Result<bool, StoreError> {
        let admission = self.admit_claimed(job, lease, capacity, None).await?;
        Ok(admission == Admission::Admitted)
    }

    /// [`Self::admit`] for a scheduled run: in the same transaction, `claim` takes the
    /// schedule's due run (see [`RunClaim`]); nothing is stored unless both succeed.
    pub async fn admit_claimed(
        &self,
        job: &NewJob,
        lease: &Lease,
        capacity: Option<&Capacity>,
        claim: Option<&RunClaim>,
    ) -> Result<Admission, StoreError> {
        let verdict = self.admit_writer(job, &[], lease, capacity, claim).await?;
        Ok(verdict.admission)
    }

    /// [`Self::admit_claimed`] for a job that writes into `targets`: refused as
    /// [`Admission::TargetHeld`] (naming the holder) while a running job writes into one of
    /// them, checked before the concurrency limit.
    pub async fn admit_writer(
        &self,
        job: &NewJob,
        targets: &[JobTarget],
        lease: &Lease,
        capacity: Option<&Capacity>,
        claim: Option<&RunClaim>,
    ) -> Result<Verdict, StoreError> {
        let _one_at_a_time = self.admission.lock().await;
        let mut tx = self.pool.begin().await?;
        if self.postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(ADMISSION_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(claim) = claim {
            if !claim.take(&mut tx).await? {
                tx.rollback().await?;
                return Ok(Verdict::of(Admission::NotDue));
            }
        }
        if let Some(held) = targets::holder(&mut tx, targets).await? {
            tx.rollback().await?;
            return Ok(Verdict {
                admission: Admission::TargetHeld,
                held: Some(held),
            });
        }
        if let Some(c) = capacity {
            let running: i64 = sqlx::query_scalar(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM jobs WHERE state = 'running' \
                 AND kind = $1 AND ($2 IS NULL OR cluster_id = $2)",
            )
            .bind(c.kind.as_str())
            .bind(c.cluster_id.clone())
            .fetch_one(&mut *tx)
            .await?;
            if running >= clamp_i64(c.max as u64) {
                tx.rollback().await?;
                return Ok(Verdict::of(Admission::Full));
            }
        }
        sqlx::query(&format!(
            "INSERT INTO jobs (id, kind, cluster_id, subject, state, request, created_at_ms, \
             owner, lease_expires_at_ms, backup_id, target_cluster_id, schedule_id, \
             schedule_uid, journal) \
             VALUES ($1, $2, $3, $4, 'running', $5, $6, $7, {} + $8, $9, $10, $11, $12, '{{}}')",
            self.now_ms()
        ))
        .bind(job.id.to_string())
        .bind(job.kind.as_str())
        .bind(job.cluster_id.clone())
        .bind(job.subject.clone())
        .bind(job.request.to_string())
        .bind(job.created_at.timestamp_millis())
        .bind(lease.owner.clone())
        .bind(lease.ttl_ms())
        .bind(job.backup_id.clone())
        .bind(job.target_cluster_id.clone())
        .bind(claim.map(|c| c.schedule_id.as_str().to_owned()))
        .bind(claim.map(|c| c.schedule_uid.clone()))
        .execute(&mut *tx)
        .await?;
        targets::record(&mut tx, job.id, targets).await?;
        self.note_attempt(&mut tx, &job.id.to_string(), 1, &lease.owner)
            .await?;
        tx.commit().await?;
        Ok(Verdict::of(Admission::Admitted))
    }

    /// Renews the lease of running job `id` and records its progress. `Ok(false)` when the job
    /// is no longer this owner's (taken over, or ended).
    pub async fn renew(
        &self,
        lease: &Lease,
        id: JobId,
        progress: JobProgress,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(&format!(
            "UPDATE jobs SET lease_expires_at_ms = {} + $1, progress_messages = $2, \
             progress_bytes = $3, progress_total = $6 \
             WHERE id = $4 AND owner = $5 AND state = 'running'",
            self.now_ms()
        ))
        .bind(lease.ttl_ms())
        .bind(clamp_i64(progress.messages))
        .bind(clamp_i64(progress.bytes))
        .bind(id.to_string())
        .bind(lease.owner.clone())
        .bind(progress.total_messages.map(clamp_i64))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Takes over the oldest running job whose lease has expired by the database's clock, if
    /// any.
    pub async fn claim_expired(&self, lease: &Lease) -> Result<Option<StoredJob>, StoreError> {
        let now = self.now_ms();
        let candidates: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT id FROM jobs WHERE state = 'running' \
             AND COALESCE(lease_expires_at_ms, 0) < {now} ORDER BY created_at_ms LIMIT 8"
        ))
        .fetch_all(&self.pool)
        .await?;
        for id in candidates {
            // The claim and its attempt's row together: an attempt is noted exactly once.
            let mut tx = self.pool.begin().await?;
            let claimed = sqlx::query(&format!(
                "UPDATE jobs SET owner = $1, lease_expires_at_ms = {now} + $2, \
                 attempts = attempts + 1 \
                 WHERE id = $3 AND state = 'running' AND COALESCE(lease_expires_at_ms, 0) < {now}"
            ))
            .bind(lease.owner.clone())
            .bind(lease.ttl_ms())
            .bind(id.clone())
            .execute(&mut *tx)
            .await?;
            if claimed.rows_affected() == 1 {
                let row = sqlx::query(&format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"))
                    .bind(id.clone())
                    .fetch_one(&mut *tx)
                    .await?;
                let job = StoredJob::from_row(&row)?;
                self.note_attempt(&mut tx, &id, job.attempts, &lease.owner)
                    .await?;
                tx.commit().await?;
                return Ok(Some(job));
            }
            tx.rollback().await?;
        }
        Ok(None)
    }

    /// Gives job `id` up at once (graceful shutdown): another replica takes it over on its
    /// next look instead of waiting for the lease to run out.
    pub async fn release(&self, lease: &Lease, id: JobId) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_expires_at_ms = 0 \
             WHERE id = $1 AND owner = $2 AND state = 'running'",
        )
        .bind(id.to_string())
        .bind(lease.owner.clone())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Backups read or written by a running job on any replica.
    pub async fn backups_in_use(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT backup_id FROM jobs WHERE state = 'running' AND backup_id IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().collect())
    }

    /// Running jobs of `kind` on every replica (for metrics and tests of the limits).
    pub async fn running(&self, kind: JobKind) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM jobs WHERE state = 'running' AND kind = $1",
        )
        .bind(kind.as_str())
        .fetch_one(&self.pool)
        .await?)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::Utc;
    use kvault_domain::JobState;

    /// Two replicas on one store: renewals, expiry, a single winner of a takeover, release.
    pub(crate) async fn exercise_leases(store: &JobStore) {
        let a = Lease::new("a", Duration::from_millis(200));
        let b = Lease::new("b", Duration::from_secs(10));
        let job = NewJob {
            id: JobId::new(),
            kind: JobKind::Drain,
            cluster_id: Some("c".into()),
            target_cluster_id: None,
            subject: "s".into(),
            request: serde_json::json!({}),
            created_at: Utc::now(),
            backup_id: None,
        };
        assert!(store.admit(&job, &a, None).await.unwrap());
        // Written by the database's clock: the ttl ahead of it.
        let left: i64 = sqlx::query_scalar(&format!(
            "SELECT lease_expires_at_ms - {} FROM jobs WHERE id = $1",
            store.now_ms()
        ))
        .bind(job.id.to_string())
        .fetch_one(&store.pool)
        .await
        .unwrap();
        assert!(
            (-5_000..=200).contains(&left),
            "lease ends {left} ms from now"
        );
        let progress = JobProgress {
            messages: 5,
            bytes: 50,
            total_messages: Some(20),
            ..Default::default()
        };
        assert!(store.renew(&a, job.id, progress).await.unwrap());
        // Not expired yet: nobody can take it.
        assert!(store.claim_expired(&b).await.unwrap().is_none());
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (first, second) = tokio::join!(store.claim_expired(&b), store.claim_expired(&b));
        let claimed: Vec<StoredJob> = [first.unwrap(), second.unwrap()]
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].job.id, job.id);
        assert_eq!(claimed[0].owner.as_deref(), Some("b"));
        assert_eq!(claimed[0].attempts, 2);
        assert_eq!(claimed[0].job.progress.messages, 5);
        assert_eq!(claimed[0].job.progress.total_messages, Some(20));
        assert_eq!(claimed[0].job.progress.percent, Some(25.0));
        // Each attempt is noted once, with the replica that ran it.
        let attempts = store.attempts(job.id).await.unwrap();
        let replicas: Vec<(u64, &str)> = attempts
            .iter()
            .map(|a| (a.attempt, a.replica.as_str()))
            .collect();
        assert_eq!(replicas, vec![(1, "a"), (2, "b")]);
        // Only the owner writes the journal and its attempt's notes.
        let journal = serde_json::json!({"started": {}});
        assert!(store.write_journal("b", job.id, &journal).await.unwrap());
        assert!(!store.write_journal("a", job.id, &journal).await.unwrap());
        let notes = serde_json::json!([{"target_topic": "t", "partitions": []}]);
        assert!(!store
            .write_resumed_from("a", job.id, 2, &notes)
            .await
            .unwrap());
        assert!(store
            .write_resumed_from("b", job.id, 2, &notes)
            .await
            .unwrap());
        let attempts = store.attempts(job.id).await.unwrap();
        assert_eq!(attempts[1].resumed_from.as_ref(), Some(&notes));
        assert_eq!(attempts[0].resumed_from, None);
        let stored = store.get(job.id).await.unwrap().unwrap();
        assert_eq!(stored.journal, Some(journal));
        // The old owner has lost it: no renewal, no ending.
        assert!(!store.renew(&a, job.id, progress).await.unwrap());
        let now = Utc::now();
        assert!(!store
            .finish(
                "a",
                job.id,
                JobState::Completed,
                None,
                None,
                progress,
                now,
                1
            )
            .await
            .unwrap());
        // Released: claimable at once.
        assert!(store.release(&b, job.id).await.unwrap());
        let again = store.claim_expired(&a).await.unwrap().unwrap();
        assert_eq!(again.attempts, 3);
        assert!(store
            .finish(
                "a",
                job.id,
                JobState::Completed,
                None,
                None,
                progress,
                now,
                1
            )
            .await
            .unwrap());
        assert_eq!(store.running(JobKind::Drain).await.unwrap(), 0);
    }

    fn writer(kind: JobKind, cluster: &str) -> NewJob {
        NewJob {
            id: JobId::new(),
            kind,
            cluster_id: Some(cluster.into()),
            target_cluster_id: None,
            subject: "s".into(),
            request: serde_json::json!({}),
            created_at: Utc::now(),
            backup_id: None,
        }
    }

    fn target(cluster: &str, topic: &str) -> JobTarget {
        JobTarget::new(kvault_domain::ClusterId::parse(cluster).unwrap(), topic)
    }

    /// One writer per target: a job into a held topic is refused naming the holder, other
    /// topics and clusters are free, and the topic is free again once the holder ends.
    pub(crate) async fn exercise_targets(store: &JobStore) {
        let lease = Lease::new("a", Duration::from_secs(10));
        let (t, u) = (target("c", "t"), target("c", "u"));
        let set = writer(JobKind::Restore, "c");
        let verdict = store
            .admit_writer(&set, &[t.clone(), u.clone(), t.clone()], &lease, None, None)
            .await
            .unwrap();
        assert_eq!(verdict, Verdict::of(Admission::Admitted));
        let second = writer(JobKind::Migrate, "src");
        let verdict = store
            .admit_writer(&second, std::slice::from_ref(&u), &lease, None, None)
            .await
            .unwrap();
        assert_eq!(verdict.admission, Admission::TargetHeld);
        let held = verdict.held.unwrap();
        assert_eq!((held.target, held.job_id), (u.clone(), set.id));
        assert_eq!(held.kind, "restore");
        assert!(store.get(second.id).await.unwrap().is_none());
        for free in [target("c", "v"), target("d", "t")] {
            let job = writer(JobKind::Restore, free.cluster_id.as_str());
            let verdict = store.admit_writer(&job, &[free], &lease, None, None).await;
            assert_eq!(verdict.unwrap().admission, Admission::Admitted);
        }
        let progress = JobProgress::default();
        let now = Utc::now();
        let ended = store.finish("a", set.id, JobState::Failed, None, None, progress, now, 1);
        assert!(ended.await.unwrap());
        let verdict = store.admit_writer(&second, &[u], &lease, None, None).await;
        assert_eq!(verdict.unwrap().admission, Admission::Admitted);
    }
}
