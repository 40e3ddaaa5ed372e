//! Records that share one buffer. A decoded archive block hands its records over as spans
//! into its own bytes, so reading an archive allocates once per block (the bytes and two span
//! tables) instead of once per key, value, header list, header name and header value, as
//! owned [`Record`]s would (seven allocations for a record with two headers). Restore produces
//! straight from the [`RecordView`]s a block lends.

use std::ops::Range;

use crate::record::{Record, TimestampType};

mod names;
mod view;

use names::HeaderNames;
use view::view;
pub use view::{Headers, RecordView};

/// Where a field's bytes are in the block's buffer. Blocks are far below 4 GiB (the archive
/// format caps them at 128 MiB), so `u32` positions keep the tables small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn of(self, data: &[u8]) -> &[u8] {
        // In bounds by construction: `BlockBuilder` checked every span against the buffer,
        // which is never shortened afterwards.
        &data[self.start as usize..(self.start + self.len) as usize]
    }
}

/// One record's fields; its headers are `headers[first_header..][..header_count]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    meta: RecordMeta,
    key: Option<Span>,
    value: Option<Span>,
    first_header: u32,
    header_count: u32,
}

/// A header: its name is a span of the block's [`HeaderNames`], its value one of its buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HeaderEntry {
    name: Span,
    value: Option<Span>,
}

/// The fixed-size part of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMeta {
    pub offset: i64,
    /// Milliseconds since the Unix epoch; meaningless when `timestamp_type` is `NotAvailable`.
    pub timestamp: i64,
    pub timestamp_type: TimestampType,
}

/// Why a span could not be added to a block (a bug in the decoder that built it, never
/// something bad input can cause on its own: decoders check lengths first).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    #[error("{what} bytes {start}..{end} lie outside the block's {len} bytes")]
    OutOfBounds {
        what: &'static str,
        start: usize,
        end: usize,
        len: usize,
    },
    #[error("header name is not UTF-8: {0}")]
    NameNotUtf8(std::str::Utf8Error),
    #[error("a header was added before any record")]
    HeaderWithoutRecord,
}

/// Records sharing one buffer, in the order they were added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordBlock {
    data: Vec<u8>,
    entries: Vec<Entry>,
    headers: Vec<HeaderEntry>,
    names: HeaderNames,
}

/// Adds records whose fields are ranges of the block's buffer; lent by [`RecordBlock::decode`].
pub struct BlockBuilder<'a> {
    data: &'a [u8],
    entries: &'a mut Vec<Entry>,
    headers: &'a mut Vec<HeaderEntry>,
    names: &'a mut HeaderNames,
}

impl<'a> BlockBuilder<'a> {
    /// The buffer the ranges point into (borrowed for as long as the builder lives, so a
    /// decoder's cursor can hold it while records are pushed).
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Makes room for `records` more records, so a block with a known count grows once.
    pub fn reserve(&mut self, records: usize) {
        self.entries.reserve(records);
    }

    fn span(&self, what: &'static str, range: Range<usize>) -> Result<Span, BlockError> {
        let out_of_bounds = || BlockError::OutOfBounds {
            what,
            start: range.start,
            end: range.end,
            len: self.data.len(),
        };
        if range.start > range.end || range.end > self.data.len() {
            return Err(out_of_bounds());
        }
        let start = u32::try_from(range.start).map_err(|_| out_of_bounds())?;
        let len = u32::try_from(range.end - range.start).map_err(|_| out_of_bounds())?;
        Ok(Span { start, len })
    }

    /// Adds a record; `None` is null, distinct from an empty range.
    pub fn push_record(
        &mut self,
        meta: RecordMeta,
        key: Option<Range<usize>>,
        value: Option<Range<usize>>,
    ) -> Result<(), BlockError> {
        let key = key.map(|r| self.span("key", r)).transpose()?;
        let value = value.map(|r| self.span("value", r)).transpose()?;
        let first_header =
            u32::try_from(self.headers.len()).map_err(|_| BlockError::OutOfBounds {
                what: "header table",
                start: self.headers.len(),
                end: self.headers.len(),
                len: u32::MAX as usize,
            })?;
        self.entries.push(Entry {
            meta,
            key,
            value,
            first_header,
            header_count: 0,
        });
        Ok(())
    }

    /// Adds a header to the record added last, after the ones it already has.
    pub fn push_header(
        &mut self,
        name: Range<usize>,
        value: Option<Range<usize>>,
    ) -> Result<(), BlockError> {
        let name = self.span("header name", name)?;
        let name = self
            .names
            .intern_bytes(name.of(self.data))
            .map_err(BlockError::NameNotUtf8)?;
        let value = value.map(|r| self.span("header value", r)).transpose()?;
        let entry = self
            .entries
            .last_mut()
            .ok_or(BlockError::HeaderWithoutRecord)?;
        entry.header_count += 1;
        self.headers.push(HeaderEntry { name, value });
        Ok(())
    }
}

impl RecordBlock {
    /// A block over `data`, whose records `decode` adds as ranges of it. `decode`'s error is
    /// returned as is.
    pub fn decode<E>(
        data: Vec<u8>,
        decode: impl FnOnce(&mut BlockBuilder<'_>) -> Result<(), E>,
    ) -> Result<Self, E> {
        let (mut entries, mut headers) = (Vec::new(), Vec::new());
        let mut names = HeaderNames::default();
        decode(&mut BlockBuilder {
            data: &data,
            entries: &mut entries,
            headers: &mut headers,
            names: &mut names,
        })?;
        Ok(Self {
            data,
            entries,
            headers,
            names,
        })
    }

    /// An empty block with room for `bytes` of fields and `records` records.
    pub fn with_capacity(bytes: usize, records: usize) -> Self {
        Self {
            data: Vec::with_capacity(bytes),
            entries: Vec::with_capacity(records),
            headers: Vec::new(),
            names: HeaderNames::default(),
        }
    }

    /// Appends a copy of `record`'s bytes to the buffer and the record to the block.
    pub fn push_owned(&mut self, record: &Record) {
        self.push_copy(RecordView::from(record));
    }

    /// Appends a copy of a borrowed record (from a consumer's message, or another block).
    pub fn push_copy(&mut self, record: RecordView<'_>) {
        self.push_copied(
            RecordMeta {
                offset: record.offset,
                timestamp: record.timestamp,
                timestamp_type: record.timestamp_type,
            },
            record.key,
            record.value,
            record.headers(),
        );
    }

    /// Appends copies of the given fields as one record: one copy of the bytes into the
    /// block's buffer, no allocation of its own (the buffer and tables grow by doubling).
    /// Positions are `u32`: callers hand a block on long before it reaches 4 GiB (kvault's
    /// batches are cut at 4 MiB, and a Kafka record is below 2 GiB).
    pub fn push_copied<'h>(
        &mut self,
        meta: RecordMeta,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: impl IntoIterator<Item = (&'h str, Option<&'h [u8]>)>,
    ) {
        let mut append = |bytes: &[u8]| {
            debug_assert!(self.data.len() + bytes.len() <= u32::MAX as usize);
            let start = self.data.len() as u32;
            self.data.extend_from_slice(bytes);
            Span {
                start,
                len: bytes.len() as u32,
            }
        };
        let key = key.map(&mut append);
        let value = value.map(&mut append);
        let first_header = self.headers.len() as u32;
        for (name, value) in headers {
            let value = value.map(&mut append);
            let name = self.names.intern(name);
            self.headers.push(HeaderEntry { name, value });
        }
        self.entries.push(Entry {
            meta,
            key,
            value,
            first_header,
            header_count: self.headers.len() as u32 - first_header,
        });
    }

    /// Bytes in the block's buffer (what a batch of records is sized by).
    pub fn byte_len(&self) -> usize {
        self.data.len()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The record at `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<RecordView<'_>> {
        self.entries
            .get(index)
            .map(|e| view(e, &self.data, &self.headers, &self.names))
    }

    /// The records, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = RecordView<'_>> + '_ {
        self.entries
            .iter()
            .map(|e| view(e, &self.data, &self.headers, &self.names))
    }

    /// The records in runs of at most `size` (at least 1), in order.
    pub fn chunks(
        &self,
        size: usize,
    ) -> impl Iterator<Item = impl ExactSizeIterator<Item = RecordView<'_>> + '_> + '_ {
        self.entries.chunks(size.max(1)).map(|chunk| {
            chunk
                .iter()
                .map(|e| view(e, &self.data, &self.headers, &self.names))
        })
    }

    /// Keeps only the records `keep` accepts (their bytes stay in the buffer).
    pub fn retain(&mut self, mut keep: impl FnMut(&RecordView<'_>) -> bool) {
        let (data, headers, names) = (&self.data, &self.headers, &self.names);
        self.entries
            .retain(|e| keep(&view(e, data, headers, names)));
    }

    /// Payload bytes of all records (see [`Record::payload_len`]).
    pub fn payload_len(&self) -> u64 {
        self.iter().map(|r| r.payload_len()).sum()
    }

    /// Owned copies of the records.
    pub fn to_records(&self) -> Vec<Record> {
        self.iter().map(|r| r.to_record()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Header;

    fn record(offset: i64) -> Record {
        Record {
            offset,
            timestamp: 1_700_000_000_000 + offset,
            timestamp_type: TimestampType::CreateTime,
            key: (offset % 2 == 0).then(|| format!("k{offset}").into_bytes()),
            value: Some(if offset % 3 == 0 {
                Vec::new()
            } else {
                vec![0, 0xff, 7]
            }),
            headers: vec![
                Header {
                    key: "a".into(),
                    value: None,
                },
                Header {
                    key: String::new(),
                    value: Some(Vec::new()),
                },
                Header {
                    key: "a".into(),
                    value: Some(b"\0".to_vec()),
                },
            ],
        }
    }

    fn block_of(records: &[Record]) -> RecordBlock {
        let mut block = RecordBlock::default();
        for record in records {
            block.push_owned(record);
        }
        block
    }

    #[test]
    fn owned_records_survive_a_block_byte_for_byte() {
        let records: Vec<Record> = (0..6).map(record).collect();
        let block = block_of(&records);
        assert_eq!(block.len(), 6);
        assert_eq!(block.to_records(), records);
        let payload: u64 = records.iter().map(Record::payload_len).sum();
        assert_eq!(block.payload_len(), payload);
        for (view, r) in block.iter().zip(&records) {
            assert_eq!(view.header_count(), r.headers.len());
            assert_eq!(view.headers().len(), r.headers.len());
            assert_eq!(RecordView::from(r).to_record(), *r);
        }
    }

    #[test]
    fn retain_drops_records_and_keeps_the_rest_intact() {
        let records: Vec<Record> = (0..6).map(record).collect();
        let mut block = block_of(&records);
        let chunked: Vec<usize> = block.chunks(4).map(|c| c.len()).collect();
        assert_eq!(chunked, vec![4, 2]);
        block.retain(|r| r.offset % 2 == 1);
        let expected: Vec<Record> = records.into_iter().filter(|r| r.offset % 2 == 1).collect();
        assert_eq!(block.to_records(), expected);
    }

    #[test]
    fn decoded_spans_are_checked_against_the_buffer() {
        const META: RecordMeta = RecordMeta {
            offset: 5,
            timestamp: 0,
            timestamp_type: TimestampType::NotAvailable,
        };
        let block = RecordBlock::decode(b"keyvaluename\xff".to_vec(), |b| {
            b.reserve(1);
            b.push_record(META, Some(0..3), Some(3..8))?;
            b.push_header(8..12, None)?;
            b.push_header(8..8, Some(3..3))
        })
        .unwrap();
        let r = block.iter().next().unwrap();
        assert_eq!((r.key, r.value), (Some(&b"key"[..]), Some(&b"value"[..])));
        let headers: Vec<_> = r.headers().collect();
        assert_eq!(headers, vec![("name", None), ("", Some(&b""[..]))]);

        let refused = |f: fn(&mut BlockBuilder<'_>) -> Result<(), BlockError>| {
            RecordBlock::decode(b"abc\xff".to_vec(), f).unwrap_err()
        };
        assert!(matches!(
            refused(|b| b.push_record(META, Some(2..5), None)),
            BlockError::OutOfBounds { what: "key", .. }
        ));
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = refused(|b| b.push_record(META, None, Some(3..1)));
        assert!(matches!(
            reversed,
            BlockError::OutOfBounds { what: "value", .. }
        ));
        assert_eq!(
            refused(|b| b.push_header(0..1, None)),
            BlockError::HeaderWithoutRecord
        );
        assert!(matches!(
            refused(|b| {
                b.push_record(META, None, None)?;
                b.push_header(2..4, None)
            }),
            BlockError::NameNotUtf8(_)
        ));
    }
}
