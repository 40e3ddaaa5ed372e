//! The byte encoding of one record inside an uncompressed block. Keys, values and header
//! values are bytes (never UTF-8 converted); `-1` lengths mark null.

use std::ops::Range;

use kvault_domain::record_block::{BlockBuilder, BlockError, RecordMeta, RecordView};
use kvault_domain::TimestampType;

use crate::format::{MAX_HEADERS_PER_RECORD, MIN_HEADER_LEN, MIN_RECORD_LEN};

const NULL_LEN: i32 = -1;

fn ts_type_id(t: TimestampType) -> u8 {
    match t {
        TimestampType::NotAvailable => 0,
        TimestampType::CreateTime => 1,
        TimestampType::LogAppendTime => 2,
    }
}

/// Bytes `record` takes when encoded, as u64 so oversized records are measured, not wrapped.
pub(crate) fn encoded_len(record: &RecordView<'_>) -> u64 {
    let opt = |b: Option<&[u8]>| 4 + b.map_or(0, |v| v.len() as u64);
    let headers: u64 = record
        .headers()
        .map(|(name, value)| 4 + name.len() as u64 + opt(value))
        .sum();
    (MIN_RECORD_LEN as u64 - 8) + opt(record.key) + opt(record.value) + headers
}

/// Appends the encoding of `record` to `out`. The caller has checked `encoded_len` against
/// the block limit, so every length fits in its field.
pub(crate) fn encode(record: &RecordView<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(&record.offset.to_le_bytes());
    out.extend_from_slice(&record.timestamp.to_le_bytes());
    out.push(ts_type_id(record.timestamp_type));
    put_nullable(out, record.key);
    put_nullable(out, record.value);
    out.extend_from_slice(&(record.header_count() as u32).to_le_bytes());
    for (name, value) in record.headers() {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        put_nullable(out, value);
    }
}

fn put_nullable(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => out.extend_from_slice(&NULL_LEN.to_le_bytes()),
        Some(b) => {
            out.extend_from_slice(&(b.len() as i32).to_le_bytes());
            out.extend_from_slice(b);
        }
    }
}

/// Reads records from an uncompressed block into a [`RecordBlock`]: fields become ranges of
/// the block's bytes, nothing is copied. Every length is checked against the bytes that
/// remain, so a crafted length can neither reach past the block nor buy memory.
/// Why a record in a decompressed block could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    #[error("{what} needs {needed} bytes but only {remaining} remain in the block")]
    Truncated {
        what: &'static str,
        needed: usize,
        remaining: usize,
    },
    #[error("{what} length {len} is negative")]
    NegativeLength { what: &'static str, len: i32 },
    #[error("unknown timestamp type {0}")]
    TimestampType(u8),
    #[error("header count {count} cannot fit in the {remaining} bytes that remain")]
    HeaderCount { count: usize, remaining: usize },
    #[error("header count {0} exceeds the limit of {MAX_HEADERS_PER_RECORD} per record")]
    TooManyHeaders(usize),
    #[error("header {index} name is not UTF-8: {source}")]
    HeaderName {
        index: usize,
        #[source]
        source: std::str::Utf8Error,
    },
    /// The block refused the record or header (a range outside its buffer, say).
    #[error(transparent)]
    Block(#[from] BlockError),
}

pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<Range<usize>, RecordError> {
        if n > self.remaining() {
            return Err(RecordError::Truncated {
                what,
                needed: n,
                remaining: self.remaining(),
            });
        }
        let range = self.pos..self.pos + n;
        self.pos += n;
        Ok(range)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], RecordError> {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.buf[self.take(N, what)?]);
        Ok(a)
    }

    fn nullable(&mut self, what: &'static str) -> Result<Option<Range<usize>>, RecordError> {
        let len = i32::from_le_bytes(self.array(what)?);
        match len {
            NULL_LEN => Ok(None),
            l if l < 0 => Err(RecordError::NegativeLength { what, len: l }),
            l => Ok(Some(self.take(l as usize, what)?)),
        }
    }

    /// Decodes the next record into `block` (whose buffer this cursor reads) and returns its
    /// offset and timestamp.
    pub fn record_into(&mut self, block: &mut BlockBuilder<'_>) -> Result<RecordMeta, RecordError> {
        let offset = i64::from_le_bytes(self.array("offset")?);
        let timestamp = i64::from_le_bytes(self.array("timestamp")?);
        let timestamp_type = match self.array::<1>("timestamp type")?[0] {
            0 => TimestampType::NotAvailable,
            1 => TimestampType::CreateTime,
            2 => TimestampType::LogAppendTime,
            t => return Err(RecordError::TimestampType(t)),
        };
        let meta = RecordMeta {
            offset,
            timestamp,
            timestamp_type,
        };
        let key = self.nullable("key")?;
        let value = self.nullable("value")?;
        let count = u32::from_le_bytes(self.array("header count")?) as usize;
        // Each header needs at least MIN_HEADER_LEN bytes; the table grows only as headers
        // actually decode, so the count buys no memory up front.
        if count > self.remaining() / MIN_HEADER_LEN {
            return Err(RecordError::HeaderCount {
                count,
                remaining: self.remaining(),
            });
        }
        if count > MAX_HEADERS_PER_RECORD {
            return Err(RecordError::TooManyHeaders(count));
        }
        block.push_record(meta, key, value)?;
        for i in 0..count {
            let name_len = u32::from_le_bytes(self.array("header name length")?) as usize;
            let name = self.take(name_len, "header name")?;
            let value = self.nullable("header value")?;
            block.push_header(name, value).map_err(|e| match e {
                BlockError::NameNotUtf8(source) => RecordError::HeaderName { index: i, source },
                other => RecordError::Block(other),
            })?;
        }
        Ok(meta)
    }
}

/// Decodes every record in `buf` into one block (tests and tools).
#[cfg(test)]
pub(crate) fn decode_all(
    buf: &[u8],
) -> Result<kvault_domain::record_block::RecordBlock, RecordError> {
    kvault_domain::record_block::RecordBlock::decode(buf.to_vec(), |b| {
        let mut cursor = Cursor::new(b.data());
        while cursor.remaining() > 0 {
            cursor.record_into(b)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvault_domain::{Header, Record};
    use proptest::prelude::*;

    fn bytes() -> impl Strategy<Value = Option<Vec<u8>>> {
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64))
    }

    fn record() -> impl Strategy<Value = Record> {
        (
            any::<i64>(),
            any::<i64>(),
            0..3u8,
            bytes(),
            bytes(),
            proptest::collection::vec((".{0,12}", bytes()), 0..5),
        )
            .prop_map(|(offset, timestamp, t, key, value, headers)| Record {
                offset,
                timestamp,
                timestamp_type: match t {
                    0 => TimestampType::NotAvailable,
                    1 => TimestampType::CreateTime,
                    _ => TimestampType::LogAppendTime,
                },
                key,
                value,
                headers: headers
                    .into_iter()
                    .map(|(key, value)| Header { key, value })
                    .collect(),
            })
    }

    proptest! {
        #[test]
        fn records_round_trip(records in proptest::collection::vec(record(), 0..8)) {
            let mut buf = Vec::new();
            let mut expected_len = 0;
            for r in &records {
                encode(&r.into(), &mut buf);
                expected_len += encoded_len(&r.into());
            }
            prop_assert_eq!(buf.len() as u64, expected_len);
            prop_assert_eq!(decode_all(&buf).unwrap().to_records(), records);
        }

        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(block) = decode_all(&buf) {
                // Whatever decoded can be read back without going past the bytes.
                prop_assert!(block.payload_len() <= buf.len() as u64);
            }
        }
    }

    #[test]
    fn null_and_empty_are_distinct_and_bad_names_are_refused() {
        let r = Record {
            offset: 1,
            timestamp: 2,
            timestamp_type: TimestampType::CreateTime,
            key: None,
            value: Some(vec![]),
            headers: vec![
                Header {
                    key: String::new(),
                    value: None,
                },
                Header {
                    key: "h".into(),
                    value: Some(vec![]),
                },
            ],
        };
        let mut buf = Vec::new();
        encode(&(&r).into(), &mut buf);
        assert_eq!(decode_all(&buf).unwrap().to_records(), vec![r]);
        // Patch the second header name ("h") into an invalid UTF-8 byte.
        let pos = buf.iter().rposition(|&b| b == b'h').unwrap();
        buf[pos] = 0xff;
        let err = decode_all(&buf).unwrap_err();
        assert!(
            matches!(err, RecordError::HeaderName { index: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }

    /// A count the bytes could back but memory should not is refused,
    /// and an allowed count reserves nothing until headers actually decode.
    #[test]
    fn huge_header_counts_are_refused() {
        let empty_header = [0u8; MIN_HEADER_LEN];
        let block_with = |declared: u32, present: usize| {
            let mut buf = vec![0u8; 17];
            buf[16] = 1; // CreateTime
            buf.extend_from_slice(&(-1i32).to_le_bytes());
            buf.extend_from_slice(&(-1i32).to_le_bytes());
            buf.extend_from_slice(&declared.to_le_bytes());
            for _ in 0..present {
                buf.extend_from_slice(&empty_header);
            }
            buf
        };
        let over = MAX_HEADERS_PER_RECORD + 1;
        let err = decode_all(&block_with(over as u32, over)).unwrap_err();
        assert!(
            matches!(err, RecordError::TooManyHeaders(n) if n == over),
            "{err}"
        );

        // Declares the maximum, backs it with bytes, but the last header is cut short: the
        // decode fails without having reserved the declared count up front.
        let mut cut = block_with(MAX_HEADERS_PER_RECORD as u32, MAX_HEADERS_PER_RECORD);
        cut.truncate(cut.len() - 1);
        assert!(decode_all(&cut).is_err());

        let ok = decode_all(&block_with(3, 3)).unwrap();
        assert_eq!(ok.iter().next().map(|r| r.header_count()), Some(3));
    }
}
