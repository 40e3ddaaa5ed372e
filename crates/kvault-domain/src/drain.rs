//! The documented drain request (`POST /clusters/{id}/drain`) and its result.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::ids::validate_topic_name;

/// When a group counts as drained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DrainStrategy {
    /// Total lag at or below `max_lag`.
    #[default]
    LagBased,
    /// The group has consumed everything that existed when the drain began.
    TimeBased,
}

/// `POST /api/kafka/clusters/{cluster-id}/drain`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DrainRequest {
    #[cfg_attr(feature = "openapi", schema(min_length = 1))]
    pub group_id: String,
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub topics: Vec<String>,
    #[serde(default)]
    pub max_lag: u64,
    #[serde(default = "default_timeout")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 86400))]
    pub timeout_seconds: u64,
    #[serde(default = "default_interval")]
    #[cfg_attr(feature = "openapi", schema(minimum = 10))]
    pub check_interval_ms: u64,
    #[serde(default)]
    pub strategy: DrainStrategy,
}

/// Documented defaults: wait up to 5 minutes, checking every 5 seconds.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 300;
pub const DEFAULT_CHECK_INTERVAL_MS: u64 = 5000;

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_SECONDS
}

fn default_interval() -> u64 {
    DEFAULT_CHECK_INTERVAL_MS
}

impl DrainRequest {
    /// The drained condition: the total lag over all partitions is at most `max_lag`.
    pub fn is_drained(&self, total_lag: i64) -> bool {
        total_lag <= i64::try_from(self.max_lag).unwrap_or(i64::MAX)
    }

    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.group_id.trim().is_empty() {
            return Err(ValidationError::new(
                "group_id",
                &self.group_id,
                "must not be empty",
            ));
        }
        if self.topics.is_empty() {
            return Err(ValidationError::new(
                "topics",
                "[]",
                "name at least one topic",
            ));
        }
        for topic in &self.topics {
            validate_topic_name("topics", topic)?;
        }
        if self.check_interval_ms < 10 {
            return Err(ValidationError::new(
                "check_interval_ms",
                self.check_interval_ms,
                "must be at least 10",
            ));
        }
        if self.timeout_seconds == 0 || self.timeout_seconds > 86_400 {
            return Err(ValidationError::new(
                "timeout_seconds",
                self.timeout_seconds,
                "must be between 1 and 86400",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DrainStatus {
    Drained,
    Timeout,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset (the low watermark when it has none).
    pub current_offset: i64,
    /// The high watermark.
    pub latest_offset: i64,
    pub lag: i64,
    /// Extension: age in seconds of the oldest unconsumed message (0 when there is none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DrainResult {
    pub group_id: String,
    pub status: DrainStatus,
    pub total_lag: i64,
    pub duration_ms: u64,
    pub partitions_checked: usize,
    #[serde(with = "crate::time::rfc3339_seconds")]
    pub last_check_time: DateTime<Utc>,
    pub partition_details: Vec<PartitionLag>,
}
