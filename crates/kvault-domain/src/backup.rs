//! The documented backup request (`POST /clusters/{id}/backup`) and its result.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::compression::{Compression, CompressionType};
use crate::error::ValidationError;
use crate::field_checks::{validate_partition_list, validate_rate};
use crate::groups::{GroupChoice, GroupSelection};
use crate::ids::{validate_topic_name, BackupId, ClusterId};
use crate::manifest::BackupSetRef;
use crate::offset::Offset;

/// Defaults that come from the `backup:` config section rather than from the request.
#[derive(Debug, Clone, Copy)]
pub struct BackupDefaults {
    pub compression: CompressionType,
    pub rate_limit_per_second: u32,
    /// `backup.max_backup_size_gb` in bytes: an archive growing past it fails and is removed.
    pub max_bytes: Option<u64>,
}

impl Default for BackupDefaults {
    fn default() -> Self {
        Self {
            compression: CompressionType::Gzip,
            rate_limit_per_second: 10_000,
            max_bytes: None,
        }
    }
}

/// `POST /api/kafka/clusters/{cluster-id}/backup`. Every documented field with its documented
/// default; `compression_level`, `start_time`, `end_time` and `backup_id` are extensions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// Topic to back up (required unless `topics` or `topic_pattern` names a backup set).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9._-]{1,249}$"))]
    pub topic: String,
    /// Extension: back up these topics as one set, each into an archive of its own
    /// (`{set_id}.{topic}`), instead of `topic`.
    #[serde(default)]
    pub topics: Option<Vec<String>>,
    /// Extension: back up every topic whose whole name matches this regular expression
    /// (internal `__` topics excluded) as one set, instead of `topic`.
    #[serde(default)]
    pub topic_pattern: Option<String>,
    /// Block codec; default `gzip` (or the `backup.compression` config value).
    #[serde(default)]
    pub compression: Option<CompressionType>,
    /// Extension: codec level (gzip 0-9, default 6; zstd 1-22, default 3).
    #[serde(default)]
    pub compression_level: Option<i32>,
    /// Stop after this many messages in total (default: unlimited).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub max_messages: Option<u64>,
    /// `"earliest"` (default), `"latest"` or an offset, applied to every selected partition.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::offset::start_offset_schema))]
    pub start_offset: Offset,
    /// `"latest"` (default: the high watermark when the backup starts) or an offset
    /// (exclusive, like the high watermark and like `end_offset` in the result).
    #[serde(default = "latest")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::offset::end_offset_schema))]
    pub end_offset: Offset,
    /// Partitions to back up (default: all).
    #[serde(default)]
    pub partitions: Option<Vec<i32>>,
    #[serde(default = "yes")]
    pub include_headers: bool,
    #[serde(default = "yes")]
    pub include_keys: bool,
    /// Messages per second across the whole backup (default 10000, or the config value).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub rate_limit_per_second: Option<u32>,
    /// Extension: only records with a timestamp at or after this instant (RFC 3339).
    #[serde(default)]
    pub start_time: Option<DateTime<Utc>>,
    /// Extension: only records with a timestamp before this instant (RFC 3339).
    #[serde(default)]
    pub end_time: Option<DateTime<Utc>>,
    /// Extension: name the backup instead of letting kvault generate `backup-{millis}-{rand}`.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$")
    )]
    pub backup_id: Option<String>,
    /// Extension: record the committed offsets of consumer groups on the topic at the cut
    /// (default true), so a restore can put the groups back.
    #[serde(default = "yes")]
    pub include_consumer_groups: bool,
    /// Extension: only these groups (default: every group with a committed offset on the
    /// topic). Groups without a commit on the topic are not recorded.
    #[serde(default)]
    pub consumer_groups: Option<Vec<String>>,
    /// Extension: an incremental backup continuing this backup of the same topic: each
    /// partition starts where that one ended (new partitions from their start).
    #[serde(default)]
    pub incremental_from: Option<String>,
}

fn yes() -> bool {
    true
}

fn latest() -> Offset {
    Offset::Latest
}

/// A backup request after validation, with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupPlan {
    pub backup_id: BackupId,
    pub topic: String,
    pub compression: Compression,
    pub max_messages: Option<u64>,
    pub start_offset: Offset,
    pub end_offset: Offset,
    pub partitions: Option<Vec<i32>>,
    pub include_headers: bool,
    pub include_keys: bool,
    pub rate_limit_per_second: u32,
    /// Milliseconds since the epoch.
    pub start_time_ms: Option<i64>,
    pub end_time_ms: Option<i64>,
    /// Compressed archive size past which the backup fails and is removed.
    pub max_bytes: Option<u64>,
    /// Whose committed offsets are recorded at the cut.
    pub consumer_groups: GroupSelection,
    /// The set this backup is one topic of, if any.
    pub backup_set: Option<BackupSetRef>,
    /// The uid the archive will carry (see [`crate::ids::new_uid`]); the job that writes it
    /// records it, so takeover and retention touch only this archive.
    pub archive_uid: String,
    /// The backup this one continues (incremental), if any.
    pub incremental_from: Option<BackupId>,
    /// Set when a replica took the backup over from one that stopped: the checkpoint that
    /// replica recorded, to continue from (see [`crate::backup_resume`]).
    pub resume: Option<crate::backup_resume::BackupCheckpoint>,
}

impl BackupRequest {
    /// A request for `topic` with every other field at its documented default.
    pub fn for_topic(topic: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
            topics: None,
            topic_pattern: None,
            compression: None,
            compression_level: None,
            max_messages: None,
            start_offset: Offset::Earliest,
            end_offset: Offset::Latest,
            partitions: None,
            include_headers: true,
            include_keys: true,
            rate_limit_per_second: None,
            start_time: None,
            end_time: None,
            backup_id: None,
            include_consumer_groups: true,
            consumer_groups: None,
            incremental_from: None,
        }
    }

    /// Checks every field that can be checked without asking the broker, and applies defaults.
    /// Partition numbers are checked against the topic's metadata later, by the adapter.
    pub fn validate(
        &self,
        defaults: BackupDefaults,
        now: DateTime<Utc>,
    ) -> Result<BackupPlan, ValidationError> {
        if self.is_set() {
            return Err(ValidationError::new(
                "topics",
                "[...]",
                "names a backup set: validate it with validate_set",
            ));
        }
        validate_topic_name("topic", &self.topic)?;
        let compression = Compression::new(
            self.compression.unwrap_or(defaults.compression),
            self.compression_level,
        )?;
        if self.max_messages == Some(0) {
            return Err(ValidationError::new(
                "max_messages",
                0,
                "must be at least 1 (omit it for no limit)",
            ));
        }
        if self.end_offset == Offset::Earliest {
            return Err(ValidationError::new(
                "end_offset",
                "earliest",
                "must be \"latest\" or an offset",
            ));
        }
        if let (Offset::At(start), Offset::At(end)) = (self.start_offset, self.end_offset) {
            if start > end {
                return Err(ValidationError::new(
                    "start_offset",
                    start,
                    format!("must not be after end_offset ({end})"),
                ));
            }
        }
        if let Some(partitions) = &self.partitions {
            validate_partition_list("partitions", partitions)?;
        }
        let rate = validate_rate(self.rate_limit_per_second, defaults.rate_limit_per_second)?;
        if let (Some(start), Some(end)) = (self.start_time, self.end_time) {
            if start > end {
                return Err(ValidationError::new(
                    "start_time",
                    start.to_rfc3339(),
                    format!("must not be after end_time ({})", end.to_rfc3339()),
                ));
            }
        }
        let consumer_groups = self.group_selection()?;
        let incremental_from = self.incremental_source()?;
        let backup_id = match &self.backup_id {
            Some(raw) => BackupId::parse(raw)?,
            None => BackupId::generate(now),
        };
        Ok(BackupPlan {
            backup_id,
            topic: self.topic.clone(),
            compression,
            max_messages: self.max_messages,
            start_offset: self.start_offset,
            end_offset: self.end_offset,
            partitions: self.partitions.clone(),
            include_headers: self.include_headers,
            include_keys: self.include_keys,
            rate_limit_per_second: rate,
            start_time_ms: self.start_time.map(|t| t.timestamp_millis()),
            end_time_ms: self.end_time.map(|t| t.timestamp_millis()),
            max_bytes: defaults.max_bytes,
            consumer_groups,
            backup_set: None,
            archive_uid: crate::ids::new_uid(),
            incremental_from,
            resume: None,
        })
    }

    /// The parent of an incremental backup; it decides every partition's start, so the
    /// fields that would too are refused with it.
    fn incremental_source(&self) -> Result<Option<BackupId>, ValidationError> {
        let Some(raw) = &self.incremental_from else {
            return Ok(None);
        };
        let parent = BackupId::parse(raw).map_err(|mut e| {
            e.field = "incremental_from".into();
            e
        })?;
        let conflicting = [
            ("start_offset", self.start_offset != Offset::Earliest),
            ("start_time", self.start_time.is_some()),
            ("partitions", self.partitions.is_some()),
        ];
        if let Some((field, _)) = conflicting.iter().find(|(_, set)| *set) {
            return Err(ValidationError::new(
                *field,
                raw,
                "cannot be combined with incremental_from: an incremental backup starts each \
                 partition where its parent ended",
            ));
        }
        Ok(Some(parent))
    }

    fn group_selection(&self) -> Result<GroupSelection, ValidationError> {
        match (&self.consumer_groups, self.include_consumer_groups) {
            (None, true) => Ok(GroupSelection::All),
            (None, false) => Ok(GroupSelection::None),
            (Some(_), false) => Err(ValidationError::new(
                "consumer_groups",
                "[...]",
                "lists groups while include_consumer_groups is false",
            )),
            (Some(groups), true) => GroupChoice::Only(groups.clone()).selection("consumer_groups"),
        }
    }
}

/// One partition of a finished backup. Offsets are `[start_offset, end_offset)`: where the
/// backup really started and the cut it stopped at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartitionBackupResult {
    pub partition: i32,
    pub messages_count: u64,
    pub start_offset: i64,
    pub end_offset: i64,
    /// Extension: offset of the first and last record actually written (absent when none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_offset: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_offset: Option<i64>,
    /// Extension: the requested start was below the log start (retention removed it).
    #[serde(default)]
    pub start_truncated_by_retention: bool,
}

/// The documented backup response, plus extensions (`finished_at`, `warnings`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackupResult {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub backup_id: BackupId,
    pub topic: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub cluster_id: ClusterId,
    pub compression: CompressionType,
    pub total_messages: u64,
    /// Payload bytes (keys, values, headers) before compression.
    pub total_size_bytes: u64,
    /// Bytes of the archive's segment files on disk.
    pub compressed_size_bytes: u64,
    /// `compressed_size_bytes / total_size_bytes` (0.3 means the archive is 30% of the data);
    /// 1.0 for an empty backup.
    pub compression_ratio: f64,
    pub duration_ms: u64,
    pub partitions: Vec<PartitionBackupResult>,
    #[serde(with = "crate::time::rfc3339_seconds")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time::rfc3339_seconds")]
    pub finished_at: DateTime<Utc>,
    pub status: crate::operation_status::OperationStatus,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Extension: the consumer groups whose committed offsets the backup recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumer_groups: Vec<String>,
}

/// A scheduled incremental run that found nothing new: every selected partition's high
/// watermark is where the backup it continues ended, so no archive was written and no group
/// offset read. The job is `completed` with this result (`status: "nothing_new"`, no
/// `backup_id`); the schedule's next run continues the same backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NothingNewResult {
    /// `nothing_new`.
    pub status: crate::operation_status::OperationStatus,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub cluster_id: ClusterId,
    pub topic: String,
    /// The backup this run would have continued: still the chain's tip.
    pub incremental_from: String,
    /// Where each selected partition ended, in the tip and on the broker alike.
    pub partitions: Vec<PartitionEnd>,
    pub duration_ms: u64,
    #[serde(with = "crate::time::rfc3339_seconds")]
    pub checked_at: DateTime<Utc>,
}

/// One partition of a [`NothingNewResult`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartitionEnd {
    pub partition: i32,
    pub end_offset: i64,
}

/// What a backup that may skip an empty increment did.
#[derive(Debug, Clone, PartialEq)]
pub enum BackupOutcome {
    Written(BackupResult),
    NothingNew(NothingNewResult),
}

/// `compressed / raw`, rounded to 4 places; 1.0 when there was nothing to compress.
pub fn compression_ratio(raw: u64, compressed: u64) -> f64 {
    if raw == 0 {
        return 1.0;
    }
    ((compressed as f64 / raw as f64) * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> BackupRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn documented_defaults_apply() {
        let req = parse(r#"{"topic":"events"}"#);
        let plan = req.validate(BackupDefaults::default(), Utc::now()).unwrap();
        assert_eq!(plan.compression.codec, CompressionType::Gzip);
        assert_eq!(plan.start_offset, Offset::Earliest);
        assert_eq!(plan.end_offset, Offset::Latest);
        assert!(plan.include_headers && plan.include_keys);
        assert_eq!(plan.rate_limit_per_second, 10_000);
        assert_eq!(plan.partitions, None);
        assert!(plan.backup_id.as_str().starts_with("backup-"));
        assert_eq!(plan.consumer_groups, GroupSelection::All);
    }

    #[test]
    fn the_documented_example_parses() {
        let req = parse(
            r#"{"topic":"events","compression":"gzip","max_messages":1000000,
                "start_offset":"earliest","end_offset":"latest","partitions":[0,1,2],
                "include_headers":true,"include_keys":true,"rate_limit_per_second":10000}"#,
        );
        assert!(req.validate(BackupDefaults::default(), Utc::now()).is_ok());
    }

    #[test]
    fn bad_fields_are_named() {
        let check = |json: &str, field: &str| {
            let err = match serde_json::from_str::<BackupRequest>(json) {
                Ok(req) => req
                    .validate(BackupDefaults::default(), Utc::now())
                    .unwrap_err(),
                Err(e) => panic!("{json} did not parse: {e}"),
            };
            assert_eq!(err.field, field, "{json}");
        };
        check(r#"{"topic":""}"#, "topic");
        check(r#"{"topic":"t","max_messages":0}"#, "max_messages");
        check(
            r#"{"topic":"t","start_offset":10,"end_offset":5}"#,
            "start_offset",
        );
        check(r#"{"topic":"t","end_offset":"earliest"}"#, "end_offset");
        check(r#"{"topic":"t","partitions":[]}"#, "partitions");
        check(r#"{"topic":"t","partitions":[0,0]}"#, "partitions");
        check(r#"{"topic":"t","partitions":[-1]}"#, "partitions");
        check(
            r#"{"topic":"t","rate_limit_per_second":0}"#,
            "rate_limit_per_second",
        );
        check(r#"{"topic":"t","backup_id":"../x"}"#, "backup_id");
        check(r#"{"topic":"t","consumer_groups":[]}"#, "consumer_groups");
        check(
            r#"{"topic":"t","consumer_groups":["g"],"include_consumer_groups":false}"#,
            "consumer_groups",
        );
        check(
            r#"{"topic":"t","compression":"lz4","compression_level":3}"#,
            "compression_level",
        );
        check(
            r#"{"topic":"t","start_time":"2025-01-02T00:00:00Z","end_time":"2025-01-01T00:00:00Z"}"#,
            "start_time",
        );
    }

    #[test]
    fn unknown_codecs_and_fields_are_refused_by_the_parser() {
        assert!(
            serde_json::from_str::<BackupRequest>(r#"{"topic":"t","compression":"brotli"}"#)
                .is_err()
        );
        assert!(
            serde_json::from_str::<BackupRequest>(r#"{"topic":"t","compresion":"gzip"}"#).is_err()
        );
    }

    #[test]
    fn ratio_is_compressed_over_raw() {
        assert_eq!(compression_ratio(10_485_760, 3_145_728), 0.3);
        assert_eq!(compression_ratio(0, 0), 1.0);
    }
}
