//! Compiling one CEL expression: the input bounds first, then the parser, then the check
//! that it names only known variables (recording which ones it needs).

use std::collections::HashSet;

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::Env;
use kvault_domain::ValidationError;

use super::shape::bound;
use super::VARIABLES;

/// Identifiers that CEL itself resolves: type names (`type(x) == int`) and the namespaces of
/// namespaced functions (`base64.encode(..)`).
pub(super) const BUILTIN_IDENTS: &[&str] = &[
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "dyn",
    "base64",
    "math",
    "strings",
    "lists",
];

/// Which variables the compiled expressions reference, so that a message only pays for the
/// ones used (building `headers` allocates, `json` parses the value).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Needs {
    pub(super) key: bool,
    pub(super) value: bool,
    pub(super) key_bytes: bool,
    pub(super) value_bytes: bool,
    pub(super) key_is_null: bool,
    pub(super) value_is_null: bool,
    pub(super) headers: bool,
    pub(super) partition: bool,
    pub(super) offset: bool,
    pub(super) timestamp: bool,
    pub(super) json: bool,
    /// An expression has comprehensions or size checks: each evaluation runs under a meter.
    pub(super) budget: bool,
}

impl Needs {
    pub(super) fn add(&mut self, name: &str) {
        match name {
            "key" => self.key = true,
            "value" => self.value = true,
            "key_bytes" => self.key_bytes = true,
            "value_bytes" => self.value_bytes = true,
            "key_is_null" => self.key_is_null = true,
            "value_is_null" => self.value_is_null = true,
            "headers" => self.headers = true,
            "partition" => self.partition = true,
            "offset" => self.offset = true,
            "timestamp" => self.timestamp = true,
            // `is_json` needs the same parse as `json`.
            "json" | "is_json" => self.json = true,
            _ => {}
        }
    }
}

#[derive(Debug)]
pub(super) struct CompiledExpr {
    pub(super) field: &'static str,
    pub(super) source: String,
    /// The parsed expression, rewritten to call the budget's guards (see `shape`).
    pub(super) expression: IdedExpr,
}

pub(super) fn compile_one(
    env: &Env,
    field: &'static str,
    source: &str,
    needs: &mut Needs,
) -> Result<CompiledExpr, ValidationError> {
    if source.trim().is_empty() {
        return Err(ValidationError::new(field, source, "must not be empty"));
    }
    // Refuse what could overflow the parser's stack before parsing it.
    kvault_domain::cel_limits::check(source).map_err(|refused| {
        let shown: String = source.chars().take(200).collect();
        ValidationError::new(field, shown, refused.to_string())
    })?;
    let program = env
        .compile(source)
        .map_err(|e| ValidationError::new(field, source, format!("invalid CEL: {e}")))?;
    let (expression, metered) =
        bound(program.expression()).map_err(|m| ValidationError::new(field, source, m))?;
    needs.budget |= metered;
    let mut free = Vec::new();
    free_idents(program.expression(), &mut Vec::new(), &mut free);
    for name in free {
        if VARIABLES.contains(&name.as_str()) {
            needs.add(&name);
        } else if !BUILTIN_IDENTS.contains(&name.as_str()) {
            return Err(ValidationError::new(
                field,
                source,
                format!(
                    "unknown variable '{name}'; available: {}",
                    VARIABLES.join(", ")
                ),
            ));
        }
    }
    Ok(CompiledExpr {
        field,
        source: source.to_owned(),
        expression,
    })
}

/// Collects identifiers that are not bound by an enclosing comprehension (`exists(x, ..)`).
pub(super) fn free_idents(expr: &IdedExpr, bound: &mut Vec<String>, out: &mut Vec<String>) {
    match &expr.expr {
        Expr::Unspecified | Expr::Literal(_) => {}
        Expr::Ident(name) => {
            if !name.starts_with('@') && !bound.iter().any(|b| b == name) {
                let unique: HashSet<&String> = out.iter().collect();
                if !unique.contains(name) {
                    out.push(name.clone());
                }
            }
        }
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                free_idents(target, bound, out);
            }
            for arg in &call.args {
                free_idents(arg, bound, out);
            }
        }
        Expr::Select(select) => free_idents(&select.operand, bound, out),
        Expr::List(list) => {
            for e in &list.elements {
                free_idents(e, bound, out);
            }
        }
        Expr::Map(map) => {
            for entry in &map.entries {
                match &entry.expr {
                    EntryExpr::MapEntry(e) => {
                        free_idents(&e.key, bound, out);
                        free_idents(&e.value, bound, out);
                    }
                    EntryExpr::StructField(f) => free_idents(&f.value, bound, out),
                }
            }
        }
        Expr::Struct(s) => {
            for entry in &s.entries {
                match &entry.expr {
                    EntryExpr::MapEntry(e) => {
                        free_idents(&e.key, bound, out);
                        free_idents(&e.value, bound, out);
                    }
                    EntryExpr::StructField(f) => free_idents(&f.value, bound, out),
                }
            }
        }
        Expr::Comprehension(c) => {
            free_idents(&c.iter_range, bound, out);
            free_idents(&c.accu_init, bound, out);
            let depth = bound.len();
            bound.push(c.iter_var.clone());
            if let Some(v2) = &c.iter_var2 {
                bound.push(v2.clone());
            }
            bound.push(c.accu_var.clone());
            free_idents(&c.loop_cond, bound, out);
            free_idents(&c.loop_step, bound, out);
            free_idents(&c.result, bound, out);
            bound.truncate(depth);
        }
    }
}
