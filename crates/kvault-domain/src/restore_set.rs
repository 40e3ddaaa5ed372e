//! Restoring a backup set: `backup_id` names the set, and its topics are restored a few at a
//! time, each under its own name, `{topic_prefix}{topic}`, or the name `topic_mapping` gives it.
//! Every other restore field applies to each topic. A set missing archives is refused before
//! anything is written; a failure stops the set and says which topics were restored.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::error::{DomainError, DomainResult, Missing, ValidationError};
use crate::ids::{validate_topic_name, BackupId, ClusterId};
use crate::job::{OperationControl, OperationStatus};
use crate::manifest::Manifest;
use crate::operations::Engine;
use crate::ports::ArchiveStore;
use crate::restore::{RestorePlan, RestoreRequest, RestoreResult};
use crate::side_by_side::{run_parts, PartFailure, DEFAULT_SET_RESTORE_PARALLELISM};

/// The archives of set `set_id`, sorted by topic; `NotFound` (the backup) when there are none.
/// Archives of one set share its uid, its cluster and its topic count: archives naming the id
/// that differ in any of them are two sets under one id, refused with `Conflict` (never
/// mixed into one restore, takeover or retention).
pub async fn set_members(store: &dyn ArchiveStore, set_id: &str) -> DomainResult<Vec<Manifest>> {
    let mut members: Vec<Manifest> = store
        .list()
        .await?
        .into_iter()
        .filter(|m| m.backup_set.as_ref().is_some_and(|s| s.set_id == set_id))
        .collect();
    let Some(first) = members.first() else {
        return Err(DomainError::not_found(Missing::Backup, set_id));
    };
    let identity = |m: &Manifest| {
        (
            m.set_uid().map(str::to_owned),
            m.cluster_id.clone(),
            m.backup_set.as_ref().map(|s| s.topic_count),
        )
    };
    let expected = identity(first);
    if let Some(other) = members.iter().find(|m| identity(m) != expected) {
        return Err(DomainError::conflict_on(
            format!(
                "backup set id '{set_id}' names archives of more than one set: {} has set uid \
                 {} (cluster {}), {} has set uid {} (cluster {}); restore or delete the \
                 archives one by one",
                first.backup_id,
                first.set_uid().unwrap_or("(none)"),
                first.cluster_id,
                other.backup_id,
                other.set_uid().unwrap_or("(none)"),
                other.cluster_id
            ),
            "backup_id",
            set_id,
        ));
    }
    members.sort_by(|a, b| a.topic.name.cmp(&b.topic.name));
    Ok(members)
}

/// One topic of a set restore.
#[derive(Debug, Clone)]
pub struct SetMember {
    pub backup_id: BackupId,
    pub source_topic: String,
    pub target_topic: String,
}

/// A validated restore of a whole set.
#[derive(Debug, Clone)]
pub struct RestoreSetPlan {
    pub set_id: String,
    pub members: Vec<SetMember>,
    /// Every per-topic setting; `backup_id` and `target_topic` are set per member.
    pub template: RestorePlan,
    /// Topics restored at once (`workers.set_restore_parallelism`).
    pub parallelism: usize,
}

impl RestoreRequest {
    /// Validates a restore of set `backup_id` whose archives are `members` (see
    /// [`set_members`]).
    pub fn validate_set(&self, members: &[Manifest]) -> DomainResult<RestoreSetPlan> {
        self.check_set_fields(members)?;
        let planned = self.plan_members(members)?;
        let mut single = self.clone();
        single.topic_prefix = None;
        single.topic_mapping = None;
        single.target_topic = planned[0].target_topic.clone();
        single.backup_id = planned[0].backup_id.to_string();
        Ok(RestoreSetPlan {
            set_id: self.backup_id.clone(),
            members: planned,
            template: single.validate()?,
            parallelism: DEFAULT_SET_RESTORE_PARALLELISM,
        })
    }

    /// The set is complete, and no field names what only one topic has.
    fn check_set_fields(&self, members: &[Manifest]) -> DomainResult<()> {
        let expected = members
            .first()
            .and_then(|m| m.backup_set.as_ref())
            .map_or(0, |s| s.topic_count as usize);
        if members.len() != expected {
            return Err(DomainError::conflict_on(
                format!(
                    "backup set {} is incomplete: {} of its {expected} archives exist; restore \
                     its archives one by one (each is a backup of its own)",
                    self.backup_id,
                    members.len()
                ),
                "backup_id",
                &self.backup_id,
            ));
        }
        if !self.target_topic.is_empty() {
            return Err(ValidationError::new(
                "target_topic",
                &self.target_topic,
                "a backup set restores each topic under its own name: use topic_prefix or \
                 topic_mapping instead",
            )
            .into());
        }
        if self.partitions.is_some() {
            return Err(ValidationError::new(
                "partitions",
                "[...]",
                "partition numbers differ by topic; a backup set restores every partition",
            )
            .into());
        }
        let sources: BTreeSet<&str> = members.iter().map(|m| m.topic.name.as_str()).collect();
        if let Some(unknown) = self
            .topic_mapping
            .iter()
            .flatten()
            .map(|(from, _)| from)
            .find(|from| !sources.contains(from.as_str()))
        {
            return Err(ValidationError::new(
                "topic_mapping",
                unknown,
                "is not a topic of this backup set",
            )
            .into());
        }
        Ok(())
    }

    /// Each member's target topic: valid, and no two the same.
    fn plan_members(&self, members: &[Manifest]) -> DomainResult<Vec<SetMember>> {
        let mut targets = BTreeSet::new();
        let mut planned = Vec::with_capacity(members.len());
        for member in members {
            let target = self.target_for(&member.topic.name);
            let field = if self
                .topic_mapping
                .as_ref()
                .is_some_and(|m| m.contains_key(&member.topic.name))
            {
                "topic_mapping"
            } else {
                "topic_prefix"
            };
            validate_topic_name(field, &target)?;
            if !targets.insert(target.clone()) {
                return Err(ValidationError::new(
                    field,
                    &target,
                    "two topics would be restored into it",
                )
                .into());
            }
            planned.push(SetMember {
                backup_id: BackupId::parse(&member.backup_id)?,
                source_topic: member.topic.name.clone(),
                target_topic: target,
            });
        }
        Ok(planned)
    }

    fn target_for(&self, topic: &str) -> String {
        if let Some(mapped) = self.topic_mapping.as_ref().and_then(|m| m.get(topic)) {
            return mapped.clone();
        }
        format!(
            "{}{topic}",
            self.topic_prefix.as_deref().unwrap_or_default()
        )
    }
}

/// The response to a set restore: per-topic results and totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RestoreSetResult {
    pub set_id: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub cluster_id: crate::ids::ClusterId,
    pub topic_count: u32,
    pub total_messages: u64,
    pub messages_restored: u64,
    pub duration_ms: u64,
    /// One documented restore result per topic, in the set's topic order.
    pub topics: Vec<RestoreResult>,
    pub status: OperationStatus,
}

/// Restores the topics of the set, a few at a time (`plan.parallelism`). A failure stops the
/// set: the error names the topics restored completely (they stay: each is a complete
/// restore), the topics stopped part way (each cleaned up after itself as a failed restore
/// does) and those not started. With a job journal each finished topic's result is recorded,
/// so an attempt that takes the job over keeps those results, continues the topics in
/// progress and starts the ones not started.
pub async fn run_restore_set(
    engine: &dyn Engine,
    cluster: &ClusterId,
    plan: RestoreSetPlan,
    control: OperationControl,
) -> DomainResult<RestoreSetResult> {
    let started = std::time::Instant::now();
    let count = plan.members.len();
    let set = &plan;
    let outcome = run_parts(count, plan.parallelism, &control, move |i, part| {
        restore_member(engine, cluster, set, i, part)
    })
    .await;
    let results = match outcome {
        Ok(results) => results,
        Err(failed) => return Err(set_failure(&plan, failed)),
    };
    Ok(RestoreSetResult {
        set_id: plan.set_id,
        cluster_id: cluster.clone(),
        topic_count: results.len() as u32,
        total_messages: results.iter().map(|r| r.total_messages).sum(),
        messages_restored: results.iter().map(|r| r.messages_restored).sum(),
        duration_ms: started.elapsed().as_millis() as u64,
        topics: results,
        status: OperationStatus::Completed,
    })
}

/// Restores member `i` of the set with its part's control (or takes the result an earlier
/// attempt recorded), and records its result in the job's journal.
async fn restore_member(
    engine: &dyn Engine,
    cluster: &ClusterId,
    plan: &RestoreSetPlan,
    i: usize,
    part: OperationControl,
) -> DomainResult<RestoreResult> {
    let member = &plan.members[i];
    let journal = part.journal().cloned();
    if let Some(done) = journal
        .as_ref()
        .and_then(|j| j.finished(&member.target_topic))
    {
        return serde_json::from_value(done).map_err(|e| {
            DomainError::internal(format!("recorded result of {}: {e}", member.target_topic))
        });
    }
    if part.is_cancelled() {
        return Err(DomainError::Cancelled);
    }
    let mut single = plan.template.clone();
    single.backup_id = member.backup_id.clone();
    single.target_topic = member.target_topic.clone();
    let result = engine.restore(cluster, single, part).await?;
    if let Some(journal) = journal {
        let recorded = serde_json::to_value(&result)
            .map_err(|e| DomainError::internal(format!("restore result: {e}")))?;
        journal
            .record_finished(&member.target_topic, recorded)
            .await?;
    }
    Ok(result)
}

/// The error of a set restore that stopped: the failing topic's error, with what was restored,
/// stopped and not started.
fn set_failure(plan: &RestoreSetPlan, failed: PartFailure<RestoreResult>) -> DomainError {
    if matches!(failed.error, DomainError::Cancelled) {
        return DomainError::Cancelled;
    }
    let name = |m: &SetMember| format!("{} -> {}", m.source_topic, m.target_topic);
    let done: Vec<String> = failed
        .finished
        .iter()
        .map(|(i, _)| name(&plan.members[*i]))
        .collect();
    let stopped: Vec<String> = (0..failed.not_started.start)
        .filter(|i| *i != failed.index && !failed.finished.iter().any(|(f, _)| f == i))
        .map(|i| name(&plan.members[i]))
        .collect();
    let rest: Vec<&str> = plan.members[failed.not_started.clone()]
        .iter()
        .map(|m| m.source_topic.as_str())
        .collect();
    failed.error.context(format!(
        "restore of backup set {} stopped at topic {}: restored completely: [{}]; stopped \
         part way (each cleaned up as a failed restore does): [{}]; not started: [{}]",
        plan.set_id,
        plan.members[failed.index].source_topic,
        done.join(", "),
        stopped.join(", "),
        rest.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::BackupSetRef;

    fn member(topic: &str, count: u32) -> Manifest {
        serde_json::from_value(serde_json::json!({
            "format_version": 1, "backup_id": format!("s.{topic}"), "cluster_id": "c",
            "topic": {"name": topic, "partition_count": 1, "replication_factor": 1},
            "compression": {"codec": "none"}, "include_keys": true, "include_headers": true,
            "created_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:00Z",
            "partitions": [],
            "backup_set": BackupSetRef { set_id: "s".into(), set_uid: None, topic_count: count },
        }))
        .unwrap()
    }

    fn request(json: serde_json::Value) -> RestoreRequest {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn each_topic_gets_its_name_a_prefix_or_a_mapping() {
        let members = [member("a", 2), member("b", 2)];
        let plan = request(serde_json::json!({"backup_id": "s", "topic_prefix": "dr-",
            "topic_mapping": {"b": "bee"}}))
        .validate_set(&members)
        .unwrap();
        let targets: Vec<(&str, &str, &str)> = plan
            .members
            .iter()
            .map(|m| {
                (
                    m.backup_id.as_str(),
                    m.source_topic.as_str(),
                    m.target_topic.as_str(),
                )
            })
            .collect();
        assert_eq!(targets, vec![("s.a", "a", "dr-a"), ("s.b", "b", "bee")]);
        let same = request(serde_json::json!({"backup_id": "s"}))
            .validate_set(&members)
            .unwrap();
        assert_eq!(same.members[1].target_topic, "b");
    }

    #[test]
    fn an_incomplete_set_or_a_bad_field_is_refused() {
        let incomplete = [member("a", 3), member("b", 3)];
        let err = request(serde_json::json!({"backup_id": "s"}))
            .validate_set(&incomplete)
            .unwrap_err();
        assert!(matches!(err, DomainError::Conflict { .. }), "{err:?}");
        let members = [member("a", 2), member("b", 2)];
        for (json, field) in [
            (
                serde_json::json!({"backup_id": "s", "target_topic": "x"}),
                "target_topic",
            ),
            (
                serde_json::json!({"backup_id": "s", "topic_mapping": {"zzz": "y"}}),
                "topic_mapping",
            ),
            (
                serde_json::json!({"backup_id": "s", "topic_mapping": {"a": "b"}}),
                "topic_prefix",
            ),
            (
                serde_json::json!({"backup_id": "s", "topic_prefix": "bad prefix "}),
                "topic_prefix",
            ),
            (
                serde_json::json!({"backup_id": "s", "partitions": [0]}),
                "partitions",
            ),
        ] {
            match request(json.clone()).validate_set(&members) {
                Err(DomainError::Validation(v)) => assert_eq!(v.field, field, "{json}"),
                other => panic!("{json}: {other:?}"),
            }
        }
    }
}
