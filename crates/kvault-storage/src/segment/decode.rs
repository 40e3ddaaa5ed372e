//! Decodes an uncompressed block's records and checks them against the block header.

use kvault_domain::record_block::RecordBlock;

use crate::error::{Location, Result, StorageError};
use crate::format::BlockHeader;
use crate::record::Cursor;

/// Decodes a block's records (as ranges of `raw`, which the block takes over) and checks them
/// against its header.
pub(super) fn decode_block(raw: Vec<u8>, h: &BlockHeader, at: &Location) -> Result<RecordBlock> {
    RecordBlock::decode(raw, |block| {
        let mut cursor = Cursor::new(block.data());
        // The reservation is capped: the count is trusted only as far as records decode.
        block.reserve((h.record_count as usize).min(4096));
        let mut prev: Option<i64> = None;
        let (mut min_ts, mut max_ts) = (i64::MAX, i64::MIN);
        for index in 0..u64::from(h.record_count) {
            let r = cursor
                .record_into(block)
                .map_err(|source| StorageError::BadRecord {
                    at: at.clone(),
                    index,
                    source,
                })?;
            let expected_first = prev.is_none() && r.offset != h.first_offset;
            if expected_first {
                return Err(StorageError::Mismatch {
                    at: at.clone(),
                    what: "first record offset",
                    expected: h.first_offset.to_string(),
                    found: r.offset.to_string(),
                });
            }
            if let Some(p) = prev {
                if r.offset <= p {
                    return Err(StorageError::OffsetOrder {
                        at: at.clone(),
                        previous: p,
                        found: r.offset,
                    });
                }
            }
            prev = Some(r.offset);
            min_ts = min_ts.min(r.timestamp);
            max_ts = max_ts.max(r.timestamp);
        }
        let checks = [
            (
                "bytes after the last record",
                0u64.to_string(),
                cursor.remaining().to_string(),
            ),
            (
                "last record offset",
                h.last_offset.to_string(),
                prev.map_or_else(String::new, |p| p.to_string()),
            ),
            (
                "block timestamp range",
                format!("{}..={}", h.min_timestamp, h.max_timestamp),
                format!("{min_ts}..={max_ts}"),
            ),
        ];
        for (what, expected, found) in checks {
            if expected != found {
                return Err(StorageError::Mismatch {
                    at: at.clone(),
                    what,
                    expected,
                    found,
                });
            }
        }
        Ok(())
    })
}
