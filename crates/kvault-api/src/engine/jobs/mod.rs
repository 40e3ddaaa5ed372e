//! Job state in a SQL database through `sqlx::Any`: PostgreSQL in production and tests, an
//! SQLite file as the zero-setup default. Both run the same queries; the two migration folders
//! (`migrations/postgres`, `migrations/sqlite`) define the same columns with portable types
//! (times as Unix milliseconds, JSON as text).

use crate::telemetry::figures::{JobFigures, JobGroup};
use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};
use kvault_domain::{Job, JobId, JobKind, JobProgress, JobState};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job store: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("job store migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("job store: cannot create the database directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("job store: row {id} is unreadable: {reason}")]
    Corrupt { id: String, reason: String },
}

mod attempts;
mod checkpoints;
mod journal;
mod leases;
mod schedules;
mod targets;
pub use journal::{JournalState, StoredJournal};
pub use leases::{Admission, Capacity, Lease, Verdict};
pub use schedules::{NewSchedule, RunClaim, StoredSchedule};
pub use targets::{HeldTarget, JobTarget};

/// A job about to be stored as `running`.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: JobId,
    pub kind: JobKind,
    pub cluster_id: Option<String>,
    /// The cluster a migration writes into.
    pub target_cluster_id: Option<String>,
    pub subject: String,
    pub request: serde_json::Value,
    pub created_at: DateTime<Utc>,
    /// The backup the job writes or reads.
    pub backup_id: Option<String>,
}

/// Filters for [`JobStore::list`].
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub kind: Option<JobKind>,
    pub state: Option<JobState>,
    pub cluster_id: Option<String>,
    /// Only jobs on these clusters (and jobs without one); `None`: every cluster. Applied in
    /// the query, so a scoped token gets full pages.
    pub allowed_clusters: Option<Vec<String>>,
    pub limit: i64,
}

#[derive(Clone)]
pub struct JobStore {
    pool: AnyPool,
    /// PostgreSQL (several replicas may share it) rather than SQLite (one process).
    postgres: bool,
    /// Admissions of this process, one at a time (PostgreSQL also takes an advisory lock, so
    /// admissions of every replica are serialized).
    admission: std::sync::Arc<tokio::sync::Mutex<()>>,
}

const COLUMNS: &str = "id, kind, cluster_id, subject, state, request, result, error, \
    progress_messages, progress_bytes, created_at_ms, finished_at_ms, duration_ms, owner, \
    backup_id, attempts, target_cluster_id, schedule_id, progress_total, journal";

impl JobStore {
    /// Connects (creating an SQLite file and its directory when needed) and runs the migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        if let Some(path) = sqlite_file(url) {
            if let Some(dir) = Path::new(&path)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                    path: dir.display().to_string(),
                    source,
                })?;
            }
        }
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .connect(url)
            .await?;
        let store = Self {
            pool,
            postgres: !url.starts_with("sqlite:"),
            admission: Default::default(),
        };
        if url.starts_with("sqlite:") {
            SQLITE_MIGRATIONS.run(&store.pool).await?;
        } else {
            POSTGRES_MIGRATIONS.run(&store.pool).await?;
        }
        Ok(store)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Records how a running job ended. Returns false when the job is no longer `running` under
    /// `owner` (another replica took it over, or it already ended): an end is written only once,
    /// by the replica holding the job.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish(
        &self,
        owner: &str,
        id: JobId,
        state: JobState,
        result: Option<&serde_json::Value>,
        error: Option<&serde_json::Value>,
        progress: JobProgress,
        finished_at: DateTime<Utc>,
        duration_ms: u64,
    ) -> Result<bool, StoreError> {
        // A scheduled run that found nothing new wrote no archive: it names none, so the
        // schedule's tip (and retention) stays on the last run that wrote one.
        let wrote_nothing = result
            .and_then(|r| r.get("status"))
            .is_some_and(|status| status == "nothing_new");
        let done = sqlx::query(
            "UPDATE jobs SET state = $1, result = $2, error = $3, progress_messages = $4, \
             progress_bytes = $5, finished_at_ms = $6, duration_ms = $7, \
             backup_id = CASE WHEN $10 = 1 THEN NULL ELSE backup_id END, progress_total = $11 \
             WHERE id = $8 AND state = 'running' AND owner = $9",
        )
        .bind(state.as_str())
        .bind(result.map(|v| v.to_string()))
        .bind(error.map(|v| v.to_string()))
        .bind(clamp_i64(progress.messages))
        .bind(clamp_i64(progress.bytes))
        .bind(finished_at.timestamp_millis())
        .bind(clamp_i64(duration_ms))
        .bind(id.to_string())
        .bind(owner.to_owned())
        .bind(i64::from(wrote_nothing))
        .bind(progress.total_messages.map(clamp_i64))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn get(&self, id: JobId) -> Result<Option<StoredJob>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| StoredJob::from_row(&r)).transpose()
    }

    /// Newest first.
    pub async fn list(&self, filter: &JobFilter) -> Result<Vec<StoredJob>, StoreError> {
        // Optional filters as `($n IS NULL OR col = $n)`, so one statement serves every
        // combination on both databases.
        let allowed = match &filter.allowed_clusters {
            None => String::new(),
            Some(ids) if ids.is_empty() => " AND cluster_id IS NULL".to_owned(),
            Some(ids) => {
                // A migration is visible from either end: its source or its target.
                let placeholders: Vec<String> =
                    (0..ids.len()).map(|i| format!("${}", i + 5)).collect();
                let placeholders = placeholders.join(", ");
                format!(
                    " AND (cluster_id IS NULL OR cluster_id IN ({placeholders}) \
                     OR target_cluster_id IN ({placeholders}))"
                )
            }
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM jobs \
             WHERE ($1 IS NULL OR kind = $1) AND ($2 IS NULL OR state = $2) \
             AND ($3 IS NULL OR cluster_id = $3 OR target_cluster_id = $3){allowed} \
             ORDER BY created_at_ms DESC, id LIMIT $4"
        );
        let mut query = sqlx::query(&sql)
            .bind(filter.kind.map(|k| k.as_str().to_owned()))
            .bind(filter.state.map(|s| s.as_str().to_owned()))
            .bind(filter.cluster_id.clone())
            .bind(filter.limit.max(1));
        for id in filter.allowed_clusters.iter().flatten() {
            query = query.bind(id.clone());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(StoredJob::from_row).collect()
    }

    /// Every figure monitoring needs, in one scan of the table: per `(kind, state)` the job
    /// count, how many ended at or after `since` (start of the UTC day for metrics) and the
    /// summed duration of those with one.
    pub async fn figures(&self, since: DateTime<Utc>) -> Result<JobFigures, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, state, CAST(COUNT(*) AS BIGINT), \
               CAST(COALESCE(SUM(CASE WHEN finished_at_ms >= $1 THEN 1 ELSE 0 END), 0) AS BIGINT), \
               CAST(COALESCE(SUM(duration_ms), 0) AS BIGINT), \
               CAST(COUNT(duration_ms) AS BIGINT) \
             FROM jobs GROUP BY kind, state ORDER BY kind, state",
        )
        .bind(since.timestamp_millis())
        .fetch_all(&self.pool)
        .await?;
        let groups = rows
            .iter()
            .map(|r| {
                Ok(JobGroup {
                    kind: r.try_get(0)?,
                    state: r.try_get(1)?,
                    count: r.try_get(2)?,
                    finished_since: r.try_get(3)?,
                    duration_sum_ms: r.try_get(4)?,
                    with_duration: r.try_get(5)?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(JobFigures { groups })
    }
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The file behind an `sqlite://path?opts` URL, when it is a file.
fn sqlite_file(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| path.to_owned())
}

/// A job row.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredJob {
    pub job: Job,
    pub subject: String,
    pub duration_ms: Option<u64>,
    /// The replica holding the job's lease.
    pub owner: Option<String>,
    pub backup_id: Option<String>,
    /// 1, plus one per takeover.
    pub attempts: u64,
    /// What the job recorded to be continued exactly (see `journal`).
    pub journal: Option<serde_json::Value>,
}

impl StoredJob {
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        let id: String = row.try_get("id")?;
        let corrupt = |reason: String| StoreError::Corrupt {
            id: id.clone(),
            reason,
        };
        let json = |col: &str| -> Result<Option<serde_json::Value>, StoreError> {
            let raw: Option<String> = row.try_get(col)?;
            raw.map(|s| serde_json::from_str(&s))
                .transpose()
                .map_err(|e| corrupt(format!("{col}: {e}")))
        };
        let time = |ms: i64| {
            Utc.timestamp_millis_opt(ms)
                .single()
                .ok_or_else(|| corrupt(format!("bad timestamp {ms}")))
        };
        let uuid = uuid::Uuid::parse_str(&id).map_err(|e| corrupt(e.to_string()))?;
        let kind: String = row.try_get("kind")?;
        let state: String = row.try_get("state")?;
        let created_ms: i64 = row.try_get("created_at_ms")?;
        let finished_ms: Option<i64> = row.try_get("finished_at_ms")?;
        let duration_ms: Option<i64> = row.try_get("duration_ms")?;
        let messages: i64 = row.try_get("progress_messages")?;
        let bytes: i64 = row.try_get("progress_bytes")?;
        let total: Option<i64> = row.try_get("progress_total")?;
        let created_at = time(created_ms)?;
        let finished_at = finished_ms.map(time).transpose()?;
        let state: JobState = state.parse().map_err(corrupt)?;
        // A running job's rate is over the time since it started: it has no duration yet.
        let secs = match (duration_ms, state.is_terminal()) {
            (Some(ms), _) => ms as f64 / 1000.0,
            (None, false) => (Utc::now() - created_at).num_milliseconds().max(0) as f64 / 1000.0,
            (None, true) => 0.0,
        };
        Ok(StoredJob {
            job: Job {
                id: JobId(uuid),
                kind: kind.parse().map_err(corrupt)?,
                cluster_id: row.try_get("cluster_id")?,
                target_cluster_id: row.try_get("target_cluster_id")?,
                state,
                request: json("request")?.unwrap_or(serde_json::Value::Null),
                result: json("result")?,
                error: json("error")?,
                progress: JobProgress::from_counts(
                    messages.max(0) as u64,
                    bytes.max(0) as u64,
                    total.map(|t| t.max(0) as u64),
                    secs,
                )
                .ended_if(state.is_terminal()),
                created_at,
                finished_at,
                schedule_id: row.try_get("schedule_id")?,
                attempts: Vec::new(),
            },
            subject: row.try_get("subject")?,
            duration_ms: duration_ms.map(|d| d.max(0) as u64),
            owner: row.try_get("owner")?,
            backup_id: row.try_get("backup_id")?,
            attempts: row.try_get::<i64, _>("attempts")?.max(1) as u64,
            journal: json("journal")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_file("sqlite://./data/kvault.db?mode=rwc").as_deref(),
            Some("./data/kvault.db")
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://x/y"), None);
    }

    #[tokio::test]
    async fn sqlite_store_round_trips_a_job() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/sub/jobs.db?mode=rwc", dir.path().display());
        let store = JobStore::connect(&url, 2).await.unwrap();
        exercise(&store).await;
    }

    /// The same checks the Postgres integration tests run through HTTP, here directly.
    pub(crate) async fn exercise(store: &JobStore) {
        let id = JobId::new();
        let now = Utc::now();
        let lease = Lease::new("replica-a", std::time::Duration::from_secs(10));
        let job = NewJob {
            id,
            kind: JobKind::Backup,
            cluster_id: Some("local".into()),
            target_cluster_id: None,
            subject: "t".into(),
            request: serde_json::json!({"topic": "events"}),
            created_at: now,
            backup_id: Some("b1".into()),
        };
        let one = Capacity {
            kind: JobKind::Backup,
            cluster_id: Some("local".into()),
            max: 1,
        };
        assert!(store.admit(&job, &lease, Some(&one)).await.unwrap());
        // The limit counts running jobs: a second one does not fit.
        let second = NewJob {
            id: JobId::new(),
            ..job.clone()
        };
        assert!(!store.admit(&second, &lease, Some(&one)).await.unwrap());
        assert!(store.get(second.id).await.unwrap().is_none());
        let got = store.get(id).await.unwrap().unwrap();
        assert_eq!(got.job.state, JobState::Running);
        assert_eq!(got.job.request["topic"], "events");
        assert_eq!(got.owner.as_deref(), Some("replica-a"));
        assert_eq!(got.backup_id.as_deref(), Some("b1"));
        let figures = store.figures(now).await.unwrap();
        assert_eq!(figures.count(JobKind::Backup, JobState::Running), 1);
        let progress = JobProgress {
            messages: 10,
            bytes: 100,
            ..Default::default()
        };
        let result = serde_json::json!({"status": "completed"});
        // Only the lease holder records the end.
        assert!(!store
            .finish(
                "replica-b",
                id,
                JobState::Failed,
                None,
                None,
                progress,
                now,
                1
            )
            .await
            .unwrap());
        assert!(store
            .finish(
                "replica-a",
                id,
                JobState::Completed,
                Some(&result),
                None,
                progress,
                now,
                2000
            )
            .await
            .unwrap());
        // A second end is refused: the first one stands.
        assert!(!store
            .finish(
                "replica-a",
                id,
                JobState::Failed,
                None,
                None,
                progress,
                now,
                1
            )
            .await
            .unwrap());
        let got = store.get(id).await.unwrap().unwrap();
        assert_eq!(got.job.state, JobState::Completed);
        assert_eq!(got.job.progress.messages, 10);
        assert_eq!(got.job.progress.messages_per_second, 5.0);
        let figures = store.figures(now).await.unwrap();
        let (backup, completed) = (JobKind::Backup, JobState::Completed);
        assert_eq!(
            (
                figures.count(backup, JobState::Running),
                figures.count(backup, completed),
                figures.finished_since(backup, completed)
            ),
            (0, 1, 1)
        );
        assert_eq!(figures.average_duration_ms(backup, completed), 2000.0);
        let list = store
            .list(&JobFilter {
                allowed_clusters: None,
                kind: Some(JobKind::Restore),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(list.is_empty());
        let list = store
            .list(&JobFilter {
                allowed_clusters: None,
                state: Some(JobState::Completed),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(list.len(), 1);
        let groups = store.figures(now).await.unwrap().groups;
        assert_eq!(groups.len(), 1, "{groups:?}");
        assert_eq!((groups[0].kind.as_str(), groups[0].count), ("backup", 1));
        leases::tests::exercise_leases(store).await;
        leases::tests::exercise_targets(store).await;
        schedules::tests::exercise_schedules(store).await;
    }
}
