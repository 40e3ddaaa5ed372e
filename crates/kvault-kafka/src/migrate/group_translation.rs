//! Consumer-group translation after a copy (`translate_consumer_groups`, see the migrate
//! module docs): each listed group's committed source offsets, mapped through the partitions'
//! [`OffsetMap`]s, committed for the same group on the target without joining it.

use std::collections::BTreeMap;

use kvault_domain::error::DomainResult;
use kvault_domain::job::OperationControl;
use kvault_domain::migrate::{
    GroupTranslation, GroupTranslationStatus, MigrateRequest, PartitionTranslation,
};
use kvault_domain::DomainError;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset as KOffset, TopicPartitionList};

use crate::admin::{committed_offsets, Admin};
use crate::client::{group_offsets_client, kafka_error, ClusterConfig};

use super::offset_map::OffsetMap;

/// Whether the groups can be translated at all: `Err(reason)` when partitions were not kept
/// 1:1, else the target's ends before the copy (where a group lands on a partition that
/// copies nothing). `None` when no group is to be translated.
pub(super) async fn precondition(
    req: &MigrateRequest,
    source_partitions: &[i32],
    target_partitions: &[i32],
    repartitioned: bool,
    target_admin: &Admin,
) -> DomainResult<Option<Result<BTreeMap<i32, i64>, String>>> {
    if req.translate_consumer_groups.is_empty() {
        return Ok(None);
    }
    if repartitioned {
        return Ok(Some(Err(format!(
            "partitions were not kept 1:1 (source topic has partitions {source_partitions:?}, \
             target topic {target_partitions:?}): records were re-partitioned by key, so a \
             source offset has no single target offset; nothing was committed"
        ))));
    }
    let ends = target_admin
        .watermarks(&req.target_topic, target_partitions)
        .await?
        .into_iter()
        .map(|(p, (_, high))| (p, high))
        .collect::<BTreeMap<i32, i64>>();
    Ok(Some(Ok(ends)))
}

/// Translates every listed group in request order; one entry per group.
pub(super) async fn translate_groups(
    (source, target): (&ClusterConfig, &ClusterConfig),
    req: &MigrateRequest,
    plan: &Result<TranslationPlan, String>,
    control: &OperationControl,
) -> DomainResult<Vec<GroupTranslation>> {
    let mut translated = Vec::with_capacity(req.translate_consumer_groups.len());
    for group in &req.translate_consumer_groups {
        if control.is_cancelled() {
            return Err(DomainError::Cancelled);
        }
        let outcome = match plan {
            Err(reason) => GroupTranslation {
                group_id: group.clone(),
                status: GroupTranslationStatus::Refused,
                message: Some(reason.clone()),
                partitions: Vec::new(),
            },
            Ok(plan) => {
                translate_group(
                    source,
                    target,
                    &req.source_topic,
                    &req.target_topic,
                    group,
                    plan,
                )
                .await
            }
        };
        translated.push(outcome);
    }
    Ok(translated)
}

/// Where one group's offsets are translated to, once the copy is done.
pub(super) struct TranslationPlan {
    /// Source `(low, high)` watermarks at the start: the cut.
    pub(super) cut: BTreeMap<i32, (i64, i64)>,
    /// Per source partition that copied anything: where the copies landed.
    pub(super) offset_maps: BTreeMap<i32, OffsetMap>,
    /// Target high watermarks before the copy: the position of a partition that copied
    /// nothing.
    pub(super) target_ends: BTreeMap<i32, i64>,
}

/// Offsets to commit on the target: `(partition, offset, metadata)`.
type Commits = Vec<(i32, i64, String)>;

impl TranslationPlan {
    /// Each committed source offset mapped onto the target: what is reported, what to commit,
    /// and the partitions where the group had committed past the cut.
    fn map_commits(&self, committed: Commits) -> (Vec<PartitionTranslation>, Commits, Vec<i32>) {
        let mut past_cut = Vec::new();
        let mut translations = Vec::with_capacity(committed.len());
        let mut commit = Vec::with_capacity(committed.len());
        for (partition, offset, metadata) in committed {
            let (target_offset, exact) = self.translate(partition, offset);
            if self
                .cut
                .get(&partition)
                .is_some_and(|(_, high)| offset > *high)
            {
                past_cut.push(partition);
            }
            translations.push(PartitionTranslation {
                partition,
                source_offset: offset,
                target_offset,
                exact,
            });
            commit.push((partition, target_offset, metadata));
        }
        (translations, commit, past_cut)
    }

    /// The target offset for committed source offset `committed` on `partition`, and whether
    /// it is exact (see [`OffsetMap::translate`]).
    fn translate(&self, partition: i32, committed: i64) -> (i64, bool) {
        let map = self.offset_maps.get(&partition);
        if let Some(found) = map.and_then(|m| m.translate(committed)) {
            return found;
        }
        // No copied record at or after `committed`: the group has consumed everything it
        // would find on the target there.
        let end = map
            .and_then(OffsetMap::end)
            .or_else(|| self.target_ends.get(&partition).copied())
            .unwrap_or(0);
        (end, true)
    }
}

/// Reads `group`'s committed offsets on the source topic, translates and commits them on the
/// target topic. Errors are reported in the returned entry, not raised: the copy is done.
async fn translate_group(
    source: &ClusterConfig,
    target: &ClusterConfig,
    source_topic: &str,
    target_topic: &str,
    group: &str,
    plan: &TranslationPlan,
) -> GroupTranslation {
    let partitions: Vec<i32> = plan.cut.keys().copied().collect();
    let read = {
        let (source, topic, group) = (source.clone(), source_topic.to_owned(), group.to_owned());
        tokio::task::spawn_blocking(move || read_committed(&source, &topic, &group, &partitions))
            .await
            .map_err(|e| DomainError::internal(format!("offset reader thread failed: {e}")))
            .and_then(|r| r)
    };
    let mut outcome = GroupTranslation {
        group_id: group.to_owned(),
        status: GroupTranslationStatus::Failed,
        message: None,
        partitions: Vec::new(),
    };
    let committed = match read {
        Ok(committed) => committed,
        Err(e) => {
            outcome.message = Some(format!("reading committed offsets on the source: {e}"));
            return outcome;
        }
    };
    if committed.is_empty() {
        outcome.status = GroupTranslationStatus::Skipped;
        outcome.message = Some(format!(
            "no committed offset on source topic {source_topic}"
        ));
        return outcome;
    }

    let (translations, commit, past_cut) = plan.map_commits(committed);
    outcome.partitions = translations;
    let committed = {
        let (target, topic, group) = (target.clone(), target_topic.to_owned(), group.to_owned());
        tokio::task::spawn_blocking(move || commit_offsets(&target, &topic, &group, &commit))
            .await
            .map_err(|e| DomainError::internal(format!("offset commit thread failed: {e}")))
            .and_then(|r| r)
    };
    match committed {
        Ok(()) => {
            outcome.status = GroupTranslationStatus::Translated;
            if !past_cut.is_empty() {
                // Those records arrived after the cut and were not copied: nothing on the
                // target corresponds to them, so the group is put at the end of the copies.
                outcome.message = Some(format!(
                    "committed past the migration's cut on partitions {past_cut:?}; the \
                     records it consumed there after the cut were not copied"
                ));
            }
        }
        Err(e) => {
            outcome.message = Some(format!(
                "committing on the target failed (is the group active there?): {e}"
            ));
            outcome.partitions.clear();
        }
    }
    outcome
}

/// `(partition, committed offset, commit metadata)` for every partition where `group` has a
/// committed offset on `topic`.
fn read_committed(
    cluster: &ClusterConfig,
    topic: &str,
    group: &str,
    partitions: &[i32],
) -> DomainResult<Vec<(i32, i64, String)>> {
    let client = group_offsets_client(cluster, group)?;
    let query: Vec<(&str, i32)> = partitions.iter().map(|p| (topic, *p)).collect();
    let found = committed_offsets(&client, group, &query)?;
    Ok(partitions
        .iter()
        .zip(found)
        .filter_map(|(p, c)| c.map(|c| (*p, c.offset, c.metadata)))
        .collect())
}

/// Commits `offsets` for `group` on `topic` synchronously, without joining the group.
fn commit_offsets(
    cluster: &ClusterConfig,
    topic: &str,
    group: &str,
    offsets: &[(i32, i64, String)],
) -> DomainResult<()> {
    let client = group_offsets_client(cluster, group)?;
    let mut list = TopicPartitionList::new();
    for (partition, offset, metadata) in offsets {
        let mut elem = list.add_partition(topic, *partition);
        elem.set_offset(KOffset::Offset(*offset))
            .map_err(|e| kafka_error("offset commit request", e))?;
        elem.set_metadata(metadata.as_str());
    }
    client
        .commit(&list, CommitMode::Sync)
        .map_err(|e| kafka_error(format!("commit offsets of group {group} on {topic}"), e))
}
