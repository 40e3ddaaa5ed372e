//! A page of records out of a backup: where to start (partition, offset, time, or the cursor
//! of the previous page), how many, which (a compiled filter), and where the next page starts.
//!
//! Partitions are read in ascending order; without a `partition` the read continues into the
//! next partition when one ends. Reading is blocking: run [`read_page`] on a blocking thread.

use serde::{Deserialize, Serialize};

use crate::browse::view::RecordView;
use crate::error::{DomainResult, ValidationError};
use crate::manifest::Manifest;
use crate::ports::{ReadBounds, RecordFilter, RecordReader};

/// Records per page when the request names none.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest `limit` accepted.
pub const MAX_LIMIT: usize = 10_000;
/// Records a page may examine before it returns (possibly fewer than `limit`, with a `next`
/// cursor), so a filter that matches little cannot hold a request for a whole backup.
pub const MAX_SCANNED: u64 = 1_000_000;

/// Where the next page starts: `partition:offset`, passed back as `cursor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub partition: i32,
    pub from_offset: i64,
}

impl Cursor {
    /// Parses `"<partition>:<offset>"`.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let bad = || ValidationError::new("cursor", s, "must be a `next` value of a previous page");
        let (p, o) = s.split_once(':').ok_or_else(bad)?;
        Ok(Self {
            partition: p.parse().map_err(|_| bad())?,
            from_offset: o.parse().map_err(|_| bad())?,
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.partition, self.from_offset)
    }
}

/// A validated request for one page.
#[derive(Debug, Clone, Default)]
pub struct BrowseQuery {
    /// Only this partition; else every partition, in order.
    pub partition: Option<i32>,
    /// First offset (needs `partition`).
    pub from_offset: Option<i64>,
    /// Only records with a timestamp at or after this (ms since the epoch).
    pub from_timestamp: Option<i64>,
    pub limit: usize,
    /// Where a previous page stopped; wins over `from_offset`.
    pub cursor: Option<Cursor>,
}

impl BrowseQuery {
    /// Checks the raw request fields: `limit` in `1..=MAX_LIMIT` (default [`DEFAULT_LIMIT`]),
    /// `from_offset` only with `partition`, `from_time` as RFC 3339 or epoch milliseconds,
    /// `cursor` in `partition`'s partition.
    pub fn new(
        partition: Option<i32>,
        from_offset: Option<i64>,
        from_time: Option<&str>,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<Self, ValidationError> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(ValidationError::new(
                "limit",
                limit,
                format!("must be between 1 and {MAX_LIMIT}"),
            ));
        }
        if from_offset.is_some() && partition.is_none() {
            return Err(ValidationError::new(
                "from_offset",
                from_offset.unwrap_or_default(),
                "needs `partition`",
            ));
        }
        if from_offset.is_some_and(|o| o < 0) {
            return Err(ValidationError::new(
                "from_offset",
                from_offset.unwrap_or_default(),
                "must be >= 0",
            ));
        }
        let from_timestamp = from_time.map(parse_time).transpose()?;
        let cursor = cursor.map(Cursor::parse).transpose()?;
        if let (Some(c), Some(p)) = (cursor, partition) {
            if c.partition != p {
                return Err(ValidationError::new(
                    "cursor",
                    c,
                    format!("is in partition {}, not `partition` {p}", c.partition),
                ));
            }
        }
        Ok(Self {
            partition,
            from_offset,
            from_timestamp,
            limit,
            cursor,
        })
    }
}

/// RFC 3339 (`2024-05-01T12:00:00Z`) or integer milliseconds since the Unix epoch.
pub fn parse_time(s: &str) -> Result<i64, ValidationError> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            ValidationError::new(
                "from_time",
                s,
                "must be RFC 3339 (e.g. 2024-05-01T12:00:00Z) or epoch milliseconds",
            )
        })
}

/// One page of records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordPage {
    pub backup_id: String,
    /// In partition order, offset order within a partition.
    pub records: Vec<RecordView>,
    /// Pass as `cursor` (with the same other parameters) for the next page; `null` when the
    /// read reached the end.
    pub next: Option<String>,
}

/// Reads one page of `manifest`'s backup. `open` opens a partition's reader with the given
/// bounds (the archive store's `read_partition`, driven from this blocking thread). A record
/// the filter cannot evaluate does not match.
pub fn read_page(
    manifest: &Manifest,
    query: &BrowseQuery,
    filter: Option<&dyn RecordFilter>,
    mut open: impl FnMut(i32, ReadBounds) -> DomainResult<Box<dyn RecordReader>>,
) -> DomainResult<RecordPage> {
    let (start_partition, start_offset) = match query.cursor {
        Some(c) => (Some(c.partition), Some(c.from_offset)),
        None => (query.partition, query.from_offset),
    };
    let mut partitions: Vec<i32> = manifest
        .partitions
        .iter()
        .map(|p| p.partition)
        .filter(|p| query.partition.is_none_or(|only| *p == only))
        .filter(|p| start_partition.is_none_or(|s| *p >= s))
        .collect();
    partitions.sort_unstable();
    let mut records = Vec::new();
    let mut scanned = 0u64;
    for p in partitions {
        let bounds = ReadBounds {
            from_offset: if Some(p) == start_partition {
                start_offset
            } else {
                None
            },
            from_timestamp: query.from_timestamp,
            until_timestamp: None,
        };
        for record in open(p, bounds)? {
            let record = record?;
            scanned += 1;
            let next = Cursor {
                partition: p,
                from_offset: record.offset + 1,
            };
            if filter.is_none_or(|f| f.matches(p, &record).unwrap_or(false)) {
                records.push(RecordView::new(p, &record));
            }
            if records.len() >= query.limit || scanned >= MAX_SCANNED {
                return Ok(RecordPage {
                    backup_id: manifest.backup_id.clone(),
                    records,
                    next: Some(next.to_string()),
                });
            }
        }
    }
    Ok(RecordPage {
        backup_id: manifest.backup_id.clone(),
        records,
        next: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_limits_and_times() {
        assert_eq!(
            BrowseQuery::new(None, None, None, None, None)
                .unwrap()
                .limit,
            DEFAULT_LIMIT
        );
        assert!(BrowseQuery::new(None, None, None, Some(MAX_LIMIT + 1), None).is_err());
        assert!(BrowseQuery::new(None, Some(3), None, None, None).is_err());
        assert_eq!(parse_time("1700000000000").unwrap(), 1_700_000_000_000);
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        assert!(parse_time("yesterday").is_err());
        let c = Cursor::parse("2:17").unwrap();
        assert_eq!(c.to_string(), "2:17");
        assert!(BrowseQuery::new(Some(1), None, None, None, Some("2:17")).is_err());
    }
}
