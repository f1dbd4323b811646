//! The application's side of a read-through cache: where values come from on a miss.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

/// Loads values on a cache miss.
///
/// The engine calls `fetch` at most once per key at a time on the key's owner, in its own task,
/// bounded by the keyspace read timeout. Return [`FetchError::NotFound`] when the key has no
/// value, so it can be negatively cached; any other failure is reported to every waiting caller
/// as [`crate::Error::DataSource`] and is not cached. A panic is caught and reported the same way.
#[async_trait]
pub trait DataSource: Send + Sync + 'static {
    /// Loads the value of `key`.
    async fn fetch(&self, key: &str) -> Result<Bytes, FetchError>;
}

/// Why a [`DataSource`] could not produce a value.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The key has no value; distinguishable so the engine can cache the absence.
    #[error("not found")]
    NotFound,
    /// Anything else: the engine reports it to callers and does not cache it.
    #[error(transparent)]
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

impl FetchError {
    /// Wraps an error or message as a failed fetch.
    pub fn failed(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        FetchError::Failed(err.into())
    }
}

/// A [`DataSource`] made from an async closure taking the key; see [`source_fn`].
pub struct FnSource<F>(F);

impl<F> fmt::Debug for FnSource<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnSource")
    }
}

/// Makes a [`DataSource`] from an async closure, for sources that need no struct of their own.
///
/// ```
/// use bytes::Bytes;
/// use distcache_engine::{source_fn, FetchError};
///
/// let source = source_fn(|key: String| async move {
///     if key.starts_with("user-") { Ok(Bytes::from(key)) } else { Err(FetchError::NotFound) }
/// });
/// # let _ = source;
/// ```
pub fn source_fn<F, Fut>(fetch: F) -> Arc<FnSource<F>>
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, FetchError>> + Send + 'static,
{
    Arc::new(FnSource(fetch))
}

#[async_trait]
impl<F, Fut> DataSource for FnSource<F>
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, FetchError>> + Send + 'static,
{
    async fn fetch(&self, key: &str) -> Result<Bytes, FetchError> {
        (self.0)(key.to_owned()).await
    }
}
