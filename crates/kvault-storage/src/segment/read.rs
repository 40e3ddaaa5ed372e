//! Reads a segment one validated block at a time, or checks its bytes without decoding.

use std::io::{self, Read};

use std::ops::Range;

use kvault_domain::record_block::RecordBlock;
use kvault_domain::CompressionType;
use sha2::{Digest, Sha256};

use crate::crypt::{SegmentKey, SEAL_OVERHEAD};
use crate::error::{Location, Result, StorageError};
use crate::format::{
    codec_from_id, BlockHeader, FileHeader, Trailer, BLOCK_HEADER_LEN, BLOCK_MARKER,
    FILE_HEADER_LEN, FORMAT_MAJOR, SEALED_MAJOR, SEGMENT_MAGIC, TRAILER_LEN, TRAILER_MARKER,
};

use super::checks::check_header;
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
    /// The file header says major 2: blocks and trailer are sealed.
    sealed: bool,
    /// Opens sealed blocks; without it a sealed segment's bytes can be checked, not read.
    key: Option<SegmentKey>,
    /// Where the current block's compressed bytes are in `compressed` (after opening).
    data: Range<usize>,
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
            sealed: false,
            key: None,
            data: 0..0,
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
        if h.major != FORMAT_MAJOR && h.major != SEALED_MAJOR {
            return Err(StorageError::UnsupportedVersion {
                at,
                major: h.major,
                minor: h.minor,
                supported: SEALED_MAJOR,
            });
        }
        r.sealed = h.major == SEALED_MAJOR;
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

    /// Whether the segment is encrypted (its blocks and trailer sealed).
    pub fn sealed(&self) -> bool {
        self.sealed
    }

    /// The key that opens this segment's sealed blocks: with it every block read (decoded or
    /// only checked) and the trailer are authenticated.
    pub fn set_key(&mut self, key: SegmentKey) {
        self.key = Some(key);
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
        if self.sealed && self.key.is_none() {
            return Err(StorageError::NoKey { at });
        }
        self.decoder
            .decompress(
                &self.compressed[self.data.clone()],
                h.raw_len as usize,
                &mut self.raw,
            )
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
        check_header(&h, &at, self.prev_offset)?;
        self.read_compressed(&h, &at)?;
        self.open_data(index, &hb, &at)?;
        self.stats.add_block(&h);
        self.prev_offset = Some(h.last_offset);
        Ok(Some((h, at)))
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

    /// Authenticates and decrypts a sealed block's data in place when the key is known;
    /// `self.data` then covers the compressed bytes.
    fn open_data(&mut self, index: u64, hb: &[u8; BLOCK_HEADER_LEN], at: &Location) -> Result<()> {
        self.data = 0..self.compressed.len();
        if !self.sealed {
            return Ok(());
        }
        if self.compressed.len() < SEAL_OVERHEAD {
            return Err(StorageError::Truncated {
                at: at.clone(),
                what: "a sealed block (shorter than its nonce and tag)",
            });
        }
        if let Some(key) = &self.key {
            self.data = key
                .open_block(index, &hb[4..48], &mut self.compressed)
                .map_err(|()| StorageError::Authentication {
                    at: at.clone(),
                    key_id: key.key_id().to_owned(),
                })?;
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
        if self.sealed {
            let mut seal = [0u8; SEAL_OVERHEAD];
            self.exact(&mut seal, &at, "the trailer's seal")?;
            if let Some(key) = &self.key {
                key.open_trailer(&tb[..28], &mut seal).map_err(|()| {
                    StorageError::Authentication {
                        at: at.clone(),
                        key_id: key.key_id().to_owned(),
                    }
                })?;
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
