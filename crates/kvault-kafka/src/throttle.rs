//! A messages-per-second token bucket (governor) shared by every partition of one operation,
//! usable from async tasks and from blocking reader threads.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};

type Limiter = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    DefaultClock,
    governor::middleware::NoOpMiddleware<<DefaultClock as Clock>::Instant>,
>;

/// `rate` messages per second, with a burst of one second's worth.
pub struct Throttle {
    limiter: Limiter,
    clock: DefaultClock,
    burst: NonZeroU32,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("per_second", &self.burst)
            .finish()
    }
}

impl Throttle {
    /// `None` for a rate of 0, which validation already refuses.
    pub fn per_second(rate: u32) -> Option<Self> {
        let burst = NonZeroU32::new(rate)?;
        let clock = DefaultClock::default();
        Some(Self {
            limiter: RateLimiter::direct_with_clock(Quota::per_second(burst), clock.clone()),
            clock,
            burst,
        })
    }

    /// Waits (asynchronously) until `n` more messages may pass.
    pub async fn acquire(&self, n: u32) {
        let mut left = n;
        while left > 0 {
            let take = left.min(self.burst.get());
            left -= take;
            if let Some(take) = NonZeroU32::new(take) {
                // Cannot fail: `take` never exceeds the burst.
                let _ = self.limiter.until_n_ready(take).await;
            }
        }
    }

    /// Blocks the calling (non-async) thread until `n` more messages may pass.
    pub fn acquire_blocking(&self, n: u32) {
        let mut left = n;
        while left > 0 {
            let take = left.min(self.burst.get());
            let Some(cells) = NonZeroU32::new(take) else {
                return;
            };
            match self.limiter.check_n(cells) {
                Ok(Ok(())) => left -= take,
                Ok(Err(not_until)) => {
                    std::thread::sleep(not_until.wait_time_from(self.clock.now()));
                }
                // `take <= burst`, so the bucket can always hold it; do not spin.
                Err(_) => left -= take,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn zero_is_no_throttle() {
        assert!(Throttle::per_second(0).is_none());
    }

    #[test]
    fn blocking_acquire_waits_past_the_burst() {
        let throttle = Throttle::per_second(100).unwrap();
        let start = Instant::now();
        // 100 pass at once (the burst), the next 20 need ~200 ms.
        throttle.acquire_blocking(100);
        throttle.acquire_blocking(20);
        let elapsed = start.elapsed();
        assert!(elapsed.as_millis() >= 150, "{elapsed:?}");
        assert!(elapsed.as_millis() < 2_000, "{elapsed:?}");
    }
}
