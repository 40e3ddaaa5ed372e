//! Block compression codecs an archive can use, and their levels.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// The documented `CompressionType`, plus `zstd` (an extension: the best ratio per CPU second).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum CompressionType {
    None,
    #[default]
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl CompressionType {
    pub const ALL: [CompressionType; 5] = [
        CompressionType::None,
        CompressionType::Gzip,
        CompressionType::Snappy,
        CompressionType::Lz4,
        CompressionType::Zstd,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CompressionType::None => "none",
            CompressionType::Gzip => "gzip",
            CompressionType::Snappy => "snappy",
            CompressionType::Lz4 => "lz4",
            CompressionType::Zstd => "zstd",
        }
    }

    /// The range of levels the codec accepts, or `None` when it has no levels.
    pub fn level_range(self) -> Option<(i32, i32)> {
        match self {
            CompressionType::Gzip => Some((0, 9)),
            CompressionType::Zstd => Some((1, 22)),
            _ => None,
        }
    }

    /// The level used when the request names none.
    pub fn default_level(self) -> Option<i32> {
        match self {
            CompressionType::Gzip => Some(6),
            CompressionType::Zstd => Some(3),
            _ => None,
        }
    }
}

impl fmt::Display for CompressionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CompressionType {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CompressionType::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                ValidationError::new(
                    "compression",
                    s,
                    "unknown codec; expected one of none, gzip, snappy, lz4, zstd",
                )
            })
    }
}

/// A codec with its effective level: what an archive records and its blocks are written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compression {
    pub codec: CompressionType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<i32>,
}

impl Compression {
    /// Checks the level against the codec and fills in the codec's default level.
    pub fn new(codec: CompressionType, level: Option<i32>) -> Result<Self, ValidationError> {
        let level = match (codec.level_range(), level) {
            (None, Some(l)) => {
                return Err(ValidationError::new(
                    "compression_level",
                    l,
                    format!("codec {codec} has no compression levels"),
                ))
            }
            (None, None) => None,
            (Some((lo, hi)), Some(l)) if !(lo..=hi).contains(&l) => {
                return Err(ValidationError::new(
                    "compression_level",
                    l,
                    format!("{codec} levels range from {lo} to {hi}"),
                ))
            }
            (Some(_), Some(l)) => Some(l),
            (Some(_), None) => codec.default_level(),
        };
        Ok(Self { codec, level })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_checked_per_codec() {
        assert_eq!(
            Compression::new(CompressionType::Zstd, None).unwrap().level,
            Some(3)
        );
        assert!(Compression::new(CompressionType::Zstd, Some(23)).is_err());
        assert!(Compression::new(CompressionType::Lz4, Some(1)).is_err());
        assert_eq!(
            Compression::new(CompressionType::Snappy, None)
                .unwrap()
                .level,
            None
        );
    }

    #[test]
    fn unknown_codec_names_field_and_value() {
        let err = "brotli".parse::<CompressionType>().unwrap_err();
        assert_eq!(err.field, "compression");
        assert_eq!(err.value, "brotli");
    }
}
