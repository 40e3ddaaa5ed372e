//! One keyed request quota (per minute) with its refusal counter: the per-subject limit for
//! token holders and the per-address limit for requests without a valid token are both this,
//! keyed differently.

use std::hash::Hash;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::error::ApiError;

/// Requests per minute per key; refusals answered 429 with the wait, and counted.
pub struct KeyedQuota<K: Hash + Eq + Clone> {
    limiter: RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>,
    /// Counts the requests the quota refuses (`kvault_rate_limit_refusals_total`).
    refused: Option<prometheus::IntCounter>,
}

impl<K: Hash + Eq + Clone> KeyedQuota<K> {
    pub fn per_minute(per_minute: NonZeroU32) -> Self {
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
            refused: None,
        }
    }

    /// Counts every refused request in `counter`.
    pub fn counting_refusals(mut self, counter: prometheus::IntCounter) -> Self {
        self.refused = Some(counter);
        self
    }

    /// Counts one request of `key`; when its quota is spent, a 429 saying `what` was reached
    /// and how long to wait (whole seconds, rounded up).
    pub fn check(&self, key: &K, what: &str) -> Result<(), ApiError> {
        self.limiter.check_key(key).map_err(|not_until| {
            if let Some(refused) = &self.refused {
                refused.inc();
            }
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::too_many(what, wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
        })
    }

    /// Drops the state of keys that have been idle, so memory stays bounded.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_has_its_own_quota_and_refusals_are_counted() {
        let counter = prometheus::IntCounter::new("refused", "refused").unwrap();
        let quota =
            KeyedQuota::per_minute(NonZeroU32::new(2).unwrap()).counting_refusals(counter.clone());
        quota.check(&"a", "limit").unwrap();
        quota.check(&"a", "limit").unwrap();
        let refused = quota.check(&"a", "the limit for a").unwrap_err();
        assert_eq!(refused.status.as_u16(), 429);
        assert!(refused.message.contains("the limit for a"));
        quota.check(&"b", "limit").unwrap();
        assert_eq!(counter.get(), 1);
    }
}
