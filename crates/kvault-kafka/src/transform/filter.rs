//! The domain's [`RecordFilters`] port over the migration filter: the same CEL language and
//! variables as `transformation.filter_expression`, for reading records out of a backup.

use kvault_domain::cel_limits::EvalBudget;
use kvault_domain::migrate::MessageTransformation;
use kvault_domain::ports::{FilterFailure, RecordFilter, RecordFilters};
use kvault_domain::record::Record;
use kvault_domain::ValidationError;

use super::{CompiledTransformation, Decision, Undecided};

/// The field a compile error names on the records route and `kvault cat`.
pub const BROWSE_FILTER_FIELD: &str = "filter";

/// Compiles CEL record filters.
#[derive(Debug, Clone, Copy, Default)]
pub struct CelFilters;

struct CelFilter(CompiledTransformation);

impl RecordFilter for CelFilter {
    fn matches(
        &self,
        partition: i32,
        record: &Record,
        budget: &EvalBudget,
    ) -> Result<bool, FilterFailure> {
        match self.0.decide(record, partition, Some(budget)) {
            Ok(Decision::Drop) => Ok(false),
            Ok(Decision::Keep(_)) => Ok(true),
            Err(Undecided::Failed(e)) => Err(FilterFailure::Eval(std::sync::Arc::new(e))),
            Err(Undecided::OverBudget(_, why)) => Err(FilterFailure::Budget(why)),
        }
    }
}

impl RecordFilters for CelFilters {
    fn compile(&self, expr: &str) -> Result<Box<dyn RecordFilter>, ValidationError> {
        let t = MessageTransformation {
            filter_expression: Some(expr.to_owned()),
            ..MessageTransformation::default()
        };
        let compiled = CompiledTransformation::compile(&t).map_err(|e| ValidationError {
            field: BROWSE_FILTER_FIELD.to_owned(),
            ..e
        })?;
        Ok(Box::new(CelFilter(compiled)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvault_domain::record::{Header, TimestampType};

    fn rec(value: &str, header: &str) -> Record {
        Record {
            offset: 5,
            timestamp: 1,
            timestamp_type: TimestampType::CreateTime,
            key: None,
            value: Some(value.as_bytes().to_vec()),
            headers: vec![Header {
                key: "h".into(),
                value: Some(header.as_bytes().to_vec()),
            }],
        }
    }

    #[test]
    fn filters_on_headers_and_json_and_refuses_bad_expressions() {
        let f = CelFilters.compile("headers['h'] == 'x'").unwrap();
        let b = EvalBudget::unbounded();
        assert!(f.matches(0, &rec("{}", "x"), &b).unwrap());
        assert!(!f.matches(0, &rec("{}", "y"), &b).unwrap());
        let f = CelFilters.compile("is_json && json.n == 2").unwrap();
        assert!(f.matches(0, &rec(r#"{"n":2}"#, ""), &b).unwrap());
        assert!(!f.matches(0, &rec("nope", ""), &b).unwrap());
        let err = CelFilters.compile("value.contains(").err().unwrap();
        assert_eq!(err.field, BROWSE_FILTER_FIELD);
        assert!(CelFilters.compile("nosuchvar == 1").is_err());
    }
}
