//! The archive port. The storage layer implements [`ArchiveStore`]; the Kafka layer drives it,
//! so Kafka code never knows the file format and storage never knows Kafka.
//!
//! The store's own methods are async: implementations do their blocking file work (or their
//! object-storage requests) off the caller's runtime threads, so the API and CLI just `.await`.
//! The streaming halves, [`ArchiveWriter`], [`PartitionWriter`], [`RecordReader`] and
//! [`BlockReader`], are synchronous and CPU-bound (compression, checksums): callers drive them
//! on a blocking thread and hand records across a bounded channel, which also bounds memory.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::compression::Compression;
use crate::error::{DomainError, DomainResult};
use crate::ids::{BackupId, ClusterId};
use crate::job::OperationControl;
use crate::manifest::{
    BackupSetRef, ChainLink, ConsumerGroupOffsets, Manifest, PartitionManifest, SegmentInfo,
    TopicMetadata,
};
use crate::record::Record;
use crate::record_block::{RecordBlock, RecordView};

/// Everything the store needs to know before the first record arrives.
#[derive(Debug, Clone)]
pub struct ArchiveSpec {
    pub backup_id: BackupId,
    /// The archive's immutable unique id, written into its manifest (see
    /// [`crate::ids::new_uid`]).
    pub archive_uid: String,
    pub cluster_id: ClusterId,
    pub topic: TopicMetadata,
    pub compression: Compression,
    pub include_keys: bool,
    pub include_headers: bool,
    pub created_at: DateTime<Utc>,
    /// Consumer groups' committed offsets at the cut, written into the manifest.
    pub consumer_groups: Vec<ConsumerGroupOffsets>,
    /// The set the archive belongs to, if any.
    pub backup_set: Option<BackupSetRef>,
    /// The chain link of an incremental backup.
    pub chain: Option<ChainLink>,
}

/// Which part of a partition a reader should return.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadBounds {
    /// Only records with `timestamp <= until_timestamp` (ms). Segments whose `min_timestamp`
    /// is later are skipped without being read.
    pub until_timestamp: Option<i64>,
    /// Only records with `offset >= from_offset`. Segments whose `last_offset` is earlier are
    /// skipped without being opened; inside a segment, earlier blocks are checked (CRC) but
    /// not decompressed or decoded.
    pub from_offset: Option<i64>,
    /// Only records with `timestamp >= from_timestamp` (ms). Segments and blocks whose
    /// `max_timestamp` is earlier are skipped the same way.
    pub from_timestamp: Option<i64>,
}

impl ReadBounds {
    /// Whether a record passes every bound.
    pub fn admits(&self, offset: i64, timestamp: i64) -> bool {
        self.from_offset.is_none_or(|o| offset >= o)
            && self.from_timestamp.is_none_or(|t| timestamp >= t)
            && self.until_timestamp.is_none_or(|u| timestamp <= u)
    }

    /// Whether nothing in a range `[first, last]` of offsets with timestamps `[min, max]`
    /// can pass: the range is skipped unread.
    pub fn excludes(&self, last_offset: i64, min_timestamp: i64, max_timestamp: i64) -> bool {
        self.from_offset.is_some_and(|o| last_offset < o)
            || self.from_timestamp.is_some_and(|t| max_timestamp < t)
            || self.until_timestamp.is_some_and(|u| min_timestamp > u)
    }
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyReport {
    pub backup_id: String,
    pub valid: bool,
    pub segments_checked: u64,
    pub blocks_checked: u64,
    pub messages_checked: u64,
    pub bytes_checked: u64,
    /// One line per problem found, naming file, block and offset.
    pub problems: Vec<String>,
    /// Only on an encrypted archive: `true` when every block checked was authenticated with
    /// its data key, `false` when the key was not available and only the structure and the
    /// checksums of the ciphertext were checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authenticated: Option<bool>,
}

/// A place backups live: local filesystem or object storage, behind the same trait.
///
/// Promises every implementation keeps: a backup becomes visible (listed, readable) only once
/// [`ArchiveWriter::commit`] succeeded; what a failed, cancelled or killed writer left behind is
/// never listed and is cleaned up; reads verify checksums as they go.
#[async_trait]
pub trait ArchiveStore: Send + Sync + 'static {
    /// Starts a new backup. Fails with `Conflict` when the id is taken.
    async fn create(&self, spec: ArchiveSpec) -> DomainResult<Box<dyn ArchiveWriter>>;
    /// The manifest of a finished backup; `NotFound` when there is none.
    async fn manifest(&self, id: &BackupId) -> DomainResult<Manifest>;
    /// Opens one partition's records for reading in offset order, validating as it reads.
    /// The reader itself is blocking: iterate it on a blocking thread.
    async fn read_partition(
        &self,
        id: &BackupId,
        partition: i32,
        bounds: ReadBounds,
    ) -> DomainResult<Box<dyn RecordReader>>;
    /// The same records as [`ArchiveStore::read_partition`], a block at a time, each block's
    /// records sharing one buffer (no allocation per record: what restore produces from).
    /// Defaults to grouping `read_partition`'s records into blocks.
    async fn read_partition_blocks(
        &self,
        id: &BackupId,
        partition: i32,
        bounds: ReadBounds,
    ) -> DomainResult<Box<dyn BlockReader>> {
        let records = self.read_partition(id, partition, bounds).await?;
        Ok(grouped(records))
    }
    /// [`ArchiveStore::read_partition_blocks`] of the archive whose `manifest` the caller
    /// read through [`ArchiveStore::manifest`]: a store may open the partition from it instead
    /// of reading and parsing the manifest again for every partition (a restore of 1,000
    /// partitions parsed its ~1,000-entry manifest 1,000 times). Defaults to
    /// `read_partition_blocks` by the manifest's id.
    async fn read_blocks_of(
        &self,
        manifest: std::sync::Arc<Manifest>,
        partition: i32,
        bounds: ReadBounds,
    ) -> DomainResult<Box<dyn BlockReader>> {
        let id = BackupId::parse(&manifest.backup_id)?;
        self.read_partition_blocks(&id, partition, bounds).await
    }
    /// Every finished backup's manifest, newest first. Unfinished backups are never listed.
    async fn list(&self) -> DomainResult<Vec<Manifest>>;
    /// Removes a backup: its manifest first (so it stops being listed), then the rest.
    async fn delete(&self, id: &BackupId) -> DomainResult<()>;
    /// Checks every checksum and count against the manifest. Stops with `Cancelled` when
    /// `control` is cancelled; reports progress through it.
    async fn verify(&self, id: &BackupId, control: &OperationControl)
        -> DomainResult<VerifyReport>;
    /// The check a restore runs before producing anything: every checksum over the stored
    /// bytes, without decoding records (the restore decodes, and checks again, as it goes).
    /// Defaults to the full [`ArchiveStore::verify`].
    async fn check_integrity(
        &self,
        id: &BackupId,
        control: &OperationControl,
    ) -> DomainResult<VerifyReport> {
        self.verify(id, control).await
    }
    /// Removes what killed writers left behind (never a backup still being written); returns
    /// how many were removed. Called at start-up and periodically.
    async fn sweep_abandoned(&self) -> DomainResult<usize> {
        Ok(0)
    }
    /// Starts backup `spec.backup_id` again after its writer stopped (the job system knows it
    /// is gone), keeping the segments that writer reported finished (`committed`, per
    /// partition in offset order, as its partition writers listed them). The old writer is
    /// fenced off before anything is kept. Returns the writer and, per partition, the segments
    /// it kept (a prefix of `committed`, possibly renamed): the writer's partitions start with
    /// them, and the caller continues each partition after its last kept offset. Defaults to
    /// discarding the old writer's remains and starting afresh.
    async fn resume(
        &self,
        spec: ArchiveSpec,
        committed: BTreeMap<i32, Vec<SegmentInfo>>,
    ) -> DomainResult<Resumed> {
        let _ = committed;
        self.discard_unfinished(&spec.backup_id).await?;
        Ok((self.create(spec).await?, BTreeMap::new()))
    }
    /// Removes what an unfinished backup `id` left, even if its writer's lease looks alive:
    /// called only when the job system knows that writer is gone (its replica's job lease
    /// expired and this replica took the job over). A committed backup is left alone.
    async fn discard_unfinished(&self, id: &BackupId) -> DomainResult<()> {
        let _ = id;
        Ok(())
    }
    /// Re-wraps encrypted backup `id`'s data key under key-encryption key `to`, rewriting only
    /// its manifest (the key that wraps it now is needed). A store without encryption refuses.
    async fn rewrap_key(&self, id: &BackupId, to: &str) -> DomainResult<Rewrapped> {
        let _ = to;
        Err(not_encrypted(id))
    }
    /// Crypto-shreds encrypted backup `id`: destroys its wrapped data key, so it can never be
    /// read again; returns the manifest as it now is (still listed until deleted).
    async fn shred_key(&self, id: &BackupId) -> DomainResult<Manifest> {
        Err(not_encrypted(id))
    }
}

fn not_encrypted(id: &BackupId) -> DomainError {
    crate::ValidationError::new("backup_id", id, "this store holds no encrypted backups").into()
}

/// What re-wrapping one backup's data key did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rewrapped {
    pub backup_id: String,
    /// The key-encryption key that wrapped the data key before.
    pub from_key_id: String,
    pub to_key_id: String,
    /// False when the backup was already under `to_key_id` (nothing was written).
    pub changed: bool,
}

/// A resumed archive's writer and, per partition, the segments it kept.
pub type Resumed = (Box<dyn ArchiveWriter>, BTreeMap<i32, Vec<SegmentInfo>>);

/// A backup being written. Nothing is visible as a backup until [`ArchiveWriter::commit`];
/// dropping the writer without committing removes what was written. Blocking: call it from a
/// blocking thread.
pub trait ArchiveWriter: Send {
    /// A writer for one partition. Partition writers are independent and may run on
    /// different threads at the same time.
    fn partition(&self, partition: i32) -> DomainResult<Box<dyn PartitionWriter>>;
    /// Replaces the consumer groups the manifest will record (a backup reads them while its
    /// partitions are being written).
    fn set_consumer_groups(&mut self, groups: Vec<ConsumerGroupOffsets>);
    /// Writes the manifest last and makes the backup visible atomically.
    fn commit(
        self: Box<Self>,
        partitions: Vec<PartitionManifest>,
        finished_at: DateTime<Utc>,
    ) -> DomainResult<Manifest>;
    /// Removes everything written so far.
    fn abort(self: Box<Self>) -> DomainResult<()>;
}

/// Appends records of one partition, in offset order, a block at a time.
pub trait PartitionWriter: Send {
    /// Appends one record (its bytes are copied into the block being written).
    fn append_view(&mut self, record: RecordView<'_>) -> DomainResult<()>;
    fn append(&mut self, record: &Record) -> DomainResult<()> {
        self.append_view(record.into())
    }
    /// Bytes written to disk so far (compressed), for size limits.
    fn bytes_written(&self) -> u64;
    /// The segments finished (durable in the store) so far, in offset order, including those
    /// a resumed writer kept: what a later attempt may resume from.
    fn finished_segments(&self) -> &[SegmentInfo] {
        &[]
    }
    /// Flushes, fsyncs and describes what was written. `[start_offset, end_offset)` is the
    /// range the backup covered, which may be wider than the records written.
    fn finish(
        self: Box<Self>,
        start_offset: i64,
        end_offset: i64,
    ) -> DomainResult<PartitionManifest>;
}

/// Records of one partition, in order. An `Err` item ends the stream.
pub trait RecordReader: Iterator<Item = DomainResult<Record>> + Send {}

impl<T: Iterator<Item = DomainResult<Record>> + Send> RecordReader for T {}

/// Records of one partition, in order, a block at a time. An `Err` item ends the stream.
pub trait BlockReader: Iterator<Item = DomainResult<RecordBlock>> + Send {}

impl<T: Iterator<Item = DomainResult<RecordBlock>> + Send> BlockReader for T {}

/// Records a block holds when [`ArchiveStore::read_partition_blocks`] groups owned records,
/// and the bytes after which it is handed on with fewer (memory stays bounded however large
/// the records are).
const GROUPED_RECORDS: usize = 1_000;
const GROUPED_BYTES: usize = 4 << 20;

/// `records` in blocks of up to [`GROUPED_RECORDS`] (the default `read_partition_blocks`,
/// for stores whose records come out owned).
pub fn grouped(records: Box<dyn RecordReader>) -> Box<dyn BlockReader> {
    Box::new(Grouped(records))
}

struct Grouped(Box<dyn RecordReader>);

impl Iterator for Grouped {
    type Item = DomainResult<RecordBlock>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut block = RecordBlock::default();
        while block.len() < GROUPED_RECORDS && block.byte_len() < GROUPED_BYTES {
            match self.0.next() {
                Some(Ok(record)) => block.push_owned(&record),
                // Records read before the error are dropped with it: an error ends the stream.
                Some(Err(e)) => return Some(Err(e)),
                None => break,
            }
        }
        (!block.is_empty()).then_some(Ok(block))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::TimestampType;

    fn record(offset: i64) -> Record {
        Record {
            offset,
            timestamp: offset,
            timestamp_type: TimestampType::CreateTime,
            key: None,
            value: Some(offset.to_le_bytes().to_vec()),
            headers: Vec::new(),
        }
    }

    #[test]
    fn grouped_records_come_out_in_full_blocks_and_in_order() {
        let records: Vec<Record> = (0..2_500).map(record).collect();
        let source = records.clone().into_iter().map(Ok);
        let blocks: Vec<RecordBlock> = grouped(Box::new(source))
            .collect::<DomainResult<_>>()
            .unwrap();
        let sizes: Vec<usize> = blocks.iter().map(RecordBlock::len).collect();
        assert_eq!(sizes, vec![1_000, 1_000, 500]);

        // Large records: a block is handed on once it holds GROUPED_BYTES.
        let big: Vec<Record> = (0..10)
            .map(|offset| Record {
                value: Some(vec![7; 1 << 20]),
                ..record(offset)
            })
            .collect();
        let source = big.into_iter().map(Ok);
        let sizes: Vec<usize> = grouped(Box::new(source))
            .map(|b| b.unwrap().len())
            .collect();
        assert_eq!(sizes, vec![4, 4, 2]);
        let back: Vec<Record> = blocks.iter().flat_map(RecordBlock::to_records).collect();
        assert_eq!(back, records);
    }

    #[test]
    fn grouping_stops_at_an_error() {
        let source = (0..3)
            .map(|o| Ok(record(o)))
            .chain(std::iter::once(Err(crate::DomainError::internal("bad"))));
        let mut blocks = grouped(Box::new(source));
        assert!(blocks.next().unwrap().is_err());
        assert!(blocks.next().is_none());
    }
}
