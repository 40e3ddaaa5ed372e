//! Drain: watches a consumer group's lag on some topics until it is drained or a timeout
//! passes, without ever joining the group.
//!
//! - Lag of a partition = high watermark - committed offset of the group; a partition the
//!   group never committed counts from the low watermark. Committed offsets are read with an
//!   OffsetFetch request (`rd_kafka_committed`) from a consumer configured with the group's id
//!   that never subscribes, is never assigned anything and never commits: it sends no
//!   JoinGroup/SyncGroup/LeaveGroup, so the members being watched see no rebalance.
//! - `lag_based`: drained when the total lag over all partitions is `<= max_lag`.
//! - `time_based`: drained when, on every partition, the committed offset has reached the high
//!   watermark snapshotted when the drain began, whatever was produced since. It is the safe
//!   point to cut a deployment over while producers keep writing.
//! - A check runs every `check_interval_ms` until drained or `timeout_seconds` (one last check
//!   runs at the deadline). The result describes the last check.
//! - `lag_seconds` of a partition with lag is the age of the next unconsumed record (now minus
//!   its timestamp), read by a separate group-less consumer assigned at the committed offset;
//!   `None` when the partition has no lag or that record could not be read in time.
//! - An unknown topic is `NotFound("topic")`. A group is known when the broker describes it in
//!   a state other than `Dead` (it has members or stored offsets), or when it has a committed
//!   offset on one of the watched partitions; otherwise `NotFound("consumer_group")`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use kvault_domain::drain::{DrainRequest, DrainResult, DrainStatus, DrainStrategy, PartitionLag};
use kvault_domain::error::DomainResult;
use kvault_domain::job::OperationControl;
use kvault_domain::DomainError;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::admin::{blocking, committed_offsets, METADATA_TIMEOUT};
use crate::client::{group_offsets_client, kafka_error};
use crate::cluster::KafkaCluster;
use crate::lag::next_record_timestamps;

/// One partition being watched.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Tp {
    topic: String,
    partition: i32,
}

/// One observation of every watched partition.
#[derive(Debug, Clone)]
struct Check {
    lags: Vec<PartitionLag>,
    /// Committed offset per partition, `None` when the group has none there.
    committed: BTreeMap<Tp, Option<i64>>,
    total_lag: i64,
}

impl KafkaCluster {
    /// Watches `req.group_id` on `req.topics` until drained (per `req.strategy`) or timed out.
    pub async fn drain(
        &self,
        req: DrainRequest,
        control: OperationControl,
    ) -> DomainResult<DrainResult> {
        let started = Instant::now();
        req.validate()?;
        self.check_connection().await?;
        let admin = self.admin()?;
        let mut partitions = Vec::new();
        for topic in &req.topics {
            let info = admin.require_topic(topic).await?;
            for p in info.partitions {
                partitions.push(Tp {
                    topic: topic.clone(),
                    partition: p,
                });
            }
        }
        partitions.sort();
        partitions.dedup();

        let probe = Arc::new(group_offsets_client(self.config(), &req.group_id)?);
        let first = check(&probe, &req.group_id, &partitions).await?;
        if !group_known(&probe, &req.group_id, &first).await? {
            return Err(DomainError::not_found(
                kvault_domain::error::Missing::ConsumerGroup,
                &req.group_id,
            ));
        }
        // Progress for people watching: how much of the starting lag has been consumed.
        let starting_lag = first.total_lag.max(0);
        control.set_total(starting_lag as u64);
        // time_based: what existed when the drain began.
        let snapshot: BTreeMap<Tp, i64> = first
            .lags
            .iter()
            .map(|l| (tp(l), l.latest_offset))
            .collect();

        let timeout = Duration::from_secs(req.timeout_seconds);
        let interval = Duration::from_millis(req.check_interval_ms);
        let mut last = first;
        let mut last_time = Utc::now();
        loop {
            if is_drained(&req, &last, &snapshot) {
                return Ok(
                    finish(self, &req, DrainStatus::Drained, last, last_time, started).await,
                );
            }
            let elapsed = started.elapsed();
            if elapsed >= timeout {
                return Ok(
                    finish(self, &req, DrainStatus::Timeout, last, last_time, started).await,
                );
            }
            sleep_or_cancel(interval.min(timeout - elapsed), &control).await?;
            last = check(&probe, &req.group_id, &partitions).await?;
            last_time = Utc::now();
            control.set_messages((starting_lag - last.total_lag).max(0) as u64);
        }
    }
}

fn tp(l: &PartitionLag) -> Tp {
    Tp {
        topic: l.topic.clone(),
        partition: l.partition,
    }
}

fn is_drained(req: &DrainRequest, check: &Check, snapshot: &BTreeMap<Tp, i64>) -> bool {
    match req.strategy {
        DrainStrategy::LagBased => req.is_drained(check.total_lag),
        DrainStrategy::TimeBased => check.lags.iter().all(|l| {
            let target = snapshot.get(&tp(l)).copied().unwrap_or(0);
            // A partition the group never committed has consumed nothing of it unless it
            // held nothing (current_offset is then the low watermark, which equals the high).
            l.current_offset >= target
        }),
    }
}

async fn finish(
    cluster: &KafkaCluster,
    req: &DrainRequest,
    status: DrainStatus,
    mut check: Check,
    last_check_time: chrono::DateTime<Utc>,
    started: Instant,
) -> DrainResult {
    // The age estimate is best effort: a failure leaves `lag_seconds` empty, not the drain.
    match lag_ages(cluster, &check).await {
        Ok(ages) => {
            for lag in &mut check.lags {
                lag.lag_seconds = ages.get(&tp(lag)).copied();
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not estimate lag in seconds"),
    }
    DrainResult {
        group_id: req.group_id.clone(),
        status,
        total_lag: check.total_lag,
        duration_ms: started.elapsed().as_millis() as u64,
        partitions_checked: check.lags.len(),
        last_check_time,
        partition_details: check.lags,
    }
}

async fn sleep_or_cancel(duration: Duration, control: &OperationControl) -> DomainResult<()> {
    // Sleep in slices so a cancel is honoured within ~100 ms even with long intervals.
    let until = tokio::time::Instant::now() + duration;
    loop {
        if control.is_cancelled() {
            return Err(DomainError::Cancelled);
        }
        let now = tokio::time::Instant::now();
        if now >= until {
            return Ok(());
        }
        tokio::time::sleep((until - now).min(Duration::from_millis(100))).await;
    }
}

/// Reads committed offsets and watermarks of every partition.
async fn check(probe: &Arc<BaseConsumer>, group: &str, partitions: &[Tp]) -> DomainResult<Check> {
    let probe = Arc::clone(probe);
    let partitions = partitions.to_vec();
    let group = group.to_owned();
    blocking(move || {
        let query: Vec<(&str, i32)> = partitions
            .iter()
            .map(|tp| (tp.topic.as_str(), tp.partition))
            .collect();
        let offsets = committed_offsets(&probe, &group, &query)?;
        let mut lags = Vec::with_capacity(partitions.len());
        let mut committed = BTreeMap::new();
        let mut total_lag = 0i64;
        for (tp, found) in partitions.iter().zip(offsets) {
            let offset = found.map(|c| c.offset);
            let (low, high) = probe
                .fetch_watermarks(&tp.topic, tp.partition, METADATA_TIMEOUT)
                .map_err(|e| {
                    kafka_error(format!("watermarks of {}/{}", tp.topic, tp.partition), e)
                })?;
            let current = offset.unwrap_or(low);
            let lag = (high - current).max(0);
            total_lag += lag;
            lags.push(PartitionLag {
                topic: tp.topic.clone(),
                partition: tp.partition,
                current_offset: current,
                latest_offset: high,
                lag,
                lag_seconds: None,
            });
            committed.insert(tp.clone(), offset);
        }
        Ok(Check {
            lags,
            committed,
            total_lag,
        })
    })
    .await
}

/// Whether the broker knows the group (see the module docs).
async fn group_known(probe: &Arc<BaseConsumer>, group: &str, first: &Check) -> DomainResult<bool> {
    if first.committed.values().any(Option::is_some) {
        return Ok(true);
    }
    let probe = Arc::clone(probe);
    let group = group.to_owned();
    blocking(move || {
        let list = probe
            .fetch_group_list(Some(&group), METADATA_TIMEOUT)
            .map_err(|e| kafka_error(format!("describe group {group}"), e))?;
        Ok(list.groups().iter().any(|g| {
            g.name() == group && !g.state().is_empty() && !g.state().eq_ignore_ascii_case("dead")
        }))
    })
    .await
}

/// Age in seconds of the next unconsumed record of every lagging partition.
async fn lag_ages(cluster: &KafkaCluster, check: &Check) -> DomainResult<BTreeMap<Tp, f64>> {
    let wanted: BTreeMap<(String, i32), i64> = check
        .lags
        .iter()
        .filter(|l| l.lag > 0)
        .map(|l| ((l.topic.clone(), l.partition), l.current_offset))
        .collect();
    let stamps = next_record_timestamps(cluster.config(), wanted).await?;
    let now = Utc::now().timestamp_millis();
    Ok(stamps
        .into_iter()
        .map(|((topic, partition), ts)| {
            let age_ms = (now - ts).max(0);
            (Tp { topic, partition }, age_ms as f64 / 1000.0)
        })
        .collect())
}
