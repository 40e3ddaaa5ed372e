//! In-memory entry points to the segment codec, for the fuzz target, property tests and the
//! codec bench. They run exactly the code the store uses for files.

use std::io::Cursor;

use kvault_domain::{Compression, CompressionType, Record};

use crate::codec::Encoder;
use crate::error::StorageError;
use crate::format::MAX_BLOCK_RAW_LEN;
use crate::record::encoded_len;
use crate::segment::{BlockBuilder, SegmentReader, SegmentWriter};
use kvault_domain::record_block::RecordView;

/// Name used for in-memory segments in error locations.
pub const MEMORY_FILE: &str = "<memory>";

/// What a valid segment holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentContents {
    pub codec: CompressionType,
    pub blocks: u64,
    pub records: Vec<Record>,
    /// Lower-case hex SHA-256 of the segment bytes.
    pub sha256: String,
}

/// Parses and fully validates a segment held in memory. Never panics; the memory it uses is
/// bounded by the input size and the format limits.
pub fn read_segment_bytes(data: &[u8]) -> Result<SegmentContents, StorageError> {
    let mut reader = SegmentReader::open(Cursor::new(data), MEMORY_FILE)?;
    let mut records = Vec::new();
    while let Some(block) = reader.next_block(None)? {
        records.extend(block.to_records());
    }
    let stats = reader.stats();
    Ok(SegmentContents {
        codec: reader.codec(),
        blocks: stats.blocks,
        records,
        sha256: stats.sha256.clone(),
    })
}

/// Encodes `records` (strictly increasing offsets) as one segment with blocks of about
/// `block_size` uncompressed bytes.
pub fn encode_segment(
    records: &[Record],
    compression: Compression,
    block_size: usize,
) -> Result<Vec<u8>, StorageError> {
    let mut encoder = Encoder::new(compression).map_err(|source| StorageError::Compress {
        codec: compression.codec,
        source,
    })?;
    let io = |e| StorageError::io(MEMORY_FILE, e);
    let mut writer = SegmentWriter::new(Vec::new(), compression.codec).map_err(io)?;
    let mut block = BlockBuilder::default();
    let mut compressed = Vec::new();
    let mut prev: Option<i64> = None;
    let mut flush = |block: &mut BlockBuilder,
                     writer: &mut SegmentWriter<Vec<u8>>|
     -> Result<(), StorageError> {
        if block.is_empty() {
            return Ok(());
        }
        encoder
            .compress(&block.raw, &mut compressed)
            .map_err(|source| StorageError::Compress {
                codec: compression.codec,
                source,
            })?;
        writer.write_block(block, &compressed).map_err(io)?;
        block.clear();
        Ok(())
    };
    for r in records {
        let r = &RecordView::from(r);
        if let Some(p) = prev.filter(|&p| r.offset <= p) {
            return Err(StorageError::AppendOrder {
                partition: -1,
                previous: p,
                found: r.offset,
            });
        }
        prev = Some(r.offset);
        let size = encoded_len(r);
        if size > u64::from(MAX_BLOCK_RAW_LEN) {
            return Err(StorageError::RecordTooLarge {
                partition: -1,
                offset: r.offset,
                size,
                max: MAX_BLOCK_RAW_LEN.into(),
            });
        }
        if !block.is_empty() && block.raw.len() as u64 + size > block_size as u64 {
            flush(&mut block, &mut writer)?;
        }
        block.push(r);
        if block.raw.len() >= block_size {
            flush(&mut block, &mut writer)?;
        }
    }
    flush(&mut block, &mut writer)?;
    let (bytes, _) = writer.finish().map_err(io)?;
    Ok(bytes)
}
