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

use chrono::{DateTime, Datelike, TimeZone, Utc};
use kvault_domain::{JobKind, JobState};

use crate::error::ApiError;
use crate::engine::jobs::JobFigures;
use crate::http::routes::metrics::MetricsResponse;
use crate::state::AppState;

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

    fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
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

/// What both metrics routes show.
#[derive(Debug, Clone)]
pub struct MetricsSnapshot {
    pub summary: MetricsResponse,
    pub jobs: JobFigures,
    pub archives: Arc<ArchiveTotals>,
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
}

impl AppState {
    /// The current figures: the shared snapshot, or a new one when it is stale.
    pub(crate) async fn figures(&self) -> Result<Arc<MetricsSnapshot>, ApiError> {
        let mut current = self.figures.current.lock().await;
        // Read before computing: a change made during the refresh makes the next call refresh.
        let versions = (self.runner.changes(), self.archive_totals.version());
        if let Some(cached) = current
            .as_ref()
            .filter(|c| c.versions == versions && c.at.elapsed() < FIGURES_TTL)
        {
            return Ok(Arc::clone(&cached.snapshot));
        }
        let snapshot = Arc::new(self.compute_figures().await?);
        self.figures.refreshes.fetch_add(1, Ordering::Relaxed);
        *current = Some(Cached {
            at: Instant::now(),
            versions,
            snapshot: Arc::clone(&snapshot),
        });
        Ok(snapshot)
    }

    async fn archive_totals(&self) -> Result<Arc<ArchiveTotals>, ApiError> {
        if let Some(t) = self.archive_totals.get() {
            return Ok(t);
        }
        let version = self.archive_totals.version();
        let totals = Arc::new(ArchiveTotals::of(&self.store.list().await?));
        self.archive_totals.put(version, Arc::clone(&totals));
        Ok(totals)
    }

    async fn compute_figures(&self) -> Result<MetricsSnapshot, ApiError> {
        let now = Utc::now();
        let midnight = Utc
            .with_ymd_and_hms(now.year(), now.month(), now.day(), 0, 0, 0)
            .single()
            .unwrap_or(now);
        // Counted in the job table: every replica's jobs.
        let jobs = self
            .runner
            .store()
            .figures(midnight)
            .await
            .map_err(ApiError::internal)?;
        let archives = self.archive_totals().await?;
        Ok(MetricsSnapshot {
            summary: summarise(&jobs, &archives),
            jobs,
            archives,
        })
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
    use crate::engine::jobs::JobGroup;

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
