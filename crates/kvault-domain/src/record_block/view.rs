//! [`RecordView`]: one record borrowed from a [`RecordBlock`](super::RecordBlock) (its fields
//! are ranges of the block's buffer) or from an owned [`Record`], and its [`Headers`].

use crate::record::{Header, Record, TimestampType};

use super::{Entry, HeaderEntry, HeaderNames};

pub(super) fn view<'a>(
    e: &Entry,
    data: &'a [u8],
    headers: &'a [HeaderEntry],
    names: &'a HeaderNames,
) -> RecordView<'a> {
    let first = e.first_header as usize;
    RecordView {
        offset: e.meta.offset,
        timestamp: e.meta.timestamp,
        timestamp_type: e.meta.timestamp_type,
        key: e.key.map(|s| s.of(data)),
        value: e.value.map(|s| s.of(data)),
        headers: HeaderSource::Block {
            data,
            names,
            entries: &headers[first..first + e.header_count as usize],
        },
    }
}

/// One record, borrowed from a [`RecordBlock`] or from an owned [`Record`].
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    pub offset: i64,
    pub timestamp: i64,
    pub timestamp_type: TimestampType,
    /// `None` is null, distinct from empty.
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    headers: HeaderSource<'a>,
}

#[derive(Debug, Clone, Copy)]
enum HeaderSource<'a> {
    Block {
        data: &'a [u8],
        names: &'a HeaderNames,
        entries: &'a [HeaderEntry],
    },
    Owned(&'a [Header]),
}

impl<'a> From<&'a Record> for RecordView<'a> {
    fn from(r: &'a Record) -> Self {
        Self {
            offset: r.offset,
            timestamp: r.timestamp,
            timestamp_type: r.timestamp_type,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            headers: HeaderSource::Owned(&r.headers),
        }
    }
}

impl<'a> RecordView<'a> {
    /// The headers in order, as (name, value); a `None` value is null, distinct from empty.
    pub fn headers(&self) -> Headers<'a> {
        Headers {
            source: self.headers,
            next: 0,
        }
    }

    pub fn header_count(&self) -> usize {
        match self.headers {
            HeaderSource::Block { entries, .. } => entries.len(),
            HeaderSource::Owned(headers) => headers.len(),
        }
    }

    /// Payload bytes (see [`Record::payload_len`]).
    pub fn payload_len(&self) -> u64 {
        // From the lengths alone: no header name needs to be read back as text.
        let headers: usize = match self.headers {
            HeaderSource::Block { entries, .. } => entries
                .iter()
                .map(|h| (h.name.len + h.value.map_or(0, |v| v.len)) as usize)
                .sum(),
            HeaderSource::Owned(headers) => headers
                .iter()
                .map(|h| h.key.len() + h.value.as_ref().map_or(0, Vec::len))
                .sum(),
        };
        (self.key.map_or(0, <[u8]>::len) + self.value.map_or(0, <[u8]>::len) + headers) as u64
    }

    /// An owned copy.
    pub fn to_record(&self) -> Record {
        Record {
            offset: self.offset,
            timestamp: self.timestamp,
            timestamp_type: self.timestamp_type,
            key: self.key.map(<[u8]>::to_vec),
            value: self.value.map(<[u8]>::to_vec),
            headers: self
                .headers()
                .map(|(key, value)| Header {
                    key: key.to_owned(),
                    value: value.map(<[u8]>::to_vec),
                })
                .collect(),
        }
    }
}

/// A record's headers in order, as (name, value).
#[derive(Debug, Clone)]
pub struct Headers<'a> {
    source: HeaderSource<'a>,
    next: usize,
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a str, Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        let item = match self.source {
            HeaderSource::Block {
                data,
                names,
                entries,
            } => entries
                .get(self.next)
                .map(|h| (names.get(h.name), h.value.map(|s| s.of(data)))),
            HeaderSource::Owned(headers) => headers
                .get(self.next)
                .map(|h| (h.key.as_str(), h.value.as_deref())),
        };
        self.next += usize::from(item.is_some());
        item
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let total = match self.source {
            HeaderSource::Block { entries, .. } => entries.len(),
            HeaderSource::Owned(headers) => headers.len(),
        };
        let left = total - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Headers<'_> {}
