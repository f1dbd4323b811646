//! Protection of a keyspace's data source: a rate limit on fetches and a circuit breaker that
//! stops calling a failing source until a probe succeeds.

mod breaker;
mod limit;

use std::time::Duration;

pub use breaker::BreakerState;
pub(crate) use breaker::{Breaker, Probe};
use limit::Limiter;
pub use limit::RateLimit;

use crate::error::{Error, Result};

/// When a keyspace's data source is considered down, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreaker {
    failures: u32,
    cooldown: Duration,
}

impl CircuitBreaker {
    /// Opens after `failures` consecutive failed fetches (errors and timeouts, not "not found"
    /// nor cancelled calls); after `cooldown`, one probe fetch decides whether it closes.
    pub fn new(failures: u32, cooldown: Duration) -> Self {
        CircuitBreaker { failures, cooldown }
    }

    /// Consecutive failures that open the breaker.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// How long the breaker stays open before probing.
    pub fn cooldown(&self) -> Duration {
        self.cooldown
    }

    pub(crate) fn validate(&self, keyspace: &str) -> Result<()> {
        if self.failures == 0 || self.cooldown.is_zero() {
            return Err(Error::invalid(format!(
                "keyspace `{keyspace}` has a circuit breaker with failures {} and cooldown {:?}: both must be above 0",
                self.failures, self.cooldown
            )));
        }
        Ok(())
    }
}

/// The live protection of one keyspace's data source.
#[derive(Debug, Default)]
pub(crate) struct Protection {
    limiter: Option<Limiter>,
    breaker: Option<Breaker>,
}

impl Protection {
    pub(crate) fn new(limit: Option<RateLimit>, breaker: Option<CircuitBreaker>) -> Self {
        Protection {
            limiter: limit.map(Limiter::new),
            breaker: breaker.map(|b| Breaker::new(b.failures, b.cooldown)),
        }
    }

    /// Lets a fetch go ahead, or says why not (`CircuitOpen`, `RateLimited`). The returned probe
    /// must be told the fetch's outcome; dropped untold, it counts as cancelled.
    pub(crate) async fn admit(&self) -> Result<Option<Probe<'_>>> {
        let probe = match &self.breaker {
            Some(breaker) => Some(breaker.try_probe().ok_or(Error::CircuitOpen)?),
            None => None,
        };
        if let Some(limiter) = &self.limiter {
            // A refused token says nothing of the source's health; the probe releases itself.
            limiter.acquire().await?;
        }
        Ok(probe)
    }

    /// The breaker's state, if the keyspace has one.
    pub(crate) fn breaker_state(&self) -> Option<BreakerState> {
        self.breaker.as_ref().map(Breaker::state)
    }
}
