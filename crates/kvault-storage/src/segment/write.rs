//! Writes one segment: file header, blocks, trailer, hashing every byte.

use std::io::{self, Write};

use kvault_domain::CompressionType;
use sha2::{Digest, Sha256};

use crate::format::{codec_id, BlockHeader, FileHeader, Trailer, FORMAT_MAJOR, FORMAT_MINOR};

use super::{BlockBuilder, SegmentStats};

/// Writes one segment: file header, blocks, trailer. Hashes everything it writes.
pub(crate) struct SegmentWriter<W: Write> {
    out: W,
    sha: Sha256,
    stats: SegmentStats,
}

impl<W: Write> SegmentWriter<W> {
    pub fn new(out: W, codec: CompressionType) -> io::Result<Self> {
        let mut w = Self {
            out,
            sha: Sha256::new(),
            stats: SegmentStats::default(),
        };
        let header = FileHeader {
            major: FORMAT_MAJOR,
            minor: FORMAT_MINOR,
            codec_id: codec_id(codec),
        };
        w.put(&header.encode())?;
        Ok(w)
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.sha.update(b);
        self.stats.size += b.len() as u64;
        Ok(())
    }

    pub fn size(&self) -> u64 {
        self.stats.size
    }

    /// Writes one block whose raw form is `block.raw` and compressed form is `compressed`.
    pub fn write_block(&mut self, block: &BlockBuilder, compressed: &[u8]) -> io::Result<()> {
        let header = BlockHeader {
            record_count: block.count,
            first_offset: block.first_offset,
            last_offset: block.last_offset,
            min_timestamp: block.min_timestamp,
            max_timestamp: block.max_timestamp,
            raw_len: u32::try_from(block.raw.len()).map_err(io::Error::other)?,
            compressed_len: u32::try_from(compressed.len()).map_err(io::Error::other)?,
            data_crc: crc32c::crc32c(compressed),
        };
        self.put(&header.encode())?;
        self.put(compressed)?;
        self.stats.add_block(&header);
        self.stats.payload += block.payload;
        Ok(())
    }

    /// Writes the trailer and flushes; returns the sink (for fsync) and what was written.
    pub fn finish(mut self) -> io::Result<(W, SegmentStats)> {
        let trailer = Trailer {
            block_count: self.stats.blocks,
            record_count: self.stats.records,
            raw_len_total: self.stats.raw_len_total,
        };
        self.put(&trailer.encode())?;
        self.out.flush()?;
        let mut stats = self.stats;
        stats.sha256 = hex::encode(self.sha.finalize());
        Ok((self.out, stats))
    }
}
