//! Block compression and decompression for the five codecs, with reusable buffers and
//! decompression that never allocates more than the block's declared raw length.

use std::io::{Read, Write};

use kvault_domain::{Compression, CompressionType};

/// Why a block could not be compressed or decompressed. The codec library's own error stays
/// the source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Snappy(#[from] snap::Error),
    #[error(transparent)]
    Lz4Compress(#[from] lz4_flex::block::CompressError),
    #[error(transparent)]
    Lz4Decompress(#[from] lz4_flex::block::DecompressError),
    /// A zstd error code, by its name.
    #[error("{0}")]
    Zstd(&'static str),
    /// What the block holds does not add up to what its header says.
    #[error("{0}")]
    Mismatch(String),
    #[error("zstd compressor missing")]
    NoCompressor,
}

/// Compresses blocks with one codec and level; keeps codec state between blocks.
pub(crate) struct Encoder {
    compression: Compression,
    snappy: snap::raw::Encoder,
    zstd: Option<zstd::bulk::Compressor<'static>>,
}

impl Encoder {
    pub fn new(compression: Compression) -> Result<Self, CodecError> {
        let zstd = match compression.codec {
            CompressionType::Zstd => {
                let level = compression
                    .level
                    .or(CompressionType::Zstd.default_level())
                    .unwrap_or(3);
                Some(zstd::bulk::Compressor::new(level)?)
            }
            _ => None,
        };
        Ok(Self {
            compression,
            snappy: snap::raw::Encoder::new(),
            zstd,
        })
    }

    /// Replaces `out` with the compressed form of `raw`.
    pub fn compress(&mut self, raw: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.clear();
        match self.compression.codec {
            CompressionType::None => out.extend_from_slice(raw),
            CompressionType::Gzip => {
                let level = self
                    .compression
                    .level
                    .or(CompressionType::Gzip.default_level())
                    .unwrap_or(6)
                    .clamp(0, 9) as u32;
                let mut enc = flate2::write::GzEncoder::new(
                    std::mem::take(out),
                    flate2::Compression::new(level),
                );
                enc.write_all(raw)?;
                *out = enc.finish()?;
            }
            CompressionType::Snappy => {
                out.resize(snap::raw::max_compress_len(raw.len()), 0);
                let n = self.snappy.compress(raw, out)?;
                out.truncate(n);
            }
            CompressionType::Lz4 => {
                out.resize(lz4_flex::block::get_maximum_output_size(raw.len()), 0);
                let n = lz4_flex::block::compress_into(raw, out)?;
                out.truncate(n);
            }
            CompressionType::Zstd => {
                let zstd = self.zstd.as_mut().ok_or(CodecError::NoCompressor)?;
                out.reserve(zstd::zstd_safe::compress_bound(raw.len()));
                zstd.compress_to_buffer(raw, out)?;
            }
        }
        Ok(())
    }
}

/// Decompresses blocks of one codec; keeps codec state between blocks.
pub(crate) struct Decoder {
    codec: CompressionType,
    snappy: snap::raw::Decoder,
    /// Created at the first zstd block, reset for each one after.
    zstd: Option<zstd::zstd_safe::DCtx<'static>>,
}

/// LZ4 block format cannot expand by more than ~255:1; anything claiming more is corrupt,
/// and the check stops a tiny input from forcing a large allocation.
const LZ4_MAX_RATIO: u64 = 256;
/// Snappy's longest copy (64 bytes) costs at least 3 bytes: ~21:1. 32 leaves headroom.
const SNAPPY_MAX_RATIO: u64 = 32;
/// zstd has no such bound, so a zstd block's output buffer starts at this many times its
/// compressed size (at most its declared length) and grows only as the frame really yields
/// bytes: a lying header cannot make kvault allocate much more than the data it holds. Most
/// blocks fit at once (JSON compresses ~12:1), and zstd then decodes straight into the buffer.
const ZSTD_FIRST_RATIO: usize = 32;

impl Decoder {
    pub fn new(codec: CompressionType) -> Self {
        Self {
            codec,
            snappy: snap::raw::Decoder::new(),
            zstd: None,
        }
    }

    /// Replaces `out` with exactly `raw_len` decompressed bytes, or says why it cannot.
    /// `raw_len` has already been checked against the format limit by the caller.
    pub fn decompress(
        &mut self,
        compressed: &[u8],
        raw_len: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        let clen = compressed.len() as u64;
        match self.codec {
            CompressionType::None => {
                if compressed.len() != raw_len {
                    return Err(CodecError::Mismatch(format!(
                        "uncompressed block holds {} bytes, header says {raw_len}",
                        compressed.len()
                    )));
                }
                out.clear();
                out.extend_from_slice(compressed);
            }
            CompressionType::Gzip => {
                let dec = flate2::read::GzDecoder::new(compressed);
                read_bounded(dec, raw_len, out)?;
            }
            CompressionType::Zstd => {
                let dctx = self.zstd.get_or_insert_with(zstd::zstd_safe::DCtx::create);
                zstd_bounded(dctx, compressed, raw_len, out)?;
            }
            CompressionType::Snappy => {
                if raw_len as u64 > clen * SNAPPY_MAX_RATIO + 64 {
                    return Err(CodecError::Mismatch(format!(
                        "{raw_len} raw bytes cannot come from {clen} snappy bytes"
                    )));
                }
                let claimed = snap::raw::decompress_len(compressed)?;
                if claimed != raw_len {
                    return Err(CodecError::Mismatch(format!(
                        "snappy stream holds {claimed} bytes, header says {raw_len}"
                    )));
                }
                // Resizing without clearing keeps the zero-fill to the growth only.
                out.resize(raw_len, 0);
                let n = self.snappy.decompress(compressed, out)?;
                if n != raw_len {
                    return Err(CodecError::Mismatch(format!(
                        "snappy produced {n} bytes, header says {raw_len}"
                    )));
                }
            }
            CompressionType::Lz4 => {
                if raw_len as u64 > clen * LZ4_MAX_RATIO + 64 {
                    return Err(CodecError::Mismatch(format!(
                        "{raw_len} raw bytes cannot come from {clen} lz4 bytes"
                    )));
                }
                out.resize(raw_len, 0);
                let n = lz4_flex::block::decompress_into(compressed, out)?;
                if n != raw_len {
                    return Err(CodecError::Mismatch(format!(
                        "lz4 produced {n} bytes, header says {raw_len}"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Replaces `out` with the one zstd frame in `compressed`, which must hold exactly `raw_len`
/// bytes. Writes into `out`'s spare capacity (no zero-filling first).
fn zstd_bounded(
    dctx: &mut zstd::zstd_safe::DCtx<'static>,
    compressed: &[u8],
    raw_len: usize,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    use zstd::zstd_safe::{get_error_name, InBuffer, OutBuffer, ResetDirective};
    dctx.reset(ResetDirective::SessionOnly)
        .map_err(|code| CodecError::Zstd(get_error_name(code)))?;
    out.clear();
    // One byte past the declared length, to notice a frame that holds more.
    let limit = raw_len + 1;
    let first = compressed.len().saturating_mul(ZSTD_FIRST_RATIO).max(4096);
    out.reserve_exact(first.min(limit));
    let mut input = InBuffer::around(compressed);
    loop {
        if out.len() == out.capacity() {
            if out.len() >= limit {
                return Err(CodecError::Mismatch(format!(
                    "stream holds more than the {raw_len} bytes the header says"
                )));
            }
            // Doubling, up to the limit.
            out.reserve_exact(out.len().min(limit - out.len()).max(1));
        }
        let written = out.len();
        let mut output = OutBuffer::around_pos(out, written);
        let left = dctx
            .decompress_stream(&mut output, &mut input)
            .map_err(|code| CodecError::Zstd(get_error_name(code)))?;
        let progressed = output.pos() > written;
        if left == 0 {
            break;
        }
        if input.pos() == compressed.len() && !progressed && out.len() < out.capacity() {
            return Err(CodecError::Mismatch(format!(
                "stream ends after {} bytes, header says {raw_len}",
                out.len()
            )));
        }
    }
    if input.pos() != compressed.len() {
        return Err(CodecError::Mismatch(
            "bytes follow the zstd frame".to_owned(),
        ));
    }
    if out.len() != raw_len {
        return Err(CodecError::Mismatch(format!(
            "stream holds {} bytes, header says {raw_len}",
            out.len()
        )));
    }
    Ok(())
}

/// Reads a streaming decoder to its end into `out`, growing the buffer only as data arrives
/// (a lying header cannot force a large allocation) and refusing more than `raw_len` bytes.
fn read_bounded(dec: impl Read, raw_len: usize, out: &mut Vec<u8>) -> Result<(), CodecError> {
    out.clear();
    let n = dec.take(raw_len as u64 + 1).read_to_end(out)?;
    if n != raw_len {
        return Err(CodecError::Mismatch(if n > raw_len {
            format!("stream holds more than the {raw_len} bytes the header says")
        } else {
            format!("stream holds {n} bytes, header says {raw_len}")
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips_and_refuses_wrong_lengths() {
        let raw: Vec<u8> = (0..10_000u32)
            .flat_map(|i| (i % 97).to_le_bytes())
            .collect();
        for codec in CompressionType::ALL {
            let c = Compression::new(codec, None).unwrap();
            let mut enc = Encoder::new(c).unwrap();
            let mut dec = Decoder::new(codec);
            let mut z = Vec::new();
            let mut back = Vec::new();
            enc.compress(&raw, &mut z).unwrap();
            dec.decompress(&z, raw.len(), &mut back).unwrap();
            assert_eq!(back, raw, "{codec}");
            assert!(
                dec.decompress(&z, raw.len() - 1, &mut back).is_err(),
                "{codec}"
            );
            assert!(
                dec.decompress(&z, raw.len() + 1, &mut back).is_err(),
                "{codec}"
            );
            // Empty input round-trips too.
            enc.compress(&[], &mut z).unwrap();
            dec.decompress(&z, 0, &mut back).unwrap();
            assert!(back.is_empty());
        }
    }

    #[test]
    fn zstd_memory_follows_the_data_not_the_declared_length() {
        let mut enc = Encoder::new(Compression::new(CompressionType::Zstd, None).unwrap()).unwrap();
        let mut dec = Decoder::new(CompressionType::Zstd);
        // 1 MiB of zeros compresses to a few dozen bytes: far beyond the first guess, so the
        // buffer grows as the frame yields bytes, and the bytes come back exact.
        let zeros = vec![0u8; 1 << 20];
        let (mut z, mut back) = (Vec::new(), Vec::new());
        enc.compress(&zeros, &mut z).unwrap();
        assert!(z.len() * ZSTD_FIRST_RATIO < zeros.len());
        dec.decompress(&z, zeros.len(), &mut back).unwrap();
        assert_eq!(back, zeros);

        // A header claiming 100 MiB for 10 KB of data: refused, and the buffer stayed near
        // what the data holds.
        let raw: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        enc.compress(&raw, &mut z).unwrap();
        let mut lied = Vec::new();
        let err = dec.decompress(&z, 100 << 20, &mut lied).unwrap_err();
        assert!(err.to_string().contains("header says"), "{err}");
        assert!(
            lied.capacity() < 1 << 20,
            "{} bytes reserved",
            lied.capacity()
        );

        // A truncated frame and bytes after the frame are refused; the decoder still works.
        assert!(dec
            .decompress(&z[..z.len() - 3], raw.len(), &mut back)
            .is_err());
        let mut trailing = z.clone();
        trailing.extend_from_slice(&z);
        assert!(dec.decompress(&trailing, raw.len(), &mut back).is_err());
        assert!(dec
            .decompress(b"not zstd at all", raw.len(), &mut back)
            .is_err());
        dec.decompress(&z, raw.len(), &mut back).unwrap();
        assert_eq!(back, raw);
    }
}
