//! What a dry run of a restore or a migration answers (`?dry_run=true`, `--dry-run`): the plan
//! the real run would carry out, made by the same validation and planning code, stopping
//! before anything is written. The shapes mirror the real results field for field
//! (`partitions` like `partitions_created`, `consumer_groups` like `consumer_groups_restored`
//! / `consumer_groups_translated`), so a caller can compare the plan with what happened.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::groups::GroupTranslation;
use crate::ids::ClusterId;
use crate::restore::{PartitionMapping, PartitionRestoreResult};

/// The target topic as the run would find or make it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopicPlan {
    pub topic: String,
    /// True when the run would create the topic; false when it exists and is written as it is.
    pub create: bool,
    pub partitions: i32,
    pub replication_factor: i16,
    /// The topic-level configs it would be created with (empty for an existing topic). The
    /// broker may refuse some; the real run then creates the topic without them and warns.
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

/// `POST /clusters/{id}/restore?dry_run=true`: what the restore would do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RestoreDryRun {
    /// Always true: nothing was written.
    pub dry_run: bool,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub backup_id: crate::ids::BackupId,
    pub target_topic: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub cluster_id: ClusterId,
    pub topic: TopicPlan,
    pub partition_mapping: PartitionMapping,
    pub offsets_preserved: bool,
    /// Whether every checksum of the archive was checked (as the real run does first).
    pub checksum_validated: bool,
    /// Records the restore would write.
    pub total_messages: u64,
    /// Their payload bytes.
    pub total_size_bytes: u64,
    /// Per target partition: the records it would receive and the offsets they would land at
    /// (`[start_offset, end_offset)`), as the real run reports them in `partitions_created`.
    pub partitions: Vec<PartitionRestoreResult>,
    /// Per consumer group of `restore_consumer_groups`: what would be committed where
    /// (`status` is what the real run would report).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumer_groups: Vec<GroupTranslation>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// With `filter_expression`, `sample`, `mask` or `exclude_keys`: the counts the real run
    /// would report (the archive is read and transformed; nothing is produced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<crate::restore_transform::TransformCounts>,
}

/// `POST /migrate?dry_run=true`: what the migration would do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MigrateDryRun {
    /// Always true: nothing was written.
    pub dry_run: bool,
    pub source_cluster: String,
    pub source_topic: String,
    pub target_cluster: String,
    pub target_topic: String,
    pub topic: TopicPlan,
    /// True when source partition N is copied into target partition N (same partition ids);
    /// false when records are re-partitioned by key.
    pub partitions_kept: bool,
    pub transformation_applied: bool,
    /// Records in the cut (the source's watermarks now), capped by `max_messages`: what the
    /// migration would read. With a filter, fewer may be written.
    pub total_messages: u64,
    /// Per partition (kept partitions only): the records in the cut and the target offsets
    /// they would land at, `[start_offset, end_offset)`.
    pub partitions: Vec<PartitionRestoreResult>,
    /// Per group of `translate_consumer_groups`: what would be committed where.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumer_groups: Vec<GroupTranslation>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}
