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
//!
//! Resuming (see `resume`): the cut and each target partition's end offset are recorded before
//! the target is created and before the first produce; a replica that takes the job over
//! copies the recorded cut again and skips, per partition, the records the target shows are
//! already there. With partitions kept 1:1 every copy must land at the partition's next
//! offset; anything else means another writer, and the migration stops `interrupted`, leaving
//! the topic as it is.

mod group_translation;
mod in_progress;
mod partition;
mod preview;
mod resume;
mod target;

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

use crate::admin::Admin;
use crate::client::kafka_error;
use crate::cluster::KafkaCluster;
use crate::consume::PARTITION_CONCURRENCY;
use crate::partitioner::KeyPartitioner;
use crate::produce::RecordProducer;
use crate::transform::CompiledTransformation;

use in_progress::MigrationInProgress;
use partition::migrate_partition;
pub(crate) use preview::dry_run;

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
    source.check_connection().await?;
    target.check_connection().await?;

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
    let admins = (&source_admin, &target_admin, target.config());
    let begun = resume::begin(admins, &req, &info, marks, &control).await?;
    let (marks, topic_created) = (begun.cut.clone(), begun.topic_created);
    let source_partitions: Vec<i32> = marks.keys().copied().collect();
    // Partitions are kept only when the two topics have the very same partition ids.
    let partitioner = (begun.target_partitions != source_partitions)
        .then(|| KeyPartitioner::new(begun.target_partitions.len() as i32));
    let translation = group_translation::precondition(
        &req,
        &source_partitions,
        &begun.target_partitions,
        partitioner.is_some(),
        &begun.base,
    );
    let offset_map_runs =
        matches!(translation, Some(Ok(_))).then(|| runs_per_partition(source_partitions.len()));
    let shared = Arc::new(MigrationInProgress::new(
        source.config().clone(),
        &req,
        transformation,
        partitioner,
        producer,
        control,
        (offset_map_runs, begun.base, begun.landed),
    ));
    let offset_maps = run_copy(&shared, &marks, &target_admin, topic_created).await?;
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

/// The copy itself: what an earlier attempt landed is checked, every partition is copied and
/// the ends are checked; a failure says what was written and cleans up (see `fail`).
async fn run_copy(
    shared: &Arc<MigrationInProgress>,
    marks: &BTreeMap<i32, (i64, i64)>,
    target_admin: &Admin,
    topic_created: bool,
) -> DomainResult<BTreeMap<i32, OffsetMap>> {
    let copied = match resume::check_landed(shared, marks).await {
        Ok(()) => match copy_partitions(shared, marks).await {
            Ok(maps) => check_ends(target_admin, shared).await.map(|()| maps),
            Err(error) => Err(error),
        },
        Err(error) => Err(error),
    };
    match copied {
        Ok(maps) => Ok(maps),
        Err(error) => Err(fail(error, shared, target_admin, topic_created).await),
    }
}

/// With partitions kept 1:1, each target partition must end where the job's records end (its
/// base offset + the records copied into it): more means something else wrote meanwhile.
async fn check_ends(target_admin: &Admin, shared: &MigrationInProgress) -> DomainResult<()> {
    if shared.partitioner.is_some() {
        return Ok(());
    }
    let parts: Vec<i32> = shared.base.keys().copied().collect();
    let ends = target_admin
        .watermarks(&shared.target_topic, &parts)
        .await?;
    let copied = shared.copied_per_partition();
    for (p, (_, end)) in ends {
        let expected =
            shared.base.get(&p).copied().unwrap_or(0) + copied.get(&p).copied().unwrap_or(0) as i64;
        if end != expected {
            return Err(DomainError::interrupted(format!(
                "partition {p} of {} ends at offset {end}, but this migration's records end at \
                 {expected}: something else wrote into the topic meanwhile",
                shared.target_topic
            )));
        }
    }
    Ok(())
}

/// Copies every partition of the cut, a few at a time, and flushes the producer; returns
/// where the copies landed per partition (when groups are translated). The first error is
/// the root cause: it stops the other partitions and is the one returned.
async fn copy_partitions(
    shared: &Arc<MigrationInProgress>,
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
    shared: &MigrationInProgress,
    target_admin: &Admin,
    topic_created: bool,
) -> DomainError {
    let topic = &shared.target_topic;
    // Another writer's records, or a replica about to continue: not only ours to delete.
    let interrupted = matches!(error.kind(), kvault_domain::ErrorKind::Interrupted);
    let cleanup = if shared.control.is_handed_over() {
        format!("topic {topic} was left for the replica that continues the migration")
    } else if topic_created && interrupted {
        format!("topic {topic} (created by this migration) was left as it is for inspection")
    } else if topic_created {
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
