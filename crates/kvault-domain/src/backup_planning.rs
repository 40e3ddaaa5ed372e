//! The pure part of a backup: which partitions, which offset range of each (the cut, the
//! requested offsets and times, retention), and the documented result from what was written.
//! The Kafka adapter asks the broker for the numbers; the rules live here, tested without one.

use chrono::{DateTime, Utc};

use crate::backup::{
    compression_ratio, BackupPlan, BackupResult, NothingNewResult, PartitionBackupResult,
    PartitionEnd,
};
use crate::error::ValidationError;
use crate::ids::{BackupId, ClusterId};
use crate::manifest::Manifest;
use crate::offset::Offset;

pub use crate::backup_resume::PartitionRange;

/// The partitions to back up: all of `available`, or the requested ones (sorted), each of
/// which must exist.
pub fn select_partitions(
    plan: &BackupPlan,
    available: &[i32],
) -> Result<Vec<i32>, ValidationError> {
    let Some(requested) = &plan.partitions else {
        return Ok(available.to_vec());
    };
    if let Some(bad) = requested.iter().find(|p| !available.contains(p)) {
        return Err(ValidationError::new(
            "partitions",
            bad,
            format!(
                "topic {} has {} partitions (0..{})",
                plan.topic,
                available.len(),
                available.len().saturating_sub(1)
            ),
        ));
    }
    let mut sorted = requested.clone();
    sorted.sort_unstable();
    Ok(sorted)
}

/// What the broker said about one partition, as the range planner needs it.
#[derive(Debug, Clone, Copy, Default)]
pub struct PartitionMarks {
    /// `(low, high)` watermarks at the cut.
    pub watermarks: (i64, i64),
    /// For `start_time`: the first offset at or after it (`None`: no such record).
    pub first_at_start_time: Option<Option<i64>>,
    /// For `end_time`: the first offset after it (`None`: no such record).
    pub first_after_end_time: Option<Option<i64>>,
    /// For an incremental backup: where the parent ended this partition (`None`: a partition
    /// the parent did not have, which starts at its log start).
    pub continue_at: Option<i64>,
}

/// The range of one partition the plan covers.
pub fn plan_range(plan: &BackupPlan, partition: i32, marks: PartitionMarks) -> PartitionRange {
    let (low, high) = marks.watermarks;
    let requested = marks.continue_at.map_or(plan.start_offset, Offset::At);
    let mut start = requested.resolve(low, high);
    let mut end = plan.end_offset.resolve(low, high).max(start);
    if let Some(first_at) = marks.first_at_start_time {
        // No record at or after start_time: nothing of this partition qualifies.
        start = start.max(first_at.unwrap_or(end)).min(end);
    }
    if let Some(Some(first_after)) = marks.first_after_end_time {
        end = end.min(first_after).max(start);
    }
    PartitionRange {
        partition,
        start,
        end,
        truncated_by_retention: matches!(requested, Offset::At(n) if n < low),
    }
}

/// For an incremental backup whose every range is empty (no record arrived since its parent
/// ended), what to report instead of writing an empty archive; `None` when there is something
/// to back up, or the backup continues nothing (a chain needs its first link even if empty).
pub fn nothing_new(
    plan: &BackupPlan,
    ranges: &[PartitionRange],
    cluster_id: &ClusterId,
    (checked_at, duration_ms): (DateTime<Utc>, u64),
) -> Option<NothingNewResult> {
    let parent = plan.incremental_from.as_ref()?;
    if ranges.iter().any(|r| r.end > r.start) {
        return None;
    }
    Some(NothingNewResult {
        status: crate::operation_status::OperationStatus::NothingNew,
        cluster_id: cluster_id.clone(),
        topic: plan.topic.clone(),
        incremental_from: parent.to_string(),
        partitions: ranges
            .iter()
            .map(|r| PartitionEnd {
                partition: r.partition,
                end_offset: r.end,
            })
            .collect(),
        duration_ms,
        checked_at,
    })
}

/// When and how long a finished backup ran, and what it should tell the caller.
#[derive(Debug, Clone)]
pub struct BackupRun {
    /// The backup written (its manifest names it too, as a stored string).
    pub backup_id: BackupId,
    pub cluster_id: ClusterId,
    pub created_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub warnings: Vec<String>,
}

/// The documented result of a committed backup.
pub fn backup_result(
    manifest: &Manifest,
    ranges: &[PartitionRange],
    run: BackupRun,
) -> BackupResult {
    let truncated = |p: i32| {
        ranges
            .iter()
            .any(|r| r.partition == p && r.truncated_by_retention)
    };
    let partitions: Vec<PartitionBackupResult> = manifest
        .partitions
        .iter()
        .map(|m| PartitionBackupResult {
            partition: m.partition,
            messages_count: m.message_count,
            start_offset: m.start_offset,
            end_offset: m.end_offset,
            first_offset: m.first_offset,
            last_offset: m.last_offset,
            start_truncated_by_retention: truncated(m.partition),
        })
        .collect();
    let mut warnings = run.warnings;
    for p in partitions.iter().filter(|p| p.start_truncated_by_retention) {
        warnings.push(format!(
            "partition {}: the requested start offset is no longer on the broker (retention); \
             the backup starts at {}",
            p.partition, p.start_offset
        ));
    }
    let (raw, compressed) = (
        manifest.total_raw_bytes(),
        manifest.total_compressed_bytes(),
    );
    BackupResult {
        backup_id: run.backup_id,
        topic: manifest.topic.name.clone(),
        cluster_id: run.cluster_id,
        compression: manifest.compression.codec,
        total_messages: manifest.total_messages(),
        total_size_bytes: raw,
        compressed_size_bytes: compressed,
        compression_ratio: compression_ratio(raw, compressed),
        duration_ms: run.duration_ms,
        partitions,
        created_at: run.created_at,
        finished_at: manifest.finished_at,
        status: crate::operation_status::OperationStatus::Completed,
        warnings,
        consumer_groups: manifest
            .consumer_groups
            .iter()
            .map(|g| g.group_id.clone())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::{BackupDefaults, BackupRequest};

    fn plan(json: &str) -> BackupPlan {
        let req: BackupRequest = serde_json::from_str(json).unwrap();
        req.validate(BackupDefaults::default(), Utc::now()).unwrap()
    }

    #[test]
    fn an_increment_is_nothing_new_only_when_every_range_is_empty() {
        let continuing = |at: Option<i64>, high| PartitionMarks {
            watermarks: (0, high),
            continue_at: at,
            ..Default::default()
        };
        let now = Utc::now();
        let child = plan(r#"{"topic":"t","incremental_from":"parent"}"#);
        let idle = [
            plan_range(&child, 0, continuing(Some(7), 7)),
            plan_range(&child, 1, continuing(Some(3), 3)),
        ];
        let found = nothing_new(&child, &idle, &ClusterId::parse("c").unwrap(), (now, 5)).unwrap();
        assert_eq!(found.incremental_from, "parent");
        assert_eq!(
            found.status,
            crate::operation_status::OperationStatus::NothingNew
        );
        assert_eq!(
            found.partitions,
            vec![
                PartitionEnd {
                    partition: 0,
                    end_offset: 7
                },
                PartitionEnd {
                    partition: 1,
                    end_offset: 3
                }
            ]
        );
        let json = serde_json::to_value(&found).unwrap();
        assert_eq!(json["status"], "nothing_new");
        assert!(json.get("backup_id").is_none());
        // One new record, or a partition the parent did not have, is something to back up.
        let one_new = [idle[0], plan_range(&child, 1, continuing(Some(3), 4))];
        assert!(nothing_new(&child, &one_new, &ClusterId::parse("c").unwrap(), (now, 5)).is_none());
        let new_partition = [idle[0], plan_range(&child, 2, continuing(None, 2))];
        assert!(nothing_new(
            &child,
            &new_partition,
            &ClusterId::parse("c").unwrap(),
            (now, 5)
        )
        .is_none());
        // A full backup is always written: a chain needs its first link.
        let full = plan(r#"{"topic":"t"}"#);
        let empty = [plan_range(&full, 0, continuing(None, 0))];
        assert!(nothing_new(&full, &empty, &ClusterId::parse("c").unwrap(), (now, 5)).is_none());
    }

    #[test]
    fn requested_partitions_must_exist_and_come_back_sorted() {
        let p = plan(r#"{"topic":"t","partitions":[2,0]}"#);
        assert_eq!(select_partitions(&p, &[0, 1, 2]).unwrap(), vec![0, 2]);
        let err = select_partitions(&p, &[0, 1]).unwrap_err();
        assert_eq!(err.field, "partitions");
        let all = plan(r#"{"topic":"t"}"#);
        assert_eq!(select_partitions(&all, &[0, 1]).unwrap(), vec![0, 1]);
    }

    #[test]
    fn ranges_clamp_to_the_cut_times_and_retention() {
        let marks = |low, high| PartitionMarks {
            watermarks: (low, high),
            ..Default::default()
        };
        let whole = plan(r#"{"topic":"t"}"#);
        assert_eq!(plan_range(&whole, 0, marks(5, 50)).start, 5);
        assert_eq!(plan_range(&whole, 0, marks(5, 50)).end, 50);

        let from = plan(r#"{"topic":"t","start_offset":2,"end_offset":40}"#);
        let r = plan_range(&from, 1, marks(5, 50));
        assert_eq!((r.start, r.end, r.truncated_by_retention), (5, 40, true));

        let timed = PartitionMarks {
            watermarks: (0, 100),
            first_at_start_time: Some(Some(30)),
            first_after_end_time: Some(Some(60)),
            continue_at: None,
        };
        let r = plan_range(&whole, 0, timed);
        assert_eq!((r.start, r.end), (30, 60));
        let nothing_after_start = PartitionMarks {
            first_at_start_time: Some(None),
            ..timed
        };
        let r = plan_range(&whole, 0, nothing_after_start);
        assert_eq!(r.start, r.end, "an empty range, not the whole partition");

        // An incremental backup continues where its parent ended, or says retention cut in.
        let continued = PartitionMarks {
            continue_at: Some(42),
            ..marks(0, 50)
        };
        assert_eq!(plan_range(&whole, 0, continued).start, 42);
        let cut = PartitionMarks {
            continue_at: Some(3),
            ..marks(10, 50)
        };
        let r = plan_range(&whole, 0, cut);
        assert_eq!((r.start, r.truncated_by_retention), (10, true));
    }
}
