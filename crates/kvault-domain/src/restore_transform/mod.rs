//! Restores for test environments: which records a restore keeps (`filter_expression`,
//! `sample`, `exclude_keys`) and how it rewrites the ones it keeps (`mask`), as the request
//! declares them; their validation into a [`TransformPlan`]; masking ([`Masker`]) and
//! sampling ([`Sampler`]) one record; and the counts a result reports ([`TransformCounts`]).
//! The engines run them as a step of each restore, with the filter compiled through the
//! [`crate::ports::RecordFilters`] port.
//!
//! Every decision is a function of the record and the request alone (the filter is CEL over
//! the record, the sample a SHA-256 of the key or of partition and offset, the excluded keys
//! a set), so the same request restores the same records every time.

mod counts;
mod key_list;
mod mask;
mod path;
mod raw;
mod sample;

use std::collections::BTreeSet;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

pub use counts::{RuleCount, TransformCounts};
pub use key_list::{parse_key_list, MAX_LISTED_KEYS};
pub use mask::{HashKey, Masker, ValueMask};
pub use path::JsonPath;
pub use sample::Sampler;

/// Most mask rules in one request.
pub const MAX_MASK_RULES: usize = 64;
/// Most keys `exclude_keys` may list.
pub const MAX_EXCLUDED_KEYS: usize = 100_000;
/// What `redact` writes in place of a field (a JSON string in a value; these bytes in a header
/// or key).
pub const REDACTED: &str = "[redacted]";

/// `sample`: a deterministic fraction of the records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SampleRequest {
    /// The fraction kept, above 0 and at most 1.
    pub ratio: f64,
    /// `key` (default): every record of a sampled key, so entities stay whole; `record`: each
    /// record on its own (by source partition and offset).
    #[serde(default)]
    pub by: SampleBy,
    /// Another seed draws another sample of the same size (default 0).
    #[serde(default)]
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SampleBy {
    #[default]
    Key,
    Record,
}

/// One `mask` rule: exactly one of `path` (a JSON value's field), `header` (by name) or `key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MaskRule {
    /// `$.email`, `$.card.number`, `$.items[*].name`: member names after dots, `[*]` for every
    /// element of an array; the last step names a member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Every header of this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// The record key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub key: bool,
    pub action: MaskAction,
    /// For `hash`: `hex` (default) or `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<HashEncoding>,
    /// For `path`: a value that is not JSON is restored unmasked (`keep`, default) or fails
    /// the restore (`refuse`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_non_json: Option<OnNonJson>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MaskAction {
    /// A fixed placeholder, `[redacted]`.
    Redact,
    /// HMAC-SHA-256 under the configured `masking.hmac_key`: equal inputs give equal outputs.
    Hash,
    /// JSON `null`; a null header value; a null key.
    Null,
    /// Removes the member or the header; a key cannot be removed and becomes null.
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HashEncoding {
    #[default]
    Hex,
    Base64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OnNonJson {
    #[default]
    Keep,
    Refuse,
}

/// One entry of `exclude_keys`: a string (the key's UTF-8 bytes), `{"base64": "..."}` for a
/// key that is not text, or `{"list": "NAME"}` for every key of a stored list
/// (`masking.key_lists.NAME` in the configuration, read when the restore starts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum ExcludedKey {
    Text(String),
    Bytes { base64: String },
    List { list: String },
}

/// The transform fields of a restore request, as [`TransformPlan::validate`] takes them.
#[derive(Debug, Clone, Copy)]
pub struct TransformFields<'a> {
    pub filter_expression: Option<&'a str>,
    pub sample: Option<&'a SampleRequest>,
    pub mask: Option<&'a [MaskRule]>,
    pub exclude_keys: Option<&'a [ExcludedKey]>,
}

/// A validated rule: where it applies and what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulePlan {
    pub target: RuleTarget,
    pub action: MaskAction,
    pub encoding: HashEncoding,
    pub on_non_json: OnNonJson,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleTarget {
    Path(JsonPath),
    Header(String),
    Key,
}

impl RuleTarget {
    /// How the result names the rule: the path, `header:NAME` or `key`.
    pub fn label(&self) -> String {
        match self {
            RuleTarget::Path(p) => p.source().to_owned(),
            RuleTarget::Header(h) => format!("header:{h}"),
            RuleTarget::Key => "key".to_owned(),
        }
    }
}

/// What a restore keeps and rewrites, validated.
#[derive(Clone, PartialEq)]
pub struct TransformPlan {
    pub filter_expression: Option<String>,
    pub sample: Option<Sampler>,
    pub mask: Vec<RulePlan>,
    pub exclude_keys: BTreeSet<Vec<u8>>,
    /// The stored key lists whose keys are excluded too; the engine that runs the restore
    /// reads them into `exclude_keys` when it starts, so a list that grew counts at once.
    pub exclude_lists: Vec<String>,
    /// The configured HMAC key of the `hash` action: not part of the request, set by the
    /// engine that runs the restore (from its configuration) before the plan runs.
    pub hash_key: Option<HashKey>,
}

impl std::fmt::Debug for TransformPlan {
    // Excluded keys may be personal data (erasure requests): only their count is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransformPlan")
            .field("filter_expression", &self.filter_expression)
            .field("sample", &self.sample)
            .field("mask", &self.mask)
            .field("exclude_keys", &self.exclude_keys.len())
            .field("exclude_lists", &self.exclude_lists)
            .finish()
    }
}

impl TransformPlan {
    /// `None` when the request asks for none of it.
    pub fn validate(f: TransformFields<'_>) -> Result<Option<Self>, ValidationError> {
        if f.filter_expression.is_none()
            && f.sample.is_none()
            && f.mask.is_none_or(|m| m.is_empty())
            && f.exclude_keys.is_none_or(|k| k.is_empty())
        {
            return Ok(None);
        }
        if let Some(expr) = f.filter_expression {
            crate::cel_limits::check(expr).map_err(|refused| {
                let shown: String = expr.chars().take(200).collect();
                ValidationError::new("filter_expression", shown, refused.to_string())
            })?;
        }
        let sample = f.sample.map(Sampler::validate).transpose()?;
        let mask = f.mask.map(validate_mask).transpose()?.unwrap_or_default();
        let (exclude_keys, exclude_lists) = f
            .exclude_keys
            .map(validate_excluded)
            .transpose()?
            .unwrap_or_default();
        Ok(Some(Self {
            filter_expression: f.filter_expression.map(str::to_owned),
            sample,
            mask,
            exclude_keys,
            exclude_lists,
            hash_key: None,
        }))
    }

    /// Whether the key is rewritten (then records are partitioned by the masked key).
    pub fn masks_key(&self) -> bool {
        self.mask.iter().any(|r| r.target == RuleTarget::Key)
    }

    /// Whether a rule hashes (and so needs the configured HMAC key).
    pub fn hashes(&self) -> bool {
        self.mask.iter().any(|r| r.action == MaskAction::Hash)
    }

    /// The request fields this plan was made of, for the `preserve_offsets` refusal.
    pub fn fields(&self) -> Vec<&'static str> {
        let mut fields = Vec::new();
        if self.filter_expression.is_some() {
            fields.push("filter_expression");
        }
        if self.sample.is_some() {
            fields.push("sample");
        }
        if !self.mask.is_empty() {
            fields.push("mask");
        }
        if !self.exclude_keys.is_empty() || !self.exclude_lists.is_empty() {
            fields.push("exclude_keys");
        }
        fields
    }
}

fn validate_mask(rules: &[MaskRule]) -> Result<Vec<RulePlan>, ValidationError> {
    if rules.len() > MAX_MASK_RULES {
        return Err(ValidationError::new(
            "mask",
            rules.len(),
            format!("at most {MAX_MASK_RULES} rules"),
        ));
    }
    let mut seen = BTreeSet::new();
    rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            let plan = validate_rule(i, rule)?;
            if !seen.insert(plan.target.label()) {
                return Err(ValidationError::new(
                    format!("mask[{i}]"),
                    plan.target.label(),
                    "another rule already masks this field",
                ));
            }
            Ok(plan)
        })
        .collect()
}

fn validate_rule(i: usize, rule: &MaskRule) -> Result<RulePlan, ValidationError> {
    let field = |name: &str| format!("mask[{i}].{name}");
    let target =
        match (&rule.path, &rule.header, rule.key) {
            (Some(path), None, false) => RuleTarget::Path(
                JsonPath::parse(path).map_err(|m| ValidationError::new(field("path"), path, m))?,
            ),
            (None, None, true) => RuleTarget::Key,
            (None, Some(name), false) if !name.is_empty() => RuleTarget::Header(name.clone()),
            (None, Some(name), false) => {
                return Err(ValidationError::new(
                    field("header"),
                    name,
                    "must not be empty",
                ))
            }
            _ => return Err(ValidationError::new(
                format!("mask[{i}]"),
                "",
                "needs exactly one of path (a JSON field of the value), header (a header name) \
                 or key: true",
            )),
        };
    if rule.encoding.is_some() && rule.action != MaskAction::Hash {
        return Err(ValidationError::new(
            field("encoding"),
            "",
            "applies to the hash action only",
        ));
    }
    if rule.on_non_json.is_some() && !matches!(target, RuleTarget::Path(_)) {
        return Err(ValidationError::new(
            field("on_non_json"),
            "",
            "applies to path rules only (headers and keys are bytes, never parsed)",
        ));
    }
    Ok(RulePlan {
        target,
        action: rule.action,
        encoding: rule.encoding.unwrap_or_default(),
        on_non_json: rule.on_non_json.unwrap_or_default(),
    })
}

/// The listed keys as bytes, and the names of the stored lists.
fn validate_excluded(
    keys: &[ExcludedKey],
) -> Result<(BTreeSet<Vec<u8>>, Vec<String>), ValidationError> {
    if keys.len() > MAX_EXCLUDED_KEYS {
        return Err(ValidationError::new(
            "exclude_keys",
            keys.len(),
            format!("at most {MAX_EXCLUDED_KEYS} keys"),
        ));
    }
    let (mut bytes, mut lists) = (BTreeSet::new(), Vec::new());
    for (i, key) in keys.iter().enumerate() {
        match key {
            ExcludedKey::Text(text) => {
                bytes.insert(text.as_bytes().to_vec());
            }
            ExcludedKey::Bytes { base64 } => {
                let key = base64::engine::general_purpose::STANDARD
                    .decode(base64)
                    .map_err(|e| {
                        ValidationError::new(
                            format!("exclude_keys[{i}].base64"),
                            base64.chars().take(100).collect::<String>(),
                            format!("is not standard base64: {e}"),
                        )
                    })?;
                bytes.insert(key);
            }
            ExcludedKey::List { list } if list.is_empty() => {
                return Err(ValidationError::new(
                    format!("exclude_keys[{i}].list"),
                    "",
                    "must name a list of masking.key_lists",
                ))
            }
            ExcludedKey::List { list } => lists.push(list.clone()),
        }
    }
    Ok((bytes, lists))
}

#[cfg(test)]
mod tests;
