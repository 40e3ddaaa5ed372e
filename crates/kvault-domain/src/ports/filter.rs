//! The record-filter port: a CEL expression (the same language and variables as a
//! migration's `filter_expression`) compiled once and then asked about each record.
//! `kvault-kafka` implements it over its transformation code, so the API and CLI can filter
//! what they read out of a backup without knowing CEL.

use std::sync::Arc;

use crate::cel_limits::{BudgetExceeded, EvalBudget};
use crate::error::ValidationError;
use crate::record::Record;

/// Why a filter gave no answer for a record.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FilterFailure {
    /// The expression failed on this record (e.g. `json` on a value that is not JSON, or a
    /// result that is not a bool): the record does not match. The adapter's own error is kept
    /// as the source.
    #[error("{0}")]
    Eval(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The evaluation was stopped by its budget: the read stops.
    #[error("{0}")]
    Budget(BudgetExceeded),
}

/// Failures compare by what they say (an adapter's error need not be comparable).
impl PartialEq for FilterFailure {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Eval(a), Self::Eval(b)) => a.to_string() == b.to_string(),
            (Self::Budget(a), Self::Budget(b)) => a == b,
            _ => false,
        }
    }
}

/// A compiled filter.
pub trait RecordFilter: Send + Sync {
    /// Whether `record` (read from `partition`) matches, evaluated within `budget`.
    fn matches(
        &self,
        partition: i32,
        record: &Record,
        budget: &EvalBudget,
    ) -> Result<bool, FilterFailure>;
}

/// Compiles filter expressions.
pub trait RecordFilters: Send + Sync {
    /// Compiles `expr`; a syntax error, an unknown variable or an expression whose cost
    /// cannot be bounded is a `ValidationError` on the field `filter`.
    fn compile(&self, expr: &str) -> Result<Box<dyn RecordFilter>, ValidationError>;
}
