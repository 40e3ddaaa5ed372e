//! What every partition task of one restore shares: the archives and their manifests, the
//! target and how records map onto it, the producer, what an earlier attempt landed, the
//! stop flag and the tally.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use kvault_domain::job::OperationControl;
use kvault_domain::restore::RestorePlan;
use kvault_domain::{BackupId, PartitionMapping};

use crate::partitioner::KeyPartitioner;
use crate::produce::RecordProducer;
use crate::throttle::Throttle;

use super::groups::GroupRestore;
use super::tally::Tally;
use super::transform::TransformStep;

/// State every partition task of one restore shares: what to read, where to produce it,
/// how far an earlier attempt got, and the stop flag and tally.
pub(super) struct RestoreInProgress {
    /// The archives to read, oldest first, each with the partitions it holds: one, or every
    /// link of an incremental chain.
    pub(super) links: Vec<(BackupId, BTreeSet<i32>)>,
    /// The links' manifests by backup id, as read when the restore began: partitions are
    /// opened from them, not from a manifest read and parsed again per partition.
    pub(super) manifests: BTreeMap<String, Arc<kvault_domain::Manifest>>,
    pub(super) target_topic: String,
    pub(super) mapping: PartitionMapping,
    pub(super) partitioner: KeyPartitioner,
    pub(super) producer: RecordProducer,
    pub(super) throttle: Option<Throttle>,
    pub(super) preserve_offsets: bool,
    pub(super) source_offset_header: bool,
    pub(super) until_ms: Option<i64>,
    /// Partitions kept 1:1: per partition its end offset before the job's first record, and
    /// how many of the job's records an earlier attempt already landed there.
    pub(super) base: BTreeMap<i32, i64>,
    pub(super) skip: BTreeMap<i32, u64>,
    /// Set when consumer groups are to be put back: where records landed.
    pub(super) groups: Option<GroupRestore>,
    pub(super) control: OperationControl,
    pub(super) stop: AtomicBool,
    pub(super) tally: Mutex<Tally>,
    /// The restore's filter, sample, excluded keys and masks, when it has any.
    pub(super) transform: Option<TransformStep>,
}

impl RestoreInProgress {
    pub(super) fn new(
        plan: &RestorePlan,
        links: Vec<(BackupId, BTreeSet<i32>)>,
        (mapping, target_partitions): (PartitionMapping, i32),
        (base, skip): (BTreeMap<i32, i64>, BTreeMap<i32, u64>),
        producer: RecordProducer,
        groups: Option<GroupRestore>,
        control: OperationControl,
    ) -> Self {
        Self {
            base,
            skip,
            links,
            manifests: BTreeMap::new(),
            target_topic: plan.target_topic.clone(),
            mapping,
            partitioner: KeyPartitioner::new(target_partitions),
            producer,
            throttle: Throttle::per_second(plan.rate_limit_per_second),
            preserve_offsets: plan.preserve_offsets,
            source_offset_header: plan.include_source_offset_header,
            until_ms: plan.until_time_ms,
            groups,
            control,
            stop: AtomicBool::new(false),
            tally: Mutex::new(Tally::default()),
            transform: None,
        }
    }

    /// The links that hold `partition`, oldest first.
    pub(super) fn links_with(&self, partition: i32) -> Vec<BackupId> {
        self.links
            .iter()
            .filter(|(_, partitions)| partitions.contains(&partition))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// For a source partition: how many of its records are already on the target, and
    /// (partitions kept 1:1) the target partition's base offset.
    pub(super) fn resume_of(&self, source: i32) -> (u64, Option<i64>) {
        match self.mapping {
            PartitionMapping::Identity => (
                self.skip.get(&source).copied().unwrap_or(0),
                Some(self.base.get(&source).copied().unwrap_or(0)),
            ),
            PartitionMapping::Murmur2 => (0, None),
        }
    }

    pub(super) fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.control.is_cancelled()
    }

    pub(super) fn target_partition(&self, source_partition: i32, key: Option<&[u8]>) -> i32 {
        match self.mapping {
            PartitionMapping::Identity => source_partition,
            PartitionMapping::Murmur2 => self.partitioner.partition(key),
        }
    }
}
