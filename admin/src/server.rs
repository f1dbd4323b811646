//! The admin router and server over one engine.

use std::future::Future;

use axum::Router;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use distcache_engine::Engine;
use prometheus::Registry;
use tokio::net::TcpListener;

use crate::metrics::{Metrics, encode};
use crate::routes::{self, error_response};

/// The admin HTTP server of one node, built up before it serves.
///
/// ```no_run
/// # async fn run(engine: distcache_engine::Engine, metrics: distcache_admin::Metrics) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9090").await?;
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let shutdown = async { let _ = stopped.await; };
/// let server = distcache_admin::Admin::new(engine).with_metrics(&metrics).serve(listener, shutdown);
/// # drop(stop);
/// server.await
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Admin {
    engine: Engine,
    registry: Option<Registry>,
}

impl Admin {
    /// The admin API over `engine`, without `/metrics` until a registry is given.
    pub fn new(engine: Engine) -> Self {
        Admin { engine, registry: None }
    }

    /// Serves `registry` on `/metrics` in the Prometheus text format.
    pub fn with_registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Serves the registry of `metrics` on `/metrics`.
    pub fn with_metrics(self, metrics: &Metrics) -> Self {
        self.with_registry(metrics.registry().clone())
    }

    /// The routes, ready to serve or to nest into a larger router.
    pub fn router(self) -> Router {
        Router::new()
            .route("/healthz", get(routes::healthz))
            .route("/readyz", get(routes::readyz))
            .route("/v1/keyspaces", get(routes::list_keyspaces))
            .route("/v1/keyspaces/{name}", get(routes::show_keyspace))
            .route("/v1/keyspaces/{name}/hot-keys", get(routes::hot_keys))
            .route("/v1/peers", get(routes::list_peers))
            .route("/v1/ring", get(routes::show_ring))
            .with_state(self.engine)
            .route("/metrics", metrics_route(self.registry))
            .merge(crate::dashboard::routes())
            .fallback(|| async {
                error_response(StatusCode::NOT_FOUND, "not_found", "no such endpoint".to_owned())
            })
    }

    /// Serves the routes on `listener` until `shutdown` resolves, then lets requests in
    /// flight finish. Fails only if accepting connections fails.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router()).with_graceful_shutdown(shutdown).await
    }
}

fn metrics_route(registry: Option<Registry>) -> MethodRouter {
    get(move || {
        let registry = registry.clone();
        async move {
            let Some(registry) = registry else {
                let message = "this admin server has no metrics registry (Admin::with_metrics)";
                return error_response(
                    StatusCode::NOT_FOUND,
                    "metrics_not_configured",
                    message.to_owned(),
                );
            };
            render(&registry)
        }
    })
}

fn render(registry: &Registry) -> Response {
    match encode(registry) {
        Ok(text) => ([(CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
        Err(err) => {
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "metrics_encode", err.to_string())
        }
    }
}

/// The admin routes over `engine`, without `/metrics` (use [`Admin`] to add a registry).
pub fn router(engine: Engine) -> Router {
    Admin::new(engine).router()
}

/// Serves [`router`]`(engine)` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    Admin::new(engine).serve(listener, shutdown).await
}
