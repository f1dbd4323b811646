//! The one error type every engine operation returns.

use std::sync::Arc;
use std::time::Duration;

/// Result of an engine operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong with an engine operation.
///
/// Cloneable so that one failed load can be handed to every caller waiting on it. Policy
/// outcomes (`NotFound`, `RateLimited`, `CircuitOpen`, `Timeout`, `KeySpaceNotFound`) are their
/// own variants so callers can `match` on them, wherever the value was loaded.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The data source has no value for the key (possibly remembered by negative caching).
    #[error("key not found: the data source has no value for it")]
    NotFound,
    /// No keyspace of this name is declared on the engine.
    #[error(
        "keyspace `{0}` does not exist: declare it in the engine config or add it with update_keyspace"
    )]
    KeySpaceNotFound(String),
    /// The operation did not complete within its deadline.
    #[error(
        "timed out after {0:?}: raise the keyspace read/write timeout or find what is slow (data source or peer)"
    )]
    Timeout(Duration),
    /// The keyspace's rate limit refused a data-source fetch.
    #[error(
        "rate limited: the keyspace's data-source rate limit is exhausted; retry later or raise the limit"
    )]
    RateLimited,
    /// The keyspace's circuit breaker is open after repeated data-source failures.
    #[error(
        "circuit open: the data source failed repeatedly; calls resume after the breaker's cooldown"
    )]
    CircuitOpen,
    /// The data source failed (an error it returned, or a panic inside it).
    #[error("data source failed: {0}")]
    DataSource(Arc<dyn std::error::Error + Send + Sync>),
    /// The caller passed something the engine cannot accept; the message says what to change.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The key's owner could not be reached and the value could not be loaded here either.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The engine has been stopped; start a new one to serve again.
    #[error("the engine is stopped")]
    Stopped,
}

impl Error {
    /// Wraps any error (or message) as a data-source failure.
    pub fn data_source(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Error::DataSource(Arc::from(err.into()))
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
}
