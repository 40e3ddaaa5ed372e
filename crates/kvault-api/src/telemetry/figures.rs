//! Monitoring figures, computed at most once per refresh however many clients ask.
//!
//! `/api/kafka/metrics` and `/metrics` are cheap to call and may be called often (every
//! scraper, every dashboard, `/metrics` without a token). Their figures come from one scan of
//! the job table and from every archive's manifest, so they are computed once and shared: a
//! snapshot is reused until it is [`FIGURES_TTL`] old or this replica admits or ends a job, and
//! concurrent callers of a stale snapshot wait for the one refresh instead of each running it.
//! Archive totals (a read of every manifest) are kept longer, until [`ARCHIVE_TOTALS_TTL`] or
//! a backup is created or deleted here; changes made elsewhere (another replica, the CLI) show
//! within those intervals.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kvault_domain::{JobKind, JobState};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How long a snapshot of the job figures is served before it is recomputed.
pub const FIGURES_TTL: Duration = Duration::from_secs(2);
/// How long archive totals are served before every manifest is read again.
pub const ARCHIVE_TOTALS_TTL: Duration = Duration::from_secs(10);

/// Sizes summed over every stored archive, and per topic.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ArchiveTotals {
    pub backups: u64,
    pub raw_bytes: u64,
    pub compressed_bytes: u64,
    /// Per `(cluster, topic)` the archives were taken from.
    pub topics: BTreeMap<(String, String), TopicTotals>,
}

/// The stored archives of one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicTotals {
    pub backups: u64,
    pub compressed_bytes: u64,
    /// When the newest stored backup of the topic finished.
    pub last_finished_at: DateTime<Utc>,
}

impl ArchiveTotals {
    /// Totals over `manifests`.
    pub fn of(manifests: &[kvault_domain::Manifest]) -> Self {
        let mut totals = Self::default();
        for m in manifests {
            let compressed = m.total_compressed_bytes();
            totals.backups += 1;
            totals.raw_bytes += m.total_raw_bytes();
            totals.compressed_bytes += compressed;
            let key = (m.cluster_id.clone(), m.topic.name.clone());
            let topic = totals.topics.entry(key).or_insert(TopicTotals {
                backups: 0,
                compressed_bytes: 0,
                last_finished_at: m.finished_at,
            });
            topic.backups += 1;
            topic.compressed_bytes += compressed;
            topic.last_finished_at = topic.last_finished_at.max(m.finished_at);
        }
        totals
    }
}

/// Archive totals as last read, and a version bumped by every change made here.
#[derive(Default)]
pub struct ArchiveTotalsCache {
    cached: Mutex<Option<(Instant, u64, Arc<ArchiveTotals>)>>,
    version: AtomicU64,
}

impl ArchiveTotalsCache {
    /// Called when this server creates or deletes a backup.
    pub fn invalidate(&self) {
        self.version.fetch_add(1, Ordering::SeqCst);
    }

    /// Bumped by every [`Self::invalidate`].
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    /// The totals while they are fresh, else `load`'s, kept from then on.
    pub async fn get_or_load<E>(
        &self,
        load: impl std::future::Future<Output = Result<ArchiveTotals, E>>,
    ) -> Result<Arc<ArchiveTotals>, E> {
        if let Some(t) = self.get() {
            return Ok(t);
        }
        let version = self.version();
        let totals = Arc::new(load.await?);
        self.put(version, Arc::clone(&totals));
        Ok(totals)
    }

    fn get(&self) -> Option<Arc<ArchiveTotals>> {
        let cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        cached
            .as_ref()
            .filter(|(at, version, _)| {
                at.elapsed() < ARCHIVE_TOTALS_TTL && *version == self.version()
            })
            .map(|(_, _, t)| Arc::clone(t))
    }

    /// Stores totals read while the version was `version`.
    fn put(&self, version: u64, totals: Arc<ArchiveTotals>) {
        *self.cached.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Instant::now(), version, totals));
    }
}

/// The documented backup metrics, plus `total_backups`, `active_restores`, `active_migrations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MetricsResponse {
    /// Backups running now.
    pub active_backups: u64,
    /// Backups that completed since 00:00 UTC today.
    pub completed_backups_today: u64,
    /// Compressed size of every stored backup, in GB (10^9 bytes).
    pub total_backup_size_gb: f64,
    /// Mean duration of completed backup jobs.
    pub average_backup_duration_ms: u64,
    /// `(1 - compressed / raw) * 100` over every stored backup.
    pub compression_savings_percent: f64,
    /// Failed or interrupted backup jobs as a share of all ended backup jobs.
    pub error_rate_percent: f64,
    pub total_backups: u64,
    pub active_restores: u64,
    pub active_migrations: u64,
}

/// The jobs of one `(kind, state)`, summed by `JobStore::figures`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobGroup {
    pub kind: String,
    pub state: String,
    pub count: i64,
    /// Of those, how many ended at or after the `since` asked for.
    pub finished_since: i64,
    pub duration_sum_ms: i64,
    /// Of those, how many have a duration (ended jobs).
    pub with_duration: i64,
}

/// The job table summed per `(kind, state)`: the figures `/api/kafka/metrics` and `/metrics`
/// show, from one query.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobFigures {
    pub groups: Vec<JobGroup>,
}

impl JobFigures {
    fn group(&self, kind: JobKind, state: JobState) -> Option<&JobGroup> {
        self.groups
            .iter()
            .find(|g| g.kind == kind.as_str() && g.state == state.as_str())
    }

    /// Jobs of `kind` in `state`.
    pub fn count(&self, kind: JobKind, state: JobState) -> i64 {
        self.group(kind, state).map_or(0, |g| g.count)
    }

    /// Jobs of `kind` that ended in `state` at or after the `since` of the query.
    pub fn finished_since(&self, kind: JobKind, state: JobState) -> i64 {
        self.group(kind, state).map_or(0, |g| g.finished_since)
    }

    /// Mean duration of the jobs of `kind` in `state`, 0 when there are none.
    pub fn average_duration_ms(&self, kind: JobKind, state: JobState) -> f64 {
        self.group(kind, state)
            .filter(|g| g.with_duration > 0)
            .map_or(0.0, |g| g.duration_sum_ms as f64 / g.with_duration as f64)
    }
}

/// What both metrics routes show.
#[derive(Debug, Clone)]
pub struct MetricsSnapshot {
    pub summary: MetricsResponse,
    pub jobs: JobFigures,
    pub archives: Arc<ArchiveTotals>,
}

impl MetricsSnapshot {
    /// The documented summary computed from the job table's sums and the archive totals.
    pub fn new(jobs: JobFigures, archives: Arc<ArchiveTotals>) -> Self {
        Self {
            summary: summarise(&jobs, &archives),
            jobs,
            archives,
        }
    }
}

/// The shared snapshot; its lock is what makes concurrent refreshes one.
#[derive(Default)]
pub struct FiguresCache {
    current: tokio::sync::Mutex<Option<Cached>>,
    /// Refreshes run (`kvault_metrics_refreshes_total`).
    refreshes: AtomicU64,
}

struct Cached {
    at: Instant,
    versions: (u64, u64),
    snapshot: Arc<MetricsSnapshot>,
}

impl FiguresCache {
    /// How many times the figures were computed since start.
    pub fn refresh_counter(&self) -> &AtomicU64 {
        &self.refreshes
    }

    /// The shared snapshot while it is fresh, else a new one from `compute`. `versions` are
    /// read once the lock is held and before computing: a change made during the refresh makes
    /// the next call refresh.
    pub async fn get_or_refresh<E>(
        &self,
        versions: impl FnOnce() -> (u64, u64),
        compute: impl std::future::Future<Output = Result<MetricsSnapshot, E>>,
    ) -> Result<Arc<MetricsSnapshot>, E> {
        let mut current = self.current.lock().await;
        let versions = versions();
        if let Some(cached) = current
            .as_ref()
            .filter(|c| c.versions == versions && c.at.elapsed() < FIGURES_TTL)
        {
            return Ok(Arc::clone(&cached.snapshot));
        }
        let snapshot = Arc::new(compute.await?);
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        *current = Some(Cached {
            at: Instant::now(),
            versions,
            snapshot: Arc::clone(&snapshot),
        });
        Ok(snapshot)
    }
}

/// The documented figures from the job table's sums and the archive totals.
fn summarise(jobs: &JobFigures, totals: &ArchiveTotals) -> MetricsResponse {
    let backup = JobKind::Backup;
    let count = |kind, state| jobs.count(kind, state).max(0) as u64;
    let completed = count(backup, JobState::Completed);
    let failed = count(backup, JobState::Failed) + count(backup, JobState::Interrupted);
    let (raw, compressed) = (totals.raw_bytes, totals.compressed_bytes);
    MetricsResponse {
        active_backups: count(backup, JobState::Running),
        completed_backups_today: jobs.finished_since(backup, JobState::Completed).max(0) as u64,
        total_backup_size_gb: (compressed as f64 / 1e9 * 1e6).round() / 1e6,
        average_backup_duration_ms: jobs
            .average_duration_ms(backup, JobState::Completed)
            .max(0.0)
            .round() as u64,
        compression_savings_percent: if raw == 0 {
            0.0
        } else {
            round2((1.0 - compressed as f64 / raw as f64) * 100.0)
        },
        error_rate_percent: match completed + failed {
            0 => 0.0,
            ended => round2(failed as f64 * 100.0 / ended as f64),
        },
        total_backups: totals.backups,
        active_restores: count(JobKind::Restore, JobState::Running),
        active_migrations: count(JobKind::Migrate, JobState::Running),
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(kind: &str, state: &str, count: i64, since: i64, dur: i64) -> JobGroup {
        JobGroup {
            kind: kind.into(),
            state: state.into(),
            count,
            finished_since: since,
            duration_sum_ms: dur,
            with_duration: if dur > 0 { count } else { 0 },
        }
    }

    #[test]
    fn the_documented_figures_come_from_the_sums() {
        let jobs = JobFigures {
            groups: vec![
                group("backup", "completed", 3, 2, 3000),
                group("backup", "failed", 1, 1, 10),
                group("backup", "running", 2, 0, 0),
                group("restore", "running", 1, 0, 0),
            ],
        };
        let totals = ArchiveTotals {
            backups: 3,
            raw_bytes: 1000,
            compressed_bytes: 250,
            topics: BTreeMap::new(),
        };
        let m = summarise(&jobs, &totals);
        assert_eq!(m.active_backups, 2);
        assert_eq!(m.completed_backups_today, 2);
        assert_eq!(m.average_backup_duration_ms, 1000);
        assert_eq!(m.error_rate_percent, 25.0);
        assert_eq!(m.compression_savings_percent, 75.0);
        assert_eq!((m.active_restores, m.active_migrations), (1, 0));
        let empty = summarise(&JobFigures::default(), &ArchiveTotals::default());
        assert_eq!(
            (empty.error_rate_percent, empty.compression_savings_percent),
            (0.0, 0.0)
        );
    }
}
