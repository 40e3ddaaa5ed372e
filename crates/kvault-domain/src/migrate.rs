//! The documented migration request (`POST /migrate`) and its result.

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
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
    pub source_cluster: String,
    pub source_topic: String,
    pub target_cluster: String,
    pub target_topic: String,
    #[serde(default)]
    pub max_messages: Option<u64>,
    #[serde(default)]
    pub transformation: Option<MessageTransformation>,
    /// Messages per second; default unlimited.
    #[serde(default)]
    pub rate_limit_per_second: Option<u32>,
    /// Extension: policy for expression errors at run time.
    #[serde(default)]
    pub on_error: OnEvaluationError,
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
    pub status: String,
    pub transformation_applied: bool,
    pub messages_read: u64,
    pub messages_filtered: u64,
    pub messages_failed: u64,
    pub messages_written: u64,
}
