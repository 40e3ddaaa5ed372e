//! Segment files: building blocks from records, writing a file header, blocks and trailer
//! while hashing, and reading them back one validated block at a time.

use std::io::{self, Read, Write};

use kvault_domain::{CompressionType, Record};
use sha2::{Digest, Sha256};

use crate::error::{Location, Result, StorageError};
use crate::format::{
    codec_from_id, codec_id, BlockHeader, FileHeader, Trailer, BLOCK_HEADER_LEN, BLOCK_MARKER,
    FILE_HEADER_LEN, FORMAT_MAJOR, FORMAT_MINOR, MAX_BLOCK_COMPRESSED_LEN, MAX_BLOCK_RAW_LEN,
    MIN_RECORD_LEN, SEGMENT_MAGIC, TRAILER_LEN, TRAILER_MARKER,
};
use crate::record::{self, Cursor};

/// Records waiting to be compressed into the next block, with the block header's stats.
#[derive(Default)]
pub(crate) struct BlockBuilder {
    pub raw: Vec<u8>,
    pub count: u32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub min_timestamp: i64,
    pub max_timestamp: i64,
    /// Sum of `Record::payload_len` (the manifest's "raw bytes").
    pub payload: u64,
}

impl BlockBuilder {
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends a record; the caller checked its encoded size against the limits.
    pub fn push(&mut self, r: &Record) {
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
    fn add_block(&mut self, h: &BlockHeader) {
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

    /// The next block's records, `Some(vec![])` for a block skipped because its
    /// `min_timestamp` is after `skip_after`, or `None` after a valid trailer at end of file.
    pub fn next_block(&mut self, skip_after: Option<i64>) -> Result<Option<Vec<Record>>> {
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
        if skip_after.is_some_and(|until| h.min_timestamp > until) {
            self.payload_complete = false;
            return Ok(Some(Vec::new()));
        }
        self.decoder
            .decompress(&self.compressed, h.raw_len as usize, &mut self.raw)
            .map_err(|message| StorageError::Decompress {
                at: at.clone(),
                codec: self.codec,
                message,
            })?;
        let records = decode_block(&self.raw, &h, &at)?;
        self.stats.payload += records.iter().map(Record::payload_len).sum::<u64>();
        Ok(Some(records))
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

/// Decodes and checks a block's records against its header.
fn decode_block(raw: &[u8], h: &BlockHeader, at: &Location) -> Result<Vec<Record>> {
    let mut cursor = Cursor::new(raw);
    // Capacity is capped: the count is trusted only as far as the records actually decode.
    let mut records = Vec::with_capacity((h.record_count as usize).min(4096));
    let mut prev: Option<i64> = None;
    let (mut min_ts, mut max_ts) = (i64::MAX, i64::MIN);
    for index in 0..u64::from(h.record_count) {
        let r = cursor.record().map_err(|reason| StorageError::BadRecord {
            at: at.clone(),
            index,
            reason,
        })?;
        let expected_first = prev.is_none() && r.offset != h.first_offset;
        if expected_first {
            return Err(StorageError::Mismatch {
                at: at.clone(),
                what: "first record offset",
                expected: h.first_offset.to_string(),
                found: r.offset.to_string(),
            });
        }
        if let Some(p) = prev {
            if r.offset <= p {
                return Err(StorageError::OffsetOrder {
                    at: at.clone(),
                    previous: p,
                    found: r.offset,
                });
            }
        }
        prev = Some(r.offset);
        min_ts = min_ts.min(r.timestamp);
        max_ts = max_ts.max(r.timestamp);
        records.push(r);
    }
    let checks = [
        (
            "bytes after the last record",
            0u64.to_string(),
            cursor.remaining().to_string(),
        ),
        (
            "last record offset",
            h.last_offset.to_string(),
            prev.map_or_else(String::new, |p| p.to_string()),
        ),
        (
            "block timestamp range",
            format!("{}..={}", h.min_timestamp, h.max_timestamp),
            format!("{min_ts}..={max_ts}"),
        ),
    ];
    for (what, expected, found) in checks {
        if expected != found {
            return Err(StorageError::Mismatch {
                at: at.clone(),
                what,
                expected,
                found,
            });
        }
    }
    Ok(records)
}
