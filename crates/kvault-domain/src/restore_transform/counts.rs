//! The counts a filtered, sampled or masked restore reports (and its dry run).

use serde::{Deserialize, Serialize};

use super::{MaskAction, TransformPlan};

/// What the transform did, reported in the restore result (and by a dry run).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransformCounts {
    /// Records read out of the backup (after `partitions` and `until_time`).
    pub records_read: u64,
    /// Records that passed every step (what is produced).
    pub records_restored: u64,
    /// Dropped because their key is in `exclude_keys` (checked first).
    pub excluded: u64,
    /// Dropped by `sample` (checked second).
    pub sampled_out: u64,
    /// Dropped by `filter_expression` (checked last, as it costs the most).
    pub filtered_out: u64,
    /// Restored records whose value a `path` rule could not read as JSON (restored unmasked).
    pub values_not_json: u64,
    /// Per `mask` rule, in order: how many fields it rewrote.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields_masked: Vec<RuleCount>,
    /// True when a rule masks the key: records are then partitioned by the masked key
    /// (`partition_mapping` is `murmur2`), so equal masked keys share a partition.
    pub partitioned_by_masked_key: bool,
}

/// One mask rule's count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RuleCount {
    /// The path, `header:NAME` or `key`.
    pub rule: String,
    pub action: MaskAction,
    pub masked: u64,
}

impl TransformCounts {
    /// Zero counts shaped for `plan`.
    pub fn for_plan(plan: &TransformPlan) -> Self {
        Self {
            fields_masked: plan
                .mask
                .iter()
                .map(|r| RuleCount {
                    rule: r.target.label(),
                    action: r.action,
                    masked: 0,
                })
                .collect(),
            partitioned_by_masked_key: plan.masks_key(),
            ..Self::default()
        }
    }

    /// Adds `other`'s counts (another partition's) to these.
    pub fn merge(&mut self, other: &TransformCounts) {
        self.records_read += other.records_read;
        self.records_restored += other.records_restored;
        self.excluded += other.excluded;
        self.sampled_out += other.sampled_out;
        self.filtered_out += other.filtered_out;
        self.values_not_json += other.values_not_json;
        for (mine, theirs) in self.fields_masked.iter_mut().zip(&other.fields_masked) {
            mine.masked += theirs.masked;
        }
    }
}
