//! Restore: produces the records of a backup into a target topic, byte for byte.
//!
//! Order of business, so that nothing is produced from a bad plan or a bad archive:
//! 1. read the manifest, verify every checksum (when `validate_checksum`), check the request
//!    against the manifest and the target topic (conflict, `preserve_offsets` feasibility);
//! 2. create the target topic when missing;
//! 3. stream each selected source partition from the archive (a blocking reader thread feeding
//!    a bounded channel) into an idempotent acks=all producer, several partitions at a time.
//!
//! `preserve_offsets` semantics: Kafka assigns offsets on produce, so a record keeps its
//! offset only if it is produced into an empty partition whose next offset equals the source
//! record's and no offset before it is missing. kvault therefore accepts `preserve_offsets`
//! only when the mapping is identity, every selected source partition starts at offset 0 with
//! contiguous offsets (no compaction or transaction gaps), and every target partition is empty
//! (high watermark 0); otherwise it refuses up front. While producing it checks that each
//! delivered offset equals the source offset and fails loudly if not (e.g. another producer
//! wrote into the topic meanwhile). `include_source_offset_header` is the general tool for
//! translating offsets when they cannot be preserved.
//!
//! `restore_consumer_groups`: once every record is delivered, the groups the backup recorded
//! are committed on the target, translated through where the records landed (see `groups`).
//!
//! A failure after producing began never leaves a silent half-written topic: the error says
//! how many records reached which partitions, and a topic kvault created is deleted again
//! (unless the restore is handed to another replica, or something else wrote into it).
//!
//! Resuming (see `resume`): before the topic is created and before the first produce the job
//! records each target partition's end offset; a replica that takes the job over counts the
//! job's records already on each partition from the target itself and produces only the rest.

mod groups;
mod in_progress;
mod load;
mod partition;
mod preview;
mod resume;
mod tally;
mod target;
mod transform;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use kvault_domain::error::DomainResult;
use kvault_domain::job::OperationControl;
use kvault_domain::ports::ArchiveStore;
use kvault_domain::restore::RestorePlan;
use kvault_domain::{BackupId, ClusterId, DomainError, PartitionMapping, RestoreResult};

use crate::admin::{drop_in_background, Admin};
use crate::client::ClusterConfig;
use crate::produce::RecordProducer;
use crate::tuning::partitions_at_once;
use kvault_domain::fanout::all_or_root_cause;

use groups::{restore_groups, GroupRestore};
use in_progress::RestoreInProgress;
use kvault_domain::restore_planning::select_partitions;
use load::{load_checked, Checked};
use partition::{fail_after_producing, restore_partition};
pub(crate) use preview::dry_run;
use resume::{begin, Reading};
use tally::Tally;
use transform::TransformStep;

/// Totals one source partition contributed.
#[derive(Debug, Default)]
struct SourceTotals {
    messages: u64,
    bytes: u64,
}

pub(crate) async fn run(
    cluster_id: &ClusterId,
    cluster: &ClusterConfig,
    plan: RestorePlan,
    store: Arc<dyn ArchiveStore>,
    control: OperationControl,
) -> DomainResult<RestoreResult> {
    let started = Instant::now();
    // First: the producer connects (and gets its producer id) while the archive is checked.
    let producer = RecordProducer::create(cluster)?;
    // A filter that does not compile is refused before anything is read.
    let step = TransformStep::prepare(&plan)?;
    let admin = Admin::new(cluster)?;
    let mut prepared = prepare(cluster, &admin, &plan, &store, &control).await?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "restore: target ready"
    );
    let target = &prepared.begun.target;
    let groups = GroupRestore::prepare(&plan, target.mapping, &prepared.begun.base);
    let mut shared = RestoreInProgress::new(
        &plan,
        prepared.links.clone(),
        (target.mapping, target.partitions),
        (prepared.begun.base.clone(), prepared.begun.skip.clone()),
        producer,
        groups,
        control.clone(),
    );
    shared.transform = step;
    shared.manifests = std::mem::take(&mut prepared.manifests);
    let shared = Arc::new(shared);
    let width = partitions_at_once(&prepared.manifest, &prepared.sources);
    let outcomes: Vec<DomainResult<SourceTotals>> = futures::stream::iter(prepared.sources.clone())
        .map(|p| restore_partition(p, store.clone(), shared.clone()))
        .buffer_unordered(width)
        .collect()
        .await;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "restore: produced"
    );
    let (totals, tally) = settle(outcomes, &admin, &shared, &plan, &prepared).await?;
    let finished = Finished {
        totals,
        tally,
        started,
    };
    let result = finish(
        cluster_id, cluster, &admin, &shared, plan, prepared, finished,
    )
    .await?;
    drop_in_background((shared, admin));
    Ok(result)
}

/// What a restore knows before its first produce: the checked archive, the selected source
/// partitions, the prepared (or continued) target and the warnings so far.
struct Prepared {
    links: Vec<(BackupId, BTreeSet<i32>)>,
    manifest: kvault_domain::Manifest,
    /// Each archive's own manifest, by backup id, handed to the partitions that read it.
    manifests: BTreeMap<String, Arc<kvault_domain::Manifest>>,
    sources: Vec<i32>,
    begun: resume::RestoreAttempt,
    warnings: Vec<String>,
}

/// Loads and checks the archive, selects the partitions and prepares (or continues on) the
/// target.
async fn prepare(
    cluster: &ClusterConfig,
    admin: &Admin,
    plan: &RestorePlan,
    store: &Arc<dyn ArchiveStore>,
    control: &OperationControl,
) -> DomainResult<Prepared> {
    let Checked {
        links,
        archives,
        manifest,
        manifests,
        warnings: chain_warnings,
    } = load_checked(store.as_ref(), plan, control).await?;
    let sources = select_partitions(plan, &manifest)?;
    let reading = Reading {
        archives,
        links: &links,
        store,
    };
    let begun = begin(
        (cluster, admin),
        plan,
        &manifest,
        &sources,
        reading,
        control,
    )
    .await?;
    let mut warnings = begun.target.warnings.clone();
    warnings.extend(chain_warnings);
    Ok(Prepared {
        links,
        manifest,
        manifests,
        sources,
        begun,
        warnings,
    })
}

/// The partitions' outcomes as one: the totals and where records landed, or the root cause
/// of a failure, reported with what was written (see `fail_after_producing`).
async fn settle(
    outcomes: Vec<DomainResult<SourceTotals>>,
    admin: &Admin,
    shared: &RestoreInProgress,
    plan: &RestorePlan,
    prepared: &Prepared,
) -> DomainResult<(SourceTotals, Tally)> {
    let control = &shared.control;
    let outcome = all_or_root_cause(outcomes).and_then(|per_source| {
        if control.is_cancelled() {
            return Err(DomainError::Cancelled);
        }
        Ok(per_source
            .into_iter()
            .fold(SourceTotals::default(), |sum, t| SourceTotals {
                messages: sum.messages + t.messages,
                bytes: sum.bytes + t.bytes,
            }))
    });
    let tally = std::mem::take(
        &mut *shared
            .tally
            .lock()
            .map_err(|_| DomainError::internal("restore tally lock poisoned"))?,
    );
    let outcome = match outcome {
        Ok(totals) => check_ends(admin, shared, &tally, &prepared.sources)
            .await
            .map(|()| totals),
        Err(error) => Err(error),
    };
    match outcome {
        Ok(totals) => Ok((totals, tally)),
        Err(error) => {
            let topic = &plan.target_topic;
            let how = (prepared.begun.target.created, control.is_handed_over());
            Err(fail_after_producing(error, &tally, admin, topic, how).await)
        }
    }
}

/// What producing left for the result.
struct Finished {
    totals: SourceTotals,
    tally: Tally,
    started: Instant,
}

/// Puts the consumer groups back (when asked) and makes the result.
async fn finish(
    cluster_id: &ClusterId,
    cluster: &ClusterConfig,
    admin: &Admin,
    shared: &RestoreInProgress,
    plan: RestorePlan,
    prepared: Prepared,
    done: Finished,
) -> DomainResult<RestoreResult> {
    let consumer_groups_restored = restore_groups(
        (cluster, admin),
        &plan,
        &prepared.manifest,
        &prepared.sources,
        shared.groups.as_ref(),
        false,
    )
    .await?;
    let mut warnings = prepared.warnings;
    warnings.extend(groups::warnings(&consumer_groups_restored));
    let target = prepared.begun.target;
    Ok(RestoreResult {
        backup_id: plan.backup_id.clone(),
        target_topic: plan.target_topic,
        cluster_id: cluster_id.clone(),
        total_messages: done.totals.messages,
        total_size_bytes: done.totals.bytes,
        duration_ms: done.started.elapsed().as_millis() as u64,
        messages_restored: done.tally.total(),
        partitions_created: done.tally.partition_results(),
        status: kvault_domain::job::OperationStatus::Completed,
        checksum_validated: plan.validate_checksum,
        partition_mapping: target.mapping,
        topic_created: target.created,
        offsets_preserved: plan.preserve_offsets,
        warnings,
        consumer_groups_restored,
        transform: shared.transform.as_ref().map(TransformStep::counts),
    })
}

/// With partitions kept 1:1, each restored partition must end where the job's records end
/// (its base offset + the records restored into it): more means something else wrote into the
/// topic meanwhile.
async fn check_ends(
    admin: &Admin,
    shared: &RestoreInProgress,
    tally: &Tally,
    sources: &[i32],
) -> DomainResult<()> {
    if shared.mapping != PartitionMapping::Identity {
        return Ok(());
    }
    let ends = admin.watermarks(&shared.target_topic, sources).await?;
    for (p, (_, end)) in ends {
        let ours = tally.partitions.get(&p).map_or(0, |l| l.count) as i64;
        let expected = shared.base.get(&p).copied().unwrap_or(0) + ours;
        if end != expected {
            return Err(DomainError::interrupted(format!(
                "partition {p} of {} ends at offset {end}, but this restore's records end at \
                 {expected}: something else wrote into the topic meanwhile",
                shared.target_topic
            )));
        }
    }
    Ok(())
}
