//! The migration's dry run: the real run's validation (the request, the compiled
//! transformation, the source topic, the target and `if_exists`, whether groups can be
//! translated) and its cut, then where the records would land, and nothing created,
//! produced or committed.
//!
//! The cut's records per partition are its offsets (`high - low`): exact for a topic without
//! compaction or transaction markers, an upper bound otherwise. Kept partitions land from the
//! target's high watermark on (0 for a topic the run would create). A filter, `max_messages`
//! or re-partitioning by key make what is written known only while records are read; the plan
//! then says so in `warnings`.

use std::collections::BTreeMap;
use std::time::Instant;

use kvault_domain::dry_run::MigrateDryRun;
use kvault_domain::error::DomainResult;
use kvault_domain::job::OperationControl;
use kvault_domain::migrate::{MessageTransformation, MigrateRequest};
use kvault_domain::restore::PartitionRestoreResult;
use kvault_domain::DomainError;

use super::group_translation::{precondition, translate_groups};
use super::target::prepare_target;
use crate::cluster::KafkaCluster;
use crate::groups::offset_map::{runs_per_partition, OffsetMap};
use crate::groups::translation::TranslationPlan;
use crate::transform::CompiledTransformation;

/// What the migration of `req` from `source` to `target` would do (see the module docs).
pub(crate) async fn dry_run(
    source: &KafkaCluster,
    target: &KafkaCluster,
    req: MigrateRequest,
    control: OperationControl,
) -> DomainResult<MigrateDryRun> {
    let started = Instant::now();
    req.validate()?;
    let empty = MessageTransformation::default();
    CompiledTransformation::compile(req.transformation.as_ref().unwrap_or(&empty))?;
    let transformation_applied = req.transformation.as_ref().is_some_and(|t| !t.is_empty());
    let source_admin = source.admin()?;
    let info = source_admin.require_topic(&req.source_topic).await?;
    let marks = source_admin
        .watermarks(&req.source_topic, &info.partitions)
        .await?;
    let target_admin = target.admin()?;
    let (admins, start) = ((&source_admin, &target_admin), (&marks, &control));
    let prepared = prepare_target(admins, &req, &info, start, true).await?;
    let kept = prepared.partitions == info.partitions;
    let translation = precondition(
        &req,
        &info.partitions,
        &prepared.partitions,
        !kept,
        &prepared.base,
    );
    let (topic, ends) = (prepared.topic, prepared.base);
    let in_cut: u64 = marks.values().map(|(l, h)| (h - l).max(0) as u64).sum();
    let total = req.max_messages.map_or(in_cut, |max| max.min(in_cut));
    let (partitions, offset_maps) = landing(&marks, &ends, kept);
    let warnings = warnings(&req, kept, transformation_applied, total < in_cut);
    let consumer_groups = match translation {
        None => Vec::new(),
        Some(plan) => {
            let plan = plan.map(|target_ends| TranslationPlan {
                cut: marks.clone(),
                offset_maps,
                target_ends,
                mode: req.consumer_groups_mode,
            });
            let clusters = (source.config(), target.config(), &target_admin);
            translate_groups(clusters, &req, &plan, &control, true).await?
        }
    };
    if control.is_cancelled() {
        return Err(DomainError::Cancelled);
    }
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "migrate: dry run planned"
    );
    Ok(MigrateDryRun {
        dry_run: true,
        source_cluster: req.source_cluster.clone(),
        source_topic: req.source_topic.clone(),
        target_cluster: req.target_cluster.clone(),
        target_topic: req.target_topic.clone(),
        topic,
        partitions_kept: kept,
        transformation_applied,
        total_messages: total,
        partitions,
        consumer_groups,
        warnings,
    })
}

/// Per partition of the cut with records: where they would land (kept partitions only) and
/// the offset map a copy without gaps would leave, for the groups.
fn landing(
    marks: &BTreeMap<i32, (i64, i64)>,
    ends: &BTreeMap<i32, i64>,
    kept: bool,
) -> (Vec<PartitionRestoreResult>, BTreeMap<i32, OffsetMap>) {
    let mut partitions = Vec::new();
    let mut offset_maps = BTreeMap::new();
    for (p, (low, high)) in marks.iter().filter(|(_, (l, h))| h > l) {
        let start = ends.get(p).copied().unwrap_or(0);
        let count = high - low;
        if kept {
            partitions.push(PartitionRestoreResult {
                partition: *p,
                messages_count: count as u64,
                start_offset: start,
                end_offset: start + count,
            });
        }
        let mut map = OffsetMap::new(runs_per_partition(marks.len()));
        map.record_run(*low, start, count);
        offset_maps.insert(*p, map);
    }
    (partitions, offset_maps)
}

/// What makes the plan's per-partition figures less than certain.
fn warnings(req: &MigrateRequest, kept: bool, filtered: bool, capped: bool) -> Vec<String> {
    let mut warnings = Vec::new();
    if !kept {
        warnings.push(format!(
            "the target topic {} has other partitions than the source: records would be \
             re-partitioned by key, so where each lands is known only while they are written",
            req.target_topic
        ));
    }
    if filtered {
        warnings.push(
            "a transformation is applied: the filter may drop records, so the counts and \
             offsets here are upper bounds"
                .into(),
        );
    }
    if capped {
        warnings.push(
            "max_messages caps the migration below the records in the cut: which partitions \
             stop first depends on timing, so the per-partition figures are upper bounds"
                .into(),
        );
    }
    warnings
}
