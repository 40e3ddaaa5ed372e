//! Where a backup resumes after its replica stopped: the checkpoint a running backup keeps
//! with its job (the cut it took at the start, the topic as it read it, the groups at the cut,
//! and the segments it has committed to the store so far), and what a resumed attempt
//! adopted from it.
//!
//! The checkpoint is written through [`crate::job::OperationControl::checkpoint`] whenever it
//! changes (the cut first, before any record is read, then each finished segment); the job
//! system stores it with the job under the job's lease, so only the writer holding the job
//! can change it. A replica that takes the job over gives it back in
//! [`crate::backup::BackupPlan::resume`]: the backup keeps the same cut, the same
//! `created_at` and the segments the store can still vouch for, and reads each partition on
//! from the offset after its last adopted segment.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::manifest::{ConsumerGroupOffsets, SegmentInfo, TopicMetadata};

/// The part of one partition a backup covers: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartitionRange {
    pub partition: i32,
    pub start: i64,
    pub end: i64,
    /// The requested start offset was below the log start: retention removed it.
    pub truncated_by_retention: bool,
}

/// What a running backup has done that a later attempt may continue from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupCheckpoint {
    /// The archive being written: a checkpoint of another archive is never resumed.
    pub archive_uid: String,
    pub created_at: DateTime<Utc>,
    /// The cut: per partition, `[start, end)`, from the watermarks read at the start.
    pub cut: Vec<PartitionRange>,
    /// The topic as read at the start (partition count, replication, configs).
    pub topic: TopicMetadata,
    /// The groups' committed offsets at the cut, once read.
    #[serde(default)]
    pub consumer_groups: Option<Vec<ConsumerGroupOffsets>>,
    /// Per partition, the segments finished so far, in offset order.
    #[serde(default)]
    pub segments: BTreeMap<i32, Vec<SegmentInfo>>,
    /// Set when this attempt continued an earlier one: what it adopted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<ResumePoint>,
}

/// What a resumed attempt took over from the attempt before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResumePoint {
    pub partitions: Vec<PartitionResume>,
}

/// One partition of a resumed backup.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PartitionResume {
    pub partition: i32,
    /// Segments kept from the earlier attempt.
    pub segments_adopted: usize,
    /// Records in them.
    pub records_adopted: u64,
    /// The offset reading went on from (the partition's start when nothing was adopted).
    pub continued_from: i64,
}

impl ResumePoint {
    /// Per partition of `cut`: what `adopted` kept and where reading continues.
    pub fn of(cut: &[PartitionRange], adopted: &BTreeMap<i32, Vec<SegmentInfo>>) -> Self {
        let partitions = cut
            .iter()
            .map(|range| {
                let kept = adopted.get(&range.partition).map_or(&[][..], Vec::as_slice);
                PartitionResume {
                    partition: range.partition,
                    segments_adopted: kept.len(),
                    records_adopted: kept.iter().map(|s| s.message_count).sum(),
                    continued_from: continue_at(range, kept),
                }
            })
            .collect();
        Self { partitions }
    }

    pub fn records_adopted(&self) -> u64 {
        self.partitions.iter().map(|p| p.records_adopted).sum()
    }

    pub fn segments_adopted(&self) -> usize {
        self.partitions.iter().map(|p| p.segments_adopted).sum()
    }

    /// The job attempt's `resumed_from`: this resume point as JSON (the one place its shape
    /// is decided, for the job's attempts).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// The line the backup's result carries about it.
    pub fn warning(&self) -> String {
        format!(
            "resumed after the replica writing this backup stopped: {} segment(s) with {} \
             record(s) that attempt had committed were kept, the rest was read again from the \
             same cut",
            self.segments_adopted(),
            self.records_adopted()
        )
    }
}

/// Where reading of `range` goes on after the adopted segments `kept`.
pub fn continue_at(range: &PartitionRange, kept: &[SegmentInfo]) -> i64 {
    kept.last()
        .map_or(range.start, |s| (s.last_offset + 1).max(range.start))
}

impl BackupCheckpoint {
    /// The checkpoint as the job stores it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// A stored checkpoint, if `value` is one.
    pub fn from_json(value: &serde_json::Value) -> Option<Self> {
        serde_json::from_value(value.clone()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(first: i64, last: i64) -> SegmentInfo {
        SegmentInfo {
            file: format!("p0/{first:020}.seg"),
            sha256: String::new(),
            size_bytes: 10,
            block_count: 1,
            message_count: (last - first + 1) as u64,
            first_offset: first,
            last_offset: last,
            min_timestamp: 0,
            max_timestamp: 0,
            raw_bytes: 5,
        }
    }

    #[test]
    fn reading_continues_after_the_last_adopted_segment() {
        let cut = vec![
            PartitionRange {
                partition: 0,
                start: 5,
                end: 100,
                truncated_by_retention: false,
            },
            PartitionRange {
                partition: 1,
                start: 7,
                end: 9,
                truncated_by_retention: false,
            },
        ];
        let adopted = BTreeMap::from([(0, vec![segment(5, 20), segment(21, 40)])]);
        let point = ResumePoint::of(&cut, &adopted);
        assert_eq!(point.partitions[0].continued_from, 41);
        assert_eq!(point.partitions[0].records_adopted, 36);
        assert_eq!(point.partitions[1].continued_from, 7);
        assert_eq!(point.segments_adopted(), 2);
        let json = point.to_json();
        assert_eq!(json["partitions"][0]["segments_adopted"], 2);
        let checkpoint = BackupCheckpoint {
            archive_uid: "u".into(),
            created_at: Utc::now(),
            cut,
            topic: TopicMetadata {
                name: "t".into(),
                partition_count: 2,
                replication_factor: 1,
                configs: Default::default(),
            },
            consumer_groups: None,
            segments: adopted,
            resumed_from: Some(point),
        };
        let back = BackupCheckpoint::from_json(&checkpoint.to_json()).expect("round trip");
        assert_eq!(back, checkpoint);
    }
}
