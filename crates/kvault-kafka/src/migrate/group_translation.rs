//! Consumer-group translation after a copy (`translate_consumer_groups`, see the migrate
//! module docs): each listed group's committed source offsets, read from the source cluster,
//! then mapped and committed on the target by [`crate::groups::translation`].

use std::collections::BTreeMap;

use kvault_domain::error::DomainResult;
use kvault_domain::job::OperationControl;
use kvault_domain::migrate::{GroupTranslation, GroupTranslationStatus, MigrateRequest};
use kvault_domain::DomainError;

use crate::admin::Admin;
use crate::client::ClusterConfig;
use crate::groups::read_committed;
use crate::groups::translation::{commit_translated, preview_translated, TranslationPlan};

/// Whether the groups can be translated at all: `Err(reason)` when partitions were not kept
/// 1:1, else the target's ends before the copy (`base`: where a group lands on a partition
/// that copies nothing). `None` when no group is to be translated.
pub(super) fn precondition(
    req: &MigrateRequest,
    source_partitions: &[i32],
    target_partitions: &[i32],
    repartitioned: bool,
    base: &BTreeMap<i32, i64>,
) -> Option<Result<BTreeMap<i32, i64>, String>> {
    if req.translate_consumer_groups.is_empty() {
        return None;
    }
    if repartitioned {
        return Some(Err(format!(
            "partitions were not kept 1:1 (source topic has partitions {source_partitions:?}, \
             target topic {target_partitions:?}): records were re-partitioned by key, so a \
             source offset has no single target offset; nothing was committed"
        )));
    }
    Some(Ok(base.clone()))
}

/// Translates every listed group in request order (with `dry_run`, says what would be
/// committed); one entry per group.
pub(super) async fn translate_groups(
    (source, target, target_admin): (&ClusterConfig, &ClusterConfig, &Admin),
    req: &MigrateRequest,
    plan: &Result<TranslationPlan, String>,
    control: &OperationControl,
    dry_run: bool,
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
                    (target, target_admin),
                    &req.source_topic,
                    &req.target_topic,
                    group,
                    plan,
                    dry_run,
                )
                .await
            }
        };
        translated.push(outcome);
    }
    Ok(translated)
}

/// Reads `group`'s committed offsets on the source topic, translates and commits them on the
/// target topic. Errors are reported in the returned entry, not raised: the copy is done.
async fn translate_group(
    source: &ClusterConfig,
    target: (&ClusterConfig, &Admin),
    source_topic: &str,
    target_topic: &str,
    group: &str,
    plan: &TranslationPlan,
    dry_run: bool,
) -> GroupTranslation {
    let partitions: Vec<i32> = plan.cut.keys().copied().collect();
    let read = {
        let (source, topic, group) = (source.clone(), source_topic.to_owned(), group.to_owned());
        tokio::task::spawn_blocking(move || read_committed(&source, &topic, &group, &partitions))
            .await
            .map_err(|e| DomainError::internal(format!("offset reader thread failed: {e}")))
            .and_then(|r| r)
    };
    let committed = match read {
        Ok(committed) => committed,
        Err(e) => {
            return GroupTranslation {
                group_id: group.to_owned(),
                status: GroupTranslationStatus::Failed,
                message: Some(format!("reading committed offsets on the source: {e}")),
                partitions: Vec::new(),
            }
        }
    };
    if committed.is_empty() {
        return GroupTranslation {
            group_id: group.to_owned(),
            status: GroupTranslationStatus::Skipped,
            message: Some(format!(
                "no committed offset on source topic {source_topic}"
            )),
            partitions: Vec::new(),
        };
    }
    if dry_run {
        preview_translated(target, target_topic, group, committed, plan).await
    } else {
        commit_translated(target, target_topic, group, committed, plan).await
    }
}
