//! One source partition's copy: a blocking reader thread (the shared consume path plus the
//! transformation) feeding an async task that produces into the target and records where
//! the copies landed. A continued migration first skips the copies an earlier attempt landed.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use kvault_domain::error::DomainResult;
use kvault_domain::migrate::OnEvaluationError;
use kvault_domain::record::Record;
use kvault_domain::{DomainError, ValidationError};
use tokio::sync::mpsc;

use crate::consume::{to_record, Batcher, RangeReader, CHANNEL_BATCHES};
use crate::produce::{delivered, out_record, Delivered, Deliveries};
use crate::throttle::admit;
use crate::transform::EvalError;

use super::in_progress::MigrationInProgress;
use crate::groups::offset_map::OffsetMap;

/// Migrates `[start, end)` of one source partition; returns where the copies landed when
/// groups are to be translated.
pub(super) async fn migrate_partition(
    partition: i32,
    start: i64,
    end: i64,
    shared: Arc<MigrationInProgress>,
) -> DomainResult<(i32, Option<OffsetMap>)> {
    let (tx, mut rx) = mpsc::channel::<Vec<Record>>(CHANNEL_BATCHES);
    let reader_shared = Arc::clone(&shared);
    let reader = tokio::task::spawn_blocking(move || {
        read_partition(partition, start, end, tx, &reader_shared)
    });
    let produced = produce_batches(partition, &mut rx, &shared).await;
    if produced.is_err() {
        // Unblocks and stops the reader: its next send fails.
        shared.stop.store(true, Ordering::Relaxed);
    }
    drop(rx);
    let read = reader
        .await
        .map_err(|e| DomainError::internal(format!("reader thread failed: {e}")))?;
    // A reader error is the root cause (the producer just saw the channel close); a producer
    // error makes the reader stop with `Cancelled`, which must not hide it.
    match (read, produced) {
        (Err(e), Ok(_)) => Err(e),
        (_, Err(e)) => Err(e),
        (Ok(()), Ok(map)) => Ok((partition, map)),
    }
}

/// Reads `[start, end)` of one partition, applies the transformation and sends what is kept
/// in batches. Runs on a blocking thread: librdkafka's poll and CEL evaluation are both
/// synchronous.
fn read_partition(
    partition: i32,
    start: i64,
    end: i64,
    tx: mpsc::Sender<Vec<Record>>,
    shared: &MigrationInProgress,
) -> DomainResult<()> {
    let mut reader =
        RangeReader::open(&shared.source, &shared.source_topic, partition, start, end)?;
    let mut batcher = Batcher::default();
    while shared.budget_left() {
        let Some(message) = reader.next(|| shared.should_stop())? else {
            break;
        };
        let record = to_record(&message, true, true);
        drop(message);
        match shared.transformation.apply_owned(record, partition) {
            Ok(None) => {
                shared.read.fetch_add(1, Ordering::Relaxed);
                shared.filtered.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Some(record)) => {
                if !shared.take_budget() {
                    // max_messages reached: this record is neither migrated nor counted.
                    break;
                }
                shared.read.fetch_add(1, Ordering::Relaxed);
                if let Some(full) = batcher.push(record) {
                    if tx.blocking_send(full).is_err() {
                        // The producing task failed; its error is the one reported.
                        return Err(DomainError::Cancelled);
                    }
                }
            }
            Err(e) => {
                shared.read.fetch_add(1, Ordering::Relaxed);
                shared.failed.fetch_add(1, Ordering::Relaxed);
                match shared.on_error {
                    OnEvaluationError::Skip => {
                        tracing::debug!(error = %e, "expression failed; message skipped");
                    }
                    OnEvaluationError::Fail => return Err(eval_failure(e, shared)),
                }
            }
        }
    }
    let rest = batcher.take();
    if !rest.is_empty() && tx.blocking_send(rest).is_err() {
        return Err(DomainError::Cancelled);
    }
    Ok(())
}

fn eval_failure(e: EvalError, shared: &MigrationInProgress) -> DomainError {
    let expression = shared
        .transformation
        .expression(e.field)
        .unwrap_or_default();
    ValidationError::new(
        e.field,
        expression,
        format!(
            "failed at partition {} offset {}: {} (on_error is \"fail\")",
            e.partition, e.offset, e.message
        ),
    )
    .into()
}

async fn produce_batches(
    source_partition: i32,
    rx: &mut mpsc::Receiver<Vec<Record>>,
    shared: &MigrationInProgress,
) -> DomainResult<Option<OffsetMap>> {
    let mut map = shared.offset_map_runs.map(OffsetMap::new);
    let (skipped, first) = skip_landed(source_partition, rx, &mut map, shared).await?;
    let identity = shared.partitioner.is_none();
    let base = shared.base.get(&source_partition).copied().unwrap_or(0);
    // With partitions kept 1:1, where the next copy must land.
    let mut expected = identity.then(|| base + skipped as i64);
    let mut delivered_here = 0u64;
    // Deliveries are settled in send order, so the offset map is built in offset order.
    let mut deliveries = Deliveries::new(&shared.producer, |done| {
        delivered_here += 1;
        settle(done, &mut map, &mut expected, shared)
    })?;
    let mut next = first;
    loop {
        let batch = match next.take() {
            Some(batch) => batch,
            None => match rx.recv().await {
                Some(batch) => batch,
                None => break,
            },
        };
        let stop = || shared.should_stop();
        if !admit(shared.throttle.as_ref(), batch.len(), stop).await {
            deliveries.settle_all().await?;
            return Err(DomainError::Cancelled);
        }
        let mut batch_bytes = 0u64;
        for record in &batch {
            let size = record.payload_len();
            batch_bytes += size;
            let target = shared.target_partition(source_partition, record);
            let out = out_record(&shared.target_topic, target, record.into(), &[]);
            deliveries.send(out, record.offset, size).await?;
        }
        deliveries.settle_ready()?;
        shared.control.add(batch.len() as u64, batch_bytes);
    }
    deliveries.finish().await?;
    // Ends the settle closure's borrows of `map` and the count.
    drop(deliveries);
    if identity {
        shared.count_copied(source_partition, skipped + delivered_here);
    }
    Ok(map)
}

/// Takes the copies an earlier attempt already landed out of the stream (the first `count`
/// the transformation keeps; `resume::check_landed` proved the first and the last of them),
/// mapping them where they landed. Returns how many it skipped and the rest of the batch it
/// stopped in.
async fn skip_landed(
    partition: i32,
    rx: &mut mpsc::Receiver<Vec<Record>>,
    map: &mut Option<OffsetMap>,
    shared: &MigrationInProgress,
) -> DomainResult<(u64, Option<Vec<Record>>)> {
    let Some(landed) = shared.landed.get(&partition) else {
        return Ok((0, None));
    };
    let base = shared.base.get(&partition).copied().unwrap_or(0);
    let mut index = 0u64;
    while index < landed.count {
        let Some(mut batch) = rx.recv().await else {
            break;
        };
        let n = ((landed.count - index) as usize).min(batch.len());
        let mut bytes = 0;
        for record in &batch[..n] {
            if let Some(map) = map.as_mut() {
                map.record(record.offset, base + index as i64);
            }
            bytes += record.payload_len();
            index += 1;
        }
        shared.written.fetch_add(n as u64, Ordering::Relaxed);
        shared.control.add(n as u64, bytes);
        batch.drain(..n);
        if !batch.is_empty() {
            return Ok((index, Some(batch)));
        }
    }
    if index < landed.count && !shared.should_stop() {
        return Err(DomainError::interrupted(format!(
            "partition {partition} of {} holds {} copies of this migration, more than the \
             recorded cut gives: something else wrote into the topic; the migration cannot \
             continue exactly",
            shared.target_topic, landed.count
        )));
    }
    Ok((index, None))
}

/// Counts a confirmed delivery (and maps its offset); a failed one (after librdkafka's own
/// retries) fails the migration, and so does (partitions kept 1:1) a copy that did not land at
/// the partition's next offset.
fn settle(
    (source_offset, outcome): Delivered,
    map: &mut Option<OffsetMap>,
    expected: &mut Option<i64>,
    shared: &MigrationInProgress,
) -> DomainResult<()> {
    let (partition, offset) = delivered(outcome, &shared.target_topic)?;
    if let Some(next) = expected {
        if offset != *next {
            return Err(DomainError::interrupted(format!(
                "a copy landed at offset {offset} of {} partition {partition} instead of \
                 {next}: something else writes into the topic; the migration stopped and \
                 left the topic as it is",
                shared.target_topic
            )));
        }
        *next += 1;
    }
    shared.written.fetch_add(1, Ordering::Relaxed);
    if let Some(map) = map {
        map.record(source_offset, offset);
    }
    Ok(())
}
