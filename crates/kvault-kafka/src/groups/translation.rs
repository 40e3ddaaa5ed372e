//! Committed source offsets translated to a target topic: each offset `c` maps to the target
//! offset of the first copied record at or after `c` (the end of the copied records when
//! there is none; the target's end when the partition copied nothing), then the result is
//! committed for the same group on the target without joining it. Migrate and restore share
//! it; they differ only in where the source offsets come from (the source cluster, or the
//! backup's manifest).
//!
//! The group's commits on the target are read first: by default
//! ([`ConsumerGroupsMode::Respect`]) a partition where the group already has one keeps it, so
//! a live group (a redeploy, a consumer using `assign()`) is neither moved past records it
//! has not read nor rewound; `Overwrite` replaces it. Each partition reports which. A commit
//! already at the translated offset counts as committed (see `map_commits`).

use std::collections::BTreeMap;

use kvault_domain::groups::{
    ConsumerGroupsMode, GroupTranslation, GroupTranslationStatus, PartitionAction,
};
use kvault_domain::migrate::PartitionTranslation;
use kvault_domain::DomainError;

use crate::admin::Admin;
use crate::client::ClusterConfig;

use super::offset_map::OffsetMap;
use super::{commit_offsets, read_committed, Commits};

/// Where one group's offsets are translated to, once the copy is done.
pub(crate) struct TranslationPlan {
    /// Source `(low, high)` watermarks at the start: the cut.
    pub(crate) cut: BTreeMap<i32, (i64, i64)>,
    /// Per source partition that copied anything: where the copies landed.
    pub(crate) offset_maps: BTreeMap<i32, OffsetMap>,
    /// Target high watermarks before the copy: the position of a partition that copied
    /// nothing.
    pub(crate) target_ends: BTreeMap<i32, i64>,
    /// What to do where the group already has a commit on the target.
    pub(crate) mode: ConsumerGroupsMode,
}

impl TranslationPlan {
    /// Each committed source offset mapped onto the target: what is reported, what to commit
    /// (none where `existing` holds the group's commit on the target and the mode respects
    /// it), and the partitions where the group had committed past the cut.
    pub(crate) fn map_commits(
        &self,
        committed: Commits,
        existing: &BTreeMap<i32, i64>,
    ) -> (Vec<PartitionTranslation>, Commits, Vec<i32>) {
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
            let existing_offset = existing.get(&partition).copied();
            // A commit already at the translated offset (an earlier attempt of this job made
            // it before its replica stopped) is committed again, which changes nothing: the
            // outcome is the one of a run that never stopped.
            let keep = existing_offset.is_some_and(|e| e != target_offset)
                && self.mode == ConsumerGroupsMode::Respect;
            translations.push(PartitionTranslation {
                partition,
                source_offset: offset,
                target_offset,
                exact,
                action: if keep {
                    PartitionAction::KeptExisting
                } else {
                    PartitionAction::Committed
                },
                existing_offset,
            });
            if !keep {
                commit.push((partition, target_offset, metadata));
            }
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

/// Commits `group`'s translated offsets on `target_topic`: refused while the group has
/// members on the target (a commit would race its consumers); partitions where it already has
/// a commit keep it unless the plan's mode overwrites; the rest committed. Errors are
/// reported in the returned entry, not raised: the data is already written.
pub(crate) async fn commit_translated(
    target: (&ClusterConfig, &Admin),
    target_topic: &str,
    group: &str,
    committed: Commits,
    plan: &TranslationPlan,
) -> GroupTranslation {
    translate_group(target, target_topic, group, committed, plan, true).await
}

/// What [`commit_translated`] would do, for a dry run: the same checks and reads on the
/// target (members, existing commits) and the same translation, without the commit. The
/// statuses say what the real run would report.
pub(crate) async fn preview_translated(
    target: (&ClusterConfig, &Admin),
    target_topic: &str,
    group: &str,
    committed: Commits,
    plan: &TranslationPlan,
) -> GroupTranslation {
    translate_group(target, target_topic, group, committed, plan, false).await
}

async fn translate_group(
    (target, target_admin): (&ClusterConfig, &Admin),
    target_topic: &str,
    group: &str,
    committed: Commits,
    plan: &TranslationPlan,
    commit_now: bool,
) -> GroupTranslation {
    let mut outcome = GroupTranslation {
        group_id: group.to_owned(),
        status: GroupTranslationStatus::Failed,
        message: None,
        partitions: Vec::new(),
    };
    match target_admin.active_members(group).await {
        Ok(0) => {}
        Ok(n) => {
            outcome.status = GroupTranslationStatus::Refused;
            outcome.message = Some(format!(
                "the group has {n} active member(s) on the target; stop its consumers and \
                 commit again (nothing was committed)"
            ));
            return outcome;
        }
        Err(e) => {
            outcome.message = Some(format!("describing the group on the target failed: {e}"));
            return outcome;
        }
    }
    let partitions: Vec<i32> = committed.iter().map(|(p, _, _)| *p).collect();
    let existing = match target_commits(target, target_topic, group, partitions).await {
        Ok(existing) => existing,
        Err(e) => {
            outcome.message = Some(format!(
                "reading the group's committed offsets on the target failed (nothing was \
                 committed): {e}"
            ));
            return outcome;
        }
    };
    let (translations, commit, past_cut) = plan.map_commits(committed, &existing);
    outcome.partitions = translations;
    let kept: Vec<i32> = outcome
        .partitions
        .iter()
        .filter(|p| p.action == PartitionAction::KeptExisting)
        .map(|p| p.partition)
        .collect();
    if commit.is_empty() {
        outcome.status = GroupTranslationStatus::Kept;
        outcome.message = Some(kept_message(&kept));
        return outcome;
    }
    if !commit_now {
        outcome.status = GroupTranslationStatus::Translated;
        outcome.message = notes(&past_cut, &kept);
        return outcome;
    }
    match commit_offsets_blocking(target, target_topic, group, commit).await {
        Ok(()) => {
            outcome.status = GroupTranslationStatus::Translated;
            outcome.message = notes(&past_cut, &kept);
        }
        Err(e) => {
            outcome.message = Some(format!(
                "committing on the target failed (did the group become active there?): {e}"
            ));
            outcome.partitions.clear();
        }
    }
    outcome
}

/// [`commit_offsets`] on a blocking thread.
async fn commit_offsets_blocking(
    target: &ClusterConfig,
    topic: &str,
    group: &str,
    commit: Commits,
) -> Result<(), DomainError> {
    let (target, topic, group) = (target.clone(), topic.to_owned(), group.to_owned());
    tokio::task::spawn_blocking(move || commit_offsets(&target, &topic, &group, &commit))
        .await
        .map_err(|e| DomainError::internal(format!("offset commit thread failed: {e}")))?
}

/// What a translated group's entry notes: partitions committed past the cut (those records
/// arrived after the cut and were not copied: nothing on the target corresponds to them, so
/// the group is put at the end of the copies), and partitions whose existing commit was kept.
fn notes(past_cut: &[i32], kept: &[i32]) -> Option<String> {
    let mut notes = Vec::new();
    if !past_cut.is_empty() {
        notes.push(format!(
            "committed past the cut on partitions {past_cut:?}; the records it consumed there \
             after the cut were not copied"
        ));
    }
    if !kept.is_empty() {
        notes.push(kept_message(kept));
    }
    (!notes.is_empty()).then(|| notes.join("; "))
}

/// The group's committed offsets on `partitions` of the target topic.
async fn target_commits(
    target: &ClusterConfig,
    topic: &str,
    group: &str,
    partitions: Vec<i32>,
) -> Result<BTreeMap<i32, i64>, DomainError> {
    let (target, topic, group) = (target.clone(), topic.to_owned(), group.to_owned());
    let read =
        tokio::task::spawn_blocking(move || read_committed(&target, &topic, &group, &partitions))
            .await
            .map_err(|e| DomainError::internal(format!("offset reader thread failed: {e}")))??;
    Ok(read.into_iter().map(|(p, offset, _)| (p, offset)).collect())
}

fn kept_message(kept: &[i32]) -> String {
    format!(
        "the group already had committed offsets on the target on partitions {kept:?}; they \
         were kept (consumer_groups_mode \"overwrite\" replaces them)"
    )
}
