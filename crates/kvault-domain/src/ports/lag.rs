//! Consumer lag: where a consumer group stands on the partitions it reads, read without
//! joining the group ([`ConsumerLag`]). Implemented by `kvault-kafka` (and the in-memory fake
//! engine); the API's lag monitor asks it for the groups an operator lists in
//! `monitoring.groups` and exports the figures. The arithmetic (lag in records, lag in
//! seconds) is here, so every implementation answers alike.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::DomainResult;
use crate::ids::ClusterId;

/// A group's position on one partition, as read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionPosition {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset (the next record it will read); `None` when the group has
    /// committed nothing on this partition.
    pub committed_offset: Option<i64>,
    /// The first offset still in the log.
    pub low_watermark: i64,
    /// The offset the next produced record will get.
    pub high_watermark: i64,
    /// The timestamp (Unix milliseconds, as the record carries it: CreateTime or
    /// LogAppendTime) of the next record the group has not consumed. `None` when the group is
    /// caught up, or when no such record could be read (e.g. only transaction markers are left).
    pub next_record_timestamp_ms: Option<i64>,
}

impl PartitionPosition {
    /// Where the group resumes: its committed offset, or the low watermark when it has none
    /// (the most it could have left to read).
    pub fn position(&self) -> i64 {
        self.committed_offset.unwrap_or(self.low_watermark)
    }

    /// Records the group has yet to consume: high watermark minus its position, never negative.
    pub fn lag_records(&self) -> i64 {
        (self.high_watermark - self.position()).max(0)
    }

    /// How long the next unconsumed record has waited: `now` minus its timestamp, in seconds
    /// (never negative, whatever the producer's clock said). 0 when the group is caught up;
    /// `None` when it lags but the record's timestamp is unknown.
    pub fn lag_seconds(&self, now: DateTime<Utc>) -> Option<f64> {
        if self.lag_records() == 0 {
            return Some(0.0);
        }
        let ts = self.next_record_timestamp_ms?;
        Some((now.timestamp_millis() - ts).max(0) as f64 / 1000.0)
    }
}

/// A group's position on every partition it was asked about, and when it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupLag {
    pub partitions: Vec<PartitionPosition>,
    pub read_at: DateTime<Utc>,
}

impl GroupLag {
    /// Records the group has yet to consume, over every partition.
    pub fn total_records(&self) -> i64 {
        self.partitions
            .iter()
            .map(PartitionPosition::lag_records)
            .sum()
    }
}

/// Reads a consumer group's lag without joining it (no member joins, no rebalance, nothing
/// committed).
#[async_trait]
pub trait ConsumerLag: Send + Sync {
    /// `group`'s position on every partition of `topics`, or, when `topics` is empty, of every
    /// topic the group has committed offsets on. `NotFound` when the cluster or a listed topic
    /// is unknown, or when the broker knows no such group.
    async fn group_lag(
        &self,
        cluster: &ClusterId,
        group: &str,
        topics: &[String],
    ) -> DomainResult<GroupLag>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn position(committed: Option<i64>, high: i64, ts: Option<i64>) -> PartitionPosition {
        PartitionPosition {
            topic: "t".into(),
            partition: 0,
            committed_offset: committed,
            low_watermark: 2,
            high_watermark: high,
            next_record_timestamp_ms: ts,
        }
    }

    #[test]
    fn lag_is_counted_from_the_commit_or_the_low_watermark() {
        assert_eq!(position(Some(4), 10, None).lag_records(), 6);
        assert_eq!(position(None, 10, None).lag_records(), 8);
        assert_eq!(position(Some(12), 10, None).lag_records(), 0);
    }

    #[test]
    fn lag_seconds_is_the_age_of_the_next_unconsumed_record() {
        let now = Utc.timestamp_millis_opt(1_700_000_010_500).unwrap();
        let lagging = position(Some(4), 10, Some(1_700_000_000_000));
        assert_eq!(lagging.lag_seconds(now), Some(10.5));
        // Caught up: 0, whatever the last record's age.
        assert_eq!(position(Some(10), 10, None).lag_seconds(now), Some(0.0));
        // A record from the future (a producer's clock ahead) is not negative lag.
        assert_eq!(
            position(Some(4), 10, Some(1_700_000_020_000)).lag_seconds(now),
            Some(0.0)
        );
        // Lagging, timestamp unknown: unknown, not 0.
        assert_eq!(position(Some(4), 10, None).lag_seconds(now), None);
    }
}
