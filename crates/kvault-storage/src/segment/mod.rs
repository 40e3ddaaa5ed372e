//! Segment files: building blocks from records, writing a file header, blocks and trailer
//! while hashing (`write`), and reading them back one validated block at a time (`read`,
//! with the record decoding in `decode`).

mod checks;
mod decode;
mod read;
mod write;

use kvault_domain::record_block::RecordView;

use crate::format::BlockHeader;
use crate::record;

pub(crate) use read::SegmentReader;
pub(crate) use write::SegmentWriter;

/// Records waiting to be compressed into the next block, with the block header's stats.
#[derive(Default)]
pub(crate) struct BlockBuilder {
    pub raw: Vec<u8>,
    pub count: u32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub min_timestamp: i64,
    pub max_timestamp: i64,
    /// Sum of `RecordView::payload_len` (the manifest's "raw bytes").
    pub payload: u64,
}

impl BlockBuilder {
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends a record; the caller checked its encoded size against the limits.
    pub fn push(&mut self, r: &RecordView<'_>) {
        if self.count == 0 {
            self.first_offset = r.offset;
            self.min_timestamp = r.timestamp;
            self.max_timestamp = r.timestamp;
        }
        self.last_offset = r.offset;
        self.min_timestamp = self.min_timestamp.min(r.timestamp);
        self.max_timestamp = self.max_timestamp.max(r.timestamp);
        self.count += 1;
        self.payload += r.payload_len();
        record::encode(r, &mut self.raw);
    }

    pub fn clear(&mut self) {
        self.raw.clear();
        self.count = 0;
        self.payload = 0;
    }
}

/// What a segment holds, as measured while writing or reading it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SegmentStats {
    pub sha256: String,
    pub size: u64,
    pub blocks: u64,
    pub records: u64,
    pub first_offset: Option<i64>,
    pub last_offset: Option<i64>,
    pub min_timestamp: Option<i64>,
    pub max_timestamp: Option<i64>,
    pub payload: u64,
    pub raw_len_total: u64,
}

impl SegmentStats {
    pub(super) fn add_block(&mut self, h: &BlockHeader) {
        self.blocks += 1;
        self.records += u64::from(h.record_count);
        self.raw_len_total += u64::from(h.raw_len);
        self.first_offset.get_or_insert(h.first_offset);
        self.last_offset = Some(h.last_offset);
        self.min_timestamp = Some(
            self.min_timestamp
                .map_or(h.min_timestamp, |m| m.min(h.min_timestamp)),
        );
        self.max_timestamp = Some(
            self.max_timestamp
                .map_or(h.max_timestamp, |m| m.max(h.max_timestamp)),
        );
    }
}
