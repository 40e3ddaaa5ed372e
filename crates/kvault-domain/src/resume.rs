//! Resuming a restore or migration on the replica that took its job over, exactly once.
//!
//! Before its first produce into a target topic an operation records a [`StartRecord`]
//! durably (through the job's [`JobJournal`]): each target partition's end offset when it
//! started, the archives or the source cut it reads, the partition mapping. Records are
//! produced in order per partition by an idempotent producer, so the records of the job that
//! landed on a target partition are exactly the offsets from that base to the partition's end
//! now: the replica taking over derives the resume point from the target itself
//! ([`resume_point`]), never from a progress checkpoint that may lag, checks that the records
//! found there are the planned ones, and produces only the rest. Where that cannot be proved
//! it ends the job `interrupted` ([`crate::DomainError::Interrupted`]) with the reason.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{DomainError, DomainResult};
use crate::restore::PartitionMapping;

/// What an operation recorded before producing into `target_topic`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartRecord {
    pub target_topic: String,
    /// Whether the operation creates the topic (then every base offset is 0).
    pub topic_created: bool,
    pub mapping: PartitionMapping,
    /// Per target partition: its end offset (high watermark) before the first produce.
    pub base_offsets: BTreeMap<i32, i64>,
    /// Restore: the archives read, oldest first, each as `(backup_id, archive_uid)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub archives: Vec<(String, Option<String>)>,
    /// Migration: per source partition, the cut `[start, end)` it copies.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_cut: BTreeMap<i32, (i64, i64)>,
}

/// What a resumed attempt found on one target partition, and where it continued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartitionResume {
    pub partition: i32,
    /// The partition's end offset when the job first started.
    pub base_offset: i64,
    /// Its end offset when this attempt looked.
    pub end_offset: i64,
    /// Records of the job already there (`end_offset - base_offset`): this attempt
    /// continued with the record after them.
    pub already_written: u64,
}

/// What one attempt found for one target topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopicResume {
    pub target_topic: String,
    pub partitions: Vec<PartitionResume>,
}

/// A job's durable memory across attempts: a restore's or migration's start records and
/// finished topics, a backup's checkpoint. Implemented over the job table by the API; the
/// CLI runs without one (nothing to resume in a process of its own).
#[async_trait]
pub trait JobJournal: Send + Sync {
    /// Whether this attempt took the job over from another (attempt 2 or later).
    fn is_takeover(&self) -> bool;
    /// What an earlier attempt recorded for `target_topic`, if it got that far.
    fn start_record(&self, target_topic: &str) -> Option<StartRecord>;
    /// Stores `record` durably. Awaited before the first produce into its topic: an error
    /// means it is not stored (the lease is lost, or the database is away), and the operation
    /// must not produce.
    async fn record_start(&self, record: StartRecord) -> DomainResult<()>;
    /// Notes on this attempt where it found the target and where it continued.
    async fn record_resume(&self, found: TopicResume) -> DomainResult<()>;
    /// The result an earlier attempt recorded for a finished topic (a backup set restore).
    fn finished(&self, target_topic: &str) -> Option<serde_json::Value>;
    /// Records that `target_topic` is finished, with its result.
    async fn record_finished(
        &self,
        target_topic: &str,
        result: serde_json::Value,
    ) -> DomainResult<()>;
    /// Keeps `checkpoint` with the job: all a later attempt needs to continue a backup
    /// (`crate::backup_resume`), not a delta. Called as the operation goes, from any thread,
    /// without waiting: it is stored in the background, the latest one winning when they come
    /// faster than the store takes them, and only while this attempt holds the job. A journal
    /// that keeps none ignores it.
    fn note_checkpoint(&self, checkpoint: serde_json::Value) {
        let _ = checkpoint;
    }
    /// Notes on this attempt where a resumed backup continued (`ResumePoint`'s JSON: what it
    /// kept of the earlier attempt, per partition). A journal that keeps none ignores it.
    async fn record_resume_point(&self, point: serde_json::Value) -> DomainResult<()> {
        let _ = point;
        Ok(())
    }
}

/// Per target partition, how many of the job's records are already there: the partition's
/// end offset now minus its end offset at the start. Refuses (as `Interrupted`, naming the
/// partition) an end offset below the base (the topic was recreated or truncated) and one
/// past the records planned for the partition (someone else wrote into it). `planned` is an
/// upper bound per partition (`None`: unknown, checked while reading).
pub fn resume_point(
    topic: &str,
    base: &BTreeMap<i32, i64>,
    ends_now: &BTreeMap<i32, i64>,
    planned: &BTreeMap<i32, u64>,
) -> DomainResult<Vec<PartitionResume>> {
    let mut found = Vec::with_capacity(base.len());
    for (partition, base_offset) in base {
        let Some(end) = ends_now.get(partition).copied() else {
            return Err(DomainError::interrupted(format!(
                "target topic {topic} has no partition {partition} any more (it had when the \
                 job started): it was recreated; the job cannot continue exactly, inspect the \
                 topic and run it again"
            )));
        };
        if end < *base_offset {
            return Err(DomainError::interrupted(format!(
                "partition {partition} of {topic} ends at offset {end}, before the offset \
                 {base_offset} it ended at when the job started: the topic was recreated or \
                 truncated meanwhile; the job cannot continue exactly"
            )));
        }
        let already = (end - base_offset) as u64;
        if let Some(max) = planned.get(partition).filter(|max| already > **max) {
            return Err(DomainError::interrupted(format!(
                "partition {partition} of {topic} holds {already} records after offset \
                 {base_offset}, more than the {max} this job writes there: something else \
                 wrote into the topic; the job cannot continue exactly"
            )));
        }
        found.push(PartitionResume {
            partition: *partition,
            base_offset: *base_offset,
            end_offset: end,
            already_written: already,
        });
    }
    Ok(found)
}

/// The refusal for records re-partitioned by key hash: which record went where depends on
/// how far each partition got, which the target cannot tell apart.
pub fn not_resumable_repartitioned(topic: &str, found: &[PartitionResume]) -> DomainError {
    let written: u64 = found.iter().map(|p| p.already_written).sum();
    DomainError::interrupted(format!(
        "{written} records were already written into {topic}, re-partitioned by key hash \
         into another partition count: which of them landed cannot be proved from the target, \
         so the job does not continue. Inspect or delete the topic and run the job again"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map<V: Copy>(pairs: &[(i32, V)]) -> BTreeMap<i32, V> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn the_resume_point_is_the_end_offset_now_minus_the_base() {
        let found = resume_point(
            "t",
            &map(&[(0, 10), (1, 0)]),
            &map(&[(0, 15), (1, 0)]),
            &map(&[(0, 5u64), (1, 3)]),
        )
        .unwrap();
        let already: Vec<u64> = found.iter().map(|p| p.already_written).collect();
        assert_eq!(already, vec![5, 0]);
        assert_eq!(found[0].end_offset, 15);
    }

    #[test]
    fn a_target_that_went_back_or_holds_too_much_is_interrupted() {
        let base = map(&[(0, 10)]);
        for (ends, planned) in [
            (map(&[(0, 9)]), map(&[(0, 5u64)])),
            (map(&[(0, 16)]), map(&[(0, 5u64)])),
            (BTreeMap::new(), map(&[(0, 5u64)])),
        ] {
            let err = resume_point("t", &base, &ends, &planned).unwrap_err();
            assert!(matches!(err, DomainError::Interrupted { .. }), "{err}");
        }
        // Unknown planned count: only the base is checked.
        assert!(resume_point("t", &base, &map(&[(0, 99)]), &BTreeMap::new()).is_ok());
    }
}
