//! The one consume path backup and migrate share: read `[start, end)` of one partition with a
//! librdkafka consumer assigned to it alone and turn messages into domain records; plus the
//! batching (and its bounds) every operation uses to hand records between its reading and its
//! writing side. Runs on a blocking thread (librdkafka's poll is synchronous).
//!
//! A reader stops at the cut, never on silence: when it sees the record just before the cut,
//! a record at or past it, or librdkafka reports the end of the partition (offsets are not
//! contiguous: compaction and transaction markers leave gaps, so the record at `end - 1` may
//! never come, and the end-of-partition event is what stops such a reader). A reader that
//! hears nothing at all for [`READ_STALL_TIMEOUT`] gives up: the broker is not answering.
//!
//! Consumers are costly to make and to tear down (a client with its own threads, connections
//! and metadata: ~25 ms a partition measured on a 400-partition backup), so an operation that
//! reads many partitions takes them from a [`ReaderPool`]: a consumer is assigned one
//! partition, unassigned when the reader is done, and reused for the next partition.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kvault_domain::error::{DomainResult, KafkaFailure};
use kvault_domain::record::{Header, Record, TimestampType};
use kvault_domain::record_block::{RecordBlock, RecordMeta};
use kvault_domain::DomainError;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message, Timestamp};
use rdkafka::{Offset as KOffset, TopicPartitionList};

use crate::client::{create_reader, kafka_error, ClusterConfig};

pub(crate) use crate::tuning::PARTITION_CONCURRENCY;
use crate::tuning::{CONSUME_BATCH_BYTES as BATCH_BYTES, CONSUME_BATCH_RECORDS as BATCH_RECORDS};

/// Record batches in flight between one reader and its consumer (writer or producer).
pub(crate) const CHANNEL_BATCHES: usize = 4;
/// Neither a record nor an end-of-partition event for this long: the broker is not answering.
pub(crate) const READ_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Idle consumers of one cluster, handed to one partition's reader at a time. A pool serves
/// the reads of one topic: what a reused consumer still holds of the partition it read before
/// is told apart by its partition number.
pub(crate) struct ReaderPool {
    cluster: ClusterConfig,
    idle: Mutex<Vec<BaseConsumer>>,
}

impl ReaderPool {
    pub(crate) fn new(cluster: &ClusterConfig) -> Arc<Self> {
        Arc::new(Self {
            cluster: cluster.clone(),
            idle: Mutex::new(Vec::new()),
        })
    }

    fn take(&self) -> DomainResult<BaseConsumer> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match idle {
            Some(consumer) => Ok(consumer),
            None => create_reader(&self.cluster),
        }
    }

    /// Takes back a consumer whose reader is done; one that cannot be unassigned is dropped.
    fn give_back(&self, consumer: BaseConsumer) {
        if consumer.unassign().is_ok() {
            self.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(consumer);
        }
    }

    /// The idle consumers, for dropping where their teardown does not hold anyone up.
    pub(crate) fn drain(&self) -> Vec<BaseConsumer> {
        std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Reads one partition from `start` up to the cut `end` (exclusive).
pub(crate) struct RangeReader {
    /// `None` only while dropping (the consumer went back to its pool).
    consumer: Option<BaseConsumer>,
    pool: Option<Arc<ReaderPool>>,
    topic: String,
    partition: i32,
    end: i64,
    /// The next offset not yet seen; `end` once the cut is reached.
    position: i64,
}

impl Drop for RangeReader {
    fn drop(&mut self) {
        if let (Some(pool), Some(consumer)) = (&self.pool, self.consumer.take()) {
            pool.give_back(consumer);
        }
    }
}

impl RangeReader {
    /// A reader on a consumer of its own, torn down with the reader.
    pub(crate) fn open(
        cluster: &ClusterConfig,
        topic: &str,
        partition: i32,
        start: i64,
        end: i64,
    ) -> DomainResult<Self> {
        Self::assigned(
            create_reader(cluster)?,
            None,
            (topic, partition),
            start,
            end,
        )
    }

    /// A reader on a consumer of `pool`, which gets it back when the reader is dropped.
    pub(crate) fn pooled(
        pool: &Arc<ReaderPool>,
        topic: &str,
        partition: i32,
        start: i64,
        end: i64,
    ) -> DomainResult<Self> {
        let consumer = pool.take()?;
        Self::assigned(consumer, Some(pool.clone()), (topic, partition), start, end)
    }

    fn assigned(
        consumer: BaseConsumer,
        pool: Option<Arc<ReaderPool>>,
        (topic, partition): (&str, i32),
        start: i64,
        end: i64,
    ) -> DomainResult<Self> {
        let reader = Self {
            consumer: Some(consumer),
            pool,
            topic: topic.to_owned(),
            partition,
            end,
            position: start.min(end),
        };
        if start < end {
            let mut assignment = TopicPartitionList::new();
            assignment
                .add_partition_offset(topic, partition, KOffset::Offset(start))
                .map_err(|e| kafka_error("partition assignment", e))?;
            reader
                .consumer()
                .assign(&assignment)
                .map_err(|e| kafka_error(format!("assign {topic}/{partition}"), e))?;
        }
        Ok(reader)
    }

    fn consumer(&self) -> &BaseConsumer {
        self.consumer
            .as_ref()
            .expect("a reader holds its consumer until it is dropped")
    }

    /// The next message below the cut, or `None` once the cut (or the end of the partition,
    /// which is at or past it) is reached. Checks `stop` between polls: `Cancelled` when set.
    pub(crate) fn next(
        &mut self,
        stop: impl Fn() -> bool,
    ) -> DomainResult<Option<BorrowedMessage<'_>>> {
        if self.position >= self.end {
            return Ok(None);
        }
        let last_activity = Instant::now();
        loop {
            if stop() {
                return Err(DomainError::Cancelled);
            }
            let (partition, end) = (self.partition, self.end);
            let consumer = self.consumer.as_ref().expect("held until dropped");
            match consumer.poll(Duration::from_millis(100)) {
                None if last_activity.elapsed() > READ_STALL_TIMEOUT => {
                    return Err(self.stalled());
                }
                None => {}
                // What a pooled consumer still held of the partition it read before.
                Some(Err(KafkaError::PartitionEOF(p))) if p != partition => {}
                Some(Ok(message)) if message.partition() != partition => {}
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    self.position = end;
                    return Ok(None);
                }
                Some(Err(e)) => {
                    let context = format!("read {}/{}", self.topic, self.partition);
                    return Err(kafka_error(context, e));
                }
                Some(Ok(message)) => {
                    let offset = message.offset();
                    if offset >= end {
                        self.position = end;
                        return Ok(None);
                    }
                    // Offsets only grow: after `end - 1` nothing below the cut can come, so
                    // the reader is done without waiting for the end-of-partition event.
                    self.position = if offset + 1 >= end { end } else { offset + 1 };
                    return Ok(Some(message));
                }
            }
        }
    }

    fn stalled(&self) -> DomainError {
        DomainError::Kafka {
            failure: KafkaFailure::Unavailable,
            message: format!(
                "{}/{}: no record and no end-of-partition for {READ_STALL_TIMEOUT:?} at offset \
                 {} (cut at {})",
                self.topic, self.partition, self.position, self.end
            ),
            source: None,
        }
    }
}

/// A record's key and value, as bytes (`None`: null).
pub(crate) type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// The key and value of the record at `offset` of `topic`/`partition` (`None`: no record
/// there), read on a blocking thread: what a continued restore or migration compares with the
/// record it planned at that offset.
pub(crate) async fn read_one(
    cluster: &ClusterConfig,
    topic: &str,
    partition: i32,
    offset: i64,
    stop: impl Fn() -> bool + Send + 'static,
) -> DomainResult<Option<KeyValue>> {
    let (cluster, topic) = (cluster.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut reader = RangeReader::open(&cluster, &topic, partition, offset, offset + 1)?;
        let record = reader
            .next(stop)?
            .filter(|m| m.offset() == offset)
            .map(|m| to_record(&m, true, false));
        Ok(record.map(|r| (r.key, r.value)))
    })
    .await
    .map_err(|e| DomainError::internal(format!("reader thread failed: {e}")))?
}

/// Collects records into batches of at most [`BATCH_RECORDS`] records or [`BATCH_BYTES`].
#[derive(Default)]
pub(crate) struct Batcher {
    records: Vec<Record>,
    bytes: u64,
}

impl Batcher {
    /// Adds `record`; returns the full batch when this one filled it.
    pub(crate) fn push(&mut self, record: Record) -> Option<Vec<Record>> {
        self.bytes += record.payload_len();
        self.records.push(record);
        if self.records.len() >= BATCH_RECORDS || self.bytes >= BATCH_BYTES {
            return Some(self.take());
        }
        None
    }

    /// What is left, possibly empty.
    pub(crate) fn take(&mut self) -> Vec<Record> {
        self.bytes = 0;
        std::mem::replace(&mut self.records, Vec::with_capacity(BATCH_RECORDS))
    }
}

/// Collects consumed messages into [`RecordBlock`]s of at most [`BATCH_RECORDS`] records or
/// [`BATCH_BYTES`]: each message's bytes are copied once, into the block's buffer, with no
/// allocation per record (backup's path; the archive writer encodes straight from the block).
/// A batch is also handed on once it is this old, so a slow (rate-limited) read still shows
/// progress, which is counted as batches are written.
pub(crate) struct BlockBatcher {
    block: RecordBlock,
    /// When the first record of the current batch arrived.
    started: Option<Instant>,
}

impl Default for BlockBatcher {
    fn default() -> Self {
        Self {
            block: RecordBlock::with_capacity(BATCH_START_BYTES, BATCH_RECORDS),
            started: None,
        }
    }
}

/// The buffer a new batch starts with (it grows as needed up to [`BATCH_BYTES`]).
const BATCH_START_BYTES: usize = 512 * 1024;
/// The oldest a batch gets before it is handed on, whatever its size.
const BATCH_MAX_AGE: Duration = Duration::from_secs(1);
/// How often (in records) the batch's age is looked at: the clock is not read per record.
const AGE_CHECK_EVERY: usize = 32;

impl BlockBatcher {
    /// Adds a copy of `message` (its key and headers only when asked for); returns the full
    /// batch when this one filled it.
    pub(crate) fn push(
        &mut self,
        message: &BorrowedMessage<'_>,
        include_keys: bool,
        include_headers: bool,
    ) -> Option<RecordBlock> {
        let (timestamp, timestamp_type) = timestamp_of(message);
        let meta = RecordMeta {
            offset: message.offset(),
            timestamp,
            timestamp_type,
        };
        let key = message.key().filter(|_| include_keys);
        let headers = message.headers().filter(|_| include_headers);
        let headers = headers
            .into_iter()
            .flat_map(|h| h.iter())
            .map(|h| (h.key, h.value));
        self.block
            .push_copied(meta, key, message.payload(), headers);
        let started = *self.started.get_or_insert_with(Instant::now);
        let full = self.block.len() >= BATCH_RECORDS
            || self.block.byte_len() as u64 >= BATCH_BYTES
            || (self.block.len() % AGE_CHECK_EVERY == 0 && started.elapsed() >= BATCH_MAX_AGE);
        full.then(|| self.take())
    }

    /// What is left, possibly empty.
    pub(crate) fn take(&mut self) -> RecordBlock {
        self.started = None;
        // The next batch starts as large as this one ended, so it rarely grows.
        let next = RecordBlock::with_capacity(self.block.byte_len(), BATCH_RECORDS);
        std::mem::replace(&mut self.block, next)
    }
}

fn timestamp_of(message: &BorrowedMessage<'_>) -> (i64, TimestampType) {
    match message.timestamp() {
        Timestamp::NotAvailable => (0, TimestampType::NotAvailable),
        Timestamp::CreateTime(t) => (t, TimestampType::CreateTime),
        Timestamp::LogAppendTime(t) => (t, TimestampType::LogAppendTime),
    }
}

/// A consumed message as a domain record; keys and headers only when asked for.
pub(crate) fn to_record(
    message: &BorrowedMessage<'_>,
    include_keys: bool,
    include_headers: bool,
) -> Record {
    let (timestamp, timestamp_type) = timestamp_of(message);
    let headers = match (include_headers, message.headers()) {
        (true, Some(headers)) => headers
            .iter()
            .map(|h| Header {
                key: h.key.to_owned(),
                value: h.value.map(<[u8]>::to_vec),
            })
            .collect(),
        _ => Vec::new(),
    };
    Record {
        offset: message.offset(),
        timestamp,
        timestamp_type,
        key: if include_keys {
            message.key().map(<[u8]>::to_vec)
        } else {
            None
        },
        value: message.payload().map(<[u8]>::to_vec),
        headers,
    }
}
