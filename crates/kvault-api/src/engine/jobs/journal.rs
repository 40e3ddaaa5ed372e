//! The job journal over the job table: what a job records so that the replica taking it over
//! continues it: a restore's or migration's start records and finished topics
//! (`kvault_domain::resume`), a backup's checkpoint (`kvault_domain::backup_resume`, kept by
//! `checkpoints`). The journal is one JSON value in the job's row, written whole by the job's
//! owner only; an attempt's notes on where it continued go to its `job_attempts` row.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use kvault_domain::resume::{JobJournal, StartRecord, TopicResume};
use kvault_domain::{DomainError, DomainResult, JobId};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Mutex};

use super::JobStore;

/// What the journal holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JournalState {
    /// Per target topic: the start record written before its first produce.
    #[serde(default)]
    pub started: BTreeMap<String, StartRecord>,
    /// Per target topic: the result of a topic finished (backup set restores).
    #[serde(default)]
    pub finished: BTreeMap<String, serde_json::Value>,
    /// A backup's latest checkpoint: its cut and the segments it committed so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<serde_json::Value>,
}

impl JournalState {
    /// The journal stored in a job's row (empty when none, or unreadable).
    pub fn from_stored(raw: Option<&serde_json::Value>) -> Self {
        raw.and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }
}

/// Writes one job's journal, as the replica holding the job.
pub(super) struct JournalWriter {
    store: JobStore,
    owner: String,
    id: JobId,
    state: Mutex<JournalState>,
}

impl JournalWriter {
    /// Changes the journal with `change` and writes it whole.
    pub(super) async fn update(&self, change: impl FnOnce(&mut JournalState)) -> DomainResult<()> {
        let mut state = self.state.lock().await;
        change(&mut state);
        self.write(&state).await
    }

    /// Writes the journal; the lease lost means the operation must stop (it is the new
    /// owner's now). A database that blinks is retried for a few seconds (the lease is renewed
    /// meanwhile); one that stays away fails the operation before it produces.
    async fn write(&self, state: &JournalState) -> DomainResult<()> {
        let value = serde_json::to_value(state)
            .map_err(|e| DomainError::internal(format!("job journal: {e}")))?;
        let mut wait = std::time::Duration::from_millis(200);
        loop {
            match self.store.write_journal(&self.owner, self.id, &value).await {
                Ok(true) => return Ok(()),
                Ok(false) => return Err(DomainError::Cancelled),
                Err(e) if wait > JOURNAL_RETRY_UNTIL => {
                    return Err(DomainError::internal(format!(
                        "could not write the job's journal to the job store: {e}"
                    )))
                }
                Err(e) => {
                    tracing::warn!(job_id = %self.id, error = %e, "could not write the job's journal; retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
    }

    pub(super) fn id(&self) -> JobId {
        self.id
    }
}

/// A job's journal, for the attempt this replica runs.
pub struct StoredJournal {
    writer: Arc<JournalWriter>,
    attempt: u64,
    /// Takeovers read this; writes go to the row.
    recorded: JournalState,
    resumed: Mutex<Vec<TopicResume>>,
    /// The latest checkpoint, for the task that stores it (none until
    /// [`Self::keeping_checkpoints`]).
    checkpoints: Option<watch::Sender<Option<serde_json::Value>>>,
}

impl StoredJournal {
    pub fn new(
        store: JobStore,
        owner: impl Into<String>,
        id: JobId,
        attempt: u64,
        recorded: JournalState,
    ) -> Self {
        let writer = JournalWriter {
            store,
            owner: owner.into(),
            id,
            state: Mutex::new(recorded.clone()),
        };
        Self {
            writer: Arc::new(writer),
            attempt,
            recorded,
            resumed: Mutex::new(Vec::new()),
            checkpoints: None,
        }
    }

    /// Stores the checkpoints the operation notes, from a task on `jobs` that ends with this
    /// journal (see `checkpoints`).
    pub fn keeping_checkpoints(mut self, jobs: &tokio::runtime::Handle) -> Self {
        self.checkpoints = Some(super::checkpoints::keeper(self.writer.clone(), jobs));
        self
    }
}

/// Retries of a journal write stop once the next wait would exceed this (about 3 s in all).
const JOURNAL_RETRY_UNTIL: std::time::Duration = std::time::Duration::from_millis(1_600);

#[async_trait]
impl JobJournal for StoredJournal {
    fn is_takeover(&self) -> bool {
        self.attempt > 1
    }

    fn start_record(&self, target_topic: &str) -> Option<StartRecord> {
        self.recorded.started.get(target_topic).cloned()
    }

    async fn record_start(&self, record: StartRecord) -> DomainResult<()> {
        self.writer
            .update(|state| {
                state.started.insert(record.target_topic.clone(), record);
            })
            .await
    }

    async fn record_resume(&self, found: TopicResume) -> DomainResult<()> {
        let mut resumed = self.resumed.lock().await;
        resumed.push(found);
        let value = serde_json::to_value(&*resumed)
            .map_err(|e| DomainError::internal(format!("resume notes: {e}")))?;
        self.record_resume_point(value).await
    }

    async fn record_resume_point(&self, value: serde_json::Value) -> DomainResult<()> {
        let writer = &self.writer;
        match writer
            .store
            .write_resumed_from(&writer.owner, writer.id, self.attempt, &value)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(DomainError::Cancelled),
            Err(e) => Err(DomainError::internal(format!(
                "could not note where the job continues: {e}"
            ))),
        }
    }

    fn finished(&self, target_topic: &str) -> Option<serde_json::Value> {
        self.recorded.finished.get(target_topic).cloned()
    }

    async fn record_finished(
        &self,
        target_topic: &str,
        result: serde_json::Value,
    ) -> DomainResult<()> {
        self.writer
            .update(|state| {
                state.finished.insert(target_topic.to_owned(), result);
            })
            .await
    }

    fn note_checkpoint(&self, checkpoint: serde_json::Value) {
        if let Some(tx) = &self.checkpoints {
            tx.send_replace(Some(checkpoint));
        }
    }
}
