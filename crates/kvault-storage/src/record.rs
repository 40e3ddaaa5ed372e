//! The byte encoding of one record inside an uncompressed block. Keys, values and header
//! values are copied as bytes (never UTF-8 converted); `-1` lengths mark null.

use kvault_domain::{Header, Record, TimestampType};

use crate::format::{HEADER_RESERVE, MAX_HEADERS_PER_RECORD, MIN_HEADER_LEN, MIN_RECORD_LEN};

const NULL_LEN: i32 = -1;

fn ts_type_id(t: TimestampType) -> u8 {
    match t {
        TimestampType::NotAvailable => 0,
        TimestampType::CreateTime => 1,
        TimestampType::LogAppendTime => 2,
    }
}

/// Bytes `record` takes when encoded, as u64 so oversized records are measured, not wrapped.
pub(crate) fn encoded_len(record: &Record) -> u64 {
    let opt = |b: &Option<Vec<u8>>| 4 + b.as_ref().map_or(0, |v| v.len() as u64);
    let headers: u64 = record
        .headers
        .iter()
        .map(|h| 4 + h.key.len() as u64 + opt(&h.value))
        .sum();
    (MIN_RECORD_LEN as u64 - 8) + opt(&record.key) + opt(&record.value) + headers
}

/// Appends the encoding of `record` to `out`. The caller has checked `encoded_len` against
/// the block limit, so every length fits in its field.
pub(crate) fn encode(record: &Record, out: &mut Vec<u8>) {
    out.extend_from_slice(&record.offset.to_le_bytes());
    out.extend_from_slice(&record.timestamp.to_le_bytes());
    out.push(ts_type_id(record.timestamp_type));
    put_nullable(out, record.key.as_deref());
    put_nullable(out, record.value.as_deref());
    out.extend_from_slice(&(record.headers.len() as u32).to_le_bytes());
    for h in &record.headers {
        out.extend_from_slice(&(h.key.len() as u32).to_le_bytes());
        out.extend_from_slice(h.key.as_bytes());
        put_nullable(out, h.value.as_deref());
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

/// Reads records from an uncompressed block. Every length is checked against the bytes that
/// remain before anything is allocated, so allocations never exceed the block itself.
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

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if n > self.remaining() {
            return Err(format!(
                "{what} needs {n} bytes but only {} remain in the block",
                self.remaining()
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn nullable(&mut self, what: &str) -> Result<Option<Vec<u8>>, String> {
        let len = i32::from_le_bytes(self.array(what)?);
        match len {
            NULL_LEN => Ok(None),
            l if l < 0 => Err(format!("{what} length {l} is negative")),
            l => Ok(Some(self.take(l as usize, what)?.to_vec())),
        }
    }

    /// Decodes the next record.
    pub fn record(&mut self) -> Result<Record, String> {
        let offset = i64::from_le_bytes(self.array("offset")?);
        let timestamp = i64::from_le_bytes(self.array("timestamp")?);
        let timestamp_type = match self.array::<1>("timestamp type")?[0] {
            0 => TimestampType::NotAvailable,
            1 => TimestampType::CreateTime,
            2 => TimestampType::LogAppendTime,
            t => return Err(format!("unknown timestamp type {t}")),
        };
        let key = self.nullable("key")?;
        let value = self.nullable("value")?;
        let count = u32::from_le_bytes(self.array("header count")?) as usize;
        // Bound the Vec before allocating: each header needs at least MIN_HEADER_LEN bytes.
        if count > self.remaining() / MIN_HEADER_LEN {
            return Err(format!(
                "header count {count} cannot fit in the {} bytes that remain",
                self.remaining()
            ));
        }
        if count > MAX_HEADERS_PER_RECORD {
            return Err(format!(
                "header count {count} exceeds the limit of {MAX_HEADERS_PER_RECORD} per record"
            ));
        }
        // Reserve little: a crafted count must not buy memory before real headers decode.
        let mut headers = Vec::with_capacity(count.min(HEADER_RESERVE));
        for i in 0..count {
            let name_len = u32::from_le_bytes(self.array("header name length")?) as usize;
            let name = self.take(name_len, "header name")?;
            let key = std::str::from_utf8(name)
                .map_err(|e| format!("header {i} name is not UTF-8: {e}"))?
                .to_owned();
            let value = self.nullable("header value")?;
            headers.push(Header { key, value });
        }
        Ok(Record {
            offset,
            timestamp,
            timestamp_type,
            key,
            value,
            headers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
                encode(r, &mut buf);
                expected_len += encoded_len(r);
            }
            prop_assert_eq!(buf.len() as u64, expected_len);
            let mut c = Cursor::new(&buf);
            for r in &records {
                prop_assert_eq!(&c.record().unwrap(), r);
            }
            prop_assert_eq!(c.remaining(), 0);
        }

        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut c = Cursor::new(&buf);
            while c.remaining() > 0 {
                if c.record().is_err() { break; }
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
        encode(&r, &mut buf);
        assert_eq!(Cursor::new(&buf).record().unwrap(), r);
        // Patch the second header name ("h") into an invalid UTF-8 byte.
        let pos = buf.iter().rposition(|&b| b == b'h').unwrap();
        buf[pos] = 0xff;
        let err = Cursor::new(&buf).record().unwrap_err();
        assert!(err.contains("not UTF-8"), "{err}");
    }

    /// Hardening finding 12: a count the bytes could back but memory should not is refused,
    /// and an allowed count reserves only a little until headers actually decode.
    #[test]
    fn huge_header_counts_are_refused_and_reservations_stay_small() {
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
        let err = Cursor::new(&block_with(over as u32, over))
            .record()
            .unwrap_err();
        assert!(err.contains("exceeds the limit"), "{err}");

        // Declares the maximum, backs it with bytes, but the last header is cut short: the
        // decode fails without having reserved the declared count up front.
        let mut cut = block_with(MAX_HEADERS_PER_RECORD as u32, MAX_HEADERS_PER_RECORD);
        cut.truncate(cut.len() - 1);
        assert!(Cursor::new(&cut).record().is_err());

        let ok = block_with(3, 3);
        let record = Cursor::new(&ok).record().unwrap();
        assert_eq!(record.headers.len(), 3);
        assert!(record.headers.capacity() <= HEADER_RESERVE);
    }
}
