//! Token-bucket rate limiting of data-source fetches (governor), on tokio's clock so tests can
//! pause and advance time.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::error::{Error, Result};

/// A token bucket for a keyspace's data-source fetches (cache hits are never limited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    per_second: u32,
    burst: u32,
    max_wait: Duration,
}

impl RateLimit {
    /// At most `fetches` per second on each node, in bursts of up to as many; over the limit a
    /// fetch fails at once with [`Error::RateLimited`].
    pub fn per_second(fetches: u32) -> Self {
        RateLimit { per_second: fetches, burst: fetches, max_wait: Duration::ZERO }
    }

    /// Allows bursts of up to `burst` fetches.
    pub fn with_burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// Over the limit, waits up to `max_wait` for a token before failing (zero: fail at once).
    pub fn with_max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// Fetches per second.
    pub fn rate(&self) -> u32 {
        self.per_second
    }

    /// The largest burst.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The longest wait for a token.
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }

    pub(crate) fn validate(&self, keyspace: &str) -> Result<()> {
        if self.per_second == 0 || self.burst == 0 {
            return Err(Error::invalid(format!(
                "keyspace `{keyspace}` has a rate limit of {} per second with burst {}: both must be above 0",
                self.per_second, self.burst
            )));
        }
        Ok(())
    }
}

/// Tokio's clock for governor: elapsed time since the limiter was made.
#[derive(Debug, Clone)]
struct TokioClock {
    start: tokio::time::Instant,
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

/// The live limiter of one keyspace.
#[derive(Debug)]
pub(crate) struct Limiter {
    limiter: RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>,
    clock: TokioClock,
    max_wait: Duration,
}

impl Limiter {
    pub(crate) fn new(limit: RateLimit) -> Self {
        let nonzero = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(nonzero(limit.per_second)).allow_burst(nonzero(limit.burst));
        let clock = TokioClock { start: tokio::time::Instant::now() };
        Limiter {
            limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            clock,
            max_wait: limit.max_wait,
        }
    }

    /// Takes a token, waiting up to the configured time; `RateLimited` if none comes in time.
    pub(crate) async fn acquire(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.max_wait;
        loop {
            let wait = match self.limiter.check() {
                Ok(()) => return Ok(()),
                Err(not_until) => not_until.wait_time_from(self.clock.now()),
            };
            if tokio::time::Instant::now() + wait > deadline {
                return Err(Error::RateLimited);
            }
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn allows_the_burst_then_the_rate() {
        let limiter = Limiter::new(RateLimit::per_second(10).with_burst(3));
        for _ in 0..3 {
            assert!(limiter.acquire().await.is_ok());
        }
        assert!(matches!(limiter.acquire().await, Err(Error::RateLimited)));
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(limiter.acquire().await.is_ok(), "one token per 100 ms");
        assert!(matches!(limiter.acquire().await, Err(Error::RateLimited)));
        tokio::time::advance(Duration::from_secs(1)).await;
        for _ in 0..3 {
            assert!(limiter.acquire().await.is_ok(), "the bucket refills up to the burst");
        }
        assert!(matches!(limiter.acquire().await, Err(Error::RateLimited)));
    }

    #[tokio::test(start_paused = true)]
    async fn waits_up_to_max_wait_for_a_token() {
        let limiter = Limiter::new(
            RateLimit::per_second(10).with_burst(1).with_max_wait(Duration::from_millis(150)),
        );
        limiter.acquire().await.unwrap();
        let started = tokio::time::Instant::now();
        limiter.acquire().await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_millis(100), "waited for the next token");
        let slow = Limiter::new(
            RateLimit::per_second(1).with_burst(1).with_max_wait(Duration::from_millis(150)),
        );
        slow.acquire().await.unwrap();
        let started = tokio::time::Instant::now();
        assert!(matches!(slow.acquire().await, Err(Error::RateLimited)));
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "fails at once when the wait would be too long"
        );
    }
}
