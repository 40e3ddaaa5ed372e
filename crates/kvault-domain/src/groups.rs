//! Consumer groups travelling with their data: which groups a backup records or a restore puts
//! back ([`GroupSelection`]), how a request names them ([`GroupChoice`]), and what happened to
//! each group whose offsets were committed on a target ([`GroupTranslation`]), shared by
//! migrate's `translate_consumer_groups` and restore's `restore_consumer_groups`.

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// The most groups one request may name; a backup of every group is not limited by this.
pub const MAX_LISTED_GROUPS: usize = 10_000;

/// Which consumer groups an operation takes along.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum GroupSelection {
    /// No group.
    #[default]
    None,
    /// Every group with a committed offset on the topic.
    All,
    /// Only these groups, in this order.
    Only(Vec<String>),
}

impl GroupSelection {
    pub fn is_none(&self) -> bool {
        matches!(self, GroupSelection::None)
    }

    /// Whether `group` is taken along.
    pub fn includes(&self, group: &str) -> bool {
        match self {
            GroupSelection::None => false,
            GroupSelection::All => true,
            GroupSelection::Only(groups) => groups.iter().any(|g| g == group),
        }
    }
}

/// `true` (every group), `false` (none) or a list of group ids, as a request field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum GroupChoice {
    Every(bool),
    Only(Vec<String>),
}

impl GroupChoice {
    /// The selection, after checking a list's ids (`field` names the request field).
    pub fn selection(&self, field: &str) -> Result<GroupSelection, ValidationError> {
        match self {
            GroupChoice::Every(true) => Ok(GroupSelection::All),
            GroupChoice::Every(false) => Ok(GroupSelection::None),
            GroupChoice::Only(groups) => {
                validate_group_ids(field, groups)?;
                if groups.is_empty() {
                    return Err(ValidationError::new(
                        field,
                        "[]",
                        "must name at least one group (or be true or false)",
                    ));
                }
                Ok(GroupSelection::Only(groups.clone()))
            }
        }
    }

    /// Parses the CLI's spelling: `true`, `false` or a comma-separated list of group ids.
    pub fn parse_cli(raw: &str) -> Self {
        match raw.trim() {
            "true" | "all" => GroupChoice::Every(true),
            "false" | "none" => GroupChoice::Every(false),
            list => GroupChoice::Only(list.split(',').map(|g| g.trim().to_owned()).collect()),
        }
    }
}

/// Group ids as requests list them: not blank, not longer than 255 bytes, no control
/// characters, each listed once, at most [`MAX_LISTED_GROUPS`].
pub fn validate_group_ids(field: &str, groups: &[String]) -> Result<(), ValidationError> {
    if groups.len() > MAX_LISTED_GROUPS {
        return Err(ValidationError::new(
            field,
            groups.len(),
            format!("lists more than {MAX_LISTED_GROUPS} groups"),
        ));
    }
    for (i, group) in groups.iter().enumerate() {
        if group.trim().is_empty() {
            return Err(ValidationError::new(
                field,
                group,
                "a consumer group id must not be empty",
            ));
        }
        if group.len() > 255 || group.chars().any(char::is_control) {
            return Err(ValidationError::new(
                field,
                group.chars().take(64).collect::<String>(),
                "a consumer group id is at most 255 bytes, without control characters",
            ));
        }
        if groups[..i].contains(group) {
            return Err(ValidationError::new(field, group, "listed more than once"));
        }
    }
    Ok(())
}

/// What a group restore (or translation) does where the group already has a committed offset
/// on the target partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ConsumerGroupsMode {
    /// Commit only on partitions where the group has no commit on the target; keep the
    /// existing commit elsewhere (default): a live group is never moved past records it has
    /// not read, nor rewound.
    #[default]
    Respect,
    /// Commit the translated offset on every partition, replacing what the group had.
    Overwrite,
}

/// What was done on one partition of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PartitionAction {
    /// `target_offset` was committed.
    Committed,
    /// The group already had a commit there (`existing_offset`); it was left as it was.
    KeptExisting,
}

/// What happened to one consumer group whose offsets were to be committed on a target
/// (migrate's `translate_consumer_groups`, restore's `restore_consumer_groups`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupTranslation {
    pub group_id: String,
    pub status: GroupTranslationStatus,
    /// Why a group was skipped, refused or failed; notes on a translated one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Per partition: the translated offset, and whether it was committed or the group's
    /// existing commit kept (translated and kept groups).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionTranslation>,
}

/// Outcome of translating one group's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum GroupTranslationStatus {
    /// Offsets committed on the target.
    Translated,
    /// The group has no committed offset on the source topic (or in the backup): nothing to
    /// translate.
    Skipped,
    /// Translation is not well defined (partitions were not kept 1:1) or not safe (the group
    /// has active members on the target): nothing committed.
    Refused,
    /// Reading or committing offsets failed.
    Failed,
    /// The group already had a commit on every partition concerned, which was kept
    /// (`consumer_groups_mode: respect`): nothing committed.
    Kept,
}

/// One partition of a translated group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartitionTranslation {
    pub partition: i32,
    /// The group's committed offset on the source topic (as recorded in the backup, for a
    /// restore).
    pub source_offset: i64,
    /// The offset committed on the target topic: the target offset of the first copied
    /// (restored) record at or after `source_offset`, or the end of the copied records when
    /// there is none.
    pub target_offset: i64,
    /// False when the offset map had been thinned out around this position (very many
    /// filtered runs): `target_offset` then errs early, so the group may see a few records
    /// again but never misses one.
    pub exact: bool,
    /// Extension: whether `target_offset` was committed or the group's existing commit kept.
    #[serde(default = "committed")]
    pub action: PartitionAction,
    /// Extension: the group's commit on the target partition before the restore, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_offset: Option<i64>,
}

fn committed() -> PartitionAction {
    PartitionAction::Committed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_choice_is_a_boolean_or_a_list_of_distinct_ids() {
        let parse = |json: &str| serde_json::from_str::<GroupChoice>(json).unwrap();
        assert_eq!(parse("true").selection("f").unwrap(), GroupSelection::All);
        assert_eq!(parse("false").selection("f").unwrap(), GroupSelection::None);
        assert_eq!(
            parse(r#"["a","b"]"#).selection("f").unwrap(),
            GroupSelection::Only(vec!["a".into(), "b".into()])
        );
        for bad in [r#"[]"#, r#"["a","a"]"#, r#"[" "]"#, r#"["a\u0000"]"#] {
            let err = parse(bad).selection("restore_consumer_groups").unwrap_err();
            assert_eq!(err.field, "restore_consumer_groups", "{bad}");
        }
        assert!(serde_json::from_str::<GroupChoice>("3").is_err());
        assert!(serde_json::from_str::<GroupChoice>(r#""g1""#).is_err());
    }

    #[test]
    fn the_cli_spelling() {
        assert_eq!(GroupChoice::parse_cli("true"), GroupChoice::Every(true));
        assert_eq!(GroupChoice::parse_cli("false"), GroupChoice::Every(false));
        assert_eq!(
            GroupChoice::parse_cli("g1, g2"),
            GroupChoice::Only(vec!["g1".into(), "g2".into()])
        );
    }

    #[test]
    fn a_selection_says_which_groups_it_includes() {
        assert!(!GroupSelection::None.includes("g"));
        assert!(GroupSelection::All.includes("g"));
        let only = GroupSelection::Only(vec!["g".into()]);
        assert!(only.includes("g") && !only.includes("h"));
    }
}
