//! The run-time half of an expression's budget. The `cel` crate has no evaluation hook, so
//! [`super::shape`] rewrites an expression to call the functions registered here: one per
//! loop iteration (counts it, checks the [`EvalBudget`]'s deadline and cancel flag, charges
//! the size of what a `map` appends) and one before each `replace`, `split` and `join`
//! (charges what it would build). Past the budget they fail the evaluation, and the [`Meter`]
//! remembers why, even when CEL's `&&`/`||` absorbs the error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cel::common::types::{CelBytes, CelString};
use cel::common::value::{CowVal, Val};
use cel::{Context, ExecutionError, FunctionContext};
use kvault_domain::cel_limits::{
    BudgetExceeded, EvalBudget, MAX_EVAL_BYTES, MAX_LOOP_STEPS, MAX_SPLIT_PARTS,
};

use super::shape::{ITERATION_FN, JOIN_FN, REPLACE_FN, SPLIT_FN};

/// What a list element costs besides its text.
const ELEMENT_OVERHEAD: u64 = 48;

/// One evaluation's spending: iterations and bytes so far and, once over, why.
#[derive(Debug)]
pub(super) struct Meter {
    budget: EvalBudget,
    steps: AtomicU64,
    bytes: AtomicU64,
    exceeded: Mutex<Option<BudgetExceeded>>,
}

type Guard = Box<
    dyn for<'c, 'v> Fn(&mut FunctionContext<'c, 'v>) -> Result<CowVal<'c, 'v>, ExecutionError>
        + Send
        + Sync,
>;

impl Meter {
    pub(super) fn new(budget: EvalBudget) -> Arc<Self> {
        Arc::new(Self {
            budget,
            steps: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            exceeded: Mutex::new(None),
        })
    }

    /// Why the budget ran out, if it did.
    pub(super) fn exceeded(&self) -> Option<BudgetExceeded> {
        *self.exceeded.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fail(&self, why: BudgetExceeded) -> ExecutionError {
        let mut exceeded = self.exceeded.lock().unwrap_or_else(|p| p.into_inner());
        exceeded.get_or_insert(why);
        ExecutionError::function_error("budget", why)
    }

    fn iteration(&self, value: &dyn Val) -> Result<(), ExecutionError> {
        let steps = self.steps.fetch_add(1, Ordering::Relaxed) + 1;
        if steps > MAX_LOOP_STEPS {
            return Err(self.fail(BudgetExceeded::Steps));
        }
        self.budget.check().map_err(|why| self.fail(why))?;
        self.charge(approx_size(value))
    }

    fn charge(&self, bytes: u64) -> Result<(), ExecutionError> {
        let total = self
            .bytes
            .fetch_add(bytes, Ordering::Relaxed)
            .saturating_add(bytes);
        match total > MAX_EVAL_BYTES {
            true => Err(self.fail(BudgetExceeded::Bytes)),
            false => Ok(()),
        }
    }

    /// Registers the guard functions in `ctx`, counting against this meter.
    pub(super) fn register(self: &Arc<Self>, ctx: &mut Context<'static, 'static>) {
        let guards: [(&str, Guard); 4] = [
            (ITERATION_FN, self.guard(|m, args| m.iteration(&*args[0]))),
            (
                REPLACE_FN,
                self.guard(|m, args| m.charge(replaced_size(args)?)),
            ),
            (SPLIT_FN, self.guard(|m, args| m.split(args))),
            (JOIN_FN, self.guard(|m, args| m.charge(joined_size(args)?))),
        ];
        for (name, guard) in guards {
            // `@` names are internal to CEL: no clash with the standard library.
            let _ = ctx.add_function(name, guard);
        }
    }

    /// A function that runs `check` on its arguments and returns the first one unchanged.
    fn guard(
        self: &Arc<Self>,
        check: impl Fn(&Meter, &[CowVal<'_, '_>]) -> Result<(), ExecutionError> + Send + Sync + 'static,
    ) -> Guard {
        let meter = Arc::clone(self);
        boxed(move |ftx| {
            if ftx.args.is_empty() {
                return Err(ExecutionError::invalid_argument_count(1, 0));
            }
            check(&meter, &ftx.args)?;
            Ok(ftx.args.swap_remove(0))
        })
    }

    fn split(&self, args: &[CowVal<'_, '_>]) -> Result<(), ExecutionError> {
        let (text, sep) = (text(args, 0)?, text(args, 1)?);
        let parts = match sep.is_empty() {
            true => text.chars().count() as u64,
            false => text.matches(sep).count() as u64 + 1,
        };
        if parts > MAX_SPLIT_PARTS {
            return Err(self.fail(BudgetExceeded::Bytes));
        }
        self.charge(text.len() as u64 + parts * ELEMENT_OVERHEAD)
    }
}

/// Pins down the closure's signature (its result borrows from its argument).
fn boxed<F>(f: F) -> Guard
where
    F: for<'c, 'v> Fn(&mut FunctionContext<'c, 'v>) -> Result<CowVal<'c, 'v>, ExecutionError>
        + Send
        + Sync
        + 'static,
{
    Box::new(f)
}

fn text<'a>(args: &'a [CowVal<'_, '_>], i: usize) -> Result<&'a str, ExecutionError> {
    args.get(i)
        .and_then(|v| v.downcast_ref::<CelString>())
        .map(|s| s.inner())
        .ok_or_else(|| ExecutionError::function_error("budget", "expected a string"))
}

/// The length of `s.replace(from, to)`.
fn replaced_size(args: &[CowVal<'_, '_>]) -> Result<u64, ExecutionError> {
    let (s, from, to) = (text(args, 0)?, text(args, 1)?, text(args, 2)?);
    let hits = match from.is_empty() {
        true => s.chars().count() as u64 + 1,
        false => s.matches(from).count() as u64,
    };
    Ok((s.len() as u64).saturating_add(hits.saturating_mul(to.len() as u64)))
}

/// The length of `list.join(sep)`.
fn joined_size(args: &[CowVal<'_, '_>]) -> Result<u64, ExecutionError> {
    let sep = text(args, 1)?.len() as u64;
    let list = args
        .first()
        .and_then(|l| l.as_iterable())
        .ok_or_else(|| ExecutionError::function_error("budget", "expected a list"))?;
    let (mut total, mut items) = (0u64, list.iter());
    while let Some(item) = items.next() {
        total = total.saturating_add(approx_size(item) + sep);
    }
    Ok(total)
}

/// Roughly what a value holds: its text or bytes, and for a list or map its elements.
fn approx_size(value: &dyn Val) -> u64 {
    if let Some(s) = value.downcast_ref::<CelString>() {
        return s.inner().len() as u64;
    }
    if let Some(b) = value.downcast_ref::<CelBytes>() {
        return b.inner().len() as u64;
    }
    match value.as_iterable() {
        Some(list) => {
            let (mut total, mut items) = (0u64, list.iter());
            while let Some(item) = items.next() {
                total = total.saturating_add(ELEMENT_OVERHEAD + approx_size(item));
            }
            total
        }
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::time::Instant;

    use kvault_domain::migrate::MessageTransformation;
    use kvault_domain::ports::{FilterFailure, RecordFilters};
    use kvault_domain::record::{Record, TimestampType};

    use super::*;
    use crate::transform::{CelFilters, CompiledTransformation};

    fn record(value: &str) -> Record {
        Record {
            offset: 1,
            timestamp: 1,
            timestamp_type: TimestampType::CreateTime,
            key: Some(b"k".to_vec()),
            value: Some(value.as_bytes().to_vec()),
            headers: vec![],
        }
    }

    fn matches(expr: &str, value: &str, budget: &EvalBudget) -> Result<bool, FilterFailure> {
        CelFilters
            .compile(expr)
            .unwrap()
            .matches(0, &record(value), budget)
    }

    fn refusal(expr: &str) -> String {
        match CelFilters.compile(expr) {
            Err(e) => e.message,
            Ok(_) => panic!("{expr} was accepted"),
        }
    }

    #[test]
    fn nested_comprehensions_and_unbounded_functions_are_refused() {
        let nested = "[1,2].all(a, [1,2].all(b, a < 3))";
        assert!(
            refusal(nested).contains("nest 2 deep"),
            "{}",
            refusal(nested)
        );
        let many = ["[1].exists(x, x == 1)"; 9].join(" && ");
        assert!(refusal(&many).contains("9 comprehensions"));
        assert!(refusal("strings.quote(value) == ''").contains("quote"));
        assert!(refusal("'%s'.format([value]) == ''").contains("format"));
        assert!(refusal("value.replace(key, value) == ''").contains("literals"));
        assert!(refusal("value.split(key).size() > 1").contains("literals"));
    }

    #[test]
    fn bounded_expressions_keep_their_meaning() {
        let b = EvalBudget::unbounded();
        for (expr, value, want) in [
            ("[1, 2, 3].all(x, x > 0)", "", true),
            ("[1, 2, 3].exists(x, x == 2)", "", true),
            ("[1, 2, 3].exists_one(x, x > 1)", "", false),
            ("[1, 2, 3].map(x, x * 2) == [2, 4, 6]", "", true),
            ("[1, 2, 3].filter(x, x > 1) == [2, 3]", "", true),
            ("[1, 2, 3].map(x, x > 1, x * 10) == [20, 30]", "", true),
            ("value.split(',').size() == 3", "a,b,c", true),
            ("value.replace('b', 'xx') == 'axxc'", "abc", true),
            ("value.split(',').join('-') == 'a-b-c'", "a,b,c", true),
            ("['a', 'b'].join() == 'ab'", "", true),
            ("value.split('').exists(c, c == '~')", "abc", false),
        ] {
            assert_eq!(matches(expr, value, &b), Ok(want), "{expr}");
        }
    }

    #[test]
    fn growth_is_stopped_before_it_is_built() {
        let b = EvalBudget::unbounded();
        let big = "a".repeat(1 << 20);
        // 1 MiB with 4,000 bytes inserted between every character: 4 GB if it were built.
        let wide = format!("value.replace('', '{}') == ''", "x".repeat(4000));
        let stop = Err(FilterFailure::Budget(BudgetExceeded::Bytes));
        assert_eq!(matches(&wide, &big, &b), stop);
        assert_eq!(matches("value.split('').size() > 0", &big, &b), stop);
        // 50,000 copies of a 100 KB string appended by `map`: 5 GB if it were built.
        let copies = "value.split('').map(c, value + value).size() > 0";
        assert_eq!(matches(copies, &"a".repeat(50_000), &b), stop);
    }

    #[test]
    fn the_deadline_and_the_cancel_flag_stop_a_running_evaluation() {
        let slow = "value.split('').exists(c, c == '~')";
        let expired = EvalBudget::new(Some(Instant::now()), None);
        assert_eq!(
            matches(slow, "abc", &expired),
            Err(FilterFailure::Budget(BudgetExceeded::Deadline))
        );
        let cancel = Arc::new(AtomicBool::new(true));
        let cancelled = EvalBudget::new(None, Some(cancel));
        assert_eq!(
            matches("[1, 2].exists(x, x == 3)", "", &cancelled),
            Err(FilterFailure::Budget(BudgetExceeded::Cancelled))
        );
        // Absorbed by `||`, the budget's verdict still stands.
        assert_eq!(
            matches("[1, 2].exists(x, x == 3) || true", "", &expired),
            Err(FilterFailure::Budget(BudgetExceeded::Deadline))
        );
    }

    #[test]
    fn a_migration_record_that_runs_too_long_fails_under_on_error() {
        let t = CompiledTransformation::compile(&MessageTransformation {
            filter_expression: Some("value.split('').map(c, value + value).size() > 0".into()),
            ..MessageTransformation::default()
        })
        .unwrap();
        let err = t.apply(&record(&"z".repeat(100_000)), 0).unwrap_err();
        assert!(err.message.contains("bytes"), "{}", err.message);
    }
}
