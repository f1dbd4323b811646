//! The node's error type.

/// Why a node could not start, or a config could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The config is invalid; the message names the field and the fix.
    #[error("invalid config: {0}")]
    Config(String),
    /// The engine refused to start (its message names the setting).
    #[error(transparent)]
    Engine(#[from] distcache_engine::Error),
    /// The discovery provider could not start: misconfigured (the message names the
    /// setting), or its backend (Kubernetes API, NATS) could not be reached.
    #[error(transparent)]
    Discovery(#[from] distcache_discovery::DiscoveryError),
    /// The metrics pipeline (Prometheus registry, OTLP exporter) could not be set up.
    #[error("metrics: {0}")]
    Metrics(String),
    /// A listener could not be bound or served.
    #[error("{context}: {source}")]
    Io {
        /// What the node was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl NodeError {
    /// An invalid-config error about `field`.
    pub fn config(field: impl AsRef<str>, message: impl std::fmt::Display) -> Self {
        NodeError::Config(format!("`{}`: {message}", field.as_ref()))
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        NodeError::Io { context: context.into(), source }
    }
}
