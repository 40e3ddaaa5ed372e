//! One record as the records route and `kvault cat` show it: bytes as UTF-8 text when they
//! are valid UTF-8, else base64, with a field naming the encoding; null stays null.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::record::{Record, TimestampType};

/// How a byte field was written as a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// The bytes are valid UTF-8 and shown as they are.
    Utf8,
    /// The bytes are not valid UTF-8: standard base64 with padding.
    Base64,
}

/// A header: the name is always text; the value like a key or value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeaderView {
    pub key: String,
    pub value: Option<String>,
    /// `null` when `value` is null.
    pub value_encoding: Option<Encoding>,
}

/// A record read out of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordView {
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// `create_time`, `log_append_time` or `not_available`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub timestamp_type: TimestampType,
    pub key: Option<String>,
    /// `null` when `key` is null.
    pub key_encoding: Option<Encoding>,
    pub value: Option<String>,
    /// `null` when `value` is null (a tombstone).
    pub value_encoding: Option<Encoding>,
    pub headers: Vec<HeaderView>,
}

/// `bytes` as text when valid UTF-8, else base64; `None` stays `None`.
pub fn encode(bytes: Option<&[u8]>) -> (Option<String>, Option<Encoding>) {
    match bytes {
        None => (None, None),
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => (Some(s.to_owned()), Some(Encoding::Utf8)),
            Err(_) => (
                Some(base64::engine::general_purpose::STANDARD.encode(b)),
                Some(Encoding::Base64),
            ),
        },
    }
}

/// The bytes `encode` was given back, `None` for null or for base64 that does not decode.
pub fn decode(text: Option<&str>, encoding: Option<Encoding>) -> Option<Vec<u8>> {
    match (text, encoding) {
        (Some(t), Some(Encoding::Utf8)) => Some(t.as_bytes().to_vec()),
        (Some(t), Some(Encoding::Base64)) => {
            base64::engine::general_purpose::STANDARD.decode(t).ok()
        }
        _ => None,
    }
}

impl RecordView {
    pub fn new(partition: i32, r: &Record) -> Self {
        let (key, key_encoding) = encode(r.key.as_deref());
        let (value, value_encoding) = encode(r.value.as_deref());
        Self {
            partition,
            offset: r.offset,
            timestamp: r.timestamp,
            timestamp_type: r.timestamp_type,
            key,
            key_encoding,
            value,
            value_encoding,
            headers: r
                .headers
                .iter()
                .map(|h| {
                    let (value, value_encoding) = encode(h.value.as_deref());
                    HeaderView {
                        key: h.key.clone(),
                        value,
                        value_encoding,
                    }
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_stays_text_binary_is_base64_null_stays_null() {
        assert_eq!(
            encode(Some(b"hi")),
            (Some("hi".into()), Some(Encoding::Utf8))
        );
        let (t, e) = encode(Some(&[0xff, 0x00, 0x80]));
        assert_eq!(e, Some(Encoding::Base64));
        assert_eq!(decode(t.as_deref(), e), Some(vec![0xff, 0x00, 0x80]));
        assert_eq!(encode(None), (None, None));
    }
}
