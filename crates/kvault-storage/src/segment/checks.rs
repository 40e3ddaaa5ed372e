//! The checks of a block header that need nothing but the header (and the offset before it):
//! lengths within the format's limits, counts and ranges consistent, offsets increasing. They
//! run before anything is allocated for the block.

use crate::error::{Location, Result, StorageError};
use crate::format::{BlockHeader, MAX_BLOCK_COMPRESSED_LEN, MAX_BLOCK_RAW_LEN, MIN_RECORD_LEN};

/// Header fields must be within limits and consistent before any allocation.
pub(super) fn check_header(h: &BlockHeader, at: &Location, prev_offset: Option<i64>) -> Result<()> {
    let limit = |what, value: u64, max: u64| {
        if value > max {
            Err(StorageError::LimitExceeded {
                at: at.clone(),
                what,
                value,
                max,
            })
        } else {
            Ok(())
        }
    };
    limit(
        "block raw length",
        h.raw_len.into(),
        MAX_BLOCK_RAW_LEN.into(),
    )?;
    limit(
        "block compressed length",
        h.compressed_len.into(),
        MAX_BLOCK_COMPRESSED_LEN.into(),
    )?;
    limit(
        "block record count",
        h.record_count.into(),
        u64::from(h.raw_len) / MIN_RECORD_LEN as u64,
    )?;
    let mismatch = |what, expected: String, found: String| StorageError::Mismatch {
        at: at.clone(),
        what,
        expected,
        found,
    };
    if h.record_count == 0 {
        return Err(mismatch(
            "block record count",
            "at least 1".into(),
            "0".into(),
        ));
    }
    if h.last_offset < h.first_offset
        || u64::from(h.record_count) - 1 > h.last_offset.abs_diff(h.first_offset)
    {
        return Err(mismatch(
            "block offset range",
            format!("room for {} records", h.record_count),
            format!("{}..={}", h.first_offset, h.last_offset),
        ));
    }
    if h.max_timestamp < h.min_timestamp {
        return Err(mismatch(
            "block timestamp range",
            "min <= max".into(),
            format!("{}..={}", h.min_timestamp, h.max_timestamp),
        ));
    }
    if let Some(prev) = prev_offset {
        if h.first_offset <= prev {
            return Err(StorageError::OffsetOrder {
                at: at.clone(),
                previous: prev,
                found: h.first_offset,
            });
        }
    }
    Ok(())
}
