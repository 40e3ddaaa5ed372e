//! One source partition's restore: a blocking thread streams it out of the archive into a
//! bounded channel, a decoded block at a time (records are ranges of the block's bytes, never
//! copied before librdkafka copies them), an async task produces it and tallies where records
//! landed; and what a failure after producing began reports (and cleans up).
//!
//! A continued restore streams the partition from its start too and skips the records an
//! earlier attempt already landed (counting them where they are). With partitions kept 1:1,
//! record `i` of a partition must land at the partition's base offset + `i`: any other offset
//! means something else writes into the topic, and the restore stops `interrupted`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use kvault_domain::error::DomainResult;
use kvault_domain::ports::{ArchiveStore, BlockReader, ReadBounds};
use kvault_domain::record::TimestampType;
use kvault_domain::record_block::{RecordBlock, RecordView};
use kvault_domain::restore::SOURCE_OFFSET_HEADER;
use kvault_domain::DomainError;
use tokio::sync::mpsc;

use crate::admin::Admin;
use crate::consume::CHANNEL_BATCHES;
use crate::produce::{delivered, out_record, Delivered, Deliveries};
use crate::throttle::admit;

use super::{RestoreInProgress, SourceTotals, Tally};

/// Produces one source partition; returns how much it read from the archive.
pub(super) async fn restore_partition(
    source: i32,
    store: Arc<dyn ArchiveStore>,
    shared: Arc<RestoreInProgress>,
) -> DomainResult<SourceTotals> {
    let (tx, mut rx) = mpsc::channel::<RecordBlock>(CHANNEL_BATCHES);
    let bounds = ReadBounds {
        until_timestamp: shared.until_ms,
        ..ReadBounds::default()
    };
    // The partition's records link by link (one link unless the backup is incremental), each
    // streamed by a blocking thread into the same channel.
    let links = shared.links_with(source);
    let reader = {
        let shared = shared.clone();
        tokio::spawn(async move {
            for id in links {
                let blocks = match shared.manifests.get(id.as_str()) {
                    Some(manifest) => store.read_blocks_of(manifest.clone(), source, bounds),
                    None => store.read_partition_blocks(&id, source, bounds),
                }
                .await?;
                let (shared, tx) = (shared.clone(), tx.clone());
                tokio::task::spawn_blocking(move || read_archive(source, blocks, &shared, tx))
                    .await
                    .map_err(|e| DomainError::internal(format!("archive reader failed: {e}")))??;
            }
            Ok(())
        })
    };
    let produced = produce_batches(source, &mut rx, &shared).await;
    // Unblock the reader if producing stopped early, then collect its outcome.
    drop(rx);
    let read = reader
        .await
        .map_err(|e| DomainError::internal(format!("archive reader thread failed: {e}")))?;
    let result = match (read, produced) {
        (Err(e), _) if !matches!(e, DomainError::Cancelled) => Err(e),
        (_, Err(e)) => Err(e),
        (Err(e), Ok(_)) => Err(e),
        (Ok(()), Ok(totals)) => Ok(totals),
    };
    if result.is_err() {
        shared.stop.store(true, Ordering::Relaxed);
    }
    result
}

/// Records admitted by the rate limit (and counted in progress) at a time.
const ADMIT_RUN: usize = 256;

/// Streams source partition `source` out of the archive, a block at a time, through the
/// transform step when the restore has one.
pub(super) fn read_archive(
    source: i32,
    reader: Box<dyn BlockReader>,
    shared: &RestoreInProgress,
    tx: mpsc::Sender<RecordBlock>,
) -> DomainResult<()> {
    for block in reader {
        let mut block = block?;
        if shared.until_ms.is_some() {
            block.retain(|r| kept_until(r, shared.until_ms));
        }
        let block = super::transform::apply(shared.transform.as_ref(), source, block)?;
        if shared.should_stop() {
            return Err(DomainError::Cancelled);
        }
        if !block.is_empty() && tx.blocking_send(block).is_err() {
            return Err(DomainError::Cancelled);
        }
    }
    Ok(())
}

/// Whether a point-in-time restore (`until_ms`) restores the record.
pub(super) fn kept_until(record: &RecordView<'_>, until_ms: Option<i64>) -> bool {
    until_ms.is_none_or(|until| {
        record.timestamp_type == TimestampType::NotAvailable || record.timestamp <= until
    })
}

pub(super) async fn produce_batches(
    source: i32,
    rx: &mut mpsc::Receiver<RecordBlock>,
    shared: &RestoreInProgress,
) -> DomainResult<SourceTotals> {
    let mut totals = SourceTotals::default();
    let (mut skip, base) = shared.resume_of(source);
    // With partitions kept 1:1, where the next delivery must land.
    let mut expected = base.map(|b| b + skip as i64);
    // Restore only tallies where deliveries landed (and checks where they landed).
    let mut deliveries =
        Deliveries::new(&shared.producer, |done| settle(done, shared, &mut expected))?;
    // The source offset header's text, rebuilt in place per record only when asked for.
    let mut offset_text = String::new();
    let mut index = 0u64;
    while let Some(mut block) = rx.recv().await {
        if skip > 0 {
            let n = skip_landed(
                source,
                &mut block,
                skip,
                (base, &mut index),
                shared,
                &mut totals,
            );
            skip -= n;
        }
        // A block holds thousands of records; the rate limit admits them a run at a time so
        // a limited restore produces steadily from its first second on.
        for run in block.chunks(ADMIT_RUN) {
            let stop = || shared.should_stop();
            if !admit(shared.throttle.as_ref(), run.len(), stop).await {
                deliveries.settle_all().await?;
                return Err(DomainError::Cancelled);
            }
            let (messages, mut bytes) = (run.len() as u64, 0u64);
            for record in run {
                let size = record.payload_len();
                bytes += size;
                let target = shared.target_partition(source, record.key);
                let out = if shared.source_offset_header {
                    offset_text.clear();
                    write!(offset_text, "{}", record.offset).expect("writing to a String");
                    let extra = [(SOURCE_OFFSET_HEADER, offset_text.as_bytes())];
                    out_record(&shared.target_topic, target, record, &extra)
                } else {
                    out_record(&shared.target_topic, target, record, &[])
                };
                deliveries.send(out, record.offset, size).await?;
            }
            deliveries.settle_ready()?;
            totals.messages += messages;
            totals.bytes += bytes;
            shared.control.add(messages, bytes);
        }
    }
    deliveries.finish().await?;
    Ok(totals)
}

/// Takes the first `skip` records out of `block` (at most all of it): an earlier attempt
/// landed them at the partition's base offset + their index, where they are tallied and
/// counted as restored. Returns how many it took.
fn skip_landed(
    source: i32,
    block: &mut RecordBlock,
    skip: u64,
    (base, index): (Option<i64>, &mut u64),
    shared: &RestoreInProgress,
    totals: &mut SourceTotals,
) -> u64 {
    let n = (skip as usize).min(block.len());
    let base = base.unwrap_or_default();
    let mut bytes = 0;
    for record in block.iter().take(n) {
        let offset = base + *index as i64;
        bytes += record.payload_len();
        if let Ok(mut tally) = shared.tally.lock() {
            tally.add(source, offset);
        }
        if let Some(groups) = &shared.groups {
            groups.landed(source, record.offset, offset);
        }
        *index += 1;
    }
    let mut seen = 0;
    block.retain(|_| {
        seen += 1;
        seen > n
    });
    totals.messages += n as u64;
    totals.bytes += bytes;
    shared.control.add(n as u64, bytes);
    n as u64
}

/// Records a delivery report; a failed delivery (after librdkafka's own retries) fails the
/// restore, and so does an offset that differs from the source when offsets are preserved, or
/// (partitions kept 1:1) from the partition's next offset.
pub(super) fn settle(
    (source_offset, outcome): Delivered,
    shared: &RestoreInProgress,
    expected: &mut Option<i64>,
) -> DomainResult<()> {
    let (partition, offset) = delivered(outcome, &shared.target_topic)?;
    if let Ok(mut tally) = shared.tally.lock() {
        tally.add(partition, offset);
    }
    if let Some(groups) = &shared.groups {
        groups.landed(partition, source_offset, offset);
    }
    if shared.preserve_offsets && offset != source_offset {
        return Err(DomainError::kafka(format!(
            "offset preservation broken: source offset {source_offset} landed at offset \
             {offset} of partition {partition} (was something else writing to {}?)",
            shared.target_topic
        )));
    }
    if let Some(next) = expected {
        if offset != *next {
            return Err(DomainError::interrupted(format!(
                "a record of this restore landed at offset {offset} of {} partition {partition} \
                 instead of {next}: something else writes into the topic; the restore stopped and \
                 left the topic as it is",
                shared.target_topic
            )));
        }
        *next += 1;
    }
    Ok(())
}

/// Turns a failure after producing began into an error that says what was written, deleting
/// a topic kvault created so no half-restored topic is left behind.
pub(super) async fn fail_after_producing(
    error: DomainError,
    tally: &Tally,
    admin: &Admin,
    topic: &str,
    (topic_created, handed_over): (bool, bool),
) -> DomainError {
    // Another writer's records, or a replica about to continue: the topic is not only ours
    // to delete.
    let interrupted = matches!(error.kind(), kvault_domain::ErrorKind::Interrupted);
    let cleanup = if handed_over {
        format!("; topic {topic} was left for the replica that continues the restore")
    } else if topic_created && !interrupted {
        match admin.delete_topic(topic).await {
            Ok(()) => format!("; topic {topic} (created by this restore) was deleted again"),
            Err(e) => format!("; deleting topic {topic} (created by this restore) failed: {e}"),
        }
    } else if topic_created {
        format!("; topic {topic} (created by this restore) was left as it is for inspection")
    } else {
        format!("; topic {topic} existed before and was left as is")
    };
    let written = tally.describe();
    let context = format!("restore into {topic} failed: {written}{cleanup}");
    match error {
        DomainError::Cancelled => {
            // The variant carries no text; the log keeps what was written.
            tracing::warn!(%context, "restore cancelled");
            DomainError::Cancelled
        }
        // The kind stays the cause's: a conflict found mid-run is still a 409.
        other => other.context(context),
    }
}
