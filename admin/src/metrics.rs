//! Metrics export: an OpenTelemetry meter provider read by a Prometheus registry (served on
//! `/metrics`) and, with the `otlp` feature, pushed to an OTLP/gRPC collector.

use opentelemetry::Key;
use opentelemetry::metrics::{Meter, MeterProvider};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Registry, TextEncoder};

use crate::error::{Error, Result};

/// The endpoint variables that turn OTLP export on (the metrics-specific one wins).
const OTLP_ENDPOINT_VARS: [&str; 2] =
    ["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"];

/// The meter provider and Prometheus registry of one node.
///
/// Create it first, start the engine with its meter, then serve its registry:
///
/// ```no_run
/// # async fn run(config: distcache_engine::Config) -> Result<(), Box<dyn std::error::Error>> {
/// use distcache_admin::{Admin, Metrics};
///
/// let metrics = Metrics::from_env()?; // OTLP too when OTEL_EXPORTER_OTLP_ENDPOINT is set
/// let engine = distcache_engine::Engine::start(config.with_meter(metrics.meter())).await?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9090").await?;
/// Admin::new(engine.clone()).with_metrics(&metrics).serve(listener, std::future::pending()).await?;
/// metrics.shutdown()?; // flushes the last OTLP export
/// # Ok(()) }
/// ```
///
/// The engine's instruments (see `distcache_engine`'s `metrics` module) render in Prometheus
/// text with dots turned into underscores, counters suffixed `_total`, units appended, and an
/// `otel_scope_name="distcache"` label on every series:
///
/// | instrument | Prometheus series |
/// | --- | --- |
/// | `distcache.gets` (counter) | `distcache_gets_total{keyspace="users",otel_scope_name="distcache"}` |
/// | likewise `.hits`, `.hot_hits`, `.misses`, `.negative_hits`, `.fetches`, `.fetch_errors`, `.fetches_deduped`, `.peer_loads`, `.peer_errors`, `.fallback_loads`, `.served_to_peers`, `.evictions`, `.expirations`, `.puts`, `.deletes` | `distcache_hits_total{keyspace=..}`, ... `distcache_deletes_total{keyspace=..}` |
/// | `distcache.entries`, `.bytes`, `.max_bytes` (gauges) | `distcache_entries{keyspace=..}`, `distcache_bytes{..}`, `distcache_max_bytes{..}` |
/// | `distcache.fetch.duration` (histogram, s) | `distcache_fetch_duration_seconds_bucket{keyspace=..,outcome=..,le=..}`, `_sum`, `_count` |
/// | `distcache.peer.call.duration` (histogram, s) | `distcache_peer_call_duration_seconds_bucket{peer=..,outcome=..,le=..}`, `_sum`, `_count` |
/// | `distcache.peer.breaker` (gauge) | `distcache_peer_breaker{peer=..}` (0 closed, 1 half-open, 2 open) |
/// | the resource | `target_info{service_name="distcache",..} 1` |
#[derive(Debug, Clone)]
pub struct Metrics {
    provider: SdkMeterProvider,
    registry: Registry,
}

impl Metrics {
    /// Metrics read only by a new Prometheus registry.
    ///
    /// Fails with [`Error::Telemetry`] if the exporter cannot be registered.
    pub fn prometheus() -> Result<Self> {
        Self::build(None)
    }

    /// Metrics read by a new Prometheus registry and, when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
    /// `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`) is set, pushed over OTLP/gRPC every
    /// `OTEL_METRIC_EXPORT_INTERVAL` ms (default 60 s).
    ///
    /// OTLP needs the `otlp` feature (without it a set endpoint is logged and ignored) and a
    /// tokio runtime to be running. Fails with [`Error::Telemetry`] if an exporter cannot be built.
    pub fn from_env() -> Result<Self> {
        let endpoint = OTLP_ENDPOINT_VARS
            .iter()
            .find_map(|var| std::env::var(var).ok().filter(|v| !v.trim().is_empty()));
        match endpoint {
            #[cfg(feature = "otlp")]
            Some(_) => Self::build(Some(otlp::Settings::default())),
            #[cfg(not(feature = "otlp"))]
            Some(endpoint) => {
                tracing::warn!(
                    %endpoint,
                    "an OTLP endpoint is set but distcache was built without the `otlp` feature; not exporting over OTLP"
                );
                Self::build(None)
            }
            None => Self::build(None),
        }
    }

    /// Metrics read by a new Prometheus registry and pushed to the OTLP/gRPC collector at
    /// `endpoint` (such as `http://127.0.0.1:4317`) every `interval`.
    ///
    /// Call it inside a tokio runtime. Fails with [`Error::Telemetry`] for an invalid endpoint.
    #[cfg(feature = "otlp")]
    pub fn with_otlp(endpoint: impl Into<String>, interval: std::time::Duration) -> Result<Self> {
        Self::build(Some(otlp::Settings {
            endpoint: Some(endpoint.into()),
            interval: Some(interval),
        }))
    }

    #[cfg_attr(not(feature = "otlp"), allow(unused_mut, unused_variables))]
    fn build(otlp: Option<Settings>) -> Result<Self> {
        let registry = Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .build()
            .map_err(|e| Error::Telemetry(format!("the Prometheus exporter: {e}")))?;
        let mut builder =
            SdkMeterProvider::builder().with_resource(resource()).with_reader(exporter);
        #[cfg(feature = "otlp")]
        if let Some(settings) = otlp {
            builder = builder.with_reader(settings.reader()?);
        }
        Ok(Metrics { provider: builder.build(), registry })
    }

    /// The meter to give the engine ([`Config::with_meter`](distcache_engine::Config::with_meter)).
    pub fn meter(&self) -> Meter {
        self.provider.meter("distcache")
    }

    /// The Prometheus registry the provider is read into.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The OpenTelemetry meter provider.
    pub fn provider(&self) -> &SdkMeterProvider {
        &self.provider
    }

    /// The provider and the registry, for callers that wire them themselves.
    pub fn into_parts(self) -> (SdkMeterProvider, Registry) {
        (self.provider, self.registry)
    }

    /// The current values in the Prometheus text format.
    pub fn encode(&self) -> Result<String> {
        encode(&self.registry)
    }

    /// Flushes and stops every reader (a last OTLP export); blocks, so from async code call it
    /// in `spawn_blocking`. Later reads see no new data.
    ///
    /// Fails with [`Error::Telemetry`] if an exporter fails to flush or was already shut down.
    pub fn shutdown(&self) -> Result<()> {
        self.provider.shutdown().map_err(|e| Error::Telemetry(format!("shutdown: {e}")))
    }
}

/// `registry`'s current values in the Prometheus text format.
pub(crate) fn encode(registry: &Registry) -> Result<String> {
    Ok(TextEncoder::new().encode_to_string(&registry.gather())?)
}

/// The detected resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`), named `distcache`
/// unless the environment names it.
pub(crate) fn resource() -> Resource {
    let detected = Resource::builder().build();
    let unnamed = detected
        .get(&Key::from_static_str("service.name"))
        .is_none_or(|name| name.as_str().starts_with("unknown_service"));
    if unnamed { Resource::builder().with_service_name("distcache").build() } else { detected }
}

#[cfg(not(feature = "otlp"))]
type Settings = std::convert::Infallible;
#[cfg(feature = "otlp")]
use otlp::Settings;

#[cfg(feature = "otlp")]
mod otlp {
    use std::time::Duration;

    use opentelemetry_otlp::{MetricExporter, WithExportConfig};
    use opentelemetry_sdk::metrics::PeriodicReader;

    use crate::error::{Error, Result};

    /// Where and how often to push; `None` fields come from the `OTEL_*` environment.
    #[derive(Debug, Default)]
    pub(super) struct Settings {
        pub(super) endpoint: Option<String>,
        pub(super) interval: Option<Duration>,
    }

    impl Settings {
        pub(super) fn reader(self) -> Result<PeriodicReader<MetricExporter>> {
            let mut exporter = MetricExporter::builder().with_tonic();
            if let Some(endpoint) = self.endpoint {
                exporter = exporter.with_endpoint(endpoint);
            }
            let exporter = exporter
                .build()
                .map_err(|e| Error::Telemetry(format!("the OTLP exporter: {e}")))?;
            let mut reader = PeriodicReader::builder(exporter);
            if let Some(interval) = self.interval {
                reader = reader.with_interval(interval);
            }
            Ok(reader.build())
        }
    }
}
