//! `restore_consumer_groups`: after the records are restored, each selected group the backup
//! recorded is committed on the target topic at the position of the next record it had not
//! read, mapped through where the restored records landed (see
//! [`crate::groups::translation`]). With `preserve_offsets` that is the very offset; otherwise
//! the group is never moved past a record it has not read. Where the group already has a
//! commit on the target partition it is kept unless `consumer_groups_mode` is `overwrite`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use kvault_domain::error::DomainResult;
use kvault_domain::groups::{GroupSelection, GroupTranslation, GroupTranslationStatus};
use kvault_domain::manifest::{ConsumerGroupOffsets, Manifest};
use kvault_domain::restore::RestorePlan;
use kvault_domain::{DomainError, PartitionMapping};

use crate::admin::Admin;
use crate::client::ClusterConfig;
use crate::groups::offset_map::{runs_per_partition, OffsetMap};
use crate::groups::translation::{commit_translated, preview_translated, TranslationPlan};

/// What the restore must remember while producing so groups can be put back afterwards.
pub(super) struct GroupRestore {
    /// Target high watermarks before producing: where a group lands on a partition the
    /// restore wrote nothing to.
    target_ends: BTreeMap<i32, i64>,
    /// Per target partition: where each restored source offset landed.
    maps: Mutex<BTreeMap<i32, OffsetMap>>,
    runs: usize,
}

impl GroupRestore {
    /// `None` when no group is to be restored, or when partitions are not kept 1:1 (then the
    /// groups are refused afterwards, and nothing needs remembering). `base`: each target
    /// partition's end offset before the job's first record.
    pub(super) fn prepare(
        plan: &RestorePlan,
        mapping: PartitionMapping,
        base: &BTreeMap<i32, i64>,
    ) -> Option<Self> {
        if plan.restore_consumer_groups.is_none() || mapping != PartitionMapping::Identity {
            return None;
        }
        Some(Self {
            target_ends: base.clone(),
            maps: Mutex::new(BTreeMap::new()),
            runs: runs_per_partition(base.len()),
        })
    }

    /// Notes that `len` consecutive records from `source_offset` would land from `offset` of
    /// `partition` on (a dry run's prediction).
    pub(super) fn landed_run(&self, partition: i32, source_offset: i64, offset: i64, len: i64) {
        if let Ok(mut maps) = self.maps.lock() {
            maps.entry(partition)
                .or_insert_with(|| OffsetMap::new(self.runs))
                .record_run(source_offset, offset, len);
        }
    }

    /// Notes that the record at `source_offset` landed at `offset` of `partition` (the same
    /// partition number: partitions are kept 1:1). Deliveries of one partition arrive in order.
    pub(super) fn landed(&self, partition: i32, source_offset: i64, offset: i64) {
        if let Ok(mut maps) = self.maps.lock() {
            maps.entry(partition)
                .or_insert_with(|| OffsetMap::new(self.runs))
                .record(source_offset, offset);
        }
    }

    /// The translation plan, taking the offset maps out (called once, after producing).
    fn take_plan(
        &self,
        plan: &RestorePlan,
        manifest: &Manifest,
        sources: &[i32],
    ) -> DomainResult<TranslationPlan> {
        let cut = sources
            .iter()
            .filter_map(|p| manifest.partition(*p))
            .map(|m| (m.partition, (m.start_offset, m.end_offset)))
            .collect();
        let offset_maps = std::mem::take(
            &mut *self
                .maps
                .lock()
                .map_err(|_| DomainError::internal("restore offset maps lock poisoned"))?,
        );
        Ok(TranslationPlan {
            cut,
            offset_maps,
            target_ends: self.target_ends.clone(),
            mode: plan.consumer_groups_mode,
        })
    }
}

/// Commits every selected group on the target (with `dry_run`, only says where it would);
/// one entry per group, in the backup's order (for `true`) or the request's (for a list).
pub(super) async fn restore_groups(
    target: (&ClusterConfig, &Admin),
    plan: &RestorePlan,
    manifest: &Manifest,
    sources: &[i32],
    remembered: Option<&GroupRestore>,
    dry_run: bool,
) -> DomainResult<Vec<GroupTranslation>> {
    let selected = selected_groups(&plan.restore_consumer_groups, manifest);
    if selected.is_empty() {
        return Ok(Vec::new());
    }
    let Some(remembered) = remembered else {
        let reason = "partitions were not kept 1:1 (the target topic has a different partition \
                      count): records were re-partitioned by key, so a backed-up offset has no \
                      single target offset; nothing was committed";
        return Ok(selected
            .into_iter()
            .map(|(group, _)| outcome(group, GroupTranslationStatus::Refused, reason.into()))
            .collect());
    };
    let translation = remembered.take_plan(plan, manifest, sources)?;
    let mut outcomes = Vec::with_capacity(selected.len());
    for (group, recorded) in selected {
        let Some(recorded) = recorded else {
            let why = format!(
                "backup {} recorded no committed offset for this group",
                manifest.backup_id
            );
            outcomes.push(outcome(group, GroupTranslationStatus::Skipped, why));
            continue;
        };
        let committed: Vec<(i32, i64, String)> = recorded
            .partitions
            .iter()
            .filter(|p| sources.contains(&p.partition))
            .map(|p| (p.partition, p.offset, p.metadata.clone()))
            .collect();
        if committed.is_empty() {
            let why = "no committed offset on the restored partitions".to_owned();
            outcomes.push(outcome(group, GroupTranslationStatus::Skipped, why));
            continue;
        }
        let topic = &plan.target_topic;
        outcomes.push(if dry_run {
            preview_translated(target, topic, &group, committed, &translation).await
        } else {
            commit_translated(target, topic, &group, committed, &translation).await
        });
    }
    Ok(outcomes)
}

/// The groups to put back, each with what the backup recorded for it (`None`: nothing).
fn selected_groups<'m>(
    selection: &GroupSelection,
    manifest: &'m Manifest,
) -> Vec<(String, Option<&'m ConsumerGroupOffsets>)> {
    match selection {
        GroupSelection::None => Vec::new(),
        GroupSelection::All => manifest
            .consumer_groups
            .iter()
            .map(|g| (g.group_id.clone(), Some(g)))
            .collect(),
        GroupSelection::Only(groups) => groups
            .iter()
            .map(|g| (g.clone(), manifest.consumer_group(g)))
            .collect(),
    }
}

fn outcome(group: String, status: GroupTranslationStatus, message: String) -> GroupTranslation {
    GroupTranslation {
        group_id: group,
        status,
        message: Some(message),
        partitions: Vec::new(),
    }
}

/// Warnings for the groups that were not put back, so a caller reading only `warnings` sees
/// them too.
pub(super) fn warnings(outcomes: &[GroupTranslation]) -> Vec<String> {
    outcomes
        .iter()
        .filter(|g| {
            matches!(
                g.status,
                GroupTranslationStatus::Refused
                    | GroupTranslationStatus::Failed
                    | GroupTranslationStatus::Kept
            )
        })
        .map(|g| {
            format!(
                "consumer group {} was not restored: {}",
                g.group_id,
                g.message.as_deref().unwrap_or("no reason given")
            )
        })
        .collect()
}
