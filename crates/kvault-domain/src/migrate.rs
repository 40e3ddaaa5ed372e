//! The documented migration request (`POST /migrate`) and its result.

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::groups::validate_group_ids;
pub use crate::groups::{GroupTranslation, GroupTranslationStatus, PartitionTranslation};
use crate::ids::{validate_topic_name, ClusterId};

/// Per-message transformation rules. Expressions are CEL, compiled once per request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MessageTransformation {
    /// Keep a message only when this evaluates to `true`.
    #[serde(default)]
    pub filter_expression: Option<String>,
    /// Headers appended to every migrated message, as `[name, value]` pairs.
    #[serde(default)]
    pub header_additions: Vec<(String, String)>,
    /// The new key: a CEL expression returning a string or bytes.
    #[serde(default)]
    pub key_transformation: Option<String>,
}

impl MessageTransformation {
    /// Refuses expressions too large or deep to parse safely (see [`crate::cel_limits`]);
    /// whether they are valid CEL is the adapter's to check when it compiles them.
    pub fn validate_bounds(&self) -> Result<(), ValidationError> {
        let fields = [
            ("transformation.filter_expression", &self.filter_expression),
            (
                "transformation.key_transformation",
                &self.key_transformation,
            ),
        ];
        for (field, source) in fields {
            if let Some(source) = source {
                crate::cel_limits::check(source).map_err(|refused| {
                    let shown: String = source.chars().take(200).collect();
                    ValidationError::new(field, shown, refused.to_string())
                })?;
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.filter_expression.is_none()
            && self.header_additions.is_empty()
            && self.key_transformation.is_none()
    }
}

/// What happens when an expression fails at run time on one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OnEvaluationError {
    /// Count it, skip the message, go on (default).
    #[default]
    Skip,
    /// Stop the migration.
    Fail,
}

/// `POST /api/kafka/migrate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MigrateRequest {
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$")
    )]
    pub source_cluster: String,
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9._-]{1,249}$"))]
    pub source_topic: String,
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$")
    )]
    pub target_cluster: String,
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9._-]{1,249}$"))]
    pub target_topic: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub max_messages: Option<u64>,
    #[serde(default)]
    pub transformation: Option<MessageTransformation>,
    /// Messages per second; default unlimited.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub rate_limit_per_second: Option<u32>,
    /// Extension: policy for expression errors at run time.
    #[serde(default)]
    pub on_error: OnEvaluationError,
    /// Extension: consumer groups whose committed offsets on the source topic are translated
    /// after the copy and committed on the target topic (same group ids), so each group
    /// resumes on the target at the copy of the next record it would have read on the source.
    /// Only possible when partitions are kept 1:1; other groups are reported as refused.
    #[serde(default)]
    pub translate_consumer_groups: Vec<String>,
    /// Extension, as for restore: where a translated group already has a committed offset on
    /// a target partition, `"respect"` (default) keeps it; `"overwrite"` replaces it.
    #[serde(default)]
    pub consumer_groups_mode: crate::groups::ConsumerGroupsMode,
    /// Extension, as for restore: a target topic that already holds messages is refused with
    /// 409 (`fail`, the default) unless this is `append`.
    #[serde(default)]
    pub if_exists: crate::restore::IfExists,
}

impl MigrateRequest {
    pub fn validate(&self) -> Result<(ClusterId, ClusterId), ValidationError> {
        let source =
            ClusterId::parse(&self.source_cluster).map_err(|e| rename(e, "source_cluster"))?;
        let target =
            ClusterId::parse(&self.target_cluster).map_err(|e| rename(e, "target_cluster"))?;
        validate_topic_name("source_topic", &self.source_topic)?;
        validate_topic_name("target_topic", &self.target_topic)?;
        if source == target && self.source_topic == self.target_topic {
            return Err(ValidationError::new(
                "target_topic",
                &self.target_topic,
                "source and target are the same topic on the same cluster",
            ));
        }
        if self.max_messages == Some(0) {
            return Err(ValidationError::new(
                "max_messages",
                0,
                "must be at least 1",
            ));
        }
        if self.rate_limit_per_second == Some(0) {
            return Err(ValidationError::new(
                "rate_limit_per_second",
                0,
                "must be at least 1",
            ));
        }
        if let Some(t) = &self.transformation {
            t.validate_bounds()?;
        }
        validate_group_ids("translate_consumer_groups", &self.translate_consumer_groups)?;
        Ok((source, target))
    }
}

fn rename(mut err: ValidationError, field: &str) -> ValidationError {
    err.field = field.to_owned();
    err
}

/// The documented migration response plus per-stage counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MigrateResult {
    pub migration_id: String,
    pub source_cluster: String,
    pub source_topic: String,
    pub target_cluster: String,
    pub target_topic: String,
    pub total_messages: u64,
    pub messages_migrated: u64,
    pub duration_ms: u64,
    pub status: crate::operation_status::OperationStatus,
    pub transformation_applied: bool,
    pub messages_read: u64,
    pub messages_filtered: u64,
    pub messages_failed: u64,
    pub messages_written: u64,
    /// Extension: one entry per group of `translate_consumer_groups`, in request order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumer_groups_translated: Vec<GroupTranslation>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translate_consumer_groups_defaults_to_none_and_rejects_empty_or_repeated_ids() {
        let mut req: MigrateRequest = serde_json::from_str(
            r#"{"source_cluster":"a","source_topic":"t","target_cluster":"b","target_topic":"t"}"#,
        )
        .expect("request without the extension");
        assert!(req.translate_consumer_groups.is_empty());
        req.validate().expect("valid");
        req.translate_consumer_groups = vec!["g1".into(), "g2".into()];
        req.validate().expect("distinct groups");
        for bad in [
            vec!["g1".to_owned(), " ".to_owned()],
            vec!["g1".into(), "g1".into()],
        ] {
            req.translate_consumer_groups = bad;
            let err = req.validate().expect_err("refused");
            assert_eq!(err.field, "translate_consumer_groups");
        }
    }

    #[test]
    fn oversized_cel_is_refused_at_validation_naming_the_field() {
        let mut req: MigrateRequest = serde_json::from_str(
            r#"{"source_cluster":"a","source_topic":"t","target_cluster":"b","target_topic":"t"}"#,
        )
        .expect("request");
        req.transformation = Some(MessageTransformation {
            filter_expression: Some("size(value) > 0".into()),
            header_additions: Vec::new(),
            key_transformation: Some("(".repeat(64)),
        });
        let err = req.validate().expect_err("64 levels of nesting refused");
        assert_eq!(err.field, "transformation.key_transformation");
        req.transformation.as_mut().unwrap().key_transformation = Some("key".into());
        req.validate()
            .expect("small expressions pass; CEL syntax is the adapter's check");
    }
}
