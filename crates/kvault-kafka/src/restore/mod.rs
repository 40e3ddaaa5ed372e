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
//! how many records reached which partitions, and a topic kvault created is deleted again.

/// The longest chain a restore follows.
const MAX_CHAIN_LINKS: usize = 10_000;

mod groups;
mod partition;
mod preview;
mod target;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use kvault_domain::chain::{chain_problems, load_chain, merge_chain};
use kvault_domain::error::DomainResult;
use kvault_domain::job::OperationControl;
use kvault_domain::ports::ArchiveStore;
use kvault_domain::restore::{PartitionRestoreResult, RestorePlan};
use kvault_domain::{BackupId, DomainError, PartitionMapping, RestoreResult};

use crate::admin::{drop_in_background, Admin};
use crate::client::ClusterConfig;
use crate::consume::PARTITION_CONCURRENCY;
use crate::partitioner::KeyPartitioner;
use crate::produce::RecordProducer;
use crate::throttle::Throttle;
use kvault_domain::fanout::all_or_root_cause;

use groups::{restore_groups, GroupRestore};
use kvault_domain::restore_planning::select_partitions;
use partition::{fail_after_producing, restore_partition};
pub(crate) use preview::dry_run;
use target::prepare_target;

/// Where produced records landed, per target partition.
#[derive(Debug, Default, Clone, Copy)]
struct Landed {
    count: u64,
    first: i64,
    last: i64,
}

#[derive(Default)]
struct Tally {
    partitions: BTreeMap<i32, Landed>,
}

impl Tally {
    /// Per target partition: how many records landed, from which offset to which.
    fn partition_results(&self) -> Vec<PartitionRestoreResult> {
        self.partitions
            .iter()
            .map(|(p, l)| PartitionRestoreResult {
                partition: *p,
                messages_count: l.count,
                start_offset: l.first,
                end_offset: l.last + 1,
            })
            .collect()
    }

    fn add(&mut self, partition: i32, offset: i64) {
        let entry = self.partitions.entry(partition).or_insert(Landed {
            count: 0,
            first: offset,
            last: offset,
        });
        entry.count += 1;
        entry.first = entry.first.min(offset);
        entry.last = entry.last.max(offset);
    }

    fn total(&self) -> u64 {
        self.partitions.values().map(|l| l.count).sum()
    }

    fn describe(&self) -> String {
        if self.partitions.is_empty() {
            return "no records were written".into();
        }
        let parts: Vec<String> = self
            .partitions
            .iter()
            .map(|(p, l)| {
                format!(
                    "partition {p}: {} (offsets {}..={})",
                    l.count, l.first, l.last
                )
            })
            .collect();
        format!(
            "{} records were written: {}",
            self.total(),
            parts.join(", ")
        )
    }
}

struct Shared {
    /// The archives to read, oldest first, each with the partitions it holds: one, or every
    /// link of an incremental chain.
    links: Vec<(BackupId, BTreeSet<i32>)>,
    target_topic: String,
    mapping: PartitionMapping,
    partitioner: KeyPartitioner,
    producer: RecordProducer,
    throttle: Option<Throttle>,
    preserve_offsets: bool,
    source_offset_header: bool,
    until_ms: Option<i64>,
    /// Set when consumer groups are to be put back: where records landed.
    groups: Option<GroupRestore>,
    control: OperationControl,
    stop: AtomicBool,
    tally: Mutex<Tally>,
}

impl Shared {
    fn new(
        plan: &RestorePlan,
        links: Vec<(BackupId, BTreeSet<i32>)>,
        mapping: PartitionMapping,
        target_partitions: i32,
        producer: RecordProducer,
        groups: Option<GroupRestore>,
        control: OperationControl,
    ) -> Self {
        Self {
            links,
            target_topic: plan.target_topic.clone(),
            mapping,
            partitioner: KeyPartitioner::new(target_partitions),
            producer,
            throttle: Throttle::per_second(plan.rate_limit_per_second),
            preserve_offsets: plan.preserve_offsets,
            source_offset_header: plan.include_source_offset_header,
            until_ms: plan.until_time_ms,
            groups,
            control,
            stop: AtomicBool::new(false),
            tally: Mutex::new(Tally::default()),
        }
    }

    /// The links that hold `partition`, oldest first.
    fn links_with(&self, partition: i32) -> Vec<BackupId> {
        self.links
            .iter()
            .filter(|(_, partitions)| partitions.contains(&partition))
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.control.is_cancelled()
    }

    fn target_partition(&self, source_partition: i32, key: Option<&[u8]>) -> i32 {
        match self.mapping {
            PartitionMapping::Identity => source_partition,
            PartitionMapping::Murmur2 => self.partitioner.partition(key),
        }
    }
}

/// Totals one source partition contributed.
#[derive(Debug, Default)]
struct SourceTotals {
    messages: u64,
    bytes: u64,
}

pub(crate) async fn run(
    cluster_id: &str,
    cluster: &ClusterConfig,
    plan: RestorePlan,
    store: Arc<dyn ArchiveStore>,
    control: OperationControl,
) -> DomainResult<RestoreResult> {
    let started = Instant::now();
    // First: the producer connects (and gets its producer id) while the archive is checked.
    let producer = RecordProducer::create(cluster)?;
    let Checked {
        links,
        manifest,
        warnings: mut chain_warnings,
    } = load_checked(store.as_ref(), &plan, &control).await?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "restore: archive checked"
    );
    let sources = select_partitions(&plan, &manifest)?;

    let admin = Admin::new(cluster)?;
    let target = prepare_target(&admin, &plan, &manifest, &sources, &control, false).await?;
    let (mapping, target_count, topic_created) =
        (target.mapping, target.partitions, target.created);
    let mut warnings = target.warnings;
    warnings.append(&mut chain_warnings);
    let groups = GroupRestore::prepare(&admin, &plan, mapping, &sources, topic_created).await?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "restore: target ready"
    );

    let shared = Arc::new(Shared::new(
        &plan,
        links,
        mapping,
        target_count,
        producer,
        groups,
        control.clone(),
    ));

    let outcomes: Vec<DomainResult<SourceTotals>> = futures::stream::iter(sources.clone())
        .map(|p| restore_partition(p, store.clone(), shared.clone()))
        .buffer_unordered(PARTITION_CONCURRENCY)
        .collect()
        .await;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "restore: produced"
    );
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
    let totals = match outcome {
        Ok(totals) => totals,
        Err(error) => {
            let topic = &plan.target_topic;
            return Err(fail_after_producing(error, &tally, &admin, topic, topic_created).await);
        }
    };
    let consumer_groups_restored = restore_groups(
        (cluster, &admin),
        &plan,
        &manifest,
        &sources,
        shared.groups.as_ref(),
        false,
    )
    .await?;
    warnings.extend(groups::warnings(&consumer_groups_restored));

    let result = RestoreResult {
        backup_id: plan.backup_id.to_string(),
        target_topic: plan.target_topic,
        cluster_id: cluster_id.to_owned(),
        total_messages: totals.messages,
        total_size_bytes: totals.bytes,
        duration_ms: started.elapsed().as_millis() as u64,
        messages_restored: tally.total(),
        partitions_created: tally.partition_results(),
        status: kvault_domain::job::OperationStatus::Completed,
        checksum_validated: plan.validate_checksum,
        partition_mapping: mapping,
        topic_created,
        offsets_preserved: plan.preserve_offsets,
        warnings,
        consumer_groups_restored,
    };
    drop_in_background((shared, admin));
    Ok(result)
}

/// The archive a restore reads, checked as every restore checks it.
struct Checked {
    /// The archives to read, oldest first, each with the partitions it holds.
    links: Vec<(BackupId, BTreeSet<i32>)>,
    /// The one manifest the restore plans from (a chain's links merged).
    manifest: kvault_domain::Manifest,
    warnings: Vec<String>,
}

/// Loads the backup (its whole chain when incremental) and, when `validate_checksum`, checks
/// every checksum before anything is produced.
async fn load_checked(
    store: &dyn ArchiveStore,
    plan: &RestorePlan,
    control: &OperationControl,
) -> DomainResult<Checked> {
    let last = store.manifest(&plan.backup_id).await?;
    let chain = load_chain(store, last, MAX_CHAIN_LINKS).await?;
    if plan.validate_checksum {
        for link in &chain {
            check_archive(store, &link.backup_id, control).await?;
        }
        control.reset_progress();
    }
    let links = chain
        .iter()
        .map(|m| {
            let id = BackupId::parse(&m.backup_id)?;
            Ok((id, m.partitions.iter().map(|p| p.partition).collect()))
        })
        .collect::<DomainResult<Vec<_>>>()?;
    let manifest = match chain.as_slice() {
        [only] if only.chain.is_none() => only.clone(),
        links => merge_chain(links, plan.until_time_ms)?,
    };
    Ok(Checked {
        links,
        manifest,
        warnings: chain_warnings(&chain),
    })
}

/// Every checksum of the backup, before anything is produced: a corrupt archive is refused
/// whole.
async fn check_archive(
    store: &dyn ArchiveStore,
    backup_id: &str,
    control: &OperationControl,
) -> DomainResult<()> {
    let backup_id = BackupId::parse(backup_id)?;
    let report = store.check_integrity(&backup_id, control).await?;
    if !report.valid {
        return Err(DomainError::CorruptArchive {
            backup_id: backup_id.to_string(),
            reason: format!(
                "verification found {} problem(s): {}; nothing was restored",
                report.problems.len(),
                report.problems.join("; ")
            ),
        });
    }
    Ok(())
}

/// What a caller restoring a chain should know: links pruned before it, continuity problems.
fn chain_warnings(chain: &[kvault_domain::Manifest]) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(link) = chain.first().and_then(|m| m.chain.as_ref()) {
        warnings.push(format!(
            "the chain starts at {} (link {} after {}): the links before it were deleted, \
             so records before its start are not restored",
            chain[0].backup_id, link.sequence, link.root_id
        ));
    }
    warnings.extend(chain_problems(chain));
    warnings
}
