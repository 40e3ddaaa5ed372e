//! Reads a segment one validated block at a time, or checks its bytes without decoding.

use std::io::{self, Read};

use kvault_domain::record_block::RecordBlock;
use kvault_domain::CompressionType;
use sha2::{Digest, Sha256};

use crate::error::{Location, Result, StorageError};
use crate::format::{
    codec_from_id, BlockHeader, FileHeader, Trailer, BLOCK_HEADER_LEN, BLOCK_MARKER,
    FILE_HEADER_LEN, FORMAT_MAJOR, MAX_BLOCK_COMPRESSED_LEN, MAX_BLOCK_RAW_LEN, MIN_RECORD_LEN,
    SEGMENT_MAGIC, TRAILER_LEN, TRAILER_MARKER,
};

use super::decode::decode_block;
use super::SegmentStats;

/// Reads a segment one block at a time, validating every structure as it goes.
pub(crate) struct SegmentReader<R: Read> {
    src: R,
    file: String,
    sha: Sha256,
    pos: u64,
    codec: CompressionType,
    decoder: crate::codec::Decoder,
    stats: SegmentStats,
    prev_offset: Option<i64>,
    /// False once a block was skipped undecoded: `stats.payload` is then incomplete.
    payload_complete: bool,
    compressed: Vec<u8>,
    /// The block being decompressed; handed to the decoded block, so it starts empty again.
    raw: Vec<u8>,
    done: bool,
}

impl<R: Read> SegmentReader<R> {
    /// Reads and checks the file header.
    pub fn open(src: R, file: impl Into<String>) -> Result<Self> {
        let mut r = Self {
            src,
            file: file.into(),
            sha: Sha256::new(),
            pos: 0,
            codec: CompressionType::None,
            decoder: crate::codec::Decoder::new(CompressionType::None),
            stats: SegmentStats::default(),
            prev_offset: None,
            payload_complete: true,
            compressed: Vec::new(),
            raw: Vec::new(),
            done: false,
        };
        let mut b = [0u8; FILE_HEADER_LEN];
        let at = r.at(None, 0);
        let n = r.fill(&mut b)?;
        if n >= 4 && b[0..4] != SEGMENT_MAGIC {
            let mut found = [0u8; 4];
            found.copy_from_slice(&b[0..4]);
            return Err(StorageError::BadMagic { at, found });
        }
        if n < FILE_HEADER_LEN {
            return Err(StorageError::Truncated {
                at,
                what: "the file header",
            });
        }
        let (h, stored, computed) = FileHeader::decode(&b);
        if stored != computed {
            return Err(StorageError::HeaderChecksum {
                at,
                what: "file header",
                stored,
                computed,
            });
        }
        if h.major != FORMAT_MAJOR {
            return Err(StorageError::UnsupportedVersion {
                at,
                major: h.major,
                minor: h.minor,
                supported: FORMAT_MAJOR,
            });
        }
        r.codec = codec_from_id(h.codec_id).ok_or(StorageError::UnknownCodec {
            at,
            code: h.codec_id,
        })?;
        r.decoder = crate::codec::Decoder::new(r.codec);
        Ok(r)
    }

    pub fn codec(&self) -> CompressionType {
        self.codec
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    /// Records offsets must exceed `prev` (the previous segment's last offset).
    pub fn set_prev_offset(&mut self, prev: Option<i64>) {
        self.prev_offset = prev;
    }

    /// Stats of everything read so far; after the trailer, of the whole file (with its SHA-256).
    pub fn stats(&self) -> &SegmentStats {
        &self.stats
    }

    pub fn payload_complete(&self) -> bool {
        self.payload_complete
    }

    fn at(&self, block: Option<u64>, pos: u64) -> Location {
        Location {
            file: self.file.clone(),
            block,
            pos,
        }
    }

    /// Reads until `buf` is full or the input ends; returns how many bytes arrived.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match self.src.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(StorageError::io(&self.file, e)),
            }
        }
        self.sha.update(&buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }

    fn exact(&mut self, buf: &mut [u8], at: &Location, what: &'static str) -> Result<()> {
        if self.fill(buf)? < buf.len() {
            return Err(StorageError::Truncated {
                at: at.clone(),
                what,
            });
        }
        Ok(())
    }

    /// The next block's records, an empty block for one skipped because its
    /// `min_timestamp` is after `skip_after`, or `None` after a valid trailer at end of file.
    pub fn next_block(&mut self, skip_after: Option<i64>) -> Result<Option<RecordBlock>> {
        self.next_block_unless(|h| skip_after.is_some_and(|until| h.min_timestamp > until))
    }

    /// The next block's records, an empty block for one `skip` says no record of is wanted
    /// (its bytes are still checked against the block CRC, but it is neither decompressed nor
    /// decoded), or `None` after a valid trailer at end of file. The block takes over the
    /// decompressed bytes: its records are ranges of them, nothing is copied per record.
    pub fn next_block_unless(
        &mut self,
        skip: impl Fn(&BlockHeader) -> bool,
    ) -> Result<Option<RecordBlock>> {
        let Some((h, at)) = self.next_frame()? else {
            return Ok(None);
        };
        if skip(&h) {
            self.payload_complete = false;
            return Ok(Some(RecordBlock::default()));
        }
        self.decoder
            .decompress(&self.compressed, h.raw_len as usize, &mut self.raw)
            .map_err(|source| StorageError::Decompress {
                at: at.clone(),
                codec: self.codec,
                source,
            })?;
        let block = decode_block(std::mem::take(&mut self.raw), &h, &at)?;
        self.stats.payload += block.payload_len();
        Ok(Some(block))
    }

    /// Checks the next block's bytes (header CRC, limits, data CRC over the compressed bytes)
    /// without decompressing it; returns its header, or `None` after a valid trailer.
    pub fn check_next_block(&mut self) -> Result<Option<BlockHeader>> {
        let frame = self.next_frame()?;
        if frame.is_some() {
            self.payload_complete = false;
        }
        Ok(frame.map(|(h, _)| h))
    }

    /// Reads the next block header and its compressed bytes, both checked; `None` after a
    /// valid trailer.
    fn next_frame(&mut self) -> Result<Option<(BlockHeader, Location)>> {
        if self.done {
            return Ok(None);
        }
        let index = self.stats.blocks;
        let at = self.at(Some(index), self.pos);
        let mut hb = [0u8; BLOCK_HEADER_LEN];
        match self.fill(&mut hb[0..4])? {
            0 => {
                return Err(StorageError::Truncated {
                    at,
                    what: "the segment (no trailer after the last block)",
                })
            }
            4 => {}
            _ => {
                return Err(StorageError::Truncated {
                    at,
                    what: "a block marker",
                })
            }
        }
        if hb[0..4] == TRAILER_MARKER {
            self.read_trailer(at)?;
            return Ok(None);
        }
        if hb[0..4] != BLOCK_MARKER {
            let mut found = [0u8; 4];
            found.copy_from_slice(&hb[0..4]);
            return Err(StorageError::BadMarker { at, found });
        }
        self.exact(&mut hb[4..], &at, "a block header")?;
        let (h, stored, computed) = BlockHeader::decode(&hb);
        if stored != computed {
            return Err(StorageError::HeaderChecksum {
                at,
                what: "block header",
                stored,
                computed,
            });
        }
        self.check_header(&h, &at)?;
        self.read_compressed(&h, &at)?;
        self.stats.add_block(&h);
        self.prev_offset = Some(h.last_offset);
        Ok(Some((h, at)))
    }

    /// Header fields must be within limits and consistent before any allocation.
    fn check_header(&self, h: &BlockHeader, at: &Location) -> Result<()> {
        let limit = |what, value: u64, max: u64| {
            if value > max {
                Err(StorageError::LimitExceeded {
                    at: at.clone(),
                    what,
                    value,
                    max,
                })
            } else {
                Ok(())
            }
        };
        limit(
            "block raw length",
            h.raw_len.into(),
            MAX_BLOCK_RAW_LEN.into(),
        )?;
        limit(
            "block compressed length",
            h.compressed_len.into(),
            MAX_BLOCK_COMPRESSED_LEN.into(),
        )?;
        limit(
            "block record count",
            h.record_count.into(),
            u64::from(h.raw_len) / MIN_RECORD_LEN as u64,
        )?;
        let mismatch = |what, expected: String, found: String| StorageError::Mismatch {
            at: at.clone(),
            what,
            expected,
            found,
        };
        if h.record_count == 0 {
            return Err(mismatch(
                "block record count",
                "at least 1".into(),
                "0".into(),
            ));
        }
        if h.last_offset < h.first_offset
            || u64::from(h.record_count) - 1 > h.last_offset.abs_diff(h.first_offset)
        {
            return Err(mismatch(
                "block offset range",
                format!("room for {} records", h.record_count),
                format!("{}..={}", h.first_offset, h.last_offset),
            ));
        }
        if h.max_timestamp < h.min_timestamp {
            return Err(mismatch(
                "block timestamp range",
                "min <= max".into(),
                format!("{}..={}", h.min_timestamp, h.max_timestamp),
            ));
        }
        if let Some(prev) = self.prev_offset {
            if h.first_offset <= prev {
                return Err(StorageError::OffsetOrder {
                    at: at.clone(),
                    previous: prev,
                    found: h.first_offset,
                });
            }
        }
        Ok(())
    }

    fn read_compressed(&mut self, h: &BlockHeader, at: &Location) -> Result<()> {
        self.compressed.clear();
        // `take` + `read_to_end` grows the buffer only as bytes arrive, so a lying length in
        // a short file cannot force a large allocation.
        let n = (&mut self.src)
            .take(u64::from(h.compressed_len))
            .read_to_end(&mut self.compressed)
            .map_err(|e| StorageError::io(&self.file, e))?;
        self.sha.update(&self.compressed);
        self.pos += n as u64;
        if n < h.compressed_len as usize {
            return Err(StorageError::Truncated {
                at: at.clone(),
                what: "block data",
            });
        }
        let computed = crc32c::crc32c(&self.compressed);
        if computed != h.data_crc {
            return Err(StorageError::BlockChecksum {
                at: at.clone(),
                stored: h.data_crc,
                computed,
            });
        }
        Ok(())
    }

    fn read_trailer(&mut self, at: Location) -> Result<()> {
        let mut tb = [0u8; TRAILER_LEN];
        tb[0..4].copy_from_slice(&TRAILER_MARKER);
        let at = Location { block: None, ..at };
        self.exact(&mut tb[4..], &at, "the trailer")?;
        let (t, stored, computed) = Trailer::decode(&tb);
        if stored != computed {
            return Err(StorageError::HeaderChecksum {
                at,
                what: "trailer",
                stored,
                computed,
            });
        }
        let checks = [
            ("trailer block count", t.block_count, self.stats.blocks),
            ("trailer record count", t.record_count, self.stats.records),
            (
                "trailer raw length",
                t.raw_len_total,
                self.stats.raw_len_total,
            ),
        ];
        for (what, stored, counted) in checks {
            if stored != counted {
                return Err(StorageError::Mismatch {
                    at,
                    what,
                    expected: counted.to_string(),
                    found: stored.to_string(),
                });
            }
        }
        let end = self.pos;
        let mut probe = [0u8; 1];
        if self.fill(&mut probe)? > 0 {
            return Err(StorageError::TrailingBytes {
                at: Location {
                    file: self.file.clone(),
                    block: None,
                    pos: end,
                },
            });
        }
        self.stats.size = self.pos;
        self.stats.sha256 = hex::encode(self.sha.clone().finalize());
        self.done = true;
        Ok(())
    }
}
