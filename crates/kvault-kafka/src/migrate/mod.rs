//! Migrate: streams a consistent cut of a topic from one cluster into a topic of another (or
//! the same) cluster, applying the request's CEL filter, key rewrite and header additions, with
//! nothing touching disk.
//!
//! Order of business, so that nothing moves on a bad request:
//! 1. validate the request and compile the transformation (a bad expression is a
//!    `Validation` error naming the field; the target topic is not even created);
//! 2. describe the source topic (`NotFound("topic")` when missing) and snapshot its
//!    watermarks: the cut. Records produced later are not migrated;
//! 3. create the target topic when missing, like restore does (same partition count,
//!    replication factor and topic-level configs as the source);
//! 4. per source partition, a blocking reader thread (a consumer assigned to that partition,
//!    never joining a group) evaluates the transformation and feeds a bounded channel; an async
//!    task produces into the target through one idempotent acks=all producer. A few partitions
//!    run at a time, so memory stays bounded whatever the topic size.
//!
//! Partitions are kept (source partition N -> target partition N) when both topics have the
//! same partition count; otherwise keyed records go where Kafka's default partitioner (murmur2
//! of the *new* key) puts them and null-key records round-robin. Keys, values (null and empty
//! alike), headers (order, repeats, null values) and timestamps are preserved.
//!
//! Counting: `messages_read` = `messages_filtered` + `messages_failed` + `messages_written`
//! for a completed migration. `max_messages` caps the messages *migrated* (written): a record
//! the cap stops is not counted as read. Evaluation errors follow `on_error`: `skip` counts
//! the record as failed and goes on; `fail` stops with a `Validation` error on the failing
//! field. A migration that fails or is cancelled after it created the target topic deletes that
//! topic again, so no half-migrated topic is left behind; a pre-existing target is left as is
//! (records already written stay).
//!
//! Consumer-group translation (`translate_consumer_groups`): while copying, each partition
//! task records where the copies landed (source offset -> target offset, as run-length
//! segments in an `OffsetMap` of bounded size). After the copy, each listed group's committed
//! offsets on the source topic are read without joining the group (a consumer with the group's
//! id that never subscribes, only sends OffsetFetch), each committed offset `c` is mapped to
//! the target offset of the first copied record at or after `c` (the end of the copied
//! records when none; the target's end when the partition copied nothing), and the result is
//! committed for the same group id on the target, again without joining. The group then
//! resumes on the target at the copy of the next record it would have read on the source,
//! whatever the filter dropped. Translation needs partitions kept 1:1: when records are
//! re-partitioned by key, one source position has no single target position, so the groups
//! are refused (reported, nothing committed) rather than guessed. A group with no commit on
//! the source topic is reported as skipped; a failure to read or commit one group's offsets
//! is reported for that group and does not undo the copy.

mod group_translation;
mod partition;
mod preview;
mod shared;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::groups::offset_map::{runs_per_partition, OffsetMap};
use crate::groups::translation::TranslationPlan;
use futures::StreamExt;
use kvault_domain::error::DomainResult;
use kvault_domain::fanout::RootCause;
use kvault_domain::job::OperationControl;
use kvault_domain::migrate::{MessageTransformation, MigrateRequest, MigrateResult};
use kvault_domain::DomainError;

use crate::admin::{Admin, TopicInfo};
use crate::client::kafka_error;
use crate::cluster::KafkaCluster;
use crate::consume::PARTITION_CONCURRENCY;
use crate::partitioner::KeyPartitioner;
use crate::produce::RecordProducer;
use crate::transform::CompiledTransformation;

use kvault_domain::dry_run::TopicPlan;
use partition::migrate_partition;
pub(crate) use preview::dry_run;
use shared::Shared;

const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);

/// Copies a consistent cut of `req.source_topic` on `source` into `req.target_topic` on
/// `target` (see the module docs for the rules).
pub async fn migrate(
    source: &KafkaCluster,
    target: &KafkaCluster,
    migration_id: String,
    req: MigrateRequest,
    control: OperationControl,
) -> DomainResult<MigrateResult> {
    let started = Instant::now();
    req.validate()?;
    let empty = MessageTransformation::default();
    let transformation =
        CompiledTransformation::compile(req.transformation.as_ref().unwrap_or(&empty))?;
    let transformation_applied = req.transformation.as_ref().is_some_and(|t| !t.is_empty());

    // First: the producer connects (and gets its producer id) while the topics are checked.
    let producer = RecordProducer::create(target.config())?;
    let source_admin = source.admin()?;
    let info = source_admin.require_topic(&req.source_topic).await?;
    let marks = source_admin
        .watermarks(&req.source_topic, &info.partitions)
        .await?;
    if control.is_cancelled() {
        return Err(DomainError::Cancelled);
    }
    let target_admin = target.admin()?;
    let (target_partitions, topic) =
        prepare_target(&source_admin, &target_admin, &req, &info, false).await?;
    let topic_created = topic.create;
    // Partitions are kept only when the two topics have the very same partition ids.
    let partitioner = (target_partitions != info.partitions)
        .then(|| KeyPartitioner::new(target_partitions.len() as i32));
    let translation = group_translation::precondition(
        &req,
        &info.partitions,
        &target_partitions,
        partitioner.is_some(),
        &target_admin,
    )
    .await?;
    let offset_map_runs =
        matches!(translation, Some(Ok(_))).then(|| runs_per_partition(info.partitions.len()));
    let shared = Arc::new(Shared::new(
        source.config().clone(),
        &req,
        transformation,
        partitioner,
        producer,
        control,
        offset_map_runs,
    ));
    let offset_maps = match copy_partitions(&shared, &marks).await {
        Ok(maps) => maps,
        Err(error) => return Err(fail(error, &shared, &target_admin, topic_created).await),
    };
    let consumer_groups_translated = match translation {
        None => Vec::new(),
        Some(plan) => {
            let plan = plan.map(|target_ends| TranslationPlan {
                cut: marks,
                offset_maps,
                target_ends,
                mode: req.consumer_groups_mode,
            });
            group_translation::translate_groups(
                (source.config(), target.config(), &target_admin),
                &req,
                &plan,
                &shared.control,
                false,
            )
            .await?
        }
    };
    Ok(shared.result(
        migration_id,
        req,
        started,
        transformation_applied,
        consumer_groups_translated,
    ))
}

/// The target topic's partitions, creating it like restore does when it is missing (same
/// partition count, replication factor and configs as the source; not with `dry_run`); and
/// the topic as found or made.
async fn prepare_target(
    source_admin: &Admin,
    target_admin: &Admin,
    req: &MigrateRequest,
    info: &TopicInfo,
    dry_run: bool,
) -> DomainResult<(Vec<i32>, TopicPlan)> {
    if let Some(existing) = target_admin.topic(&req.target_topic).await? {
        let marks = target_admin
            .watermarks(&req.target_topic, &existing.partitions)
            .await?;
        let held: i64 = marks.values().map(|(low, high)| high - low).sum();
        req.if_exists.admit(&req.target_topic, held, "migrate")?;
        let topic = TopicPlan {
            topic: req.target_topic.clone(),
            create: false,
            partitions: existing.partition_count(),
            replication_factor: existing.replication_factor,
            configs: Default::default(),
        };
        return Ok((existing.partitions, topic));
    }
    let configs = source_admin.topic_configs(&req.source_topic).await?;
    let topic = TopicPlan {
        topic: req.target_topic.clone(),
        create: true,
        partitions: info.partition_count(),
        replication_factor: info.replication_factor,
        configs: configs.clone(),
    };
    if dry_run {
        return Ok((info.partitions.clone(), topic));
    }
    let created = target_admin
        .create_topic(
            &req.target_topic,
            info.partition_count(),
            info.replication_factor,
            &configs,
        )
        .await?;
    if created.configs_dropped {
        tracing::warn!(
            topic = %req.target_topic,
            reason = ?created.config_error,
            "target cluster refused the source topic's configs; created without them"
        );
    }
    Ok((info.partitions.clone(), topic))
}

/// Copies every partition of the cut, a few at a time, and flushes the producer; returns
/// where the copies landed per partition (when groups are translated). The first error is
/// the root cause: it stops the other partitions and is the one returned.
async fn copy_partitions(
    shared: &Arc<Shared>,
    marks: &BTreeMap<i32, (i64, i64)>,
) -> DomainResult<BTreeMap<i32, OffsetMap>> {
    let ranges: Vec<(i32, i64, i64)> = marks
        .iter()
        .filter(|(_, (low, high))| high > low)
        .map(|(p, (low, high))| (*p, *low, *high))
        .collect();
    let mut tasks = futures::stream::iter(ranges)
        .map(|(p, start, end)| migrate_partition(p, start, end, Arc::clone(shared)))
        .buffer_unordered(PARTITION_CONCURRENCY);
    let mut cause = RootCause::default();
    let mut offset_maps = BTreeMap::new();
    while let Some(result) = tasks.next().await {
        match result {
            Ok((partition, Some(map))) => {
                offset_maps.insert(partition, map);
            }
            Ok((_, None)) => {}
            Err(e) => {
                // Stop the other partitions; they end with `Cancelled`, which `cause` ignores.
                shared.stop.store(true, Ordering::Relaxed);
                cause.record(e);
            }
        }
    }
    drop(tasks);
    if let Some(error) = cause.into_error() {
        return Err(error);
    }
    let producer = shared.producer.clone();
    let flushed = tokio::task::spawn_blocking(move || producer.flush(FLUSH_TIMEOUT))
        .await
        .map_err(|e| DomainError::internal(format!("flush thread failed: {e}")))?;
    flushed.map_err(|e| kafka_error(format!("flush {}", shared.target_topic), e))?;
    Ok(offset_maps)
}

/// Adds what was done to a failure and deletes a target topic this migration created.
async fn fail(
    error: DomainError,
    shared: &Shared,
    target_admin: &Admin,
    topic_created: bool,
) -> DomainError {
    let topic = &shared.target_topic;
    let cleanup = if topic_created {
        match target_admin.delete_topic(topic).await {
            Ok(()) => format!("topic {topic} (created by this migration) was deleted again"),
            Err(e) => format!("deleting topic {topic} (created by this migration) failed: {e}"),
        }
    } else {
        format!("topic {topic} existed before and was left as is")
    };
    let context = format!("{}; {cleanup}", shared.written_so_far());
    match error {
        DomainError::Cancelled => {
            tracing::warn!(%context, "migration cancelled");
            DomainError::Cancelled
        }
        // The kind stays the cause's: a conflict found mid-run is still a 409.
        other => other.context(context),
    }
}
