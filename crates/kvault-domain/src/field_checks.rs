//! Checks on request fields that several requests share (a backup's and a restore's
//! `partitions` and `rate_limit_per_second`), so each says the same about the same mistake.

use crate::error::ValidationError;

/// Partition lists: non-empty, no negatives, no repeats.
pub(crate) fn validate_partition_list(
    field: &str,
    partitions: &[i32],
) -> Result<(), ValidationError> {
    if partitions.is_empty() {
        return Err(ValidationError::new(
            field,
            "[]",
            "must name at least one partition (omit it for all partitions)",
        ));
    }
    if let Some(p) = partitions.iter().find(|p| **p < 0) {
        return Err(ValidationError::new(
            field,
            p,
            "partition numbers start at 0",
        ));
    }
    let mut seen = partitions.to_vec();
    seen.sort_unstable();
    if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
        return Err(ValidationError::new(field, w[0], "partition listed twice"));
    }
    Ok(())
}

/// The requested rate, or `default`; 0 is refused.
pub(crate) fn validate_rate(requested: Option<u32>, default: u32) -> Result<u32, ValidationError> {
    match requested {
        Some(0) => Err(ValidationError::new(
            "rate_limit_per_second",
            0,
            "must be at least 1 message per second",
        )),
        Some(n) => Ok(n),
        None => Ok(default),
    }
}
