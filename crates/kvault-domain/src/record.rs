//! One Kafka record as kvault keeps it: everything the broker gave us, as bytes.

use serde::{Deserialize, Serialize};

/// How the broker set a record's timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampType {
    NotAvailable,
    CreateTime,
    LogAppendTime,
}

/// A record header. Kafka orders headers and allows repeated names, so they live in a `Vec`.
/// The value is nullable and distinct from empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

/// A record read from (or to be written to) a partition. `key` and `value` are `None` for null,
/// which is distinct from `Some(vec![])`: tombstones and null keys must survive a round trip.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Record {
    pub offset: i64,
    /// Milliseconds since the Unix epoch; meaningless when `timestamp_type` is `NotAvailable`.
    pub timestamp: i64,
    pub timestamp_type: TimestampType,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
}

impl Record {
    /// Bytes of payload this record carries (key + value + header names and values): the
    /// "raw size" that archive and progress figures are measured in.
    pub fn payload_len(&self) -> u64 {
        let key = self.key.as_ref().map_or(0, Vec::len);
        let value = self.value.as_ref().map_or(0, Vec::len);
        let headers: usize = self
            .headers
            .iter()
            .map(|h| h.key.len() + h.value.as_ref().map_or(0, Vec::len))
            .sum();
        (key + value + headers) as u64
    }
}
