//! A messages-per-second token bucket (governor) shared by every partition of one operation,
//! usable from async tasks and from blocking reader threads.

use std::num::NonZeroU32;
use std::time::Duration;

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

    /// Waits (asynchronously) until `n` more messages may pass; `false` as soon as `stop`
    /// says so (checked at least every [`STOP_CHECK`]), so a cancel is never slept through.
    pub async fn acquire(&self, n: u32, stop: impl Fn() -> bool) -> bool {
        let mut left = n;
        while left > 0 {
            match self.try_take(&mut left) {
                None => {}
                Some(wait) => {
                    if stop() {
                        return false;
                    }
                    tokio::time::sleep(wait.min(STOP_CHECK)).await;
                }
            }
        }
        true
    }

    /// Blocks the calling (non-async) thread until `n` more messages may pass; `false` as
    /// soon as `stop` says so.
    pub fn acquire_blocking(&self, n: u32, stop: impl Fn() -> bool) -> bool {
        let mut left = n;
        while left > 0 {
            match self.try_take(&mut left) {
                None => {}
                Some(wait) => {
                    if stop() {
                        return false;
                    }
                    std::thread::sleep(wait.min(STOP_CHECK));
                }
            }
        }
        true
    }

    /// Takes up to one burst of `left` from the bucket; `Some(wait)` when it must wait first.
    fn try_take(&self, left: &mut u32) -> Option<Duration> {
        let take = (*left).min(self.burst.get());
        let Some(cells) = NonZeroU32::new(take) else {
            *left = 0;
            return None;
        };
        match self.limiter.check_n(cells) {
            Ok(Ok(())) => {
                *left -= take;
                None
            }
            Ok(Err(not_until)) => Some(not_until.wait_time_from(self.clock.now())),
            // `take <= burst`, so the bucket can always hold it; do not spin.
            Err(_) => {
                *left -= take;
                None
            }
        }
    }
}

/// Whether a batch of `n` records may go on: `false` when `stop` says so, before or while
/// waiting for the (optional) rate limit. The one check every producing loop makes per batch.
pub async fn admit(throttle: Option<&Throttle>, n: usize, stop: impl Fn() -> bool) -> bool {
    if stop() {
        return false;
    }
    match throttle {
        Some(throttle) => {
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            throttle.acquire(n, stop).await
        }
        None => true,
    }
}

/// How often a waiting acquire looks at its stop condition.
pub const STOP_CHECK: Duration = Duration::from_millis(200);

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
        assert!(throttle.acquire_blocking(100, || false));
        assert!(throttle.acquire_blocking(20, || false));
        let elapsed = start.elapsed();
        assert!(elapsed.as_millis() >= 150, "{elapsed:?}");
        assert!(elapsed.as_millis() < 2_000, "{elapsed:?}");
    }

    /// At 1 message per second, 1,000 messages would take ~17 minutes: a cancel must end the
    /// wait at the next check instead.
    #[tokio::test]
    async fn a_stop_ends_the_wait_instead_of_sleeping_through_it() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let throttle = Throttle::per_second(1).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            flag.store(true, Ordering::Relaxed);
        });
        let start = Instant::now();
        let passed = throttle
            .acquire(1_000, || stop.load(Ordering::Relaxed))
            .await;
        assert!(!passed, "stopped, not passed");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        let blocking_stop = || true;
        assert!(!Throttle::per_second(1)
            .unwrap()
            .acquire_blocking(1_000, blocking_stop));
    }
}
