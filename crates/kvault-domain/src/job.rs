//! Long-running operations: their identity, lifecycle and live progress.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::resume::JobJournal;

// Where results have always found it.
pub use crate::operation_status::OperationStatus;

mod part;
use part::PartInner;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct JobId(pub uuid::Uuid);

impl JobId {
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4())
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Backup,
    Restore,
    Migrate,
    Drain,
    Verify,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Backup => "backup",
            JobKind::Restore => "restore",
            JobKind::Migrate => "migrate",
            JobKind::Drain => "drain",
            JobKind::Verify => "verify",
        }
    }
}

impl std::str::FromStr for JobKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            JobKind::Backup,
            JobKind::Restore,
            JobKind::Migrate,
            JobKind::Drain,
            JobKind::Verify,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| format!("unknown job kind '{s}'"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Completed,
    Failed,
    Cancelled,
    /// The server stopped while the job ran; it did not finish.
    Interrupted,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Interrupted => "interrupted",
        }
    }

    pub fn is_terminal(self) -> bool {
        self != JobState::Running
    }
}

impl std::str::FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            JobState::Running,
            JobState::Completed,
            JobState::Failed,
            JobState::Cancelled,
            JobState::Interrupted,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| format!("unknown job state '{s}'"))
    }
}

/// A snapshot of how far a job got.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobProgress {
    pub messages: u64,
    pub bytes: u64,
    /// Messages per second since the job started.
    pub messages_per_second: f64,
    /// Extension: the messages the job expects to move, once it knows (from the watermarks
    /// for a backup, the manifest for restore and verify); absent while unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_messages: Option<u64>,
    /// Extension: `messages` as a percentage of `total_messages` (0-100), when the total is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// Extension: seconds left at the current rate, for a running job with a known total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<f64>,
}

impl JobProgress {
    /// Progress from its counts: the rate over `elapsed_secs`, and percent and ETA where the
    /// total is known (the ETA only while there is a rate to extrapolate and work left).
    pub fn from_counts(
        messages: u64,
        bytes: u64,
        total_messages: Option<u64>,
        elapsed_secs: f64,
    ) -> Self {
        let messages_per_second = if elapsed_secs > 0.0 {
            messages as f64 / elapsed_secs
        } else {
            0.0
        };
        let percent = total_messages.map(|total| match total {
            0 => 100.0,
            _ => (messages.min(total) as f64 * 100.0 / total as f64 * 10.0).round() / 10.0,
        });
        let eta_seconds = total_messages
            .filter(|_| messages_per_second > 0.0)
            .map(|total| (total.saturating_sub(messages) as f64 / messages_per_second).round());
        Self {
            messages,
            bytes,
            messages_per_second,
            total_messages,
            percent,
            eta_seconds,
        }
    }

    /// Drops the ETA of a job that has ended: nothing is left to wait for.
    pub fn ended_if(mut self, ended: bool) -> Self {
        if ended {
            self.eta_seconds = None;
        }
        self
    }
}

/// A job as stored and reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Job {
    pub id: JobId,
    pub kind: JobKind,
    pub cluster_id: Option<String>,
    /// The cluster a migration writes into (extension; absent for the other kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_cluster_id: Option<String>,
    pub state: JobState,
    pub request: serde_json::Value,
    pub result: Option<serde_json::Value>,
    pub error: Option<serde_json::Value>,
    pub progress: JobProgress,
    #[serde(with = "crate::time::rfc3339_seconds")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time::rfc3339_seconds_option")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Extension: the backup schedule this job is a run of (absent for other jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<String>,
    /// Extension (`GET /jobs/{id}` only): every attempt at the job, oldest first: the first on
    /// the replica that admitted it, one more per takeover by another replica.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<JobAttempt>,
}

/// One attempt at a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobAttempt {
    /// 1 for the first, plus one per takeover.
    pub attempt: u64,
    #[serde(with = "crate::time::rfc3339_seconds")]
    pub started_at: DateTime<Utc>,
    /// The replica that ran it (`workers.replica_id`).
    pub replica: String,
    /// For an attempt that continued a restore or migration: per target topic, what it found
    /// on each partition and where it continued (a list of `TopicResume`); for one that
    /// continued a backup: what it kept of the earlier attempt (`{"partitions": [...]}`, see
    /// `backup_resume::ResumePoint`). Absent for a first attempt and for jobs that start over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub resumed_from: Option<serde_json::Value>,
}

/// Live counters and a cancel flag shared between a running operation and whoever watches it.
/// Operations bump the counters as they go and check `is_cancelled` between batches. A job
/// run by the API also carries its [`JobJournal`] (what it must record before producing, and
/// what an earlier attempt recorded; a backup's checkpoints go there too).
#[derive(Default, Clone)]
pub struct OperationControl {
    inner: Arc<ControlInner>,
    journal: Option<Arc<dyn JobJournal>>,
    /// Set on the control of one part of an operation (see [`OperationControl::part`]).
    part: Option<Arc<PartInner>>,
}

impl std::fmt::Debug for OperationControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperationControl")
            .field("inner", &self.inner)
            .field("journal", &self.journal.is_some())
            .field("part", &self.part)
            .finish()
    }
}

#[derive(Debug, Default)]
struct ControlInner {
    messages: AtomicU64,
    bytes: AtomicU64,
    cancelled: AtomicBool,
    /// Cancelled to hand the job to another replica (shutdown, lost lease): what it wrote
    /// stays for the replica that continues it.
    handed_over: AtomicBool,
    /// Messages the operation expects to move, plus one; 0 while unknown.
    total_plus_one: AtomicU64,
}

impl OperationControl {
    pub fn new() -> Self {
        Self::default()
    }

    /// A control carrying the job's journal.
    pub fn with_journal(journal: Arc<dyn JobJournal>) -> Self {
        Self {
            inner: Arc::default(),
            journal: Some(journal),
            part: None,
        }
    }

    /// The job's journal, when the job has one (jobs run by the API).
    pub fn journal(&self) -> Option<&Arc<dyn JobJournal>> {
        self.journal.as_ref()
    }

    /// Cancels the operation to hand it over: it stops producing, and leaves what it wrote
    /// (a topic it created included) for the replica that continues the job.
    pub fn hand_over(&self) {
        self.inner.handed_over.store(true, Ordering::Relaxed);
        self.cancel();
    }

    /// Whether the operation was stopped to be continued elsewhere.
    pub fn is_handed_over(&self) -> bool {
        self.inner.handed_over.load(Ordering::Relaxed)
    }

    pub fn add(&self, messages: u64, bytes: u64) {
        self.inner.messages.fetch_add(messages, Ordering::Relaxed);
        self.inner.bytes.fetch_add(bytes, Ordering::Relaxed);
        if let Some(part) = &self.part {
            part.add(messages, bytes);
        }
    }

    pub fn messages(&self) -> u64 {
        self.inner.messages.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.inner.bytes.load(Ordering::Relaxed)
    }

    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::Relaxed)
            || self.part.as_ref().is_some_and(|p| p.is_stopped())
    }

    /// Sets the message count outright, for operations whose progress is a level rather than a
    /// running sum (a drain: how much of the starting lag has been consumed).
    pub fn set_messages(&self, messages: u64) {
        self.inner.messages.store(messages, Ordering::Relaxed);
    }

    /// Starts the counts again from zero: a restore shows its checksum pass as progress, then
    /// counts the records it produces (without this a restore reported each record twice).
    /// A part starts its own counts again, leaving its siblings' in the operation's.
    pub fn reset_progress(&self) {
        match &self.part {
            Some(part) => {
                let (messages, bytes) = part.take_counts();
                self.inner.messages.fetch_sub(messages, Ordering::Relaxed);
                self.inner.bytes.fetch_sub(bytes, Ordering::Relaxed);
            }
            None => {
                self.inner.messages.store(0, Ordering::Relaxed);
                self.inner.bytes.store(0, Ordering::Relaxed);
            }
        }
    }

    /// How many messages the operation expects to move, once it knows (from the watermarks or
    /// the manifest): progress bars and ETAs use it.
    pub fn set_total(&self, messages: u64) {
        self.inner
            .total_plus_one
            .store(messages.saturating_add(1), Ordering::Relaxed);
    }

    /// Adds `messages` to the expected total (starting from zero when none was announced):
    /// for operations that learn their size part by part, like a backup set, whose topics
    /// share one control and each add their count when the set reaches them.
    pub fn add_to_total(&self, messages: u64) {
        let _ =
            self.inner
                .total_plus_one
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |known| {
                    Some(known.max(1).saturating_add(messages))
                });
    }

    /// The expected total, when the operation has announced one.
    pub fn total(&self) -> Option<u64> {
        match self.inner.total_plus_one.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n - 1),
        }
    }

    /// Hands the operation's latest checkpoint (all it needs to resume, not a delta) to the
    /// job's journal, which keeps it with the job (see [`JobJournal::note_checkpoint`]);
    /// nothing happens outside a job.
    pub fn checkpoint(&self, value: serde_json::Value) {
        if let Some(journal) = &self.journal {
            journal.note_checkpoint(value);
        }
    }

    pub fn snapshot(&self, elapsed_secs: f64) -> JobProgress {
        JobProgress::from_counts(self.messages(), self.bytes(), self.total(), elapsed_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_carries_percent_and_eta_once_the_total_is_known() {
        let control = OperationControl::new();
        control.add(250, 10);
        let unknown = control.snapshot(5.0);
        assert_eq!(
            (unknown.total_messages, unknown.percent, unknown.eta_seconds),
            (None, None, None)
        );
        let json = serde_json::to_value(unknown).unwrap();
        assert!(json.get("total_messages").is_none(), "{json}");
        control.set_total(1000);
        let known = control.snapshot(5.0);
        assert_eq!(known.total_messages, Some(1000));
        assert_eq!(known.percent, Some(25.0));
        assert_eq!(known.eta_seconds, Some(15.0), "750 left at 50/s");
        let done = JobProgress::from_counts(1000, 0, Some(1000), 0.0);
        assert_eq!((done.percent, done.eta_seconds), (Some(100.0), None));
    }

    #[test]
    fn totals_added_part_by_part_sum_up_from_unknown() {
        let control = OperationControl::new();
        assert_eq!(control.total(), None);
        control.add_to_total(30);
        control.add_to_total(0);
        control.add_to_total(7);
        assert_eq!(control.total(), Some(37));
        control.set_total(5);
        control.add_to_total(u64::MAX);
        assert_eq!(
            control.total(),
            Some(u64::MAX - 1),
            "saturates, never wraps"
        );
    }
}
