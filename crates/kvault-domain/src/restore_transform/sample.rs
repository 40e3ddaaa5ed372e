//! `sample`: a record is kept when a SHA-256 of the seed and of its key (or of its source
//! partition and offset) falls below the ratio. SHA-256 rather than a faster hash with fixed
//! keys: its output is specified and stable across versions and platforms, so a sample
//! drawn today is the sample drawn next year; it costs well under a microsecond per record.

use sha2::{Digest, Sha256};

use super::{SampleBy, SampleRequest};
use crate::error::ValidationError;

/// A validated sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampler {
    pub ratio: f64,
    pub by: SampleBy,
    pub seed: u64,
    /// Records whose hash (as a u64) is below this are kept; `None` keeps everything.
    threshold: Option<u64>,
}

impl Sampler {
    pub fn validate(request: &SampleRequest) -> Result<Self, ValidationError> {
        let ratio = request.ratio;
        if !(ratio > 0.0 && ratio <= 1.0) {
            return Err(ValidationError::new(
                "sample.ratio",
                ratio,
                "must be above 0 and at most 1 (0.01 keeps 1 %)",
            ));
        }
        // 2^64 * ratio, computed in f64: exact enough for any ratio a request can state.
        let threshold = (ratio < 1.0).then_some((ratio * 18_446_744_073_709_551_616.0) as u64);
        Ok(Self {
            ratio,
            by: request.by,
            seed: request.seed,
            threshold,
        })
    }

    /// Whether the record at `offset` of source `partition` with `key` is in the sample. By
    /// key, null-keyed records are one group (all in or all out).
    pub fn keeps(&self, partition: i32, offset: i64, key: Option<&[u8]>) -> bool {
        let Some(threshold) = self.threshold else {
            return true;
        };
        let mut hash = Sha256::new();
        hash.update(b"kvault.sample\0");
        hash.update(self.seed.to_be_bytes());
        match self.by {
            SampleBy::Key => match key {
                Some(key) => {
                    hash.update([1]);
                    hash.update(key);
                }
                None => hash.update([0]),
            },
            SampleBy::Record => {
                hash.update(partition.to_be_bytes());
                hash.update(offset.to_be_bytes());
            }
        }
        let digest = hash.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first) < threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(ratio: f64, by: SampleBy, seed: u64) -> Sampler {
        Sampler::validate(&SampleRequest { ratio, by, seed }).unwrap()
    }

    #[test]
    fn a_sample_is_the_stated_fraction_and_the_same_every_time() {
        let s = sampler(0.1, SampleBy::Key, 0);
        let keys: Vec<String> = (0..20_000).map(|i| format!("user-{i}")).collect();
        let kept: Vec<&String> = keys
            .iter()
            .filter(|k| s.keeps(0, 0, Some(k.as_bytes())))
            .collect();
        assert!((1_800..2_200).contains(&kept.len()), "{}", kept.len());
        // The same key in another partition, at another offset: the same answer.
        assert!(kept.iter().all(|k| s.keeps(5, 99, Some(k.as_bytes()))));
        let other_seed = sampler(0.1, SampleBy::Key, 1);
        let again = keys
            .iter()
            .filter(|k| other_seed.keeps(0, 0, Some(k.as_bytes())))
            .count();
        assert!((1_800..2_200).contains(&again));
        assert_ne!(
            kept.len(),
            keys.iter()
                .filter(|k| s.keeps(0, 0, Some(k.as_bytes()))
                    && other_seed.keeps(0, 0, Some(k.as_bytes())))
                .count(),
            "another seed draws another sample"
        );
        let by_record = sampler(0.5, SampleBy::Record, 0);
        let n = (0..10_000)
            .filter(|o| by_record.keeps(1, *o, Some(b"same")))
            .count();
        assert!((4_700..5_300).contains(&n), "{n}");
        assert!(sampler(1.0, SampleBy::Key, 0).keeps(0, 0, None));
    }

    #[test]
    fn ratios_outside_the_unit_interval_are_refused() {
        for ratio in [0.0, -0.5, 1.5, f64::NAN] {
            let err = Sampler::validate(&SampleRequest {
                ratio,
                by: SampleBy::Key,
                seed: 0,
            })
            .unwrap_err();
            assert_eq!(err.field, "sample.ratio");
        }
    }
}
