//! The admin crate's error type.

/// What can go wrong setting up or reading metrics and traces.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A metrics reader or a metrics or span exporter could not be built, flushed or shut down.
    #[error("telemetry export: {0}")]
    Telemetry(String),
    /// The Prometheus registry could not be encoded as text.
    #[error("cannot encode metrics: {0}")]
    Encode(#[from] prometheus::Error),
}

/// A result with the admin crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
