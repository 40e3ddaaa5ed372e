//! The sizes every operation shares: how many partitions run at once, how records are batched
//! on the way in (consume) and out (produce), and how much may be in flight. One place, so the
//! client configuration, the readers and the producers agree, and none of them imports another
//! for a number.

/// Partitions processed at the same time by one operation. Each holds a consumer (with its
/// prefetch queue) or a producer task and a channel, so this also bounds memory and threads.
pub(crate) const PARTITION_CONCURRENCY: usize = 4;

/// The most partitions a restore produces at once when they are small (see
/// [`partitions_at_once`]).
const SMALL_PARTITION_CONCURRENCY: usize = 32;
/// What a restore's small partitions may hold together: the producer's local queue.
const SMALL_PARTITIONS_BYTES: u64 = 16 << 20;

/// Source partitions a restore produces at once: [`PARTITION_CONCURRENCY`], or more when the
/// largest of them is small enough that more of them together still hold no more than
/// librdkafka's queue. A partition task ends only once all its records are delivered, and
/// the last one sending flushes, so a restore of many small partitions went in waves of four
/// with a flush between each; the waves are wider now.
pub(crate) fn partitions_at_once(manifest: &kvault_domain::Manifest, sources: &[i32]) -> usize {
    let largest = manifest
        .partitions
        .iter()
        .filter(|p| sources.contains(&p.partition))
        .map(|p| p.raw_bytes)
        .max()
        .unwrap_or(0)
        .max(1);
    ((SMALL_PARTITIONS_BYTES / largest) as usize)
        .clamp(PARTITION_CONCURRENCY, SMALL_PARTITION_CONCURRENCY)
}

/// A consumed batch is handed on at this many records or bytes, whichever comes first.
pub(crate) const CONSUME_BATCH_RECORDS: usize = 1_000;
pub(crate) const CONSUME_BATCH_BYTES: u64 = 4 * 1024 * 1024;

/// The most bytes one produce batch for one partition holds (librdkafka's `batch.size`).
pub(crate) const PRODUCE_BATCH_BYTES: u64 = 1_000_000;

/// Deliveries outstanding at once per partition task (rounded up to a power of two);
/// librdkafka's own queue is bounded too.
pub(crate) const MAX_IN_FLIGHT: usize = 20_000;

/// Payload bytes outstanding at once per partition task: four full produce batches, just
/// under what librdkafka may have in flight per partition (five requests with the idempotent
/// producer). More only queues up in librdkafka, and a queue whose oldest record is older than
/// `linger.ms` while five requests are in flight makes librdkafka's broker thread poll with no
/// timeout until a response comes (measured: ~370,000 polls and a fifth of a 1M-record
/// restore's CPU; docs/performance.md, "restore spin").
pub(crate) const MAX_IN_FLIGHT_BYTES: u64 = 4 * PRODUCE_BATCH_BYTES;
