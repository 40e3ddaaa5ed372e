//! Backup schedules in the job database, and how exactly one replica starts each due run.
//!
//! A schedule row holds the schedule as posted, its immutable `uid` and when its next run is
//! due. Its runs are ordinary jobs carrying `schedule_id` (the name, for people) and
//! `schedule_uid` (what they are matched by: a schedule created under the name of a deleted
//! one has a fresh uid, so the old runs are never its runs). Nothing else is stored about
//! them, so the schedule's state can never disagree with its jobs: the newest completed run is
//! the tip its next run continues, and a running one keeps the next from starting.
//!
//! Starting a run is a [`RunClaim`] taken in the transaction that admits its job (under the
//! admission lock): it moves `next_run_at_ms` from the due time the replica saw to the next
//! one, only while no run of the schedule is running and the tip is still the one the run
//! continues. Of several replicas seeing the same due run, one claim succeeds.

use chrono::{DateTime, TimeZone, Utc};
use kvault_domain::job::JobId;
use kvault_domain::schedule::SchedulePlan;
use kvault_domain::{ClusterId, ScheduleId};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{JobStore, StoreError, StoredJob, COLUMNS};

/// A schedule about to be stored.
#[derive(Debug, Clone)]
pub struct NewSchedule {
    pub id: ScheduleId,
    /// Fresh for every schedule created, even under a name used before.
    pub uid: String,
    pub cluster_id: ClusterId,
    pub subject: String,
    pub request: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub next_run_at: Option<DateTime<Utc>>,
}

impl NewSchedule {
    /// A validated schedule created now by `subject`.
    pub fn planned(plan: &SchedulePlan, subject: &str, now: DateTime<Utc>) -> Self {
        NewSchedule {
            id: plan.schedule_id.clone(),
            uid: kvault_domain::ids::new_uid(),
            cluster_id: plan.cluster_id.clone(),
            subject: subject.to_owned(),
            request: serde_json::to_value(&plan.request).unwrap_or_default(),
            created_at: now,
            next_run_at: plan.cadence.first_run(now),
        }
    }
}

/// A schedule row.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSchedule {
    pub id: ScheduleId,
    /// The schedule's immutable uid: its runs are the jobs that carry it.
    pub uid: String,
    pub cluster_id: ClusterId,
    /// Who created it; its runs are started on its behalf.
    pub subject: String,
    pub request: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub next_run_at: Option<DateTime<Utc>>,
    /// Why the last due run could not start, if it could not.
    pub last_error: Option<String>,
}

/// Takes a schedule's due run; see the module doc.
#[derive(Debug, Clone)]
pub struct RunClaim {
    pub schedule_id: ScheduleId,
    /// The uid of the schedule the run belongs to; the claim fails if `schedule_id` now names
    /// another schedule.
    pub schedule_uid: String,
    /// The due time the replica saw (ms).
    pub due_at_ms: i64,
    /// The run after this one (ms); `None` when the schedule never runs again.
    pub next_run_at_ms: Option<i64>,
    /// The job id of the completed run this one continues (`None`: the first run).
    pub tip_job_id: Option<JobId>,
}

const SCHEDULE_COLUMNS: &str =
    "id, uid, cluster_id, subject, request, created_at_ms, next_run_at_ms, last_error";

/// The newest completed run that wrote a backup of the schedule whose uid is `$5`, as a
/// scalar subquery (a run that found nothing new names no backup).
const TIP: &str = "(SELECT id FROM jobs WHERE schedule_uid = $5 AND state = 'completed' \
     AND backup_id IS NOT NULL ORDER BY created_at_ms DESC, id DESC LIMIT 1)";

impl RunClaim {
    /// Moves the schedule to its next run if the run is still due and free to start.
    pub(super) async fn take(&self, tx: &mut Transaction<'_, Any>) -> Result<bool, StoreError> {
        let done = sqlx::query(&format!(
            "UPDATE schedules SET next_run_at_ms = $1, last_error = NULL \
             WHERE id = $2 AND uid = $5 AND next_run_at_ms = $3 \
             AND NOT EXISTS (SELECT 1 FROM jobs WHERE schedule_uid = $5 AND state = 'running') \
             AND COALESCE({TIP}, '') = $4"
        ))
        .bind(self.next_run_at_ms)
        .bind(self.schedule_id.as_str().to_owned())
        .bind(self.due_at_ms)
        .bind(self.tip_job_id.map(|id| id.to_string()).unwrap_or_default())
        .bind(self.schedule_uid.clone())
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

impl JobStore {
    /// Stores a schedule; `Ok(false)` when one with its id exists.
    pub async fn create_schedule(&self, schedule: &NewSchedule) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO schedules (id, cluster_id, subject, request, created_at_ms, \
             next_run_at_ms, uid) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
        )
        .bind(schedule.id.as_str().to_owned())
        .bind(schedule.cluster_id.as_str().to_owned())
        .bind(schedule.subject.clone())
        .bind(schedule.request.to_string())
        .bind(schedule.created_at.timestamp_millis())
        .bind(schedule.next_run_at.map(|t| t.timestamp_millis()))
        .bind(schedule.uid.clone())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn schedule(&self, id: &str) -> Result<Option<StoredSchedule>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = $1"
        ))
        .bind(id.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| StoredSchedule::from_row(&r)).transpose()
    }

    /// Every schedule, by id.
    pub async fn schedules(&self) -> Result<Vec<StoredSchedule>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(StoredSchedule::from_row).collect()
    }

    /// Schedules whose next run is due at `now`.
    pub async fn due_schedules(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<StoredSchedule>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE next_run_at_ms <= $1 \
             ORDER BY next_run_at_ms LIMIT 100"
        ))
        .bind(now.timestamp_millis())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(StoredSchedule::from_row).collect()
    }

    /// Deletes a schedule (its runs stay, as jobs and backups); `Ok(false)` when unknown.
    pub async fn delete_schedule(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM schedules WHERE id = $1")
            .bind(id.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A due run that cannot start (its topic is gone, say): skipped to the next one, with
    /// why. Compare-and-set on the due time, like a claim.
    pub async fn skip_run(
        &self,
        id: &str,
        due_at_ms: i64,
        next_run_at_ms: Option<i64>,
        error: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE schedules SET next_run_at_ms = $1, last_error = $2 \
             WHERE id = $3 AND next_run_at_ms = $4",
        )
        .bind(next_run_at_ms)
        .bind(error.to_owned())
        .bind(id.to_owned())
        .bind(due_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The runs of the schedule whose uid is `uid` (never those of an older schedule of the
    /// same name), newest first; only completed ones that wrote a backup when `completed` (a
    /// run that found nothing new names none).
    pub async fn schedule_runs(
        &self,
        uid: &str,
        completed: bool,
        limit: i64,
    ) -> Result<Vec<StoredJob>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE schedule_uid = $1 \
             AND ($2 = 0 OR (state = 'completed' AND backup_id IS NOT NULL)) \
             ORDER BY created_at_ms DESC, id DESC LIMIT $3"
        ))
        .bind(uid.to_owned())
        .bind(i64::from(completed))
        .bind(limit.max(1))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(StoredJob::from_row).collect()
    }
}

impl StoredSchedule {
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        let id: String = row.try_get("id")?;
        let corrupt = |reason: String| StoreError::Corrupt {
            id: id.clone(),
            reason,
        };
        let time = |ms: i64| {
            Utc.timestamp_millis_opt(ms)
                .single()
                .ok_or_else(|| corrupt(format!("bad timestamp {ms}")))
        };
        let request: String = row.try_get("request")?;
        let next: Option<i64> = row.try_get("next_run_at_ms")?;
        let uid: Option<String> = row.try_get("uid")?;
        let cluster_id: String = row.try_get("cluster_id")?;
        Ok(StoredSchedule {
            uid: uid.unwrap_or_else(|| format!("legacy-{id}")),
            cluster_id: ClusterId::parse(&cluster_id).map_err(|e| corrupt(e.to_string()))?,
            subject: row.try_get("subject")?,
            request: serde_json::from_str(&request).map_err(|e| corrupt(e.to_string()))?,
            created_at: time(row.try_get("created_at_ms")?)?,
            next_run_at: next.map(time).transpose()?,
            last_error: row.try_get("last_error")?,
            id: ScheduleId::parse(&id).map_err(|e| corrupt(e.to_string()))?,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use kvault_domain::{JobId, JobKind, JobProgress, JobState};

    use super::super::{Admission, Lease, NewJob};
    use super::*;

    fn run(schedule_id: &str) -> NewJob {
        NewJob {
            id: JobId::new(),
            kind: JobKind::Backup,
            cluster_id: Some("c".into()),
            target_cluster_id: None,
            subject: format!("schedule:{schedule_id}"),
            request: serde_json::json!({}),
            created_at: Utc::now(),
            backup_id: Some(format!("{schedule_id}-run")),
        }
    }

    /// Claims on one store: one winner per due run, none while a run goes on, none from a
    /// stale tip; skips; deletion.
    pub(crate) async fn exercise_schedules(store: &JobStore) {
        let now = Utc::now();
        let due = now.timestamp_millis() - 10;
        let schedule = NewSchedule {
            id: ScheduleId::parse("nightly").unwrap(),
            uid: "uid-1".into(),
            cluster_id: ClusterId::parse("c").unwrap(),
            subject: "ops".into(),
            request: serde_json::json!({"topic": "t", "every": "1m"}),
            created_at: now,
            next_run_at: Utc.timestamp_millis_opt(due).single(),
        };
        assert!(store.create_schedule(&schedule).await.unwrap());
        assert!(!store.create_schedule(&schedule).await.unwrap());
        let got = store.due_schedules(now).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].request["every"], "1m");
        let lease = Lease::new("a", Duration::from_secs(10));
        let claim = RunClaim {
            schedule_id: ScheduleId::parse("nightly").unwrap(),
            schedule_uid: "uid-1".into(),
            due_at_ms: due,
            next_run_at_ms: Some(due + 60_000),
            tip_job_id: None,
        };
        let (first, second) = (run("nightly"), run("nightly"));
        let (a, b) = tokio::join!(
            store.admit_claimed(&first, &lease, None, Some(&claim)),
            store.admit_claimed(&second, &lease, None, Some(&claim))
        );
        let mut outcomes = [a.unwrap(), b.unwrap()];
        outcomes.sort_by_key(|o| *o as u8);
        assert_eq!(outcomes, [Admission::Admitted, Admission::NotDue]);
        assert!(store.due_schedules(now).await.unwrap().is_empty());
        let winner = if store.get(first.id).await.unwrap().is_some() {
            first
        } else {
            second
        };
        assert_eq!(
            store
                .get(winner.id)
                .await
                .unwrap()
                .unwrap()
                .job
                .schedule_id
                .as_deref(),
            Some("nightly")
        );
        // Due again while the first run still runs: not claimable.
        let again = RunClaim {
            due_at_ms: due + 60_000,
            next_run_at_ms: Some(due + 120_000),
            ..claim.clone()
        };
        assert!(store
            .skip_run("nightly", due + 60_000, Some(due + 60_000), "x")
            .await
            .unwrap());
        assert_eq!(
            store
                .admit_claimed(&run("nightly"), &lease, None, Some(&again))
                .await
                .unwrap(),
            Admission::NotDue
        );
        let progress = JobProgress::default();
        assert!(store
            .finish(
                "a",
                winner.id,
                JobState::Completed,
                None,
                None,
                progress,
                now,
                1
            )
            .await
            .unwrap());
        // Finished: a claim naming no tip is stale now; one naming the finished run wins.
        assert_eq!(
            store
                .admit_claimed(&run("nightly"), &lease, None, Some(&again))
                .await
                .unwrap(),
            Admission::NotDue
        );
        let fresh = RunClaim {
            tip_job_id: Some(winner.id),
            ..again
        };
        assert_eq!(
            store
                .admit_claimed(&run("nightly"), &lease, None, Some(&fresh))
                .await
                .unwrap(),
            Admission::Admitted
        );
        let runs = store.schedule_runs("uid-1", false, 10).await.unwrap();
        assert_eq!(runs.len(), 2);
        let done = store.schedule_runs("uid-1", true, 10).await.unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].job.id, winner.id);
        let listed = store.schedule("nightly").await.unwrap().unwrap();
        assert_eq!(listed.last_error, None, "a claim clears the last error");
        assert_eq!(
            listed.next_run_at.unwrap().timestamp_millis(),
            due + 120_000
        );
        assert!(store.delete_schedule("nightly").await.unwrap());
        assert!(!store.delete_schedule("nightly").await.unwrap());
        assert!(store.schedules().await.unwrap().is_empty());
        // Created again under the same name: a new uid, none of the old runs, and its first
        // run continues nothing (a claim naming the old tip is stale).
        let again = NewSchedule {
            uid: "uid-2".into(),
            ..schedule
        };
        assert!(store.create_schedule(&again).await.unwrap());
        assert!(store
            .schedule_runs("uid-2", false, 10)
            .await
            .unwrap()
            .is_empty());
        let stale = RunClaim {
            schedule_uid: "uid-2".into(),
            ..fresh.clone()
        };
        let first = RunClaim {
            schedule_uid: "uid-2".into(),
            ..claim
        };
        assert_eq!(
            store
                .admit_claimed(&run("nightly"), &lease, None, Some(&stale))
                .await
                .unwrap(),
            Admission::NotDue
        );
        assert_eq!(
            store
                .admit_claimed(&run("nightly"), &lease, None, Some(&first))
                .await
                .unwrap(),
            Admission::Admitted
        );
        // A claim for the deleted schedule's uid does not take the new one's run.
        let old = RunClaim {
            due_at_ms: due + 60_000,
            ..fresh
        };
        assert_eq!(
            store
                .admit_claimed(&run("nightly"), &lease, None, Some(&old))
                .await
                .unwrap(),
            Admission::NotDue
        );
        assert!(store.delete_schedule("nightly").await.unwrap());
    }
}
