//! A page of records out of a backup: where to start (partition, offset, time, or the cursor
//! of the previous page), how many, which (a compiled filter), and where the next page starts.
//!
//! Partitions are read in ascending order; without a `partition` the read continues into the
//! next partition when one ends. A page ends at `limit` records, at `max_bytes` of encoded
//! records, after [`MAX_SCANNED`] records examined, or when its [`EvalBudget`] runs out,
//! whichever comes first, and says which (`truncated_by`). Values longer than `value_cap`
//! are cut. Reading is blocking: run [`stream_page`] / [`read_page`] on a blocking thread.

use serde::{Deserialize, Serialize};

use crate::browse::view::RecordView;
use crate::cel_limits::{BudgetExceeded, EvalBudget};
use crate::error::{DomainResult, ValidationError};
use crate::manifest::Manifest;
use crate::ports::{FilterFailure, ReadBounds, RecordFilter, RecordReader};
use crate::record::Record;

/// Records per page when the request names none.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest `limit` accepted.
pub const MAX_LIMIT: usize = 10_000;
/// Records a page may examine before it returns (possibly fewer than `limit`, with a `next`
/// cursor), so a filter that matches little cannot hold a request for a whole backup.
pub const MAX_SCANNED: u64 = 1_000_000;
/// Encoded bytes a page holds at most unless configured otherwise.
pub const DEFAULT_PAGE_BYTES: usize = 4 << 20;
/// Values longer than this (bytes) are cut unless full values are asked for.
pub const DEFAULT_VALUE_CAP: usize = 64 << 10;

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
    /// The page ends before a record that would take it past this many encoded bytes (a page
    /// holds at least one record).
    pub max_bytes: usize,
    /// Values longer than this many bytes are cut (`value_truncated`); `None`: full values.
    pub value_cap: Option<usize>,
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
            max_bytes: DEFAULT_PAGE_BYTES,
            value_cap: None,
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

/// Why a page ended before the end of the read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TruncatedBy {
    /// `limit` records.
    Limit,
    /// The page's byte budget.
    Bytes,
    /// [`MAX_SCANNED`] records examined (a filter that matches little).
    Scan,
    /// The request's time budget.
    Time,
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
    /// Why the page ended early (`null` when the read reached the end).
    #[serde(default)]
    pub truncated_by: Option<TruncatedBy>,
}

/// How a page ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageEnd {
    pub next: Option<String>,
    pub truncated_by: Option<TruncatedBy>,
    /// Records handed to the sink.
    pub sent: usize,
    /// Set when the budget ran out (or was cancelled) before the read could go on.
    pub budget: Option<BudgetExceeded>,
}

/// Where a page's records go, one at a time.
pub trait PageSink {
    /// Takes `record` if it fits in `room` more bytes (or `first` is set: a page holds at
    /// least one record).
    fn push(&mut self, record: RecordView, room: usize, first: bool) -> Pushed;
}

/// What a [`PageSink`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Taken; it used this many bytes of the page.
    Taken(usize),
    /// It does not fit: the page ends before it.
    NoRoom,
    /// Nobody is reading any more: stop.
    Gone,
}

/// Reads one page of `manifest`'s backup into `sink`. `open` opens a partition's reader with
/// the given bounds (the archive store's `read_partition`, driven from this blocking thread).
/// A record the filter cannot evaluate does not match; the budget is checked between records
/// and inside the filter.
pub fn stream_page(
    manifest: &Manifest,
    query: &BrowseQuery,
    filter: Option<&dyn RecordFilter>,
    budget: &EvalBudget,
    sink: &mut dyn PageSink,
    mut open: impl FnMut(i32, ReadBounds) -> DomainResult<Box<dyn RecordReader>>,
) -> DomainResult<PageEnd> {
    let (start_partition, start_offset) = match query.cursor {
        Some(c) => (Some(c.partition), Some(c.from_offset)),
        None => (query.partition, query.from_offset),
    };
    let partitions = partitions_to_read(manifest, query.partition, start_partition);
    let (mut sent, mut bytes, mut scanned) = (0usize, 0usize, 0u64);
    let end = |next: Cursor, by: Option<TruncatedBy>, sent, budget| PageEnd {
        next: Some(next.to_string()),
        truncated_by: by,
        sent,
        budget,
    };
    for p in partitions {
        let bounds = ReadBounds {
            from_offset: (Some(p) == start_partition)
                .then_some(start_offset)
                .flatten(),
            from_timestamp: query.from_timestamp,
            until_timestamp: None,
        };
        for record in open(p, bounds)? {
            let record = record?;
            let here = Cursor {
                partition: p,
                from_offset: record.offset,
            };
            let matched = match matches(filter, p, &record, budget) {
                Ok(matched) => matched,
                Err(why) => return Ok(end(here, Some(TruncatedBy::Time), sent, Some(why))),
            };
            scanned += 1;
            if matched {
                let view = RecordView::capped(p, &record, query.value_cap);
                let room = query.max_bytes.saturating_sub(bytes);
                match sink.push(view, room, sent == 0) {
                    Pushed::Taken(used) => (sent, bytes) = (sent + 1, bytes + used),
                    Pushed::NoRoom => return Ok(end(here, Some(TruncatedBy::Bytes), sent, None)),
                    Pushed::Gone => {
                        let gone = Some(BudgetExceeded::Cancelled);
                        return Ok(end(here, None, sent, gone));
                    }
                }
            }
            let after = Cursor {
                from_offset: record.offset + 1,
                ..here
            };
            if sent >= query.limit {
                return Ok(end(after, Some(TruncatedBy::Limit), sent, None));
            }
            if scanned >= MAX_SCANNED {
                return Ok(end(after, Some(TruncatedBy::Scan), sent, None));
            }
        }
    }
    Ok(PageEnd {
        next: None,
        truncated_by: None,
        sent,
        budget: None,
    })
}

/// The partitions a page reads, in order: the one asked for or all, from the cursor's on.
fn partitions_to_read(manifest: &Manifest, only: Option<i32>, from: Option<i32>) -> Vec<i32> {
    let mut partitions: Vec<i32> = manifest
        .partitions
        .iter()
        .map(|p| p.partition)
        .filter(|p| only.is_none_or(|only| *p == only))
        .filter(|p| from.is_none_or(|s| *p >= s))
        .collect();
    partitions.sort_unstable();
    partitions
}

/// Whether `record` is on the page. A record the filter cannot evaluate, or whose evaluation
/// alone is too costly, does not match; a spent time budget or a cancel ends the page.
fn matches(
    filter: Option<&dyn RecordFilter>,
    partition: i32,
    record: &Record,
    budget: &EvalBudget,
) -> Result<bool, BudgetExceeded> {
    budget.check()?;
    let Some(filter) = filter else {
        return Ok(true);
    };
    match filter.matches(partition, record, budget) {
        Ok(matched) => Ok(matched),
        Err(FilterFailure::Eval(_))
        | Err(FilterFailure::Budget(BudgetExceeded::Steps | BudgetExceeded::Bytes)) => Ok(false),
        Err(FilterFailure::Budget(why)) => Err(why),
    }
}

/// Collects records into a `Vec`, counting each by its encoded length.
struct Collect(Vec<RecordView>);

impl PageSink for Collect {
    fn push(&mut self, record: RecordView, room: usize, first: bool) -> Pushed {
        let used = serde_json::to_vec(&record).map_or(0, |b| b.len());
        if used > room && !first {
            return Pushed::NoRoom;
        }
        self.0.push(record);
        Pushed::Taken(used)
    }
}

/// Reads one page into memory, with no deadline (see [`stream_page`]).
pub fn read_page(
    manifest: &Manifest,
    query: &BrowseQuery,
    filter: Option<&dyn RecordFilter>,
    open: impl FnMut(i32, ReadBounds) -> DomainResult<Box<dyn RecordReader>>,
) -> DomainResult<RecordPage> {
    let mut sink = Collect(Vec::new());
    let budget = EvalBudget::unbounded();
    let end = stream_page(manifest, query, filter, &budget, &mut sink, open)?;
    Ok(RecordPage {
        backup_id: manifest.backup_id.clone(),
        records: sink.0,
        next: end.next,
        truncated_by: end.truncated_by,
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
