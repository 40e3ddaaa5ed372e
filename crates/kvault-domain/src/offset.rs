//! Where a read starts or ends: `"earliest"`, `"latest"`, or an absolute offset.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An offset as the API accepts it: `"earliest"`, `"latest"` or a non-negative number
/// (a JSON number, or a string holding one, since Postman users often quote it).
/// OpenAPI schema of a start offset: `"earliest"`, `"latest"` or a non-negative offset.
#[cfg(feature = "openapi")]
pub fn start_offset_schema() -> utoipa::openapi::schema::Schema {
    offset_schema(&["earliest", "latest"])
}

/// OpenAPI schema of an end offset: `"latest"` or a non-negative offset.
#[cfg(feature = "openapi")]
pub fn end_offset_schema() -> utoipa::openapi::schema::Schema {
    offset_schema(&["latest"])
}

#[cfg(feature = "openapi")]
fn offset_schema(names: &[&str]) -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(names.iter().copied())),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0)),
        )
        .into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Offset {
    #[default]
    Earliest,
    Latest,
    At(i64),
}

impl Offset {
    /// Resolves against a partition's watermarks at the moment of the cut.
    /// Numeric offsets are clamped into `[low, high]`: retention may have removed the start,
    /// and nothing past the high watermark exists yet.
    pub fn resolve(self, low: i64, high: i64) -> i64 {
        match self {
            Offset::Earliest => low,
            Offset::Latest => high,
            Offset::At(n) => n.clamp(low, high),
        }
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Offset::Earliest => f.write_str("earliest"),
            Offset::Latest => f.write_str("latest"),
            Offset::At(n) => write!(f, "{n}"),
        }
    }
}

impl std::str::FromStr for Offset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "earliest" => Ok(Offset::Earliest),
            "latest" => Ok(Offset::Latest),
            other => match other.parse::<i64>() {
                Ok(n) if n >= 0 => Ok(Offset::At(n)),
                Ok(n) => Err(format!("offset must not be negative, got {n}")),
                Err(_) => Err(format!(
                    "expected \"earliest\", \"latest\" or a non-negative number, got \"{other}\""
                )),
            },
        }
    }
}

impl Serialize for Offset {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Offset::At(n) => serializer.serialize_i64(*n),
            other => serializer.serialize_str(&other.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Offset {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OffsetVisitor;

        impl Visitor<'_> for OffsetVisitor {
            type Value = Offset;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"earliest\", \"latest\" or a non-negative offset")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Offset, E> {
                if v < 0 {
                    return Err(E::custom(format!("offset must not be negative, got {v}")));
                }
                Ok(Offset::At(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Offset, E> {
                i64::try_from(v)
                    .map(Offset::At)
                    .map_err(|_| E::custom(format!("offset {v} is out of range")))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Offset, E> {
                Err(E::custom(format!("offset must be a whole number, got {v}")))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Offset, E> {
                v.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_any(OffsetVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keywords_numbers_and_numeric_strings() {
        let parse = |s: &str| serde_json::from_str::<Offset>(s);
        assert_eq!(parse("\"earliest\"").unwrap(), Offset::Earliest);
        assert_eq!(parse("\"latest\"").unwrap(), Offset::Latest);
        assert_eq!(parse("42").unwrap(), Offset::At(42));
        assert_eq!(parse("\"42\"").unwrap(), Offset::At(42));
        assert!(parse("-1").is_err());
        assert!(parse("\"soonest\"").is_err());
        assert!(parse("1.5").is_err());
    }

    #[test]
    fn serializes_back_to_the_documented_shape() {
        assert_eq!(serde_json::to_string(&Offset::At(7)).unwrap(), "7");
        assert_eq!(
            serde_json::to_string(&Offset::Latest).unwrap(),
            "\"latest\""
        );
    }

    #[test]
    fn resolve_clamps_into_the_watermarks() {
        assert_eq!(Offset::At(5).resolve(10, 20), 10);
        assert_eq!(Offset::At(25).resolve(10, 20), 20);
        assert_eq!(Offset::At(15).resolve(10, 20), 15);
        assert_eq!(Offset::Earliest.resolve(10, 20), 10);
        assert_eq!(Offset::Latest.resolve(10, 20), 20);
    }
}
