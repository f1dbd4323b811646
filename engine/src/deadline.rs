//! When an operation must have its answer by.
//!
//! A remote get carries its deadline down to the pipe, which expires calls with one sweep per
//! connection; the get itself then needs no timer of its own on its hot path.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Error, Result};

/// An instant, and the timeout it was set from (for the caller's [`Error::Timeout`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    /// When it was set: where a call's time is measured from, without reading the clock again.
    pub(crate) started: Instant,
    pub(crate) at: Instant,
    timeout: Duration,
}

/// What "no deadline" means in practice: far enough that nothing waits that long.
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl Deadline {
    /// `timeout` from now.
    pub(crate) fn after(timeout: Duration) -> Self {
        let now = Instant::now();
        let at = now.checked_add(timeout).or_else(|| now.checked_add(FAR)).unwrap_or(now);
        Deadline { started: now, at, timeout }
    }

    pub(crate) fn has_passed(&self) -> bool {
        Instant::now() >= self.at
    }

    /// The error of an operation that ran out of time.
    pub(crate) fn error(&self) -> Error {
        Error::Timeout(self.timeout)
    }

    /// Runs `operation` until the deadline, failing with [`Error::Timeout`] past it.
    pub(crate) async fn bound<T>(&self, operation: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::time::timeout_at(self.at, operation).await.unwrap_or_else(|_| Err(self.error()))
    }
}
