//! The compile-time half of an expression's budget. After parsing, an expression is refused
//! when its cost cannot be bounded: comprehensions (`all`, `exists`, `exists_one`, `map`,
//! `filter`) nested in comprehensions or more than a few of them, `format` and
//! `strings.quote` (whose output can grow exponentially when chained), and `replace`,
//! `split` or `join` with arguments that are not literals. The rest is rewritten so that the
//! evaluation can be metered ([`super::budget`]): every comprehension passes a value it
//! computes on each iteration through a guard, and `replace`, `split` and `join` check the
//! size of what they would build before they build it.

use cel::common::ast::operators::{ADD, CONDITIONAL};
use cel::common::ast::{CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedExpr, LiteralValue};
use kvault_domain::cel_limits::{MAX_COMPREHENSIONS, MAX_COMPREHENSION_NESTING};

/// Guards one loop iteration: counts it, checks the deadline, charges its value's size.
pub(super) const ITERATION_FN: &str = "@kvault_iteration";
/// `@kvault_replace_check(s, from, to)`: charges what `s.replace(from, to)` would build.
pub(super) const REPLACE_FN: &str = "@kvault_replace_check";
/// `@kvault_split_check(s, sep)`: refuses a split into too many parts.
pub(super) const SPLIT_FN: &str = "@kvault_split_check";
/// `@kvault_join_check(list, sep)`: charges what `list.join(sep)` would build.
pub(super) const JOIN_FN: &str = "@kvault_join_check";

/// Refuses what cannot be bounded and returns the expression rewritten for metering, and
/// whether anything was rewritten (the evaluation then needs a meter).
pub(super) fn bound(expr: &IdedExpr) -> Result<(IdedExpr, bool), String> {
    let (mut count, mut deepest) = (0, 0);
    let mut out = expr.clone();
    let mut metered = false;
    rewrite(&mut out, 0, &mut count, &mut deepest, &mut metered)?;
    if deepest > MAX_COMPREHENSION_NESTING {
        return Err(format!(
            "comprehensions (all, exists, exists_one, map, filter) nest {deepest} deep; at most \
             {MAX_COMPREHENSION_NESTING} level is accepted, so that evaluation cost stays bounded"
        ));
    }
    if count > MAX_COMPREHENSIONS {
        return Err(format!(
            "expression has {count} comprehensions; at most {MAX_COMPREHENSIONS} are accepted"
        ));
    }
    Ok((out, metered))
}

fn rewrite(
    e: &mut IdedExpr,
    depth: usize,
    count: &mut usize,
    deepest: &mut usize,
    metered: &mut bool,
) -> Result<(), String> {
    match &mut e.expr {
        Expr::Comprehension(c) => {
            let inner = depth + 1;
            for child in [
                &mut c.iter_range,
                &mut c.accu_init,
                &mut c.loop_cond,
                &mut c.result,
            ] {
                rewrite(child, inner, count, deepest, metered)?;
            }
            match append_parts(&mut c.loop_step, &c.accu_var) {
                // Leave the accumulator's own `@result + [x]` alone (`cel` appends in place).
                Some(parts) => parts
                    .into_iter()
                    .try_for_each(|p| rewrite(p, inner, count, deepest, metered))?,
                None => rewrite(&mut c.loop_step, inner, count, deepest, metered)?,
            }
            *count += 1;
            *deepest = (*deepest).max(inner);
            guard_iteration(c);
            *metered = true;
        }
        Expr::Call(call) => {
            if let Some(t) = call.target.as_mut() {
                rewrite(t, depth, count, deepest, metered)?;
            }
            call.args
                .iter_mut()
                .try_for_each(|a| rewrite(a, depth, count, deepest, metered))?;
            *metered |= check_call(call)?;
        }
        Expr::Select(s) => rewrite(&mut s.operand, depth, count, deepest, metered)?,
        Expr::List(l) => l
            .elements
            .iter_mut()
            .try_for_each(|x| rewrite(x, depth, count, deepest, metered))?,
        Expr::Map(m) => {
            for entry in &mut m.entries {
                entry_children(&mut entry.expr)
                    .into_iter()
                    .try_for_each(|x| rewrite(x, depth, count, deepest, metered))?;
            }
        }
        Expr::Struct(s) => {
            for entry in &mut s.entries {
                entry_children(&mut entry.expr)
                    .into_iter()
                    .try_for_each(|x| rewrite(x, depth, count, deepest, metered))?;
            }
        }
        Expr::Unspecified | Expr::Literal(_) | Expr::Ident(_) => {}
    }
    Ok(())
}

fn entry_children(e: &mut EntryExpr) -> Vec<&mut IdedExpr> {
    match e {
        EntryExpr::MapEntry(m) => vec![&mut m.key, &mut m.value],
        EntryExpr::StructField(s) => vec![&mut s.value],
    }
}

/// Refuses `format` and `quote`; puts a size check in front of `replace`, `split` and
/// `join`. Returns whether it added a check.
fn check_call(call: &mut CallExpr) -> Result<bool, String> {
    let name = call.func_name.as_str();
    if name == "format" || name == "quote" || name == "strings.quote" {
        return Err(format!(
            "`{name}` is not available in filters and key transformations (its output size \
             cannot be bounded)"
        ));
    }
    let check = match (name, call.args.len()) {
        ("replace", 2 | 3) => REPLACE_FN,
        ("split", 1 | 2) => SPLIT_FN,
        ("join", 0 | 1) => JOIN_FN,
        _ => return Ok(false),
    };
    let Some(target) = call.target.as_mut() else {
        return Ok(false);
    };
    let literal_args = if check == REPLACE_FN { 2 } else { 1 };
    let mut checked = Vec::with_capacity(literal_args);
    for arg in call.args.iter().take(literal_args) {
        if !matches!(arg.expr, Expr::Literal(LiteralValue::String(_))) {
            return Err(format!(
                "`{name}` needs string literals as its text arguments (e.g. \
                 value.{name}(',' ...)), so that what it builds can be bounded"
            ));
        }
        checked.push(arg.clone());
    }
    if checked.is_empty() {
        // `list.join()`: no separator.
        checked.push(IdedExpr {
            id: target.id,
            expr: Expr::Literal(LiteralValue::String("".into())),
        });
    }
    let inner = std::mem::replace(&mut target.expr, Expr::Unspecified);
    let mut args = vec![IdedExpr {
        id: target.id,
        expr: inner,
    }];
    args.extend(checked);
    target.expr = Expr::Call(CallExpr {
        func_name: check.to_owned(),
        target: None,
        args,
    });
    Ok(true)
}

/// In `@result + [x]` or `g ? @result + [x] : @result`: the parts besides the accumulator.
fn append_parts<'a>(step: &'a mut IdedExpr, accu: &str) -> Option<Vec<&'a mut IdedExpr>> {
    let conditional = matches!(
        &step.expr,
        Expr::Call(call) if call.func_name == CONDITIONAL && call.args.len() == 3
    );
    if !conditional {
        return append_element(step, accu).map(|x| vec![x]);
    }
    let Expr::Call(call) = &mut step.expr else {
        return None;
    };
    let [guard, then, _otherwise] = call.args.as_mut_slice() else {
        return None;
    };
    let element = append_element(then, accu)?;
    Some(vec![guard, element])
}

/// The `x` of `@result + [x]`.
fn append_element<'a>(step: &'a mut IdedExpr, accu: &str) -> Option<&'a mut IdedExpr> {
    let Expr::Call(call) = &mut step.expr else {
        return None;
    };
    let is_append = call.func_name == ADD
        && call.args.len() == 2
        && matches!(&call.args[0].expr, Expr::Ident(n) if n == accu);
    match call.args.get_mut(1) {
        Some(IdedExpr {
            expr: Expr::List(list),
            ..
        }) if is_append && list.elements.len() == 1 => list.elements.first_mut(),
        _ => None,
    }
}

/// Wraps the expression the evaluator runs on every iteration and whose error it does not
/// swallow: the loop condition, or, for `map`/`filter` (whose literal condition lets `cel`
/// append in place, a shape worth keeping), the guard or the appended element.
fn guard_iteration(c: &mut ComprehensionExpr) {
    let accu = c.accu_var.clone();
    let parts = if matches!(c.loop_cond.expr, Expr::Literal(_)) {
        append_parts(&mut c.loop_step, &accu)
    } else {
        None
    };
    match parts {
        // The guard (when there is one) and the element, whose size is charged.
        Some(parts) => parts.into_iter().for_each(wrap),
        None => wrap(&mut c.loop_cond),
    }
}

fn wrap(e: &mut IdedExpr) {
    let inner = std::mem::replace(&mut e.expr, Expr::Unspecified);
    e.expr = Expr::Call(CallExpr {
        func_name: ITERATION_FN.to_owned(),
        target: None,
        args: vec![IdedExpr {
            id: e.id,
            expr: inner,
        }],
    });
}
