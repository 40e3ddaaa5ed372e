//! Bounds on CEL source text, checked (at validation, and again by the adapter) before any
//! parser sees it. The parser and evaluator are
//! recursive: a long operator chain (`1 + 1 + ... + 1`) or deep nesting builds a tree deep
//! enough to overflow a thread's stack and abort the whole process. A cheap scan refuses such
//! input first; the bounds also cap what one evaluation per message can cost.

/// Longest expression accepted, in bytes.
pub const MAX_EXPRESSION_BYTES: usize = 4096;
/// Deepest nesting of `(`, `[` and `{` accepted.
pub const MAX_NESTING: usize = 32;
/// Most operator characters accepted (outside string literals).
pub const MAX_OPERATORS: usize = 256;

/// Why an expression was refused, as a message for the field's validation error.
pub fn check(source: &str) -> Result<(), String> {
    if source.len() > MAX_EXPRESSION_BYTES {
        return Err(format!(
            "expression is {} bytes; at most {MAX_EXPRESSION_BYTES} are accepted",
            source.len()
        ));
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
        return Err(format!(
            "expression nests {deepest} levels deep; at most {MAX_NESTING} are accepted"
        ));
    }
    if operators > MAX_OPERATORS {
        return Err(format!(
            "expression has {operators} operators; at most {MAX_OPERATORS} are accepted"
        ));
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
        assert!(check(&chain).unwrap_err().contains("bytes"));
        let short_chain = format!("{}1 == 2", "1+".repeat(1_000));
        assert!(check(&short_chain).unwrap_err().contains("operators"));
        let nest = format!("{}1{}", "(".repeat(100), ")".repeat(100));
        assert!(check(&nest).unwrap_err().contains("levels"));
        let long = format!("value == '{}'", "x".repeat(MAX_EXPRESSION_BYTES));
        assert!(check(&long).unwrap_err().contains("bytes"));
    }
}
