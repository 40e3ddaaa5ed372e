//! What every partition task of one migration shares: the source, the compiled
//! transformation, the producer, the budget and the counters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use kvault_domain::migrate::{GroupTranslation, MigrateRequest, MigrateResult};

use kvault_domain::job::OperationControl;
use kvault_domain::migrate::OnEvaluationError;
use kvault_domain::record::Record;

use crate::client::ClusterConfig;
use crate::consume::KeyValue;
use crate::partitioner::KeyPartitioner;
use crate::produce::RecordProducer;
use crate::throttle::Throttle;
use crate::transform::CompiledTransformation;

/// The job's records an earlier attempt landed on one target partition.
#[derive(Debug, Clone)]
pub(super) struct EarlierCopies {
    pub(super) count: u64,
    pub(super) first: Option<KeyValue>,
    pub(super) last: Option<KeyValue>,
}

/// State shared by every partition task of one migration.
pub(super) struct MigrationInProgress {
    pub(super) source: ClusterConfig,
    pub(super) source_topic: String,
    pub(super) target_topic: String,
    pub(super) transformation: CompiledTransformation,
    pub(super) on_error: OnEvaluationError,
    /// `None`: same partition as the source; else re-partition by key.
    pub(super) partitioner: Option<KeyPartitioner>,
    pub(super) producer: RecordProducer,
    pub(super) throttle: Option<Throttle>,
    /// Messages that may still be migrated (`max_messages`), `u64::MAX` when uncapped.
    pub(super) budget: AtomicU64,
    pub(super) control: OperationControl,
    pub(super) stop: AtomicBool,
    pub(super) read: AtomicU64,
    pub(super) filtered: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) written: AtomicU64,
    /// Segments each partition's `OffsetMap` may hold; `None` when no group is translated.
    pub(super) offset_map_runs: Option<usize>,
    /// Per target partition: its end offset before the job's first record.
    pub(super) base: BTreeMap<i32, i64>,
    /// Per partition: the job's records an earlier attempt already landed there.
    pub(super) landed: BTreeMap<i32, EarlierCopies>,
    /// Per target partition (partitions kept 1:1): the job's records on it, landed earlier or
    /// delivered now.
    copied: Mutex<BTreeMap<i32, u64>>,
}

impl MigrationInProgress {
    pub(super) fn new(
        source: ClusterConfig,
        req: &MigrateRequest,
        transformation: CompiledTransformation,
        partitioner: Option<KeyPartitioner>,
        producer: RecordProducer,
        control: OperationControl,
        (offset_map_runs, base, landed): (
            Option<usize>,
            BTreeMap<i32, i64>,
            BTreeMap<i32, EarlierCopies>,
        ),
    ) -> Self {
        Self {
            source,
            source_topic: req.source_topic.clone(),
            target_topic: req.target_topic.clone(),
            transformation,
            on_error: req.on_error,
            partitioner,
            producer,
            throttle: req.rate_limit_per_second.and_then(Throttle::per_second),
            budget: AtomicU64::new(req.max_messages.unwrap_or(u64::MAX)),
            control,
            stop: AtomicBool::new(false),
            read: AtomicU64::new(0),
            filtered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            written: AtomicU64::new(0),
            offset_map_runs,
            base,
            landed,
            copied: Mutex::new(BTreeMap::new()),
        }
    }

    /// Notes that `n` more of the job's records are on target `partition`.
    pub(super) fn count_copied(&self, partition: i32, n: u64) {
        if let Ok(mut copied) = self.copied.lock() {
            *copied.entry(partition).or_default() += n;
        }
    }

    /// The job's records per target partition (partitions kept 1:1).
    pub(super) fn copied_per_partition(&self) -> BTreeMap<i32, u64> {
        self.copied.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The documented result, from the counters.
    pub(super) fn result(
        &self,
        migration_id: String,
        req: MigrateRequest,
        started: Instant,
        transformation_applied: bool,
        consumer_groups_translated: Vec<GroupTranslation>,
    ) -> MigrateResult {
        let read = self.read.load(Ordering::Relaxed);
        let written = self.written.load(Ordering::Relaxed);
        MigrateResult {
            migration_id,
            source_cluster: req.source_cluster,
            source_topic: req.source_topic,
            target_cluster: req.target_cluster,
            target_topic: req.target_topic,
            total_messages: read,
            messages_migrated: written,
            duration_ms: started.elapsed().as_millis() as u64,
            status: kvault_domain::job::OperationStatus::Completed,
            transformation_applied,
            messages_read: read,
            messages_filtered: self.filtered.load(Ordering::Relaxed),
            messages_failed: self.failed.load(Ordering::Relaxed),
            messages_written: written,
            consumer_groups_translated,
        }
    }

    pub(super) fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.control.is_cancelled()
    }

    pub(super) fn budget_left(&self) -> bool {
        self.budget.load(Ordering::Relaxed) > 0
    }

    /// Takes one message from the `max_messages` budget; false when it is spent.
    pub(super) fn take_budget(&self) -> bool {
        self.budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(1)
            })
            .is_ok()
    }

    pub(super) fn target_partition(&self, source_partition: i32, record: &Record) -> i32 {
        match &self.partitioner {
            None => source_partition,
            Some(p) => p.partition(record.key.as_deref()),
        }
    }

    pub(super) fn written_so_far(&self) -> String {
        format!(
            "{} read, {} filtered, {} failed, {} written",
            self.read.load(Ordering::Relaxed),
            self.filtered.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.written.load(Ordering::Relaxed)
        )
    }
}
