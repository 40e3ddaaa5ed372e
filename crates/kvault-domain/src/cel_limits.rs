//! Bounds on CEL source text, checked (at validation, and again by the adapter) before any
//! parser sees it. The parser and evaluator are
//! recursive: a long operator chain (`1 + 1 + ... + 1`) or deep nesting builds a tree deep
//! enough to overflow a thread's stack and abort the whole process. A cheap scan refuses such
//! input first; the bounds also cap what one evaluation per message can cost.
//!
//! Text bounds alone do not bound evaluation: seven nested comprehensions over ten-element
//! lists fit in a hundred characters and run for hours. So the adapter also refuses, after
//! parsing, comprehensions nested inside comprehensions and more than a few of them, and every
//! evaluation runs under an [`EvalBudget`]: a deadline and a cancel flag checked at each loop
//! iteration (and between records by the reader), plus a cap on iterations per evaluation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest expression accepted, in bytes.
pub const MAX_EXPRESSION_BYTES: usize = 4096;
/// Deepest nesting of `(`, `[` and `{` accepted.
pub const MAX_NESTING: usize = 32;
/// Most operator characters accepted (outside string literals).
pub const MAX_OPERATORS: usize = 256;

/// Deepest nesting of comprehensions (`all`, `exists`, `exists_one`, `map`, `filter`)
/// accepted: one, so that one evaluation costs at most (size of a list) x (size of its body).
pub const MAX_COMPREHENSION_NESTING: usize = 1;
/// Most comprehensions accepted in one expression.
pub const MAX_COMPREHENSIONS: usize = 8;
/// Most loop iterations one evaluation (one record) may run, over all its comprehensions.
pub const MAX_LOOP_STEPS: u64 = 1_000_000;
/// Bytes one evaluation may produce through `map`/`filter` results and `replace`, `split`
/// and `join` (checked before those run), so no expression can grow a value without bound.
pub const MAX_EVAL_BYTES: u64 = 64 << 20;
/// Most parts one `split` may produce.
pub const MAX_SPLIT_PARTS: u64 = 100_000;
/// How long one record's evaluation may take in a migration (a filter or key rewrite that
/// takes longer fails that record, under the request's `on_error` policy).
pub const PER_RECORD_EVAL_TIME: Duration = Duration::from_secs(1);

/// What an evaluation may still spend: a deadline and a cancel flag (set, for instance, when
/// the HTTP client that asked has gone away). Cheap to check; checked cooperatively.
#[derive(Debug, Clone, Default)]
pub struct EvalBudget {
    deadline: Option<Instant>,
    cancel: Option<Arc<AtomicBool>>,
}

impl EvalBudget {
    /// No deadline, no cancel flag (the per-evaluation iteration cap still applies).
    pub fn unbounded() -> Self {
        Self::default()
    }

    /// Ends at `deadline`, or as soon as `cancel` is set.
    pub fn new(deadline: Option<Instant>, cancel: Option<Arc<AtomicBool>>) -> Self {
        Self { deadline, cancel }
    }

    /// This budget, with its deadline no later than `now + most`.
    pub fn at_most(&self, most: Duration) -> Self {
        let cap = Instant::now() + most;
        Self {
            deadline: Some(self.deadline.map_or(cap, |d| d.min(cap))),
            cancel: self.cancel.clone(),
        }
    }

    /// `Err` once the deadline has passed or the cancel flag is set.
    pub fn check(&self) -> Result<(), BudgetExceeded> {
        if self
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            return Err(BudgetExceeded::Cancelled);
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(BudgetExceeded::Deadline);
        }
        Ok(())
    }
}

/// Why an evaluation was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BudgetExceeded {
    #[error("the expression ran past its time budget")]
    Deadline,
    #[error("the request was cancelled")]
    Cancelled,
    #[error("the expression ran more than {MAX_LOOP_STEPS} loop iterations on one record")]
    Steps,
    #[error(
        "the expression would build more than {MAX_EVAL_BYTES} bytes (or a split of more than \
         {MAX_SPLIT_PARTS} parts) on one record"
    )]
    Bytes,
}

/// Why an expression was refused before parsing; its message goes into the field's
/// validation error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExpressionRefused {
    #[error("expression is {0} bytes; at most {MAX_EXPRESSION_BYTES} are accepted")]
    TooLong(usize),
    #[error("expression nests {0} levels deep; at most {MAX_NESTING} are accepted")]
    TooDeep(usize),
    #[error("expression has {0} operators; at most {MAX_OPERATORS} are accepted")]
    TooManyOperators(usize),
}

/// Refuses `source` when it is longer, deeper or has more operators than the bounds allow.
pub fn check(source: &str) -> Result<(), ExpressionRefused> {
    if source.len() > MAX_EXPRESSION_BYTES {
        return Err(ExpressionRefused::TooLong(source.len()));
    }
    let (mut depth, mut deepest, mut operators) = (0usize, 0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in source.chars() {
        if let Some(q) = quote {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                _ if c == q => quote = None,
                _ => {}
            }
            continue;
        }
        match c {
            '"' | '\'' => quote = Some(c),
            '(' | '[' | '{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            '+' | '-' | '*' | '/' | '%' | '<' | '>' | '=' | '!' | '&' | '|' | '?' | ':' | ','
            | '.' => operators += 1,
            _ => {}
        }
    }
    if deepest > MAX_NESTING {
        return Err(ExpressionRefused::TooDeep(deepest));
    }
    if operators > MAX_OPERATORS {
        return Err(ExpressionRefused::TooManyOperators(operators));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_expressions_pass() {
        for e in [
            "value.contains('important')",
            "is_json && json.level == 'error' && headers['tenant'] == 'a'",
            "key + '-dr'",
            "'((((((((((((((((((((((((((((((((((((' == value",
        ] {
            assert_eq!(check(e), Ok(()), "{e}");
        }
    }

    #[test]
    fn long_chains_deep_nests_and_long_text_are_refused() {
        let chain = format!("{}1 == 2", "1 + ".repeat(30_000));
        assert!(matches!(check(&chain), Err(ExpressionRefused::TooLong(_))));
        let short_chain = format!("{}1 == 2", "1+".repeat(1_000));
        assert!(matches!(
            check(&short_chain),
            Err(ExpressionRefused::TooManyOperators(_))
        ));
        let nest = format!("{}1{}", "(".repeat(100), ")".repeat(100));
        assert!(check(&nest).unwrap_err().to_string().contains("levels"));
        let long = format!("value == '{}'", "x".repeat(MAX_EXPRESSION_BYTES));
        assert!(check(&long).unwrap_err().to_string().contains("bytes"));
    }
}
