//! The archive format: the names in a backup directory (the manifest file, the suffix of one
//! still being written, which segment paths a manifest may name), the fixed-size structures of
//! a segment file (file header, block header, trailer), their byte layout and the format's
//! limits. `docs/archive-format.md` documents the same layout; keep the two in step.

use kvault_domain::CompressionType;

/// Suffix of a backup directory still being written. Ids ending in it are refused so a
/// finished backup can never be mistaken for an unfinished one.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// The file a finished backup's manifest is stored in, next to its segments.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Segment paths come from a file that might have been edited: only plain relative
/// components are allowed, so a manifest can never point outside its backup directory.
pub(crate) fn is_safe_relative(file: &str) -> bool {
    !file.is_empty()
        && file.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'))
        })
}

/// First four bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 4] = *b"KVSG";
/// Marker that starts every block header.
pub const BLOCK_MARKER: [u8; 4] = *b"KVBK";
/// Marker that starts the trailer (the end of a complete segment).
pub const TRAILER_MARKER: [u8; 4] = *b"KVEN";

/// Major version written by this build; readers refuse any other major version.
pub const FORMAT_MAJOR: u16 = 1;
/// Minor version written by this build; readers accept any minor of their major.
pub const FORMAT_MINOR: u16 = 0;

pub const FILE_HEADER_LEN: usize = 16;
pub const BLOCK_HEADER_LEN: usize = 56;
pub const TRAILER_LEN: usize = 32;

/// Largest uncompressed block (and so the largest single encoded record): 128 MiB.
pub const MAX_BLOCK_RAW_LEN: u32 = 128 << 20;
/// Largest compressed block: the raw limit plus room for incompressible-data expansion.
pub const MAX_BLOCK_COMPRESSED_LEN: u32 = MAX_BLOCK_RAW_LEN + (MAX_BLOCK_RAW_LEN / 4);
/// Smallest possible encoded record (offset, timestamp, type, two null lengths, no headers).
pub const MIN_RECORD_LEN: usize = 8 + 8 + 1 + 4 + 4 + 4;
/// Smallest possible encoded header (empty name, null value).
pub const MIN_HEADER_LEN: usize = 4 + 4;
/// Most headers one record may carry. A decoded header costs a 20-byte table entry in its
/// block (~48 bytes as an owned copy) however few bytes it took on disk, so this (not the block
/// size) bounds a record's header memory: 1.3 MiB in a block, ~3 MiB copied out.
pub const MAX_HEADERS_PER_RECORD: usize = 1 << 16;
/// Largest `manifest.json` a reader accepts: 64 MiB.
pub const MAX_MANIFEST_LEN: u64 = 64 << 20;

pub fn codec_id(codec: CompressionType) -> u8 {
    match codec {
        CompressionType::None => 0,
        CompressionType::Gzip => 1,
        CompressionType::Snappy => 2,
        CompressionType::Lz4 => 3,
        CompressionType::Zstd => 4,
    }
}

pub fn codec_from_id(id: u8) -> Option<CompressionType> {
    Some(match id {
        0 => CompressionType::None,
        1 => CompressionType::Gzip,
        2 => CompressionType::Snappy,
        3 => CompressionType::Lz4,
        4 => CompressionType::Zstd,
        _ => return None,
    })
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn le_i64(b: &[u8], at: usize) -> i64 {
    le_u64(b, at) as i64
}

/// The 16-byte file header. The CRC covers bytes 0..12.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    pub major: u16,
    pub minor: u16,
    pub codec_id: u8,
}

impl FileHeader {
    pub fn encode(&self) -> [u8; FILE_HEADER_LEN] {
        let mut b = [0u8; FILE_HEADER_LEN];
        b[0..4].copy_from_slice(&SEGMENT_MAGIC);
        b[4..6].copy_from_slice(&self.major.to_le_bytes());
        b[6..8].copy_from_slice(&self.minor.to_le_bytes());
        b[8] = self.codec_id;
        // 9..12 reserved, zero.
        let crc = crc32c::crc32c(&b[0..12]);
        b[12..16].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Splits the header into fields plus (stored, computed) CRC; the caller decides what to
    /// check first so errors name the most specific cause.
    pub fn decode(b: &[u8; FILE_HEADER_LEN]) -> (Self, u32, u32) {
        let h = Self {
            major: le_u16(b, 4),
            minor: le_u16(b, 6),
            codec_id: b[8],
        };
        (h, le_u32(b, 12), crc32c::crc32c(&b[0..12]))
    }
}

/// The 56-byte block header. `header_crc` covers bytes 0..52; `data_crc` covers the
/// compressed bytes that follow the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    pub record_count: u32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub min_timestamp: i64,
    pub max_timestamp: i64,
    pub raw_len: u32,
    pub compressed_len: u32,
    pub data_crc: u32,
}

impl BlockHeader {
    pub fn encode(&self) -> [u8; BLOCK_HEADER_LEN] {
        let mut b = [0u8; BLOCK_HEADER_LEN];
        b[0..4].copy_from_slice(&BLOCK_MARKER);
        b[4..8].copy_from_slice(&self.record_count.to_le_bytes());
        b[8..16].copy_from_slice(&self.first_offset.to_le_bytes());
        b[16..24].copy_from_slice(&self.last_offset.to_le_bytes());
        b[24..32].copy_from_slice(&self.min_timestamp.to_le_bytes());
        b[32..40].copy_from_slice(&self.max_timestamp.to_le_bytes());
        b[40..44].copy_from_slice(&self.raw_len.to_le_bytes());
        b[44..48].copy_from_slice(&self.compressed_len.to_le_bytes());
        b[48..52].copy_from_slice(&self.data_crc.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..52]);
        b[52..56].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Returns the header and (stored, computed) header CRC. The marker is checked by the
    /// caller before it reads the rest.
    pub fn decode(b: &[u8; BLOCK_HEADER_LEN]) -> (Self, u32, u32) {
        let h = Self {
            record_count: le_u32(b, 4),
            first_offset: le_i64(b, 8),
            last_offset: le_i64(b, 16),
            min_timestamp: le_i64(b, 24),
            max_timestamp: le_i64(b, 32),
            raw_len: le_u32(b, 40),
            compressed_len: le_u32(b, 44),
            data_crc: le_u32(b, 48),
        };
        (h, le_u32(b, 52), crc32c::crc32c(&b[0..52]))
    }
}

/// The 32-byte trailer. The CRC covers bytes 0..28.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    pub block_count: u64,
    pub record_count: u64,
    /// Sum of the blocks' `raw_len`.
    pub raw_len_total: u64,
}

impl Trailer {
    pub fn encode(&self) -> [u8; TRAILER_LEN] {
        let mut b = [0u8; TRAILER_LEN];
        b[0..4].copy_from_slice(&TRAILER_MARKER);
        b[4..12].copy_from_slice(&self.block_count.to_le_bytes());
        b[12..20].copy_from_slice(&self.record_count.to_le_bytes());
        b[20..28].copy_from_slice(&self.raw_len_total.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; TRAILER_LEN]) -> (Self, u32, u32) {
        let t = Self {
            block_count: le_u64(b, 4),
            record_count: le_u64(b, 12),
            raw_len_total: le_u64(b, 20),
        };
        (t, le_u32(b, 28), crc32c::crc32c(&b[0..28]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_crc_detects_flips() {
        let h = BlockHeader {
            record_count: 3,
            first_offset: -5,
            last_offset: i64::MAX,
            min_timestamp: i64::MIN,
            max_timestamp: 7,
            raw_len: 100,
            compressed_len: 50,
            data_crc: 0xdead_beef,
        };
        let mut b = h.encode();
        let (back, stored, computed) = BlockHeader::decode(&b);
        assert_eq!(back, h);
        assert_eq!(stored, computed);
        b[20] ^= 1;
        let (_, stored, computed) = BlockHeader::decode(&b);
        assert_ne!(stored, computed);

        let t = Trailer {
            block_count: 9,
            record_count: 10,
            raw_len_total: 11,
        };
        let (back, s, c) = Trailer::decode(&t.encode());
        assert_eq!((back, s), (t, c));
        for id in 0..=255u8 {
            if let Some(c) = codec_from_id(id) {
                assert_eq!(codec_id(c), id);
            }
        }
    }
}
