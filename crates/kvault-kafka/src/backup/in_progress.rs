//! State every partition task of one backup shares: the plan's bounds and budget, the stop
//! flag, the size limit's running count and the checkpoint.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use kvault_domain::backup::BackupPlan;
use kvault_domain::job::OperationControl;

use super::resume::Checkpointer;
use crate::client::ClusterConfig;
use crate::consume::ReaderPool;
use crate::throttle::Throttle;

/// State every partition task of one backup shares.
pub(super) struct BackupInProgress {
    pub(super) topic: String,
    /// The consumers the partitions are read with, reused from one partition to the next.
    pub(super) readers: Arc<ReaderPool>,
    pub(super) include_keys: bool,
    pub(super) include_headers: bool,
    pub(super) start_time_ms: Option<i64>,
    pub(super) end_time_ms: Option<i64>,
    /// Messages still allowed by `max_messages`.
    pub(super) remaining: Option<AtomicU64>,
    pub(super) throttle: Option<Throttle>,
    /// Set when any partition failed: the others stop at their next record.
    pub(super) stop: AtomicBool,
    pub(super) archive_bytes: AtomicU64,
    pub(super) max_bytes: Option<u64>,
    pub(super) control: OperationControl,
    pub(super) checkpoints: Arc<Checkpointer>,
}

impl BackupInProgress {
    pub(super) fn new(
        cluster: &ClusterConfig,
        plan: &BackupPlan,
        control: OperationControl,
        checkpoints: Arc<Checkpointer>,
    ) -> Self {
        Self {
            topic: plan.topic.clone(),
            readers: ReaderPool::new(cluster),
            include_keys: plan.include_keys,
            include_headers: plan.include_headers,
            start_time_ms: plan.start_time_ms,
            end_time_ms: plan.end_time_ms,
            remaining: plan.max_messages.map(AtomicU64::new),
            throttle: Throttle::per_second(plan.rate_limit_per_second),
            stop: AtomicBool::new(false),
            archive_bytes: AtomicU64::new(0),
            max_bytes: plan.max_bytes,
            control,
            checkpoints,
        }
    }

    /// Takes `n` messages off the `max_messages` budget at once (what a resume adopted).
    pub(super) fn spend_budget(&self, n: u64) {
        if let Some(left) = &self.remaining {
            let _ = left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| {
                Some(m.saturating_sub(n))
            });
        }
    }

    pub(super) fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.control.is_cancelled()
    }

    /// Takes one message from the `max_messages` budget; false when it is used up.
    pub(super) fn take_budget(&self) -> bool {
        match &self.remaining {
            None => true,
            Some(left) => left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok(),
        }
    }
}
