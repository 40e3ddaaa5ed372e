//! The restore's target topic: checks an existing one against the plan (conflict,
//! `preserve_offsets` feasibility), or creates it (a dry run stops short of creating it and
//! says how it would). Nothing is produced here. The job's start record (its end offset per
//! target partition, what it reads) is stored before the topic is created, so a replica
//! taking the job over knows what of the target is the job's; a dry run records nothing.

use std::collections::BTreeMap;

use kvault_domain::error::DomainResult;
use kvault_domain::job::OperationControl;
use kvault_domain::manifest::Manifest;
use kvault_domain::restore::RestorePlan;
use kvault_domain::restore_planning::{
    check_offsets_preservable, partition_mapping, retention_warning,
};
use kvault_domain::resume::StartRecord;
use kvault_domain::{DomainError, PartitionMapping, ValidationError};

use crate::admin::{Admin, TopicInfo};

/// The target topic as the restore will use it.
pub(super) struct PreparedRestoreTarget {
    pub(super) mapping: PartitionMapping,
    pub(super) partitions: i32,
    pub(super) created: bool,
    pub(super) replication_factor: i16,
    /// The configs a created topic is given (empty for an existing topic).
    pub(super) configs: BTreeMap<String, String>,
    pub(super) warnings: Vec<String>,
    /// Per target partition: its end offset before the restore's first record.
    pub(super) base_offsets: BTreeMap<i32, i64>,
}

/// Checks an existing target topic against the plan, or creates it (with the backed-up
/// configs when the broker takes them), recording the job's start first; with `dry_run`
/// neither. Nothing is produced yet. `archives`: what the restore reads, as
/// `(backup_id, uid)`.
pub(super) async fn prepare_target(
    admin: &Admin,
    plan: &RestorePlan,
    manifest: &Manifest,
    sources: &[i32],
    control: &OperationControl,
    archives: Vec<(String, Option<String>)>,
    dry_run: bool,
) -> DomainResult<PreparedRestoreTarget> {
    let existing = admin.topic(&plan.target_topic).await?;
    let (target_count, mapping) = plan_layout(plan, manifest, existing.as_ref())?;
    let base_offsets = if let Some(info) = &existing {
        check_existing_target(admin, plan, info, sources, manifest, mapping).await?
    } else {
        if plan.preserve_offsets {
            check_offsets_preservable(plan, manifest, sources, mapping)?;
        }
        (0..target_count).map(|p| (p, 0)).collect()
    };
    if control.is_cancelled() {
        return Err(DomainError::Cancelled);
    }
    if !dry_run {
        let start = StartRecord {
            target_topic: plan.target_topic.clone(),
            topic_created: existing.is_none(),
            mapping,
            base_offsets: base_offsets.clone(),
            archives,
            source_cut: BTreeMap::new(),
        };
        record_start(control, start).await?;
    }
    let archive = (manifest, sources);
    let layout = (existing.as_ref(), target_count, dry_run);
    let (replication, configs, warnings) = create_or_keep(admin, plan, archive, layout).await?;
    Ok(PreparedRestoreTarget {
        mapping,
        partitions: target_count,
        created: existing.is_none(),
        replication_factor: replication,
        configs,
        warnings,
        base_offsets,
    })
}

/// The target's partition count and how source partitions map onto it; `retention_override`
/// is refused for a topic that exists.
fn plan_layout(
    plan: &RestorePlan,
    manifest: &Manifest,
    existing: Option<&TopicInfo>,
) -> DomainResult<(i32, PartitionMapping)> {
    let source_count = manifest.topic.partition_count;
    let target_count = match existing {
        Some(info) => info.partition_count(),
        None => plan.target_partitions.unwrap_or(source_count),
    };
    // A masked key is partitioned after masking, as a producer of that key would.
    let mapping = match &plan.transform {
        Some(t) if t.masks_key() => PartitionMapping::Murmur2,
        _ => partition_mapping(source_count, target_count),
    };
    if let (Some(ms), Some(_)) = (plan.retention_override_ms, existing) {
        return Err(ValidationError::new(
            "retention_override",
            ms,
            format!(
                "topic {} already exists: retention_override applies only to a topic the \
                 restore creates; change the existing topic's retention.ms with your Kafka tools",
                plan.target_topic
            ),
        )
        .into());
    }
    Ok((target_count, mapping))
}

/// Keeps an existing topic's layout (warning where the plan asked for another) or creates the
/// topic with the backed-up configs (a dry run only says which); returns the replication
/// factor, the configs a created topic gets, and the warnings.
async fn create_or_keep(
    admin: &Admin,
    plan: &RestorePlan,
    (manifest, sources): (&Manifest, &[i32]),
    (existing, target_count, dry_run): (Option<&TopicInfo>, i32, bool),
) -> DomainResult<(i16, BTreeMap<String, String>, Vec<String>)> {
    let mut warnings = Vec::new();
    let mut configs = BTreeMap::new();
    let mut replication = plan
        .replication_factor
        .unwrap_or(manifest.topic.replication_factor);
    if let Some(info) = existing {
        warnings.extend(layout_not_applied(plan, info));
        replication = info.replication_factor;
    } else {
        configs = manifest.topic.configs.clone();
        if let Some(ms) = plan.retention_override_ms {
            configs.insert("retention.ms".to_owned(), ms.to_string());
        }
    }
    if existing.is_none() && !dry_run {
        let layout = (target_count, replication, &configs);
        warnings.extend(create_target(admin, &plan.target_topic, layout).await?);
    }
    // Not created by a dry run: the retention it would be created with, when the configs
    // set one.
    let would_have = (existing.is_none() && dry_run).then_some(&configs);
    warnings.extend(retention_warnings(admin, plan, manifest, sources, would_have).await);
    Ok((replication, configs, warnings))
}

/// Creates the target topic; a warning when the broker refused the backed-up configs.
async fn create_target(
    admin: &Admin,
    topic: &str,
    (partitions, replication, configs): (i32, i16, &BTreeMap<String, String>),
) -> DomainResult<Option<String>> {
    let created = admin
        .create_topic(topic, partitions, replication, configs)
        .await?;
    if !created.configs_dropped {
        return Ok(None);
    }
    tracing::warn!(
        topic = %topic,
        reason = ?created.config_error,
        "broker refused the backed-up topic configs; topic created without them"
    );
    Ok(Some(format!(
        "the broker refused the backed-up topic configs ({}); topic {topic} was created \
         without them",
        created.config_error.as_deref().unwrap_or("no reason given"),
    )))
}

/// The retention in effect on the target (its own, the broker's or the default), whether the
/// restore created the topic or appends to it: records older than it are deleted by the
/// broker soon after they are restored. `would_have`: the configs of a topic a dry run did
/// not create.
async fn retention_warnings(
    admin: &Admin,
    plan: &RestorePlan,
    manifest: &Manifest,
    sources: &[i32],
    would_have: Option<&BTreeMap<String, String>>,
) -> Vec<String> {
    let retention = match would_have {
        Some(configs) => Ok(configs.get("retention.ms").cloned()),
        None => {
            admin
                .effective_config(&plan.target_topic, "retention.ms")
                .await
        }
    };
    match retention {
        Ok(value) => {
            let retention_ms = value.and_then(|v| v.parse::<i64>().ok());
            let now = chrono::Utc::now().timestamp_millis();
            retention_warning(manifest, sources, retention_ms, now)
                .into_iter()
                .collect()
        }
        Err(e) => {
            tracing::warn!(
                topic = %plan.target_topic,
                error = %e,
                "could not read the target's retention.ms; restoring without the retention check"
            );
            Vec::new()
        }
    }
}

/// An existing target: refuse when it holds messages unless appending; check offset
/// preservation against its watermarks. Returns each partition's end offset.
pub(super) async fn check_existing_target(
    admin: &Admin,
    plan: &RestorePlan,
    info: &TopicInfo,
    sources: &[i32],
    manifest: &Manifest,
    mapping: PartitionMapping,
) -> DomainResult<BTreeMap<i32, i64>> {
    let marks = admin
        .watermarks(&plan.target_topic, &info.partitions)
        .await?;
    let held: i64 = marks.values().map(|(low, high)| high - low).sum();
    plan.if_exists.admit(&plan.target_topic, held, "restore")?;
    if plan.preserve_offsets {
        check_offsets_preservable(plan, manifest, sources, mapping)?;
        if let Some((p, (_, high))) = marks.iter().find(|(_, (_, high))| *high != 0) {
            return Err(ValidationError::new(
                "preserve_offsets",
                true,
                format!(
                    "target partition {p} already has offsets up to {high}; offsets can only be \
                     preserved into empty partitions (high watermark 0)"
                ),
            )
            .into());
        }
    }
    Ok(marks.into_iter().map(|(p, (_, high))| (p, high)).collect())
}

/// What the request asked of the topic's layout that an existing topic does not have: the
/// restore goes ahead into the topic as it is and says so.
fn layout_not_applied(plan: &RestorePlan, info: &TopicInfo) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(asked) = plan
        .target_partitions
        .filter(|n| *n != info.partition_count())
    {
        warnings.push(format!(
            "target topic {} already exists with {} partitions; target_partitions {asked} was \
             not applied",
            plan.target_topic,
            info.partition_count()
        ));
    }
    if let Some(asked) = plan
        .replication_factor
        .filter(|rf| *rf != info.replication_factor)
    {
        warnings.push(format!(
            "target topic {} already exists with replication factor {}; replication_factor \
             {asked} was not applied",
            plan.target_topic, info.replication_factor
        ));
    }
    warnings
}

/// The start record of a first attempt, stored before the target is created or written.
async fn record_start(control: &OperationControl, record: StartRecord) -> DomainResult<()> {
    match control.journal() {
        Some(journal) => journal.record_start(record).await,
        None => Ok(()),
    }
}
