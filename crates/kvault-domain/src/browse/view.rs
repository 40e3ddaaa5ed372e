//! One record as the records route and `kvault cat` show it: bytes as UTF-8 text when they
//! are valid UTF-8, else base64, with a field naming the encoding; null stays null. A value
//! may be cut to a cap (`value_truncated`, with its full length in `value_size`).

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
    /// Present and `true` when `value` holds only the first bytes of the value (the page's
    /// value cap; ask with `full_values=true` for all of it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub value_truncated: bool,
    /// The value's full length in bytes, present when `value_truncated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_size: Option<usize>,
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

/// The first `cap` bytes of `bytes`, cut back to a character boundary when `text` (so a cut
/// text value stays text).
fn cut(bytes: &[u8], cap: usize, text: bool) -> &[u8] {
    let mut n = cap.min(bytes.len());
    // A UTF-8 continuation byte is 0b10xx_xxxx: step back to the start of its character.
    while text && n > 0 && n < bytes.len() && bytes[n] & 0xc0 == 0x80 {
        n -= 1;
    }
    &bytes[..n]
}

impl RecordView {
    pub fn new(partition: i32, r: &Record) -> Self {
        Self::capped(partition, r, None)
    }

    /// Like [`new`](Self::new), with a value longer than `cap` bytes cut to `cap`.
    pub fn capped(partition: i32, r: &Record, cap: Option<usize>) -> Self {
        let (key, key_encoding) = encode(r.key.as_deref());
        let full = r.value.as_deref();
        let over = match (full, cap) {
            (Some(v), Some(cap)) if v.len() > cap => Some((v, cap)),
            _ => None,
        };
        let (value, value_encoding) = match over {
            Some((v, cap)) => {
                let text = std::str::from_utf8(v).is_ok();
                let head = cut(v, cap, text);
                match text {
                    true => encode(Some(head)),
                    false => (
                        Some(base64::engine::general_purpose::STANDARD.encode(head)),
                        Some(Encoding::Base64),
                    ),
                }
            }
            None => encode(full),
        };
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
            value_truncated: over.is_some(),
            value_size: over.map(|(v, _)| v.len()),
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

    #[test]
    fn long_values_are_cut_with_their_full_size_and_keep_their_encoding() {
        let record = |v: &[u8]| Record {
            offset: 0,
            timestamp: 0,
            timestamp_type: TimestampType::CreateTime,
            key: None,
            value: Some(v.to_vec()),
            headers: vec![],
        };
        let text = "é".repeat(10); // 20 bytes, 2 per character
        let v = RecordView::capped(0, &record(text.as_bytes()), Some(5));
        assert_eq!(v.value.as_deref(), Some("éé"));
        assert_eq!(v.value_encoding, Some(Encoding::Utf8));
        assert!(v.value_truncated);
        assert_eq!(v.value_size, Some(20));
        let binary = [0xffu8; 20];
        let v = RecordView::capped(0, &record(&binary), Some(6));
        assert_eq!(v.value_encoding, Some(Encoding::Base64));
        assert_eq!(
            decode(v.value.as_deref(), v.value_encoding),
            Some(vec![0xff; 6])
        );
        let v = RecordView::capped(0, &record(b"short"), Some(64));
        assert!(!v.value_truncated && v.value_size.is_none());
        let json = serde_json::to_string(&v).unwrap();
        assert!(!json.contains("value_truncated"), "{json}");
    }
}
