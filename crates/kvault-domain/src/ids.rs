//! Identifiers that end up in file paths or URLs, validated where they enter.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

const MAX_ID_LEN: usize = 200;

/// A new immutable unique id (a random UUID) for an archive, a backup set or a schedule:
/// written once when the object is created and never reused, unlike the names users give.
pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A backup id: the name of the backup's directory, so it must be a safe path component:
/// `[A-Za-z0-9._-]`, 1 to 200 characters, not `.` or `..` and not starting with `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BackupId(String);

impl BackupId {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        validate_path_safe_id("backup_id", raw)?;
        Ok(Self(raw.to_owned()))
    }

    /// A new unique id for a backup started now: `backup-{unix millis}-{random}`.
    pub fn generate(now: chrono::DateTime<chrono::Utc>) -> Self {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        Self(format!(
            "backup-{}-{}",
            now.timestamp_millis(),
            &suffix[..8]
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for BackupId {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<BackupId> for String {
    fn from(id: BackupId) -> String {
        id.0
    }
}

impl From<&BackupId> for String {
    fn from(id: &BackupId) -> String {
        id.0.clone()
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A cluster id as named in the `clusters:` config map and in URLs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClusterId(String);

impl ClusterId {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        validate_path_safe_id("cluster_id", raw)?;
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ClusterId {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<ClusterId> for String {
    fn from(id: ClusterId) -> String {
        id.0
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A schedule id: the name a schedule is created under, the prefix of its runs' backup ids
/// (`{schedule_id}-{stamp}`), so it follows the backup id rules and is at most 100 characters
/// (a run's id stays under the backup id limit).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ScheduleId(String);

/// The longest schedule id.
pub const MAX_SCHEDULE_ID_LEN: usize = 100;

impl ScheduleId {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        validate_path_safe_id("schedule_id", raw)?;
        if raw.len() > MAX_SCHEDULE_ID_LEN {
            return Err(ValidationError::new(
                "schedule_id",
                raw.chars().take(64).collect::<String>(),
                format!("must be at most {MAX_SCHEDULE_ID_LEN} characters"),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// A new unique id for a schedule created now without a name: `schedule-{millis}-{random}`.
    pub fn generate(now: chrono::DateTime<chrono::Utc>) -> Self {
        let generated = BackupId::generate(now).0;
        Self(generated.replacen("backup-", "schedule-", 1))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ScheduleId {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<ScheduleId> for String {
    fn from(id: ScheduleId) -> String {
        id.0
    }
}

impl fmt::Display for ScheduleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn validate_path_safe_id(field: &str, raw: &str) -> Result<(), ValidationError> {
    if raw.is_empty() || raw.len() > MAX_ID_LEN {
        return Err(ValidationError::new(
            field,
            raw,
            format!("must be 1 to {MAX_ID_LEN} characters"),
        ));
    }
    if raw.starts_with('.') {
        return Err(ValidationError::new(field, raw, "must not start with '.'"));
    }
    if let Some(bad) = raw
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(ValidationError::new(
            field,
            raw,
            format!("may contain only A-Z, a-z, 0-9, '.', '_' and '-' (found {bad:?})"),
        ));
    }
    Ok(())
}

/// Kafka's own rule for topic names: 1 to 249 characters of `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(field: &str, raw: &str) -> Result<(), ValidationError> {
    if raw.is_empty() {
        return Err(ValidationError::new(
            field,
            raw,
            "topic name must not be empty",
        ));
    }
    if raw.len() > 249 {
        return Err(ValidationError::new(
            field,
            raw,
            "topic name must be at most 249 characters",
        ));
    }
    if raw == "." || raw == ".." {
        return Err(ValidationError::new(
            field,
            raw,
            "topic name must not be '.' or '..'",
        ));
    }
    if !raw
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(ValidationError::new(
            field,
            raw,
            "topic name may contain only A-Z, a-z, 0-9, '.', '_' and '-'",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_ids_cannot_escape_the_base_path() {
        for bad in [
            "", "..", ".", "../etc", "a/b", "a\\b", ".hidden", "a b", "é",
        ] {
            assert!(BackupId::parse(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["backup-1", "events.2025-09-02", "A_b-9"] {
            assert!(BackupId::parse(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn generated_ids_are_valid_and_unique() {
        let now = chrono::Utc::now();
        let a = BackupId::generate(now);
        let b = BackupId::generate(now);
        assert_ne!(a, b);
        assert!(BackupId::parse(a.as_str()).is_ok());
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("topic", "events").is_ok());
        assert!(validate_topic_name("topic", "").is_err());
        assert!(validate_topic_name("topic", "a/b").is_err());
        assert!(validate_topic_name("topic", &"x".repeat(250)).is_err());
    }
}
