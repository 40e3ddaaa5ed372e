//! Borrowing views of JSON text for masking: an object's members in order, each value as the
//! `RawValue` slice of the original text it was read from (so its byte position is known),
//! and member names borrowed unless they hold escapes.

use std::borrow::Cow;

use serde_json::value::RawValue;

/// The first byte of an object, an array and a string (as numbers, so no brace or quote
/// stands unmatched in this source).
pub(super) const OBJECT: u8 = 0x7b;
pub(super) const ARRAY: u8 = 0x5b;
pub(super) const QUOTE: u8 = 0x22;

/// The first byte of `raw` (JSON text without leading whitespace).
pub(super) fn first(raw: &str) -> Option<u8> {
    raw.as_bytes().first().copied()
}

/// A member name, borrowed from the text unless it holds escapes.
pub(super) struct Name<'a>(pub(super) Cow<'a, str>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Name<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// An object's members in order (duplicates kept), each value borrowed raw.
pub(super) struct Members<'a>(pub(super) Vec<(Name<'a>, &'a RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Members<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(entry) = map.next_entry::<Name<'de>, &'de RawValue>()? {
                    members.push(entry);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(V)
    }
}
