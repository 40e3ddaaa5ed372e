//! Writes one segment: file header, blocks, trailer, hashing every byte.

use std::io::{self, Write};

use kvault_domain::CompressionType;
use sha2::{Digest, Sha256};

use crate::crypt::{SegmentKey, SEAL_OVERHEAD};
use crate::format::{
    codec_id, BlockHeader, FileHeader, Trailer, FORMAT_MAJOR, FORMAT_MINOR, SEALED_MAJOR,
};

use super::{BlockBuilder, SegmentStats};

/// Writes one segment: file header, blocks, trailer. Hashes everything it writes.
pub(crate) struct SegmentWriter<W: Write> {
    out: W,
    sha: Sha256,
    stats: SegmentStats,
    /// Present for an encrypted segment: seals each block's data and the trailer.
    seal: Option<SegmentKey>,
    sealed: Vec<u8>,
}

impl<W: Write> SegmentWriter<W> {
    /// A segment over `out`; sealed (major version 2) when `seal` is given.
    pub fn new(out: W, codec: CompressionType, seal: Option<SegmentKey>) -> io::Result<Self> {
        let major = if seal.is_some() {
            SEALED_MAJOR
        } else {
            FORMAT_MAJOR
        };
        let mut w = Self {
            out,
            sha: Sha256::new(),
            stats: SegmentStats::default(),
            seal,
            sealed: Vec::new(),
        };
        let header = FileHeader {
            major,
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
    /// Sealed first when the segment is encrypted: the block's data is then
    /// `nonce | ciphertext | tag`, and its CRC covers those bytes.
    pub fn write_block(&mut self, block: &BlockBuilder, compressed: &[u8]) -> io::Result<()> {
        let overhead = if self.seal.is_some() {
            SEAL_OVERHEAD
        } else {
            0
        };
        let mut header = BlockHeader {
            record_count: block.count,
            first_offset: block.first_offset,
            last_offset: block.last_offset,
            min_timestamp: block.min_timestamp,
            max_timestamp: block.max_timestamp,
            raw_len: u32::try_from(block.raw.len()).map_err(io::Error::other)?,
            compressed_len: u32::try_from(compressed.len() + overhead).map_err(io::Error::other)?,
            data_crc: 0,
        };
        let mut sealed = std::mem::take(&mut self.sealed);
        let data = match &self.seal {
            Some(seal) => {
                seal.seal_block(
                    self.stats.blocks,
                    &header.encode()[4..48],
                    compressed,
                    &mut sealed,
                )
                .map_err(|()| io::Error::other("sealing a block failed"))?;
                &sealed[..]
            }
            None => compressed,
        };
        header.data_crc = crc32c::crc32c(data);
        self.put(&header.encode())?;
        self.put(data)?;
        self.sealed = sealed;
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
        let encoded = trailer.encode();
        self.put(&encoded)?;
        if let Some(seal) = &self.seal {
            let tail = seal
                .seal_trailer(&encoded[..28])
                .map_err(|()| io::Error::other("sealing the trailer failed"))?;
            self.put(&tail)?;
        }
        self.out.flush()?;
        let mut stats = self.stats;
        stats.sha256 = hex::encode(self.sha.finalize());
        Ok((self.out, stats))
    }
}
