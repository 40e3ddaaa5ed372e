//! Record fields as CEL values, and evaluation errors that name the message.

use std::collections::HashMap;
use std::sync::Arc;

use cel::objects::{Key, Map};
use cel::Value;
use kvault_domain::record::Record;

use super::EvalError;

pub(super) fn eval_error(
    field: &'static str,
    record: &Record,
    partition: i32,
    message: String,
) -> EvalError {
    EvalError {
        field,
        partition,
        offset: record.offset,
        message,
    }
}

pub(super) fn lossy(b: Option<&[u8]>) -> Value {
    Value::String(Arc::new(
        String::from_utf8_lossy(b.unwrap_or_default()).into_owned(),
    ))
}

pub(super) fn bytes(b: Option<&[u8]>) -> Vec<u8> {
    b.unwrap_or_default().to_vec()
}

/// JSON numbers become `int` when they fit in i64, `uint` when only u64 holds them, else
/// `double`, so `json.count == 3` compares as written.
pub(super) fn json_to_cel(json: serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::UInt(u)
            } else {
                Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::String(Arc::new(s)),
        serde_json::Value::Array(items) => {
            Value::List(Arc::new(items.into_iter().map(json_to_cel).collect()))
        }
        serde_json::Value::Object(fields) => {
            let map = fields
                .into_iter()
                .map(|(k, v)| (Key::String(Arc::new(k)), json_to_cel(v)))
                .collect::<HashMap<_, _>>();
            Value::Map(Map { map: Arc::new(map) })
        }
    }
}
