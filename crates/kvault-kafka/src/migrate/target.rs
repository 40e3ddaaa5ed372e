//! The migration's target topic: checked against `if_exists`, or created like restore creates
//! one (same partition count, replication factor and configs as the source). The job's start
//! (the cut, each target partition's end offset before the copy) is recorded before the topic
//! is created; a dry run records and creates nothing and says how it would create the topic.

use std::collections::BTreeMap;

use kvault_domain::dry_run::TopicPlan;
use kvault_domain::error::DomainResult;
use kvault_domain::job::OperationControl;
use kvault_domain::migrate::MigrateRequest;
use kvault_domain::resume::StartRecord;
use kvault_domain::PartitionMapping;

use crate::admin::{Admin, TopicInfo};

/// The target as the migration uses it.
pub(super) struct PreparedMigrationTarget {
    /// Its partition ids.
    pub(super) partitions: Vec<i32>,
    /// The topic as found, or as created (or, in a dry run, as it would be created).
    pub(super) topic: TopicPlan,
    /// Per target partition: its end offset before the copy (0 for a topic created).
    pub(super) base: BTreeMap<i32, i64>,
}

/// The target topic's partitions, creating it when it is missing (not with `dry_run`), and
/// each target partition's end offset before the copy; the job's start is recorded first
/// (not with `dry_run`).
pub(super) async fn prepare_target(
    (source_admin, target_admin): (&Admin, &Admin),
    req: &MigrateRequest,
    info: &TopicInfo,
    (cut, control): (&BTreeMap<i32, (i64, i64)>, &OperationControl),
    dry_run: bool,
) -> DomainResult<PreparedMigrationTarget> {
    let existing = target_admin.topic(&req.target_topic).await?;
    let (partitions, base) = match &existing {
        Some(existing) => {
            let marks = target_admin
                .watermarks(&req.target_topic, &existing.partitions)
                .await?;
            let held: i64 = marks.values().map(|(low, high)| high - low).sum();
            req.if_exists.admit(&req.target_topic, held, "migrate")?;
            let base: BTreeMap<i32, i64> =
                marks.into_iter().map(|(p, (_, high))| (p, high)).collect();
            (existing.partitions.clone(), base)
        }
        None => {
            let base = info.partitions.iter().map(|p| (*p, 0)).collect();
            (info.partitions.clone(), base)
        }
    };
    if !dry_run {
        let mapping = if partitions == info.partitions {
            PartitionMapping::Identity
        } else {
            PartitionMapping::Murmur2
        };
        let start = StartRecord {
            target_topic: req.target_topic.clone(),
            topic_created: existing.is_none(),
            mapping,
            base_offsets: base.clone(),
            archives: Vec::new(),
            source_cut: cut.clone(),
        };
        record_start(control, start).await?;
    }
    if let Some(existing) = existing {
        let topic = TopicPlan {
            topic: req.target_topic.clone(),
            create: false,
            partitions: existing.partition_count(),
            replication_factor: existing.replication_factor,
            configs: Default::default(),
        };
        return Ok(PreparedMigrationTarget {
            partitions,
            topic,
            base,
        });
    }
    let configs = source_admin.topic_configs(&req.source_topic).await?;
    let topic = TopicPlan {
        topic: req.target_topic.clone(),
        create: true,
        partitions: info.partition_count(),
        replication_factor: info.replication_factor,
        configs,
    };
    if !dry_run {
        create(target_admin, &topic).await?;
    }
    Ok(PreparedMigrationTarget {
        partitions,
        topic,
        base,
    })
}

/// Creates the topic `topic` plans; configs the target cluster refuses are left out.
async fn create(target_admin: &Admin, topic: &TopicPlan) -> DomainResult<()> {
    let created = target_admin
        .create_topic(
            &topic.topic,
            topic.partitions,
            topic.replication_factor,
            &topic.configs,
        )
        .await?;
    if created.configs_dropped {
        tracing::warn!(
            topic = %topic.topic,
            reason = ?created.config_error,
            "target cluster refused the source topic's configs; created without them"
        );
    }
    Ok(())
}

/// The start record of a first attempt, stored before the target is created or written.
async fn record_start(control: &OperationControl, record: StartRecord) -> DomainResult<()> {
    match control.journal() {
        Some(journal) => journal.record_start(record).await,
        None => Ok(()),
    }
}
