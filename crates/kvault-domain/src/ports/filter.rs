//! The record-filter port: a CEL expression (the same language and variables as a
//! migration's `filter_expression`) compiled once and then asked about each record.
//! `kvault-kafka` implements it over its transformation code, so the API and CLI can filter
//! what they read out of a backup without knowing CEL.

use crate::error::ValidationError;
use crate::record::Record;

/// A compiled filter.
pub trait RecordFilter: Send + Sync {
    /// Whether `record` (read from `partition`) matches. `Err` carries the evaluation error
    /// (e.g. `json` on a value that is not JSON, or a result that is not a bool).
    fn matches(&self, partition: i32, record: &Record) -> Result<bool, String>;
}

/// Compiles filter expressions.
pub trait RecordFilters: Send + Sync {
    /// Compiles `expr`; a syntax error or an unknown variable is a `ValidationError` on the
    /// field `filter`.
    fn compile(&self, expr: &str) -> Result<Box<dyn RecordFilter>, ValidationError>;
}
