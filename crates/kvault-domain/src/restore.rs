//! The documented restore request (`POST /clusters/{id}/restore`) and its result.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::field_checks::{validate_partition_list, validate_rate};
use crate::groups::{ConsumerGroupsMode, GroupChoice, GroupSelection, GroupTranslation};
use crate::ids::{validate_topic_name, BackupId, ClusterId};
use crate::restore_transform::{
    ExcludedKey, MaskRule, SampleRequest, TransformCounts, TransformFields, TransformPlan,
};

/// The header that carries a restored record's original offset, when asked for.
pub const SOURCE_OFFSET_HEADER: &str = "kvault.source.offset";

/// What to do when the target topic already exists and holds messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum IfExists {
    /// Refuse with 409 Conflict (default): a restore never mixes into live data by accident.
    #[default]
    Fail,
    /// Append after the messages already there.
    Append,
}

impl IfExists {
    /// The one rule restore and migrate share: a target topic holding `held` messages is a
    /// conflict naming `target_topic` unless the request appends. `verb` says what would have
    /// been written ("restore", "migrate").
    pub fn admit(
        self,
        topic: &str,
        held: i64,
        verb: &str,
    ) -> Result<(), crate::error::DomainError> {
        if held > 0 && self == IfExists::Fail {
            return Err(crate::error::DomainError::conflict_on(
                format!(
                    "target topic {topic} already exists and holds {held} messages; {verb} into \
                     a new or empty topic, or set \"if_exists\": \"append\""
                ),
                "target_topic",
                topic,
            ));
        }
        Ok(())
    }
}

/// How source partitions were mapped onto target partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PartitionMapping {
    /// Partition N goes to partition N (partition counts match).
    Identity,
    /// Keyed records by Kafka's default murmur2 partitioner; null keys round-robin.
    Murmur2,
}

/// `POST /api/kafka/clusters/{cluster-id}/restore`. Documented fields with documented
/// defaults; `if_exists`, `partitions`, `until_time` and `include_source_offset_header` are
/// extensions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// Required, unless `schedule_id` names the backups to restore.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$")
    )]
    pub backup_id: String,
    /// Extension, instead of `backup_id`: restore a backup schedule's chain up to its newest
    /// completed run (with `until_time`: up to that instant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<String>,
    /// Required, except for a backup set (then each topic is restored under its own name, or
    /// as `topic_prefix` / `topic_mapping` say).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9._-]{1,249}$"))]
    pub target_topic: String,
    /// Partitions of the target topic when kvault creates it (default: the source's).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub target_partitions: Option<i32>,
    /// Replication factor when kvault creates the topic (default: the source's).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 32767))]
    pub replication_factor: Option<i16>,
    /// Keep every record at its original offset. Only possible into an empty (or new) topic with
    /// the same partition count, when each backed-up partition starts at offset 0 without gaps;
    /// otherwise the restore is refused before anything is written.
    #[serde(default)]
    pub preserve_offsets: bool,
    /// Messages per second (default 5000).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub rate_limit_per_second: Option<u32>,
    /// Verify every checksum before producing anything (default true).
    #[serde(default = "yes")]
    pub validate_checksum: bool,
    /// Extension: `"fail"` (default) or `"append"` when the target topic holds messages.
    #[serde(default)]
    pub if_exists: IfExists,
    /// Extension: restore only these source partitions.
    #[serde(default)]
    pub partitions: Option<Vec<i32>>,
    /// Extension: restore only records with a timestamp at or before this instant.
    #[serde(default)]
    pub until_time: Option<DateTime<Utc>>,
    /// Extension: add a `kvault.source.offset` header (decimal) to every restored record.
    #[serde(default)]
    pub include_source_offset_header: bool,
    /// Extension: `retention.ms` of the topic the restore creates, instead of the backed-up
    /// value (`-1`: keep forever). Old records restored under the source's retention may be
    /// deleted by the broker soon after the restore; this keeps them. Only for a topic the
    /// restore creates: an existing target keeps its own settings.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = -1))]
    pub retention_override: Option<i64>,
    /// Extension: after the records are restored, commit the consumer groups the backup
    /// recorded on the target topic, translated to where their next records landed: `true`
    /// (every recorded group), `false` (default) or a list of group ids. Refused per group
    /// while it has active members on the target.
    #[serde(default)]
    pub restore_consumer_groups: Option<GroupChoice>,
    /// Extension: where a restored group already has a committed offset on a target
    /// partition, `"respect"` (default) keeps it and reports it; `"overwrite"` replaces it
    /// with the translated offset (which may move the group forward past records it has not
    /// read, or back).
    #[serde(default)]
    pub consumer_groups_mode: ConsumerGroupsMode,
    /// Extension, backup sets only: restore each topic as `{topic_prefix}{topic}`.
    #[serde(default)]
    pub topic_prefix: Option<String>,
    /// Extension, backup sets only: restore these topics under other names (`{"orders":
    /// "orders-copy"}`); takes precedence over `topic_prefix`.
    #[serde(default)]
    pub topic_mapping: Option<std::collections::BTreeMap<String, String>>,
    /// Extension: restore only the records this CEL expression keeps (the language, variables
    /// and limits of a migration's `transformation.filter_expression`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_expression: Option<String>,
    /// Extension: restore a deterministic fraction, by key (whole keys) or by record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<SampleRequest>,
    /// Extension: rules that rewrite JSON fields, headers or the key before producing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<Vec<MaskRule>>,
    /// Extension: keys whose records are never restored (strings, `{"base64": ...}`, or
    /// `{"list": NAME}` for a stored list of `masking.key_lists`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_keys: Option<Vec<ExcludedKey>>,
}

fn yes() -> bool {
    true
}

pub const DEFAULT_RESTORE_RATE: u32 = 5_000;

/// A validated restore request.
#[derive(Debug, Clone, PartialEq)]
pub struct RestorePlan {
    pub backup_id: BackupId,
    pub target_topic: String,
    pub target_partitions: Option<i32>,
    pub replication_factor: Option<i16>,
    pub preserve_offsets: bool,
    pub rate_limit_per_second: u32,
    pub validate_checksum: bool,
    pub if_exists: IfExists,
    pub partitions: Option<Vec<i32>>,
    pub until_time_ms: Option<i64>,
    pub include_source_offset_header: bool,
    /// `retention.ms` for a topic the restore creates.
    pub retention_override_ms: Option<i64>,
    /// Which recorded groups are committed on the target afterwards.
    pub restore_consumer_groups: GroupSelection,
    /// What to do where a group already has a commit on the target.
    pub consumer_groups_mode: ConsumerGroupsMode,
    /// What the restore keeps and rewrites (`filter_expression`, `sample`, `mask`,
    /// `exclude_keys`), when the request asks for any of it.
    pub transform: Option<TransformPlan>,
}

impl RestoreRequest {
    /// Whether the request can only be a set restore (no `target_topic`, or a set-only field).
    pub fn may_name_a_set(&self) -> bool {
        self.target_topic.is_empty() || self.topic_prefix.is_some() || self.topic_mapping.is_some()
    }

    pub fn new(backup_id: impl Into<String>, target_topic: impl Into<String>) -> Self {
        Self {
            backup_id: backup_id.into(),
            schedule_id: None,
            target_topic: target_topic.into(),
            target_partitions: None,
            replication_factor: None,
            preserve_offsets: false,
            rate_limit_per_second: None,
            validate_checksum: true,
            if_exists: IfExists::Fail,
            partitions: None,
            until_time: None,
            include_source_offset_header: false,
            retention_override: None,
            restore_consumer_groups: None,
            consumer_groups_mode: ConsumerGroupsMode::Respect,
            topic_prefix: None,
            topic_mapping: None,
            filter_expression: None,
            sample: None,
            mask: None,
            exclude_keys: None,
        }
    }

    /// The transform fields, validated; `preserve_offsets` cannot hold with any of them.
    fn validate_transform(&self) -> Result<Option<TransformPlan>, ValidationError> {
        let transform = TransformPlan::validate(TransformFields {
            filter_expression: self.filter_expression.as_deref(),
            sample: self.sample.as_ref(),
            mask: self.mask.as_deref(),
            exclude_keys: self.exclude_keys.as_deref(),
        })?;
        if let (true, Some(t)) = (self.preserve_offsets, &transform) {
            return Err(ValidationError::new(
                "preserve_offsets",
                true,
                format!(
                    "cannot be combined with {}: records left out or re-keyed leave gaps, so \
                     offsets cannot be kept",
                    t.fields().join(", ")
                ),
            ));
        }
        Ok(transform)
    }

    pub fn validate(&self) -> Result<RestorePlan, ValidationError> {
        if self.backup_id.is_empty() {
            return Err(ValidationError::new(
                "backup_id",
                "",
                "is required (or schedule_id)",
            ));
        }
        let backup_id = BackupId::parse(&self.backup_id)?;
        if self.topic_prefix.is_some() || self.topic_mapping.is_some() {
            return Err(ValidationError::new(
                if self.topic_prefix.is_some() {
                    "topic_prefix"
                } else {
                    "topic_mapping"
                },
                &self.backup_id,
                "applies to backup sets only; this backup is a single topic (use target_topic)",
            ));
        }
        validate_topic_name("target_topic", &self.target_topic)?;
        if let Some(n) = self.target_partitions {
            if n < 1 {
                return Err(ValidationError::new(
                    "target_partitions",
                    n,
                    "must be at least 1",
                ));
            }
        }
        if let Some(n) = self.replication_factor {
            if n < 1 {
                return Err(ValidationError::new(
                    "replication_factor",
                    n,
                    "must be at least 1",
                ));
            }
        }
        if let Some(partitions) = &self.partitions {
            validate_partition_list("partitions", partitions)?;
        }
        if self.preserve_offsets && self.if_exists == IfExists::Append {
            return Err(ValidationError::new(
                "preserve_offsets",
                true,
                "cannot preserve offsets while appending to a topic that already holds messages",
            ));
        }
        if let Some(ms) = self.retention_override.filter(|ms| *ms < 1 && *ms != -1) {
            return Err(ValidationError::new(
                "retention_override",
                ms,
                "must be -1 (keep forever) or a retention.ms of at least 1",
            ));
        }
        let rate = validate_rate(self.rate_limit_per_second, DEFAULT_RESTORE_RATE)?;
        let transform = self.validate_transform()?;
        let restore_consumer_groups = match &self.restore_consumer_groups {
            Some(choice) => choice.selection("restore_consumer_groups")?,
            None => GroupSelection::None,
        };
        Ok(RestorePlan {
            backup_id,
            target_topic: self.target_topic.clone(),
            target_partitions: self.target_partitions,
            replication_factor: self.replication_factor,
            preserve_offsets: self.preserve_offsets,
            rate_limit_per_second: rate,
            validate_checksum: self.validate_checksum,
            if_exists: self.if_exists,
            partitions: self.partitions.clone(),
            until_time_ms: self.until_time.map(|t| t.timestamp_millis()),
            include_source_offset_header: self.include_source_offset_header,
            retention_override_ms: self.retention_override,
            restore_consumer_groups,
            consumer_groups_mode: self.consumer_groups_mode,
            transform,
        })
    }
}

/// One target partition after a restore: `[start_offset, end_offset)` is where the restored
/// records landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartitionRestoreResult {
    pub partition: i32,
    pub messages_count: u64,
    pub start_offset: i64,
    pub end_offset: i64,
}

/// The documented restore response, plus extensions (`partition_mapping`, `topic_created`,
/// `offsets_preserved`, `warnings`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RestoreResult {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub backup_id: BackupId,
    pub target_topic: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub cluster_id: ClusterId,
    /// Messages selected from the backup for this restore.
    pub total_messages: u64,
    /// Payload bytes of those messages.
    pub total_size_bytes: u64,
    pub duration_ms: u64,
    pub messages_restored: u64,
    pub partitions_created: Vec<PartitionRestoreResult>,
    pub status: crate::operation_status::OperationStatus,
    pub checksum_validated: bool,
    pub partition_mapping: PartitionMapping,
    pub topic_created: bool,
    pub offsets_preserved: bool,
    /// Things the caller should know that did not stop the restore (e.g. topic configs the
    /// target broker refused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Extension: one entry per consumer group of `restore_consumer_groups` (for `true`, per
    /// group the backup recorded), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumer_groups_restored: Vec<GroupTranslation>,
    /// Extension, when the request filters, samples, masks or excludes keys: what was read,
    /// left out at each step, and masked per rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<TransformCounts>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_example_and_defaults() {
        let req: RestoreRequest = serde_json::from_str(
            r#"{"backup_id":"backup-1234567890","target_topic":"events-restored",
                "target_partitions":3,"replication_factor":2,"preserve_offsets":false,
                "rate_limit_per_second":5000,"validate_checksum":true}"#,
        )
        .unwrap();
        assert!(req.validate().is_ok());
        let minimal: RestoreRequest =
            serde_json::from_str(r#"{"backup_id":"b1","target_topic":"t"}"#).unwrap();
        let plan = minimal.validate().unwrap();
        assert!(plan.validate_checksum);
        assert!(!plan.preserve_offsets);
        assert_eq!(plan.rate_limit_per_second, 5000);
        assert_eq!(plan.if_exists, IfExists::Fail);
    }

    #[test]
    fn bad_fields_are_named() {
        let mut req = RestoreRequest::new("b1", "t");
        req.target_partitions = Some(0);
        assert_eq!(req.validate().unwrap_err().field, "target_partitions");
        let req = RestoreRequest::new("../b1", "t");
        assert_eq!(req.validate().unwrap_err().field, "backup_id");
        let req = RestoreRequest::new("b1", "bad topic");
        assert_eq!(req.validate().unwrap_err().field, "target_topic");
        let mut req = RestoreRequest::new("b1", "t");
        req.preserve_offsets = true;
        req.if_exists = IfExists::Append;
        assert_eq!(req.validate().unwrap_err().field, "preserve_offsets");
        let mut req = RestoreRequest::new("b1", "t");
        req.restore_consumer_groups = Some(GroupChoice::Only(vec![]));
        assert_eq!(req.validate().unwrap_err().field, "restore_consumer_groups");
    }

    #[test]
    fn consumer_groups_are_restored_only_when_asked() {
        let parse = |json: &str| {
            serde_json::from_str::<RestoreRequest>(json)
                .unwrap()
                .validate()
                .unwrap()
                .restore_consumer_groups
        };
        assert_eq!(
            parse(r#"{"backup_id":"b","target_topic":"t"}"#),
            GroupSelection::None
        );
        assert_eq!(
            parse(r#"{"backup_id":"b","target_topic":"t","restore_consumer_groups":true}"#),
            GroupSelection::All
        );
        assert_eq!(
            parse(r#"{"backup_id":"b","target_topic":"t","restore_consumer_groups":["g"]}"#),
            GroupSelection::Only(vec!["g".into()])
        );
    }

    #[test]
    fn existing_group_commits_are_respected_unless_overwrite_is_asked() {
        let mode = |json: &str| {
            serde_json::from_str::<RestoreRequest>(json)
                .map(|r| r.validate().unwrap().consumer_groups_mode)
        };
        assert_eq!(
            mode(r#"{"backup_id":"b","target_topic":"t"}"#).unwrap(),
            ConsumerGroupsMode::Respect
        );
        assert_eq!(
            mode(r#"{"backup_id":"b","target_topic":"t","consumer_groups_mode":"overwrite"}"#)
                .unwrap(),
            ConsumerGroupsMode::Overwrite
        );
        assert!(
            mode(r#"{"backup_id":"b","target_topic":"t","consumer_groups_mode":"merge"}"#).is_err()
        );
    }
}
