//! The JSON paths mask rules name: `$` then steps, `.name` for an object member and `[*]` for
//! every element of an array (`$.items[*].name`). A small fixed grammar rather than full
//! JSONPath: filters, slices and recursive descent would make "which fields did this rule
//! touch" hard to say, and masking needs exactly that.

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Member(String),
    Each,
}

/// A parsed path, with the text it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    source: String,
    steps: Vec<Step>,
}

/// Longest path accepted, in bytes.
const MAX_PATH_BYTES: usize = 512;
/// Most steps in one path.
const MAX_STEPS: usize = 32;

impl JsonPath {
    /// Parses `$.a.b[*].c`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() > MAX_PATH_BYTES {
            return Err(format!("is longer than {MAX_PATH_BYTES} bytes"));
        }
        let rest = text
            .strip_prefix('$')
            .ok_or("must start with $ (the value's root), e.g. $.email")?;
        let mut steps = Vec::new();
        let mut rest = rest;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("[*]") {
                steps.push(Step::Each);
                rest = after;
            } else if let Some(after) = rest.strip_prefix('.') {
                let end = after.find(['.', '[']).unwrap_or(after.len());
                let name = &after[..end];
                if name.is_empty() || name.contains([']', '*', '"', '\'']) {
                    return Err(format!(
                        "has an empty or unsupported member name at '{rest}': use .name steps \
                         and [*] for array elements"
                    ));
                }
                steps.push(Step::Member(name.to_owned()));
                rest = &after[end..];
            } else {
                return Err(format!(
                    "cannot read '{rest}': steps are .name (an object member) and [*] (every \
                     array element)"
                ));
            }
        }
        match steps.last() {
            Some(Step::Member(_)) => {}
            Some(Step::Each) => return Err("must end with a member name, not [*]".to_owned()),
            None => return Err("must name a field ($ alone is the whole value)".to_owned()),
        }
        if steps.len() > MAX_STEPS {
            return Err(format!("has more than {MAX_STEPS} steps"));
        }
        Ok(Self {
            source: text.to_owned(),
            steps,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_paths_parse_and_bad_ones_say_why() {
        let p = JsonPath::parse("$.items[*].name").unwrap();
        assert_eq!(
            p.steps(),
            &[
                Step::Member("items".into()),
                Step::Each,
                Step::Member("name".into())
            ]
        );
        assert_eq!(JsonPath::parse("$.card.number").unwrap().steps().len(), 2);
        for bad in [
            "email", "$", "$.", "$.a..b", "$.a[0]", "$.a[*]", "$..a", "$.a['b']",
        ] {
            assert!(JsonPath::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
