//! Backup sets: many topics in one call (`topics: [...]` or `topic_pattern` instead of
//! `topic`). One job backs the topics up a few at a time, each into an archive of its own
//! (the same format, id `{set_id}.{topic}`), every manifest naming the set and its size. The
//! set is all or nothing: when one topic fails or the job is cancelled, the archives already
//! written are deleted, so a partial set is never listed. An incremental set
//! (`incremental_from: PARENT_SET`) continues each topic's archive in the parent set, which is
//! how a scheduled backup of a pattern keeps every topic's chain.
//!
//! A set id names one set only: every member records the set's uid, and the set is written
//! under a claim on its id (see [`claim`]).

pub mod claim;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backup::{BackupDefaults, BackupPlan, BackupRequest, BackupResult};
use crate::error::{DomainError, DomainResult, Missing, ValidationError};
use crate::ids::{validate_topic_name, BackupId, ClusterId};
use crate::job::{OperationControl, OperationStatus};
use crate::manifest::{BackupSetRef, Manifest};
use crate::offset::Offset;
use crate::operations::Engine;
use crate::ports::ArchiveStore;
use crate::restore_set::set_members;
use crate::side_by_side::{run_parts, DEFAULT_SET_PARALLELISM};
use claim::{claim_set_id, release};

/// The most topics one set may hold.
pub const MAX_SET_TOPICS: usize = 10_000;
const MAX_PATTERN_LEN: usize = 1_000;

/// Which topics a set backs up.
#[derive(Debug, Clone)]
pub enum TopicSelection {
    /// These topics, internal ones included when named.
    Listed(Vec<String>),
    /// Every topic whose whole name matches, internal topics (`__…`) excluded.
    Pattern(regex::Regex),
}

impl TopicSelection {
    /// The selected topics among `existing`, sorted; for a list, the listed topics that do not
    /// exist are the error.
    pub fn resolve(&self, existing: &[String]) -> DomainResult<Vec<String>> {
        let existing: BTreeSet<&str> = existing.iter().map(String::as_str).collect();
        match self {
            TopicSelection::Listed(topics) => {
                if let Some(missing) = topics.iter().find(|t| !existing.contains(t.as_str())) {
                    return Err(DomainError::not_found(Missing::Topic, missing.clone()));
                }
                let mut topics = topics.clone();
                topics.sort();
                Ok(topics)
            }
            TopicSelection::Pattern(pattern) => {
                let topics: Vec<String> = existing
                    .into_iter()
                    .filter(|t| !t.starts_with("__") && pattern.is_match(t))
                    .map(str::to_owned)
                    .collect();
                if topics.is_empty() {
                    return Err(ValidationError::new(
                        "topic_pattern",
                        pattern.as_str(),
                        "matches no topic on the cluster (internal topics are never matched)",
                    )
                    .into());
                }
                Ok(topics)
            }
        }
    }
}

/// A validated backup set request.
#[derive(Debug, Clone)]
pub struct BackupSetPlan {
    pub set_id: BackupId,
    /// The set's immutable uid, recorded in every member (and by the job that writes it).
    pub set_uid: String,
    pub topics: TopicSelection,
    /// Every per-topic setting; `topic` and `backup_id` are set per member.
    pub template: BackupPlan,
    /// An incremental set (`incremental_from: SET`) continues this set: each topic from that
    /// set's archive of it; a topic the parent set lacks is backed up in full.
    pub parent_set: Option<BackupId>,
    /// Topics backed up at once (`workers.set_parallelism`).
    pub parallelism: usize,
}

impl BackupSetPlan {
    /// The plan of the set's `topic`, one of `count`.
    pub fn member(&self, topic: &str, count: usize) -> DomainResult<BackupPlan> {
        let mut plan = self.template.clone();
        plan.topic = topic.to_owned();
        plan.backup_id = member_id(&self.set_id, topic)?;
        plan.archive_uid = crate::ids::new_uid();
        plan.backup_set = Some(BackupSetRef {
            set_id: self.set_id.to_string(),
            set_uid: Some(self.set_uid.clone()),
            topic_count: count as u32,
        });
        Ok(plan)
    }
}

/// A member archive's id: `{set_id}.{topic}`, which stays a valid backup id as long as it fits
/// in 200 characters.
fn member_id(set_id: &BackupId, topic: &str) -> DomainResult<BackupId> {
    Ok(BackupId::parse(&format!("{set_id}.{topic}")).map_err(|_| {
        ValidationError::new(
            "backup_id",
            set_id.as_str(),
            format!("a set id plus topic {topic} exceeds the 200 characters of a backup id"),
        )
    })?)
}

impl BackupRequest {
    /// Whether the request names a set (`topics` or `topic_pattern`) rather than one topic.
    pub fn is_set(&self) -> bool {
        self.topics.is_some() || self.topic_pattern.is_some()
    }

    /// Validates a set request: `topics` or `topic_pattern` (not both, and no `topic`), plus
    /// every field that means the same for each topic. `partitions` and numeric offsets are
    /// per topic and refused; `max_messages` applies to each topic.
    pub fn validate_set(
        &self,
        defaults: BackupDefaults,
        now: DateTime<Utc>,
    ) -> Result<BackupSetPlan, ValidationError> {
        if !self.topic.is_empty() {
            return Err(ValidationError::new(
                "topic",
                &self.topic,
                "give either topic, or topics / topic_pattern for a backup set",
            ));
        }
        let topics = match (&self.topics, &self.topic_pattern) {
            (Some(_), Some(_)) => {
                return Err(ValidationError::new(
                    "topic_pattern",
                    self.topic_pattern.as_deref().unwrap_or_default(),
                    "give either topics or topic_pattern, not both",
                ))
            }
            (Some(topics), None) => TopicSelection::Listed(validate_topic_list(topics)?),
            (None, Some(pattern)) => TopicSelection::Pattern(compile_pattern(pattern)?),
            (None, None) => return Err(ValidationError::new("topic", "", "is required")),
        };
        if self.partitions.is_some() {
            return Err(ValidationError::new(
                "partitions",
                "[...]",
                "partition numbers differ by topic; a backup set backs up every partition",
            ));
        }
        for (field, offset) in [
            ("start_offset", self.start_offset),
            ("end_offset", self.end_offset),
        ] {
            if let Offset::At(n) = offset {
                return Err(ValidationError::new(
                    field,
                    n,
                    "a backup set takes \"earliest\" or \"latest\" (offsets differ by topic)",
                ));
            }
        }
        let set_id = match &self.backup_id {
            Some(raw) => BackupId::parse(raw)?,
            None => generate_set_id(now),
        };
        // Every other field is checked as for one topic, with a stand-in name.
        let mut single = self.clone();
        single.topic = "set-member".into();
        single.topics = None;
        single.topic_pattern = None;
        single.backup_id = Some(set_id.to_string());
        let mut template = single.validate(defaults, now)?;
        // Each member continues the parent set's archive of its topic, found when it runs.
        let parent_set = template.incremental_from.take();
        Ok(BackupSetPlan {
            set_id,
            set_uid: crate::ids::new_uid(),
            topics,
            template,
            parent_set,
            parallelism: DEFAULT_SET_PARALLELISM,
        })
    }
}

fn generate_set_id(now: DateTime<Utc>) -> BackupId {
    let generated = BackupId::generate(now).to_string();
    BackupId::parse(&generated.replacen("backup-", "set-", 1)).expect("a generated id is valid")
}

fn validate_topic_list(topics: &[String]) -> Result<Vec<String>, ValidationError> {
    if topics.is_empty() || topics.len() > MAX_SET_TOPICS {
        return Err(ValidationError::new(
            "topics",
            topics.len(),
            format!("must name 1 to {MAX_SET_TOPICS} topics"),
        ));
    }
    let mut seen = BTreeSet::new();
    for topic in topics {
        validate_topic_name("topics", topic)?;
        if !seen.insert(topic.as_str()) {
            return Err(ValidationError::new(
                "topics",
                topic,
                "listed more than once",
            ));
        }
    }
    Ok(topics.to_vec())
}

/// The pattern must match a whole topic name; its compiled size is bounded so a request cannot
/// make the server build a huge automaton.
fn compile_pattern(pattern: &str) -> Result<regex::Regex, ValidationError> {
    if pattern.is_empty() || pattern.len() > MAX_PATTERN_LEN {
        return Err(ValidationError::new(
            "topic_pattern",
            pattern.chars().take(64).collect::<String>(),
            format!("must be 1 to {MAX_PATTERN_LEN} characters"),
        ));
    }
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .nest_limit(64)
        .build()
        .map_err(|e| {
            ValidationError::new(
                "topic_pattern",
                pattern.chars().take(64).collect::<String>(),
                format!("is not a valid regular expression: {e}"),
            )
        })
}

/// The response to a backup set: per-topic results and set totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackupSetResult {
    pub set_id: String,
    /// The set's immutable uid, recorded in each member's manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_uid: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub cluster_id: crate::ids::ClusterId,
    pub topic_count: u32,
    pub total_messages: u64,
    pub total_size_bytes: u64,
    pub compressed_size_bytes: u64,
    pub duration_ms: u64,
    /// One documented backup result per topic, sorted by topic.
    pub topics: Vec<BackupResult>,
    #[serde(with = "crate::time::rfc3339_seconds")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time::rfc3339_seconds")]
    pub finished_at: DateTime<Utc>,
    pub status: OperationStatus,
}

/// Runs a backup set on `engine`: resolves the topics, backs them up a few at a time (each
/// topic its own consistent cut), and deletes what was written when any topic fails or the
/// job is cancelled.
pub async fn run_backup_set(
    engine: &dyn Engine,
    store: &dyn ArchiveStore,
    cluster: &ClusterId,
    plan: BackupSetPlan,
    control: OperationControl,
) -> DomainResult<BackupSetResult> {
    let claim = claim_set_id(store, cluster, &plan).await?;
    let outcome = write_members(engine, store, cluster, plan, control).await;
    release(claim);
    outcome
}

/// Backs up the topics of the claimed set, a few at a time (`plan.parallelism`); see
/// [`run_backup_set`].
async fn write_members(
    engine: &dyn Engine,
    store: &dyn ArchiveStore,
    cluster: &ClusterId,
    plan: BackupSetPlan,
    control: OperationControl,
) -> DomainResult<BackupSetResult> {
    let created_at = Utc::now();
    let started = std::time::Instant::now();
    let topics = plan.topics.resolve(&engine.list_topics(cluster).await?)?;
    let parents = parent_members(store, plan.parent_set.as_ref()).await?;
    let (all, set, parent_archives) = (&topics, &plan, &parents);
    let outcome = run_parts(topics.len(), plan.parallelism, &control, move |i, part| {
        let (topic, plan, parents, topics) = (&all[i], set, parent_archives, all);
        async move {
            if part.is_cancelled() {
                return Err(DomainError::Cancelled);
            }
            let mut member = plan.member(topic, topics.len())?;
            member.incremental_from = parent_member(parents, topic)?;
            engine.backup(cluster, member, part).await
        }
    })
    .await;
    let results = match outcome {
        Ok(results) => results,
        Err(failed) => {
            let written: Vec<BackupResult> = failed.finished.into_iter().map(|(_, r)| r).collect();
            let cleanup = delete_members(store, &written).await;
            return Err(match failed.error {
                DomainError::Cancelled => DomainError::Cancelled,
                other => other.context(format!(
                    "backup set {} failed at topic {} ({} of {}); {cleanup}",
                    plan.set_id,
                    topics[failed.index],
                    failed.index + 1,
                    topics.len()
                )),
            });
        }
    };
    Ok(BackupSetResult {
        set_id: plan.set_id.to_string(),
        set_uid: Some(plan.set_uid.clone()),
        cluster_id: cluster.clone(),
        topic_count: results.len() as u32,
        total_messages: results.iter().map(|r| r.total_messages).sum(),
        total_size_bytes: results.iter().map(|r| r.total_size_bytes).sum(),
        compressed_size_bytes: results.iter().map(|r| r.compressed_size_bytes).sum(),
        duration_ms: started.elapsed().as_millis() as u64,
        topics: results,
        created_at,
        finished_at: Utc::now(),
        status: OperationStatus::Completed,
    })
}

/// The archives of `parent_set` (one set: [`set_members`] refuses an id two sets share).
async fn parent_members(
    store: &dyn ArchiveStore,
    parent_set: Option<&BackupId>,
) -> DomainResult<Vec<Manifest>> {
    let Some(parent_set) = parent_set else {
        return Ok(Vec::new());
    };
    match set_members(store, parent_set.as_str()).await {
        Err(DomainError::NotFound { .. }) => Ok(Vec::new()),
        found => found,
    }
}

/// The archive of `topic` among the parent set's members that an incremental member
/// continues, if the parent set holds the topic.
fn parent_member(parents: &[Manifest], topic: &str) -> DomainResult<Option<BackupId>> {
    parents
        .iter()
        .find(|m| m.topic.name == topic)
        .map(|m| BackupId::parse(&m.backup_id))
        .transpose()
        .map_err(Into::into)
}

/// Deletes the archives of a set that will not complete; says what happened.
async fn delete_members(store: &dyn ArchiveStore, written: &[BackupResult]) -> String {
    let mut failed = Vec::new();
    for result in written {
        if let Err(e) = store.delete(&result.backup_id).await {
            failed.push(format!("{} ({e})", result.backup_id));
        }
    }
    match (written.len(), failed.is_empty()) {
        (0, _) => "nothing had been written".into(),
        (n, true) => format!("the {n} archive(s) already written were deleted"),
        (n, false) => format!(
            "of the {n} archive(s) already written, these could not be deleted: {}",
            failed.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> BackupRequest {
        serde_json::from_str(json).unwrap()
    }

    fn set_plan(json: &str) -> Result<BackupSetPlan, ValidationError> {
        parse(json).validate_set(BackupDefaults::default(), Utc::now())
    }

    #[test]
    fn a_set_names_topics_or_a_pattern_and_nothing_per_topic() {
        assert!(parse(r#"{"topics":["a","b"]}"#).is_set());
        assert!(!parse(r#"{"topic":"a"}"#).is_set());
        let plan = set_plan(r#"{"topics":["b","a"],"backup_id":"nightly"}"#).unwrap();
        assert_eq!(plan.set_id.as_str(), "nightly");
        let member = plan.member("a", 2).unwrap();
        assert_eq!(member.backup_id.as_str(), "nightly.a");
        assert_eq!(member.topic, "a");
        assert_eq!(member.backup_set.unwrap().topic_count, 2);
        assert!(set_plan(r#"{"topic_pattern":"orders-.*"}"#)
            .unwrap()
            .set_id
            .as_str()
            .starts_with("set-"));
        for (json, field) in [
            (r#"{"topic":"a","topics":["b"]}"#, "topic"),
            (r#"{"topics":["a"],"topic_pattern":"a"}"#, "topic_pattern"),
            (r#"{"topics":[]}"#, "topics"),
            (r#"{"topics":["a","a"]}"#, "topics"),
            (r#"{"topics":["bad name"]}"#, "topics"),
            (r#"{"topic_pattern":"("}"#, "topic_pattern"),
            (r#"{"topic_pattern":""}"#, "topic_pattern"),
            (r#"{"topics":["a"],"partitions":[0]}"#, "partitions"),
            (r#"{"topics":["a"],"start_offset":5}"#, "start_offset"),
            (r#"{"topics":["a"],"max_messages":0}"#, "max_messages"),
            (
                r#"{"topics":["a"],"incremental_from":"../x"}"#,
                "incremental_from",
            ),
        ] {
            assert_eq!(set_plan(json).unwrap_err().field, field, "{json}");
        }
    }

    #[test]
    fn a_pattern_matches_whole_names_and_never_internal_topics() {
        let plan = set_plan(r#"{"topic_pattern":"orders.*"}"#).unwrap();
        let existing: Vec<String> = ["orders", "orders-eu", "old-orders", "__orders_internal"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            plan.topics.resolve(&existing).unwrap(),
            vec!["orders".to_owned(), "orders-eu".to_owned()]
        );
        let none = set_plan(r#"{"topic_pattern":"nothing"}"#).unwrap();
        assert!(none.topics.resolve(&existing).is_err());
        let listed = set_plan(r#"{"topics":["__orders_internal","orders"]}"#).unwrap();
        assert_eq!(listed.topics.resolve(&existing).unwrap().len(), 2);
        let missing = set_plan(r#"{"topics":["nope"]}"#).unwrap();
        assert!(matches!(
            missing.topics.resolve(&existing),
            Err(DomainError::NotFound { .. })
        ));
    }

    #[test]
    fn a_huge_pattern_is_refused_not_compiled() {
        let pattern = "(a{1000}){1000}";
        let err = set_plan(&format!(r#"{{"topic_pattern":"{pattern}"}}"#)).unwrap_err();
        assert_eq!(err.field, "topic_pattern");
    }
}
