//! Streams one partition's records in offset order, checking each segment as it ends.
//!
//! Seeking: [`ReadBounds`] ranges are matched against the manifest's per-segment offsets and
//! timestamps first, so a segment with nothing wanted is never opened; inside an opened
//! segment, blocks with nothing wanted are CRC-checked but not decompressed or decoded. A
//! segment read to its trailer is still checked whole (SHA-256, counts, ranges); a read that
//! stops part-way through a segment (the caller stopped iterating) cannot check its SHA-256.

use super::verify::StoredSegmentReader;
use super::*;

/// Streams one partition's records, a block at a time, checking every segment against the
/// manifest when its last byte has been read. Blocks come out with only the records
/// `bounds` admits, and never empty.
pub(super) struct PartitionReader {
    pub(super) store: Store,
    pub(super) backup_id: String,
    pub(super) codec: CompressionType,
    /// Whether the manifest says the archive is encrypted (every segment must be sealed).
    pub(super) encrypted: bool,
    pub(super) key: Option<ArchiveKey>,
    pub(super) segments: VecDeque<SegmentInfo>,
    pub(super) bounds: ReadBounds,
    pub(super) current: Option<(StoredSegmentReader, SegmentInfo)>,
    /// The block decoded last, until it is handed out.
    pub(super) decoded: Option<RecordBlock>,
    pub(super) prev_offset: Option<i64>,
    pub(super) failed: bool,
}

impl PartitionReader {
    /// Loads the next block (or moves to the next segment). `Ok(false)` at the end.
    fn advance(&mut self) -> Result<bool> {
        if self.current.is_none() {
            let Some(info) = self.segments.pop_front() else {
                return Ok(false);
            };
            if self
                .bounds
                .excludes(info.last_offset, info.min_timestamp, info.max_timestamp)
            {
                // Nothing in this segment can qualify; its records are skipped unread.
                self.prev_offset = Some(info.last_offset);
                return Ok(true);
            }
            let label = format!("{}/{}", self.backup_id, info.file);
            let mut reader = open_segment(
                self.store.backend(),
                &self.backup_id,
                &info.file,
                &label,
                (self.codec, self.encrypted, self.key.as_ref()),
            )?;
            reader.set_prev_offset(self.prev_offset);
            self.current = Some((reader, info));
        }
        let Some((reader, info)) = self.current.as_mut() else {
            return Ok(false);
        };
        let bounds = self.bounds;
        match reader.next_block_unless(|h| {
            bounds.excludes(h.last_offset, h.min_timestamp, h.max_timestamp)
        })? {
            Some(block) => self.decoded = Some(block),
            None => {
                check_segment(
                    reader.stats(),
                    info,
                    reader.file(),
                    reader.payload_complete(),
                )?;
                self.prev_offset = Some(info.last_offset);
                self.current = None;
            }
        }
        Ok(true)
    }
}

impl Iterator for PartitionReader {
    type Item = DomainResult<RecordBlock>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.failed {
                return None;
            }
            if let Some(mut block) = self.decoded.take() {
                let bounds = self.bounds;
                block.retain(|r| bounds.admits(r.offset, r.timestamp));
                if !block.is_empty() {
                    return Some(Ok(block));
                }
            }
            match self.advance() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e.into_domain(&self.backup_id)));
                }
            }
        }
    }
}

/// A partition's records one by one (owned copies), for readers that want [`Record`]s.
pub(super) struct PartitionRecords {
    blocks: PartitionReader,
    current: RecordBlock,
    next: usize,
}

impl PartitionRecords {
    pub(super) fn new(blocks: PartitionReader) -> Self {
        Self {
            blocks,
            current: RecordBlock::default(),
            next: 0,
        }
    }
}

impl Iterator for PartitionRecords {
    type Item = DomainResult<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.current.get(self.next) {
                self.next += 1;
                return Some(Ok(r.to_record()));
            }
            match self.blocks.next()? {
                Ok(block) => (self.current, self.next) = (block, 0),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
