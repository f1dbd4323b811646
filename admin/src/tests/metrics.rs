//! `/metrics`: Prometheus text whose series move with traffic; OTLP push with the feature.

use std::collections::HashMap;

use axum::http::StatusCode;

use super::{call, standalone};
use crate::{Admin, Metrics};

/// Parses Prometheus text: `name{labels} value` per sample, comments skipped. Panics on a
/// line that is neither, so malformed output fails the test.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line}"
        );
        assert!(name_end == series.len() || series.ends_with('}'), "bad labels in {line}");
        samples.insert(series.to_owned(), value);
    }
    samples
}

/// The value of the one series named `name` whose labels include `label`.
fn sample(samples: &HashMap<String, f64>, name: &str, label: &str) -> f64 {
    let found: Vec<f64> = samples
        .iter()
        .filter(|(series, _)| series.starts_with(&format!("{name}{{")) && series.contains(label))
        .map(|(_, value)| *value)
        .collect();
    assert_eq!(found.len(), 1, "one {name} series with {label}: {samples:#?}");
    found[0]
}

#[tokio::test]
async fn metrics_render_as_prometheus_text_that_moves_with_traffic() {
    let metrics = Metrics::prometheus().unwrap();
    let engine = standalone(|c| c.with_meter(metrics.meter())).await;
    let admin = Admin::new(engine.clone()).with_metrics(&metrics).router();
    engine.get("users", "a").await.unwrap();
    engine.get("users", "a").await.unwrap();

    let scrape = call(&admin, "/metrics").await;
    assert_eq!(scrape.status, StatusCode::OK);
    assert_eq!(scrape.content_type, "text/plain; version=0.0.4");
    let before = parse(&scrape.body);
    let users = r#"keyspace="users""#;
    assert_eq!(sample(&before, "distcache_gets_total", users), 2.0);
    assert_eq!(sample(&before, "distcache_hits_total", users), 1.0);
    assert_eq!(sample(&before, "distcache_fetches_total", users), 1.0);
    assert_eq!(sample(&before, "distcache_entries", users), 1.0);
    assert_eq!(sample(&before, "distcache_max_bytes", users), (1 << 20) as f64);
    let fetch_count = r#"outcome="ok""#;
    assert_eq!(sample(&before, "distcache_fetch_duration_seconds_count", fetch_count), 1.0);
    assert!(scrape.body.contains(r#"otel_scope_name="distcache""#), "{}", scrape.body);
    assert!(scrape.body.contains(r#"service_name="distcache""#), "{}", scrape.body);

    for key in ["a", "b", "c"] {
        engine.get("users", key).await.unwrap();
    }
    let after = parse(&call(&admin, "/metrics").await.body);
    assert_eq!(sample(&after, "distcache_gets_total", users), 5.0);
    assert_eq!(sample(&after, "distcache_hits_total", users), 2.0);
    assert_eq!(sample(&after, "distcache_fetches_total", users), 3.0);
    assert_eq!(sample(&after, "distcache_fetch_duration_seconds_count", fetch_count), 3.0);
    assert_eq!(
        metrics.encode().unwrap().lines().count(),
        call(&admin, "/metrics").await.body.lines().count()
    );
    engine.stop().await;
    metrics.shutdown().unwrap();
}

#[cfg(feature = "otlp")]
mod otlp {
    use std::time::Duration;

    use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
        MetricsService, MetricsServiceServer,
    };
    use opentelemetry_proto::tonic::collector::metrics::v1::{
        ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use tokio::sync::mpsc;
    use tonic::{Request, Response, Status};
    use tracing_subscriber::layer::SubscriberExt;

    use super::super::standalone;
    use crate::{Metrics, Traces};

    /// A collector that hands every export to the test.
    struct Collector<T>(mpsc::UnboundedSender<T>);

    /// Serves `service` on a free loopback port; returns its endpoint URL.
    async fn collector<S>(service: S) -> (String, tokio::task::JoinHandle<()>)
    where
        S: tonic::codegen::Service<
                axum::http::Request<tonic::body::Body>,
                Response = axum::http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let server = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
        (endpoint, tokio::spawn(async move { server.await.unwrap() }))
    }

    #[tonic::async_trait]
    impl TraceService for Collector<ExportTraceServiceRequest> {
        async fn export(
            &self,
            request: Request<ExportTraceServiceRequest>,
        ) -> Result<Response<ExportTraceServiceResponse>, Status> {
            let _ = self.0.send(request.into_inner());
            Ok(Response::new(ExportTraceServiceResponse::default()))
        }
    }

    #[tonic::async_trait]
    impl MetricsService for Collector<ExportMetricsServiceRequest> {
        async fn export(
            &self,
            request: Request<ExportMetricsServiceRequest>,
        ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
            let _ = self.0.send(request.into_inner());
            Ok(Response::new(ExportMetricsServiceResponse::default()))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn metrics_are_pushed_to_an_otlp_collector() {
        let (exports, mut received) = mpsc::unbounded_channel();
        let (endpoint, server) = collector(MetricsServiceServer::new(Collector(exports))).await;

        let metrics = Metrics::with_otlp(endpoint, Duration::from_millis(100)).unwrap();
        let engine = standalone(|c| c.with_meter(metrics.meter())).await;
        engine.get("users", "a").await.unwrap();

        let gets_pushed = async {
            while let Some(export) = received.recv().await {
                let names: Vec<&str> = export
                    .resource_metrics
                    .iter()
                    .flat_map(|r| &r.scope_metrics)
                    .flat_map(|s| &s.metrics)
                    .map(|m| m.name.as_str())
                    .collect();
                if names.contains(&"distcache.gets") {
                    return;
                }
            }
            panic!("the collector stopped");
        };
        tokio::time::timeout(Duration::from_secs(10), gets_pushed)
            .await
            .expect("distcache.gets reaches the collector");
        engine.stop().await;
        tokio::task::spawn_blocking(move || metrics.shutdown()).await.unwrap().unwrap();
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn engine_spans_are_pushed_to_an_otlp_collector() {
        let (exports, mut received) = mpsc::unbounded_channel();
        let (endpoint, server) = collector(TraceServiceServer::new(Collector(exports))).await;
        let traces = Traces::with_otlp(endpoint).unwrap();
        let engine = standalone(|c| c).await;
        {
            // The test body runs on this thread, so the engine's span is recorded here.
            let subscriber = tracing_subscriber::registry().with(traces.layer());
            let _default = tracing::subscriber::set_default(subscriber);
            engine.get("users", "a").await.unwrap();
        }
        tokio::task::spawn_blocking({
            let traces = traces.clone();
            move || traces.shutdown()
        })
        .await
        .unwrap()
        .unwrap();

        let export = tokio::time::timeout(Duration::from_secs(10), received.recv())
            .await
            .expect("spans reach the collector")
            .expect("the collector runs");
        let names: Vec<&str> = export
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.name.as_str())
            .collect();
        assert!(names.contains(&"distcache.get"), "{names:?}");
        engine.stop().await;
        server.abort();
    }
}
