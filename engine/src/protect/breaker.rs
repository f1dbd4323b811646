//! A three-state circuit breaker: closed, open after consecutive failures, half-open with
//! exactly one probe after a cooldown.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The state of a breaker, as diagnostics show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls flow.
    Closed,
    /// Calls are refused until the cooldown ends.
    Open,
    /// One probe call is allowed; its outcome closes or re-opens the breaker.
    HalfOpen,
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// Refuses calls to something that keeps failing, then probes it once before trusting it again.
#[derive(Debug)]
pub(crate) struct Breaker {
    state: Mutex<State>,
    /// Closed with no failures counted: the common case, answered without the lock.
    healthy: AtomicBool,
    threshold: u32,
    cooldown: Duration,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Self {
        Breaker {
            state: Mutex::new(State::Closed { failures: 0 }),
            healthy: AtomicBool::new(true),
            threshold: threshold.max(1),
            cooldown,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a call may go ahead now. In half-open only the first caller gets through; it
    /// must report its outcome with [`record`](Self::record).
    pub(crate) fn allow(&self) -> bool {
        if self.healthy.load(Ordering::Acquire) {
            return true;
        }
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => true,
            State::Open { until } if Instant::now() >= until => {
                *state = State::HalfOpen { probing: true };
                true
            }
            State::Open { .. } => false,
            State::HalfOpen { ref mut probing } => !std::mem::replace(probing, true),
        }
    }

    /// Reports the outcome of an allowed call.
    pub(crate) fn record(&self, success: bool) {
        if success && self.healthy.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.lock();
        *state = match (&*state, success) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.threshold => {
                State::Closed { failures: failures + 1 }
            }
            (_, false) => State::Open { until: cooldown_end(self.cooldown) },
        };
        self.healthy.store(success, Ordering::Release);
    }

    /// Like [`allow`](Self::allow), returning a guard that reports the outcome, or releases the
    /// half-open slot if it is dropped without one (a cancelled call).
    pub(crate) fn try_probe(&self) -> Option<Probe<'_>> {
        self.allow().then_some(Probe(Some(self)))
    }

    /// Releases a half-open probe that ended without telling anything (cancelled).
    pub(crate) fn release(&self) {
        if self.healthy.load(Ordering::Acquire) {
            return;
        }
        if let State::HalfOpen { probing } = &mut *self.lock() {
            *probing = false;
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        match *self.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if Instant::now() >= until => BreakerState::HalfOpen,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

/// An allowed call: report its outcome with [`Probe::record`]; dropped untold, it releases the
/// half-open slot without counting.
#[derive(Debug)]
pub(crate) struct Probe<'a>(Option<&'a Breaker>);

impl Probe<'_> {
    /// Reports whether the call succeeded.
    pub(crate) fn record(mut self, success: bool) {
        if let Some(breaker) = self.0.take() {
            breaker.record(success);
        }
    }
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        if let Some(breaker) = self.0.take() {
            breaker.release();
        }
    }
}

/// When a cooldown started now ends; one past the clock's range ends in a century.
fn cooldown_end(cooldown: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(cooldown).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_then_lets_exactly_one_probe_through() {
        let breaker = Breaker::new(3, Duration::from_secs(5));
        for _ in 0..2 {
            assert!(breaker.allow());
            breaker.record(false);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        breaker.record(false);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(!breaker.allow());

        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(breaker.allow(), "the probe");
        assert!(!breaker.allow(), "only one probe at a time");
        breaker.record(false);
        assert_eq!(breaker.state(), BreakerState::Open);

        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(breaker.allow());
        breaker.record(true);
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(breaker.allow() && breaker.allow());
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_failure_count_and_a_released_probe_frees_the_slot() {
        let breaker = Breaker::new(2, Duration::from_secs(1));
        breaker.record(false);
        breaker.record(true);
        breaker.record(false);
        assert_eq!(breaker.state(), BreakerState::Closed);
        breaker.record(false);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(breaker.allow());
        breaker.release();
        assert!(breaker.allow(), "a released probe lets the next caller probe");
    }
}
