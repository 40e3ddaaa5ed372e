//! Consumer-group lag for `/metrics`: a background task reads the lag of every group listed
//! in `monitoring.groups` through the domain's [`ConsumerLag`] port, every
//! `monitoring.interval_secs`, and keeps the last reading here; scrapes only read it, so a
//! scrape never waits on Kafka. A failed read drops the group's figures (stale lag is not shown
//! as current) and counts a failure.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use kvault_domain::error::DomainResult;
use kvault_domain::ports::{ConsumerLag, GroupLag};
use kvault_domain::{ClusterId, DomainError};

use crate::configuration::{MonitoredGroup, MonitoringSettings};

/// The longest one group's read may take before it counts as failed.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// `(cluster, group)`.
pub type GroupKey = (String, String);

/// What is known about one watched group.
#[derive(Debug, Clone, Default)]
pub struct GroupStatus {
    /// The last successful read, unless a later one failed.
    pub reading: Option<GroupLag>,
    /// When the group was last read successfully.
    pub refreshed_at: Option<DateTime<Utc>>,
    /// Failed reads since start.
    pub failures: u64,
}

/// The last lag reading of every watched group.
#[derive(Debug, Default)]
pub struct LagBoard {
    groups: Mutex<BTreeMap<GroupKey, GroupStatus>>,
}

impl LagBoard {
    /// A board for `groups`, each without a reading yet.
    pub fn new(groups: &[MonitoredGroup]) -> Self {
        let groups = groups
            .iter()
            .map(|g| ((g.cluster.clone(), g.group.clone()), GroupStatus::default()))
            .collect();
        Self {
            groups: Mutex::new(groups),
        }
    }

    /// Stores the outcome of one read.
    pub fn record(&self, key: GroupKey, read: DomainResult<GroupLag>) {
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        let status = groups.entry(key).or_default();
        match read {
            Ok(lag) => {
                status.refreshed_at = Some(lag.read_at);
                status.reading = Some(lag);
            }
            Err(_) => {
                status.reading = None;
                status.failures += 1;
            }
        }
    }

    /// Every watched group's status.
    pub fn statuses(&self) -> BTreeMap<GroupKey, GroupStatus> {
        self.groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Reads every listed group once into `board`.
pub async fn refresh(lag: &dyn ConsumerLag, groups: &[MonitoredGroup], board: &LagBoard) {
    for g in groups {
        let read = read_group(lag, g).await;
        if let Err(e) = &read {
            tracing::warn!(cluster = %g.cluster, group = %g.group, error = %e, "could not read consumer lag");
        }
        board.record((g.cluster.clone(), g.group.clone()), read);
    }
}

async fn read_group(lag: &dyn ConsumerLag, g: &MonitoredGroup) -> DomainResult<GroupLag> {
    let cluster = ClusterId::parse(&g.cluster)?;
    tokio::time::timeout(READ_TIMEOUT, lag.group_lag(&cluster, &g.group, &g.topics))
        .await
        .unwrap_or_else(|_| {
            Err(DomainError::internal(format!(
                "reading the lag took longer than {} s",
                READ_TIMEOUT.as_secs()
            )))
        })
}

/// Refreshes the board at start and then every `monitoring.interval_secs`, until dropped.
pub(crate) async fn lag_loop(
    lag: Arc<dyn ConsumerLag>,
    monitoring: MonitoringSettings,
    board: Arc<LagBoard>,
) {
    if monitoring.groups.is_empty() {
        return;
    }
    let mut tick = tokio::time::interval(monitoring.interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        refresh(lag.as_ref(), &monitoring.groups, &board).await;
    }
}
