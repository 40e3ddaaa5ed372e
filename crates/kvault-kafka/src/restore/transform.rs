//! The restore's transform step (`filter_expression`, `sample`, `exclude_keys`, `mask`), a
//! block at a time on the reader's blocking thread, before anything reaches the producer (so
//! the producer, the offset checks and the tallies see only what is restored): drop what
//! `exclude_keys`, `sample` and the filter leave out (cheapest first), then mask what is left
//! into a new block. The filter is compiled through the domain's `RecordFilters` port (the
//! CEL of migrate and browse); the rules themselves are `kvault_domain::restore_transform`'s.

use std::borrow::Cow;
use std::sync::Mutex;

use kvault_domain::cel_limits::EvalBudget;
use kvault_domain::error::DomainResult;
use kvault_domain::ports::{FilterFailure, RecordFilter, RecordFilters};
use kvault_domain::record_block::{RecordBlock, RecordMeta, RecordView};
use kvault_domain::restore::RestorePlan;
use kvault_domain::restore_transform::{Masker, TransformCounts, TransformPlan, ValueMask};
use kvault_domain::{DomainError, ValidationError};

use crate::transform::CelFilters;

/// A restore's transform, made ready to run, and its running counts.
pub(super) struct TransformStep {
    plan: TransformPlan,
    filter: Option<Box<dyn RecordFilter>>,
    masker: Option<Masker>,
    budget: EvalBudget,
    counts: Mutex<TransformCounts>,
}

impl TransformStep {
    /// `None` when the plan transforms nothing; a filter that does not compile, or a hash
    /// rule without a configured key, is the request's 400.
    pub(super) fn prepare(plan: &RestorePlan) -> DomainResult<Option<Self>> {
        let Some(t) = &plan.transform else {
            return Ok(None);
        };
        let filter = t
            .filter_expression
            .as_deref()
            .map(|expr| {
                CelFilters.compile(expr).map_err(|e| ValidationError {
                    field: "filter_expression".to_owned(),
                    ..e
                })
            })
            .transpose()?;
        let masker = (!t.mask.is_empty())
            .then(|| Masker::new(&t.mask, t.hash_key.as_ref()))
            .transpose()?;
        Ok(Some(Self {
            plan: t.clone(),
            filter,
            masker,
            budget: EvalBudget::unbounded(),
            counts: Mutex::new(TransformCounts::for_plan(t)),
        }))
    }

    /// The records of `block` (from source `partition`) to restore, masked.
    pub(super) fn apply(
        &self,
        partition: i32,
        mut block: RecordBlock,
    ) -> DomainResult<RecordBlock> {
        let mut counts = TransformCounts::for_plan(&self.plan);
        counts.records_read = block.len() as u64;
        let mut failure = None;
        block.retain(|r| {
            failure.is_none()
                && match self.keeps(partition, r, &mut counts) {
                    Ok(keep) => keep,
                    Err(e) => {
                        failure = Some(e);
                        false
                    }
                }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        counts.records_restored = block.len() as u64;
        let out = match &self.masker {
            None => block,
            Some(masker) => mask_block(masker, partition, &block, &mut counts)?,
        };
        self.counts
            .lock()
            .map_err(|_| DomainError::internal("transform counts lock poisoned"))?
            .merge(&counts);
        Ok(out)
    }

    /// The counts so far.
    pub(super) fn counts(&self) -> TransformCounts {
        self.counts
            .lock()
            .map(|c| c.clone())
            .unwrap_or_else(|_| TransformCounts::for_plan(&self.plan))
    }

    fn keeps(
        &self,
        partition: i32,
        r: &RecordView<'_>,
        counts: &mut TransformCounts,
    ) -> DomainResult<bool> {
        let excluded = &self.plan.exclude_keys;
        if !excluded.is_empty() && r.key.is_some_and(|k| excluded.contains(k)) {
            counts.excluded += 1;
            return Ok(false);
        }
        if let Some(sample) = &self.plan.sample {
            if !sample.keeps(partition, r.offset, r.key) {
                counts.sampled_out += 1;
                return Ok(false);
            }
        }
        let Some(filter) = &self.filter else {
            return Ok(true);
        };
        let keep = match filter.matches(partition, &r.to_record(), &self.budget) {
            Ok(keep) => keep,
            // As for browse: an expression failing on a record (`json` of a value that is
            // not JSON, say) means the record does not match.
            Err(FilterFailure::Eval(_)) => false,
            Err(FilterFailure::Budget(why)) => {
                return Err(DomainError::Validation(ValidationError::new(
                    "filter_expression",
                    self.plan.filter_expression.clone().unwrap_or_default(),
                    format!(
                        "evaluation stopped at partition {partition} offset {}: {why}",
                        r.offset
                    ),
                )))
            }
        };
        if !keep {
            counts.filtered_out += 1;
        }
        Ok(keep)
    }
}

/// Applies `step` (when there is one) to a block.
pub(super) fn apply(
    step: Option<&TransformStep>,
    partition: i32,
    block: RecordBlock,
) -> DomainResult<RecordBlock> {
    match step {
        Some(step) => step.apply(partition, block),
        None => Ok(block),
    }
}

/// A copy of `block` with every record masked (records no rule touches are copied as they
/// are, so a block is copied once, not per field).
fn mask_block(
    masker: &Masker,
    partition: i32,
    block: &RecordBlock,
    counts: &mut TransformCounts,
) -> DomainResult<RecordBlock> {
    let mut out = RecordBlock::with_capacity(block.byte_len() + block.len() * 16, block.len());
    let mut masked = vec![0u64; counts.fields_masked.len()];
    for r in block.iter() {
        let value = match r.value.map(|v| masker.mask_value(v, &mut masked)) {
            None | Some(ValueMask::Unchanged) => r.value.map(Cow::Borrowed),
            Some(ValueMask::Masked(bytes)) => Some(Cow::Owned(bytes)),
            Some(ValueMask::NotJson { refuse: Some(rule) }) => {
                return Err(DomainError::Validation(ValidationError::new(
                    format!("mask[{rule}].on_non_json"),
                    "refuse",
                    format!(
                        "the value at partition {partition} offset {} is not JSON, and the rule \
                         refuses such values; the restore stopped there",
                        r.offset
                    ),
                )))
            }
            Some(ValueMask::NotJson { refuse: None }) => {
                counts.values_not_json += 1;
                r.value.map(Cow::Borrowed)
            }
        };
        let key = match masker.mask_key(r.key, &mut masked) {
            None => r.key.map(Cow::Borrowed),
            Some(k) => k.map(Cow::Owned),
        };
        let meta = RecordMeta {
            offset: r.offset,
            timestamp: r.timestamp,
            timestamp_type: r.timestamp_type,
        };
        match masker.mask_headers(r.headers(), &mut masked) {
            None => out.push_copied(meta, key.as_deref(), value.as_deref(), r.headers()),
            Some(headers) => out.push_copied(
                meta,
                key.as_deref(),
                value.as_deref(),
                headers.iter().map(|(n, v)| (*n, v.as_deref())),
            ),
        }
    }
    for (count, add) in counts.fields_masked.iter_mut().zip(masked) {
        count.masked += add;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvault_domain::record::{Header, Record, TimestampType};
    use kvault_domain::RestoreRequest;

    fn block(records: &[(Option<&str>, Option<&str>)]) -> RecordBlock {
        let mut b = RecordBlock::default();
        for (i, (k, v)) in records.iter().enumerate() {
            b.push_owned(&Record {
                offset: i as i64,
                timestamp: 1,
                timestamp_type: TimestampType::CreateTime,
                key: k.map(|k| k.as_bytes().to_vec()),
                value: v.map(|v| v.as_bytes().to_vec()),
                headers: vec![Header {
                    key: "h".into(),
                    value: Some(b"v".to_vec()),
                }],
            });
        }
        b
    }

    fn step(json: serde_json::Value) -> TransformStep {
        let mut base = serde_json::json!({"backup_id": "b", "target_topic": "t"});
        base.as_object_mut()
            .unwrap()
            .extend(json.as_object().unwrap().clone());
        let plan = serde_json::from_value::<RestoreRequest>(base)
            .unwrap()
            .validate()
            .unwrap();
        TransformStep::prepare(&plan).unwrap().unwrap()
    }

    #[test]
    fn the_step_drops_counts_and_masks() {
        let step = step(serde_json::json!({
            "mask": [{"path": "$.e", "action": "redact"}],
            "exclude_keys": ["gone"],
            "filter_expression": "value != 'skip'"
        }));
        let out = step
            .apply(
                0,
                block(&[
                    (Some("a"), Some(r#"{"e":"x","f":1}"#)),
                    (Some("gone"), Some(r#"{"e":"y"}"#)),
                    (None, Some("plain")),
                    (Some("b"), None),
                    (Some("c"), Some("skip")),
                ]),
            )
            .unwrap();
        let records = out.to_records();
        assert_eq!(records.len(), 3);
        assert_eq!(
            records[0].value.as_deref(),
            Some(&br#"{"e":"[redacted]","f":1}"#[..])
        );
        assert_eq!(
            records[0].headers,
            block(&[(None, None)]).to_records()[0].headers
        );
        assert_eq!(records[1].value.as_deref(), Some(&b"plain"[..]));
        assert_eq!(records[2].value, None);
        let counts = step.counts();
        assert_eq!(
            (
                counts.records_read,
                counts.records_restored,
                counts.excluded,
                counts.filtered_out,
                counts.values_not_json
            ),
            (5, 3, 1, 1, 1)
        );
        assert_eq!(counts.fields_masked[0].masked, 1);
    }

    #[test]
    fn a_refusing_rule_stops_at_a_value_that_is_not_json() {
        let step = step(serde_json::json!({
            "mask": [{"path": "$.e", "action": "null", "on_non_json": "refuse"}]
        }));
        let err = step
            .apply(3, block(&[(None, Some("{}")), (None, Some("plain"))]))
            .unwrap_err();
        let DomainError::Validation(v) = err else {
            panic!("{err:?}")
        };
        assert_eq!(v.field, "mask[0].on_non_json");
        assert!(v.message.contains("partition 3 offset 1"), "{}", v.message);
    }

    #[test]
    fn a_bad_filter_is_named_as_the_request_names_it() {
        let plan = serde_json::from_value::<RestoreRequest>(serde_json::json!({
            "backup_id": "b", "target_topic": "t", "filter_expression": "nosuchvar == 1"
        }))
        .unwrap()
        .validate()
        .unwrap();
        let Err(DomainError::Validation(v)) = TransformStep::prepare(&plan) else {
            panic!("expected a validation error")
        };
        assert_eq!(v.field, "filter_expression");
    }
}
