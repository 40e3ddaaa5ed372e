//! Committed source offsets translated to a target topic: each offset `c` maps to the target
//! offset of the first copied record at or after `c` (the end of the copied records when
//! there is none; the target's end when the partition copied nothing), then the result is
//! committed for the same group on the target without joining it. Migrate and restore share
//! it; they differ only in where the source offsets come from (the source cluster, or the
//! backup's manifest).

use std::collections::BTreeMap;

use kvault_domain::groups::{GroupTranslation, GroupTranslationStatus};
use kvault_domain::migrate::PartitionTranslation;
use kvault_domain::DomainError;

use crate::admin::Admin;
use crate::client::ClusterConfig;

use super::offset_map::OffsetMap;
use super::{commit_offsets, Commits};

/// Where one group's offsets are translated to, once the copy is done.
pub(crate) struct TranslationPlan {
    /// Source `(low, high)` watermarks at the start: the cut.
    pub(crate) cut: BTreeMap<i32, (i64, i64)>,
    /// Per source partition that copied anything: where the copies landed.
    pub(crate) offset_maps: BTreeMap<i32, OffsetMap>,
    /// Target high watermarks before the copy: the position of a partition that copied
    /// nothing.
    pub(crate) target_ends: BTreeMap<i32, i64>,
}

impl TranslationPlan {
    /// Each committed source offset mapped onto the target: what is reported, what to commit,
    /// and the partitions where the group had committed past the cut.
    pub(crate) fn map_commits(
        &self,
        committed: Commits,
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

/// Commits `group`'s translated offsets on `target_topic`: refused while the group has
/// members on the target (a commit would race its consumers), else committed. Errors are
/// reported in the returned entry, not raised: the data is already written.
pub(crate) async fn commit_translated(
    (target, target_admin): (&ClusterConfig, &Admin),
    target_topic: &str,
    group: &str,
    committed: Commits,
    plan: &TranslationPlan,
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
                    "committed past the cut on partitions {past_cut:?}; the records it consumed \
                     there after the cut were not copied"
                ));
            }
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
