//! Trace export (feature `otlp`): the engine's `tracing` spans (`distcache.get`, peer calls,
//! ...) become OpenTelemetry spans pushed over OTLP/gRPC in batches.

use opentelemetry::trace::TracerProvider;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::registry::LookupSpan;

use crate::error::{Error, Result};

/// The endpoint variables that turn OTLP trace export on (the traces-specific one wins).
const OTLP_ENDPOINT_VARS: [&str; 2] =
    ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"];

/// A tracer provider that pushes spans over OTLP/gRPC, and the `tracing` layer feeding it.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use tracing_subscriber::layer::SubscriberExt;
/// use tracing_subscriber::util::SubscriberInitExt;
///
/// let traces = distcache_admin::Traces::from_env()?; // None unless an endpoint is set
/// tracing_subscriber::registry()
///     .with(tracing_subscriber::fmt::layer())
///     .with(traces.as_ref().map(|t| t.layer()))
///     .init();
/// // ... run the node ...
/// if let Some(traces) = traces {
///     traces.shutdown()?; // flushes the last batch
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// Traces pushed to `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// when one is set, `None` otherwise.
    ///
    /// Call it inside a tokio runtime. Fails with [`Error::Telemetry`] if the exporter cannot be
    /// built (an invalid endpoint).
    pub fn from_env() -> Result<Option<Self>> {
        let set = OTLP_ENDPOINT_VARS
            .iter()
            .any(|var| std::env::var(var).is_ok_and(|v| !v.trim().is_empty()));
        if set { Self::build(None).map(Some) } else { Ok(None) }
    }

    /// Traces pushed to the OTLP/gRPC collector at `endpoint` (such as
    /// `http://127.0.0.1:4317`). Call it inside a tokio runtime.
    pub fn with_otlp(endpoint: impl Into<String>) -> Result<Self> {
        Self::build(Some(endpoint.into()))
    }

    fn build(endpoint: Option<String>) -> Result<Self> {
        let mut exporter = SpanExporter::builder().with_tonic();
        if let Some(endpoint) = endpoint {
            exporter = exporter.with_endpoint(endpoint);
        }
        let exporter = exporter
            .build()
            .map_err(|e| Error::Telemetry(format!("the OTLP span exporter: {e}")))?;
        let provider = SdkTracerProvider::builder()
            .with_resource(crate::metrics::resource())
            .with_batch_exporter(exporter)
            .build();
        Ok(Traces { provider })
    }

    /// A `tracing-subscriber` layer that records spans with this provider's `distcache` tracer.
    pub fn layer<S>(&self) -> OpenTelemetryLayer<S, SdkTracer>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("distcache"))
    }

    /// The OpenTelemetry tracer provider.
    pub fn provider(&self) -> &SdkTracerProvider {
        &self.provider
    }

    /// Exports the spans ended so far and stops. Blocks; from async code, call it in
    /// `spawn_blocking`. Fails with [`Error::Telemetry`] if the last export fails.
    pub fn shutdown(&self) -> Result<()> {
        self.provider.shutdown().map_err(|e| Error::Telemetry(format!("trace shutdown: {e}")))
    }
}
