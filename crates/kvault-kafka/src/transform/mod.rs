//! Per-message transformations for migrations: a CEL filter, a CEL key rewrite and appended
//! headers, compiled once per request and applied to each record.
//!
//! # Variables visible to expressions
//!
//! | name            | CEL type            | meaning                                                        |
//! |-----------------|---------------------|----------------------------------------------------------------|
//! | `key`           | `string`            | the key as lossy UTF-8 (`""` when the key is null)             |
//! | `value`         | `string`            | the value as lossy UTF-8 (`""` when null / tombstone)          |
//! | `key_bytes`     | `bytes`             | the key bytes, unchanged (`b""` when null)                     |
//! | `value_bytes`   | `bytes`             | the value bytes, unchanged (`b""` when null)                   |
//! | `key_is_null`   | `bool`              | the key is null (as opposed to empty)                          |
//! | `value_is_null` | `bool`              | the value is null (a tombstone)                                |
//! | `headers`       | `map(string,string)`| header name -> lossy UTF-8 value; a repeated name keeps the last value, a null header value reads as `""` |
//! | `partition`     | `int`               | source partition                                               |
//! | `offset`        | `int`               | source offset                                                  |
//! | `timestamp`     | `int`               | record timestamp, milliseconds since the Unix epoch            |
//! | `is_json`       | `bool`              | the value parses as JSON                                       |
//! | `json`          | any                 | the value parsed as JSON; **unbound** when it is not JSON      |
//!
//! The lossy strings are for matching only: the bytes that move are always the original ones.
//! Referencing `json` on a message whose value is not JSON is an evaluation error, handled by
//! the request's `on_error` policy; guard with `is_json && json.level == 'error'` (CEL's `&&`
//! short-circuits on `false`) to make such messages simply not match. A missing JSON field is
//! also an error; test it with `has(json.field)`.
//!
//! The standard library plus the `strings` extension (`lowerAscii`, `split`, ...) are
//! available. An expression naming any other variable is refused at compile time, so a typo
//! is a 400 instead of a migration that fails on every message.
//!
//! # Order of application
//! The filter runs first, on the original record; a message it keeps then gets the key
//! computed by `key_transformation` (also from the original record) and the `header_additions`
//! appended after its own headers.

mod budget;
mod compile;
mod filter;
mod shape;
mod values;

use std::collections::HashMap;
use std::sync::Arc;

use cel::objects::{Key, Map};
use cel::{Context, Env, Value};
use kvault_domain::cel_limits::{BudgetExceeded, EvalBudget, PER_RECORD_EVAL_TIME};
use kvault_domain::migrate::MessageTransformation;
use kvault_domain::record::{Header, Record};
use kvault_domain::ValidationError;

use budget::Meter;
use compile::{compile_one, CompiledExpr, Needs};
pub use filter::{CelFilters, BROWSE_FILTER_FIELD};
use values::{bytes, eval_error, json_to_cel, lossy};

/// Field names used in validation and evaluation errors.
pub const FILTER_FIELD: &str = "transformation.filter_expression";
pub const KEY_FIELD: &str = "transformation.key_transformation";

/// Every variable an expression may reference.
pub const VARIABLES: &[&str] = &[
    "key",
    "value",
    "key_bytes",
    "value_bytes",
    "key_is_null",
    "value_is_null",
    "headers",
    "partition",
    "offset",
    "timestamp",
    "is_json",
    "json",
];

/// An expression failed on one message at run time.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field} failed at partition {partition} offset {offset}: {message}")]
pub struct EvalError {
    /// [`FILTER_FIELD`] or [`KEY_FIELD`].
    pub field: &'static str,
    pub partition: i32,
    pub offset: i64,
    pub message: String,
}

/// What the expressions decided for one message.
enum Decision {
    Drop,
    /// Keep it; `Some(new_key)` replaces the key (`Some(None)` makes it null).
    Keep(Option<Option<Vec<u8>>>),
}

/// Why one record got no decision.
enum Undecided {
    /// The expression failed on this record.
    Failed(EvalError),
    /// Its evaluation was stopped by the budget.
    OverBudget(EvalError, BudgetExceeded),
}

impl Undecided {
    fn into_eval(self) -> EvalError {
        match self {
            Undecided::Failed(e) | Undecided::OverBudget(e, _) => e,
        }
    }
}

/// A request's [`MessageTransformation`], compiled once and applied per record.
pub struct CompiledTransformation {
    env: Arc<Env>,
    filter: Option<CompiledExpr>,
    key: Option<CompiledExpr>,
    header_additions: Vec<Header>,
    needs: Needs,
}

impl std::fmt::Debug for CompiledTransformation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledTransformation")
            .field("filter", &self.filter.is_some())
            .field("key", &self.key.is_some())
            .field("header_additions", &self.header_additions.len())
            .finish()
    }
}

impl CompiledTransformation {
    /// Parses and checks both expressions. Errors name the field and carry the expression as
    /// the refused value.
    pub fn compile(t: &MessageTransformation) -> Result<Self, ValidationError> {
        let mut env = Env::stdlib();
        env.add_extension(cel::extensions::strings)
            .map_err(|e| ValidationError::new(FILTER_FIELD, "", format!("CEL setup: {e}")))?;
        let env = Arc::new(env);
        let mut needs = Needs::default();
        let filter = t
            .filter_expression
            .as_deref()
            .map(|src| compile_one(&env, FILTER_FIELD, src, &mut needs))
            .transpose()?;
        let key = t
            .key_transformation
            .as_deref()
            .map(|src| compile_one(&env, KEY_FIELD, src, &mut needs))
            .transpose()?;
        let header_additions = t
            .header_additions
            .iter()
            .map(|(name, value)| Header {
                key: name.clone(),
                value: Some(value.clone().into_bytes()),
            })
            .collect();
        Ok(Self {
            env,
            filter,
            key,
            header_additions,
            needs,
        })
    }

    /// The source text of the expression behind `field` ([`FILTER_FIELD`] or [`KEY_FIELD`]),
    /// for error reports.
    pub fn expression(&self, field: &str) -> Option<&str> {
        [&self.filter, &self.key]
            .into_iter()
            .flatten()
            .find(|e| e.field == field)
            .map(|e| e.source.as_str())
    }

    /// Whether this transformation changes or drops anything at all.
    pub fn is_identity(&self) -> bool {
        self.filter.is_none() && self.key.is_none() && self.header_additions.is_empty()
    }

    /// `Ok(None)` when the filter drops the record, else the record to write.
    pub fn apply(&self, record: &Record, partition: i32) -> Result<Option<Record>, EvalError> {
        match self
            .decide(record, partition, None)
            .map_err(Undecided::into_eval)?
        {
            Decision::Drop => Ok(None),
            Decision::Keep(new_key) => Ok(Some(self.finish(record.clone(), new_key))),
        }
    }

    /// Like [`apply`](Self::apply) but takes the record by value, saving a copy of its bytes
    /// on the migration hot path.
    pub fn apply_owned(&self, record: Record, partition: i32) -> Result<Option<Record>, EvalError> {
        match self
            .decide(&record, partition, None)
            .map_err(Undecided::into_eval)?
        {
            Decision::Drop => Ok(None),
            Decision::Keep(new_key) => Ok(Some(self.finish(record, new_key))),
        }
    }

    fn finish(&self, mut record: Record, new_key: Option<Option<Vec<u8>>>) -> Record {
        if let Some(key) = new_key {
            record.key = key;
        }
        record.headers.extend(self.header_additions.iter().cloned());
        record
    }

    /// Runs the filter, then the key rewrite, on one record. With comprehensions in either,
    /// the evaluation runs under `budget`, or else [`PER_RECORD_EVAL_TIME`].
    fn decide(
        &self,
        record: &Record,
        partition: i32,
        budget: Option<&EvalBudget>,
    ) -> Result<Decision, Undecided> {
        if self.filter.is_none() && self.key.is_none() {
            return Ok(Decision::Keep(None));
        }
        let mut context = self.context(record, partition);
        let meter = self.needs.budget.then(|| {
            let budget = budget
                .cloned()
                .unwrap_or_else(|| EvalBudget::unbounded().at_most(PER_RECORD_EVAL_TIME));
            let meter = Meter::new(budget);
            meter.register(&mut context);
            meter
        });
        let run = |expr: &CompiledExpr| {
            let result = context.resolve(&expr.expression);
            match meter.as_ref().and_then(|m| m.exceeded()) {
                Some(why) => Err(Undecided::OverBudget(
                    eval_error(expr.field, record, partition, why.to_string()),
                    why,
                )),
                None => Ok(result),
            }
        };
        if let Some(filter) = &self.filter {
            let fail =
                |m: String| Undecided::Failed(eval_error(filter.field, record, partition, m));
            match run(filter)? {
                Ok(Value::Bool(true)) => {}
                Ok(Value::Bool(false)) => return Ok(Decision::Drop),
                Ok(other) => {
                    return Err(fail(format!(
                        "must return a bool, returned {}",
                        other.type_of()
                    )))
                }
                Err(e) => return Err(fail(e.to_string())),
            }
        }
        let new_key = match &self.key {
            None => None,
            Some(key) => {
                let fail =
                    |m: String| Undecided::Failed(eval_error(key.field, record, partition, m));
                match run(key)? {
                    Ok(Value::String(s)) => Some(Some(s.as_bytes().to_vec())),
                    Ok(Value::Bytes(b)) => Some(Some(b.as_ref().clone())),
                    Ok(Value::Null) => Some(None),
                    Ok(other) => {
                        return Err(fail(format!(
                            "must return a string, bytes or null, returned {}",
                            other.type_of()
                        )))
                    }
                    Err(e) => return Err(fail(e.to_string())),
                }
            }
        };
        Ok(Decision::Keep(new_key))
    }

    /// Binds only the variables the expressions reference.
    fn context(&self, record: &Record, partition: i32) -> Context<'static, 'static> {
        let n = &self.needs;
        let mut ctx = Context::with_env(Arc::clone(&self.env));
        let key = record.key.as_deref();
        let value = record.value.as_deref();
        if n.key {
            ctx.add_variable_from_value("key", lossy(key));
        }
        if n.value {
            ctx.add_variable_from_value("value", lossy(value));
        }
        if n.key_bytes {
            ctx.add_variable_from_value("key_bytes", Value::Bytes(Arc::new(bytes(key))));
        }
        if n.value_bytes {
            ctx.add_variable_from_value("value_bytes", Value::Bytes(Arc::new(bytes(value))));
        }
        if n.key_is_null {
            ctx.add_variable_from_value("key_is_null", Value::Bool(key.is_none()));
        }
        if n.value_is_null {
            ctx.add_variable_from_value("value_is_null", Value::Bool(value.is_none()));
        }
        if n.headers {
            let mut map = HashMap::with_capacity(record.headers.len());
            // Later headers overwrite earlier ones: the last value of a repeated name wins.
            for h in &record.headers {
                map.insert(
                    Key::String(Arc::new(h.key.clone())),
                    lossy(h.value.as_deref()),
                );
            }
            ctx.add_variable_from_value("headers", Value::Map(Map { map: Arc::new(map) }));
        }
        if n.partition {
            ctx.add_variable_from_value("partition", Value::Int(i64::from(partition)));
        }
        if n.offset {
            ctx.add_variable_from_value("offset", Value::Int(record.offset));
        }
        if n.timestamp {
            ctx.add_variable_from_value("timestamp", Value::Int(record.timestamp));
        }
        if n.json {
            let parsed = value.and_then(|v| serde_json::from_slice::<serde_json::Value>(v).ok());
            ctx.add_variable_from_value("is_json", Value::Bool(parsed.is_some()));
            if let Some(json) = parsed {
                ctx.add_variable_from_value("json", json_to_cel(json));
            }
        }
        ctx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvault_domain::record::TimestampType;

    fn record(
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&str>)],
    ) -> Record {
        Record {
            offset: 42,
            timestamp: 1_700_000_000_123,
            timestamp_type: TimestampType::CreateTime,
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers: headers
                .iter()
                .map(|(k, v)| Header {
                    key: (*k).to_owned(),
                    value: v.map(|v| v.as_bytes().to_vec()),
                })
                .collect(),
        }
    }

    fn filter(expr: &str) -> CompiledTransformation {
        CompiledTransformation::compile(&MessageTransformation {
            filter_expression: Some(expr.to_owned()),
            ..Default::default()
        })
        .expect("compiles")
    }

    fn keep(expr: &str, r: &Record) -> bool {
        filter(expr).apply(r, 3).expect("evaluates").is_some()
    }

    #[test]
    fn documented_contains_filter_works_as_written() {
        let r = record(Some(b"k"), Some(b"an important event"), &[]);
        assert!(keep("value.contains('important')", &r));
        let r = record(Some(b"k"), Some(b"routine"), &[]);
        assert!(!keep("value.contains('important')", &r));
    }

    #[test]
    fn json_and_headers_filter() {
        let expr = "json.level == 'error' && headers['tenant'] == 'a'";
        let hit = record(
            None,
            Some(br#"{"level":"error","n":3}"#),
            &[("tenant", Some("a"))],
        );
        let other_tenant = record(
            None,
            Some(br#"{"level":"error"}"#),
            &[("tenant", Some("b"))],
        );
        let info = record(None, Some(br#"{"level":"info"}"#), &[("tenant", Some("a"))]);
        assert!(keep(expr, &hit));
        assert!(!keep(expr, &other_tenant));
        assert!(!keep(expr, &info));
        assert!(keep("json.n == 3", &hit));
    }

    #[test]
    fn json_is_unbound_for_non_json_values_and_is_json_guards_it() {
        let r = record(None, Some(b"not json {"), &[]);
        let err = filter("json.level == 'error'").apply(&r, 0).unwrap_err();
        assert_eq!(err.field, FILTER_FIELD);
        assert_eq!(err.offset, 42);
        assert!(!keep("is_json && json.level == 'error'", &r));
        let tombstone = record(None, None, &[]);
        assert!(!keep("is_json", &tombstone));
        assert!(keep(
            "has(json.a) && json.a.b[1] == 2.5",
            &record(None, Some(br#"{"a":{"b":[1,2.5]}}"#), &[])
        ));
        assert!(!keep(
            "has(json.missing)",
            &record(None, Some(br#"{"a":1}"#), &[])
        ));
    }

    #[test]
    fn last_header_wins_and_null_header_reads_empty() {
        let r = record(
            None,
            Some(b"v"),
            &[("h", Some("first")), ("h", Some("last")), ("n", None)],
        );
        assert!(keep("headers['h'] == 'last'", &r));
        assert!(keep("headers['n'] == ''", &r));
        assert!(keep("!('missing' in headers)", &r));
    }

    #[test]
    fn null_and_empty_keys_and_values_are_distinguishable() {
        let null = record(None, None, &[]);
        let empty = record(Some(b""), Some(b""), &[]);
        assert!(keep(
            "key == '' && value == '' && key_is_null && value_is_null",
            &null
        ));
        assert!(keep("key == '' && !key_is_null && !value_is_null", &empty));
        assert!(keep("size(value_bytes) == 0 && key_bytes == b''", &null));
    }

    #[test]
    fn bytes_and_numbers_are_exposed() {
        let r = record(Some(&[0xff, 0x00]), Some(&[0xfe, 0x41]), &[]);
        assert!(keep(
            "key_bytes == b'\\xff\\x00' && size(value_bytes) == 2",
            &r
        ));
        // lossy UTF-8 for display: the invalid byte becomes U+FFFD, the rest survives
        assert!(keep("value.endsWith('A')", &r));
        assert!(keep(
            "partition == 3 && offset == 42 && timestamp == 1700000000123",
            &r
        ));
    }

    #[test]
    fn filtered_record_bytes_move_unchanged() {
        let r = record(Some(&[0xff]), Some(&[0x80, b'x']), &[("h", None)]);
        let out = filter("true").apply(&r, 0).unwrap().unwrap();
        assert_eq!(out, r);
    }

    #[test]
    fn key_transformation_string_bytes_and_null() {
        let t = |expr: &str| {
            CompiledTransformation::compile(&MessageTransformation {
                key_transformation: Some(expr.to_owned()),
                ..Default::default()
            })
            .unwrap()
        };
        let r = record(Some(b"user1"), Some(br#"{"user_id":"u-9"}"#), &[]);
        assert_eq!(
            t("key + '-dr'").apply(&r, 0).unwrap().unwrap().key,
            Some(b"user1-dr".to_vec())
        );
        assert_eq!(
            t("json.user_id").apply(&r, 0).unwrap().unwrap().key,
            Some(b"u-9".to_vec())
        );
        assert_eq!(
            t("b'\\x01\\x02'").apply(&r, 0).unwrap().unwrap().key,
            Some(vec![1, 2])
        );
        assert_eq!(t("null").apply(&r, 0).unwrap().unwrap().key, None);
        let err = t("offset").apply(&r, 0).unwrap_err();
        assert_eq!(err.field, KEY_FIELD);
        assert!(
            err.message.contains("string, bytes or null"),
            "{}",
            err.message
        );
    }

    #[test]
    fn headers_are_appended_after_existing_ones() {
        let t = CompiledTransformation::compile(&MessageTransformation {
            header_additions: vec![
                ("migrated-from".into(), "prod".into()),
                ("h".into(), "".into()),
            ],
            ..Default::default()
        })
        .unwrap();
        let r = record(None, None, &[("h", Some("orig"))]);
        let out = t.apply(&r, 0).unwrap().unwrap();
        let got: Vec<(&str, Option<&[u8]>)> = out
            .headers
            .iter()
            .map(|h| (h.key.as_str(), h.value.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("h", Some(&b"orig"[..])),
                ("migrated-from", Some(&b"prod"[..])),
                ("h", Some(&b""[..]))
            ]
        );
        assert_eq!(out.value, None);
    }

    #[test]
    fn filter_runs_before_key_and_headers() {
        let t = CompiledTransformation::compile(&MessageTransformation {
            filter_expression: Some("key.startsWith('keep')".into()),
            key_transformation: Some("'new-' + key".into()),
            header_additions: vec![("x".into(), "y".into())],
        })
        .unwrap();
        assert!(t
            .apply(&record(Some(b"drop-1"), None, &[]), 0)
            .unwrap()
            .is_none());
        let out = t
            .apply(&record(Some(b"keep-1"), None, &[]), 0)
            .unwrap()
            .unwrap();
        assert_eq!(out.key, Some(b"new-keep-1".to_vec()));
        assert_eq!(out.headers.len(), 1);
    }

    #[test]
    fn invalid_expressions_are_validation_errors_naming_field_and_value() {
        let bad = CompiledTransformation::compile(&MessageTransformation {
            filter_expression: Some("value.contains(".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(bad.field, FILTER_FIELD);
        assert_eq!(bad.value, "value.contains(");
        let unknown = CompiledTransformation::compile(&MessageTransformation {
            key_transformation: Some("valu + 'x'".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(unknown.field, KEY_FIELD);
        assert!(unknown.message.contains("'valu'"), "{}", unknown.message);
        let empty = CompiledTransformation::compile(&MessageTransformation {
            filter_expression: Some("  ".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(empty.field, FILTER_FIELD);
    }

    #[test]
    fn comprehension_variables_and_builtins_are_not_unknown() {
        let r = record(None, Some(br#"{"tags":["a","vip"]}"#), &[("x", Some("1"))]);
        assert!(keep("json.tags.exists(t, t == 'vip')", &r));
        assert!(keep("headers.all(k, k == 'x')", &r));
        assert!(keep("type(offset) == int", &r));
        assert!(keep("value.lowerAscii().contains('vip')", &r));
    }

    #[test]
    fn non_bool_filter_and_runtime_errors_are_eval_errors() {
        let r = record(None, Some(b"v"), &[]);
        let err = filter("value").apply(&r, 7).unwrap_err();
        assert_eq!(
            (err.field, err.partition, err.offset),
            (FILTER_FIELD, 7, 42)
        );
        assert!(filter("headers['absent'] == 'x'").apply(&r, 0).is_err());
        assert!(filter("1 / (offset - 42) == 0").apply(&r, 0).is_err());
    }

    #[test]
    fn identity_passes_everything_through() {
        let t = CompiledTransformation::compile(&MessageTransformation::default()).unwrap();
        assert!(t.is_identity());
        let r = record(None, None, &[]);
        assert_eq!(t.apply_owned(r.clone(), 0).unwrap(), Some(r));
    }

    #[test]
    fn compiled_transformation_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<CompiledTransformation>();
        let t = filter("offset > 1");
        assert_eq!(t.expression(FILTER_FIELD), Some("offset > 1"));
        assert_eq!(t.expression(KEY_FIELD), None);
    }
}
