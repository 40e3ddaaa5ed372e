//! Masking one record: JSON fields by path, headers by name, the key. A masked value is the
//! original bytes with only the named fields' spans replaced: the value is parsed one level
//! at a time with `serde_json`'s `RawValue` (each member's value borrowed from the original
//! text, so its position is known), and only the levels a rule descends into are parsed.
//! Nothing is re-serialized, so whitespace, member order, number spelling and every other
//! field stay byte-identical.

use std::borrow::Cow;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::value::RawValue;
use sha2::Sha256;

use super::path::Step;
use super::raw::{first, Members, ARRAY, OBJECT, QUOTE};
use super::{HashEncoding, MaskAction, RulePlan, RuleTarget, REDACTED};
use crate::error::ValidationError;

/// A header after masking: its name and its (possibly rewritten) value; `None` is a null value.
pub type MaskedHeader<'a> = (&'a str, Option<Cow<'a, [u8]>>);

/// The HMAC key of the `hash` action (from configuration); never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct HashKey(Vec<u8>);

impl HashKey {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }
}

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKey([redacted])")
    }
}

/// The path rules as a tree, so a value is walked once for all of them.
#[derive(Debug, Default)]
struct Node {
    members: Vec<(String, Node)>,
    each: Option<Box<Node>>,
    /// The rule that masks the field this node stands for.
    rule: Option<usize>,
}

impl Node {
    fn member(&self, name: &str) -> Option<&Node> {
        self.members.iter().find(|(n, _)| n == name).map(|(_, n)| n)
    }
}

/// What masking did to a value.
#[derive(Debug, PartialEq, Eq)]
pub enum ValueMask {
    /// No rule matched a field (or no path rules): the original bytes stand.
    Unchanged,
    Masked(Vec<u8>),
    /// The value is not JSON; `refuse` is the rule index that refuses such values, if any.
    NotJson {
        refuse: Option<usize>,
    },
}

/// Starts an escape in a JSON string.
const ESCAPE: char = 0x5c as char;

/// A byte span of the original value and what replaces it.
struct Edit {
    start: usize,
    end: usize,
    with: Vec<u8>,
}

/// Compiled mask rules.
pub struct Masker {
    rules: Vec<RulePlan>,
    tree: Node,
    headers: Vec<(String, usize)>,
    key: Option<usize>,
    hmac: Option<Hmac<Sha256>>,
}

impl Masker {
    /// `key` is required when a rule hashes.
    pub fn new(rules: &[RulePlan], key: Option<&HashKey>) -> Result<Self, ValidationError> {
        let hmac = match key {
            Some(k) => Some(Hmac::<Sha256>::new_from_slice(&k.0).map_err(|e| {
                ValidationError::new("masking.hmac_key", "[redacted]", e.to_string())
            })?),
            None => None,
        };
        let mut masker = Self {
            rules: rules.to_vec(),
            tree: Node::default(),
            headers: Vec::new(),
            key: None,
            hmac,
        };
        for (i, rule) in rules.iter().enumerate() {
            if rule.action == MaskAction::Hash && masker.hmac.is_none() {
                return Err(ValidationError::new(
                    format!("mask[{i}].action"),
                    "hash",
                    "hashing needs an HMAC key: set masking.hmac_key in kvault's configuration \
                     (KVAULT__MASKING__HMAC_KEY)",
                ));
            }
            match &rule.target {
                RuleTarget::Path(path) => {
                    let mut node = &mut masker.tree;
                    for step in path.steps() {
                        node = match step {
                            Step::Each => &mut **node.each.get_or_insert_with(Box::default),
                            Step::Member(name) => {
                                let at = match node.members.iter().position(|(n, _)| n == name) {
                                    Some(at) => at,
                                    None => {
                                        node.members.push((name.clone(), Node::default()));
                                        node.members.len() - 1
                                    }
                                };
                                &mut node.members[at].1
                            }
                        };
                    }
                    node.rule = Some(i);
                }
                RuleTarget::Header(name) => masker.headers.push((name.clone(), i)),
                RuleTarget::Key => masker.key = Some(i),
            }
        }
        Ok(masker)
    }

    pub fn has_value_rules(&self) -> bool {
        !self.tree.members.is_empty()
    }

    /// Masks a value's fields; `counts[i]` grows by the fields rule `i` rewrote.
    pub fn mask_value(&self, value: &[u8], counts: &mut [u64]) -> ValueMask {
        if !self.has_value_rules() {
            return ValueMask::Unchanged;
        }
        let not_json = || ValueMask::NotJson {
            refuse: self.rules.iter().position(|r| {
                matches!(r.target, RuleTarget::Path(_)) && r.on_non_json == super::OnNonJson::Refuse
            }),
        };
        let Ok(text) = std::str::from_utf8(value) else {
            return not_json();
        };
        let mut edits = Vec::new();
        let root = text.trim_start();
        let walked = if first(root) == Some(OBJECT) {
            self.walk_object(text, root, &self.tree, &mut edits, counts)
        } else {
            // Valid JSON that is not an object has no member to mask.
            serde_json::from_str::<&RawValue>(text).map(|_| ())
        };
        if walked.is_err() {
            return not_json();
        }
        if edits.is_empty() {
            return ValueMask::Unchanged;
        }
        ValueMask::Masked(splice(value, edits))
    }

    fn walk_object(
        &self,
        root: &str,
        object: &str,
        node: &Node,
        edits: &mut Vec<Edit>,
        counts: &mut [u64],
    ) -> Result<(), serde_json::Error> {
        let members: Members<'_> = serde_json::from_str(object)?;
        let start = offset(root, object);
        // Each member's span, from its name's opening quote to the end of its value.
        let mut spans = Vec::with_capacity(members.0.len());
        let mut after = start + 1;
        for (_, raw) in &members.0 {
            let name_at = after
                + root.as_bytes()[after..]
                    .iter()
                    .position(|b| *b == QUOTE)
                    .unwrap_or(0);
            let value_at = offset(root, raw.get());
            after = value_at + raw.get().len();
            spans.push((name_at, value_at, after));
        }
        let mut dropped = vec![false; members.0.len()];
        for (i, (name, raw)) in members.0.iter().enumerate() {
            let Some(child) = node.member(&name.0) else {
                continue;
            };
            match child.rule {
                Some(r) if self.rules[r].action == MaskAction::Drop => {
                    dropped[i] = true;
                    counts[r] += 1;
                }
                Some(r) => {
                    let (_, at, end) = spans[i];
                    let with = self.render_json(&self.rules[r], raw.get());
                    edits.push(Edit {
                        start: at,
                        end,
                        with,
                    });
                    counts[r] += 1;
                }
                None => self.walk_value(root, raw.get(), child, edits, counts)?,
            }
        }
        drop_members(&spans, &dropped, edits);
        Ok(())
    }

    fn walk_value(
        &self,
        root: &str,
        raw: &str,
        node: &Node,
        edits: &mut Vec<Edit>,
        counts: &mut [u64],
    ) -> Result<(), serde_json::Error> {
        if first(raw) == Some(OBJECT) && !node.members.is_empty() {
            self.walk_object(root, raw, node, edits, counts)
        } else if first(raw) == Some(ARRAY) {
            let Some(each) = node.each.as_deref() else {
                return Ok(());
            };
            let items: Vec<&RawValue> = serde_json::from_str(raw)?;
            for item in items {
                self.walk_value(root, item.get(), each, edits, counts)?;
            }
            Ok(())
        } else {
            Ok(())
        }
    }

    /// The JSON text replacing a field's value.
    fn render_json(&self, rule: &RulePlan, raw: &str) -> Vec<u8> {
        match rule.action {
            MaskAction::Redact => format!("\"{REDACTED}\"").into_bytes(),
            MaskAction::Null | MaskAction::Drop => b"null".to_vec(),
            MaskAction::Hash => {
                // A string hashes as its text (so `"a@b"` in one topic and the bytes `a@b`
                // in a header or key of another hash alike); anything else as its JSON.
                let input: Cow<'_, [u8]> = match raw
                    .strip_prefix(QUOTE as char)
                    .and_then(|r| r.strip_suffix(QUOTE as char))
                {
                    Some(inner) if !inner.contains(ESCAPE) => Cow::Borrowed(inner.as_bytes()),
                    Some(_) => serde_json::from_str::<String>(raw)
                        .map_or(Cow::Borrowed(raw.as_bytes()), |s| {
                            Cow::Owned(s.into_bytes())
                        }),
                    None => Cow::Borrowed(raw.as_bytes()),
                };
                let mut out = Vec::with_capacity(70);
                out.push(QUOTE);
                out.extend_from_slice(self.hash(rule.encoding, &input).as_bytes());
                out.push(QUOTE);
                out
            }
        }
    }

    /// HMAC-SHA-256 of `input`, encoded.
    pub fn hash(&self, encoding: HashEncoding, input: &[u8]) -> String {
        let mut mac = self
            .hmac
            .clone()
            .expect("checked in Masker::new: hash rules have a key");
        mac.update(input);
        let digest = mac.finalize().into_bytes();
        match encoding {
            HashEncoding::Hex => hex::encode(digest),
            HashEncoding::Base64 => base64::engine::general_purpose::STANDARD.encode(digest),
        }
    }

    /// The bytes replacing a header value or key (`None`: null), or `None` outside when a
    /// null stays as it is.
    fn render_bytes(&self, rule: &RulePlan, bytes: Option<&[u8]>) -> Option<Option<Vec<u8>>> {
        match (rule.action, bytes) {
            (MaskAction::Null | MaskAction::Drop, Some(_)) => Some(None),
            (_, None) => None,
            (MaskAction::Redact, Some(_)) => Some(Some(REDACTED.as_bytes().to_vec())),
            (MaskAction::Hash, Some(b)) => Some(Some(self.hash(rule.encoding, b).into_bytes())),
        }
    }

    /// The masked key: `None` when the key stays as it is.
    pub fn mask_key(&self, key: Option<&[u8]>, counts: &mut [u64]) -> Option<Option<Vec<u8>>> {
        let rule = self.key?;
        let masked = self.render_bytes(&self.rules[rule], key)?;
        counts[rule] += 1;
        Some(masked)
    }

    /// The masked headers (`None` when no rule names one of them); a dropped header is left out.
    pub fn mask_headers<'a>(
        &self,
        headers: impl Iterator<Item = (&'a str, Option<&'a [u8]>)> + Clone,
        counts: &mut [u64],
    ) -> Option<Vec<MaskedHeader<'a>>> {
        if self.headers.is_empty() {
            return None;
        }
        let rule_of = |name: &str| {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, r)| *r)
        };
        if !headers.clone().any(|(name, _)| rule_of(name).is_some()) {
            return None;
        }
        let mut out = Vec::new();
        for (name, value) in headers {
            let Some(r) = rule_of(name) else {
                out.push((name, value.map(Cow::Borrowed)));
                continue;
            };
            let rule = &self.rules[r];
            if rule.action == MaskAction::Drop {
                counts[r] += 1;
                continue;
            }
            match self.render_bytes(rule, value) {
                Some(masked) => {
                    counts[r] += 1;
                    out.push((name, masked.map(Cow::Owned)));
                }
                None => out.push((name, value.map(Cow::Borrowed))),
            }
        }
        Some(out)
    }
}

/// Where `part` (a slice of `root`) starts in `root`.
fn offset(root: &str, part: &str) -> usize {
    part.as_ptr() as usize - root.as_ptr() as usize
}

/// Removal edits for the dropped members of one object, `spans` being each member's
/// (name start, value start, value end): a run of dropped members goes with the separators
/// up to the next kept member, or, at the end of the object, from the previous kept member's
/// end, so the object stays valid JSON.
fn drop_members(spans: &[(usize, usize, usize)], dropped: &[bool], edits: &mut Vec<Edit>) {
    let mut i = 0;
    while i < spans.len() {
        if !dropped[i] {
            i += 1;
            continue;
        }
        let mut j = i;
        while j + 1 < spans.len() && dropped[j + 1] {
            j += 1;
        }
        let (start, end) = if j + 1 < spans.len() {
            (spans[i].0, spans[j + 1].0)
        } else if i > 0 {
            (spans[i - 1].2, spans[j].2)
        } else {
            (spans[i].0, spans[j].2)
        };
        edits.push(Edit {
            start,
            end,
            with: Vec::new(),
        });
        i = j + 1;
    }
}

/// The value with the edits applied (an edit inside an earlier one is skipped: the outer
/// field's mask already covers it).
fn splice(value: &[u8], mut edits: Vec<Edit>) -> Vec<u8> {
    edits.sort_by_key(|e| (e.start, std::cmp::Reverse(e.end)));
    let mut out = Vec::with_capacity(value.len() + 64);
    let mut at = 0;
    for edit in edits {
        if edit.start < at {
            continue;
        }
        out.extend_from_slice(&value[at..edit.start]);
        out.extend_from_slice(&edit.with);
        at = edit.end;
    }
    out.extend_from_slice(&value[at..]);
    out
}

#[cfg(test)]
mod tests;
