//! The distcache admin HTTP server: what an operator asks a running node.
//!
//! [`router`] builds the axum routes over an [`Engine`]; [`serve`] runs them on a bound
//! listener until a shutdown future resolves. Endpoints (all JSON unless noted):
//! - `GET /healthz`: `ok` (text) while the process serves.
//! - `GET /v1/keyspaces`: every keyspace with its settings and stats.
//! - `GET /v1/keyspaces/{name}`: one keyspace; 404 with a JSON error if unknown.

use std::future::Future;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use distcache_engine::{Engine, Error, Eviction, KeySpaceStats};
use serde::Serialize;
use tokio::net::TcpListener;

/// A keyspace as the admin API shows it. Durations are in milliseconds.
#[derive(Debug, Serialize)]
pub struct KeySpaceView {
    /// The keyspace name.
    pub name: String,
    /// The byte budget on this node.
    pub max_bytes: u64,
    /// Default TTL in milliseconds, if any.
    pub default_ttl_ms: Option<u128>,
    /// Negative-cache TTL in milliseconds, if negative caching is on.
    pub negative_ttl_ms: Option<u128>,
    /// The keyspace's own read timeout in milliseconds, if it overrides the engine's.
    pub read_timeout_ms: Option<u128>,
    /// The keyspace's own write timeout in milliseconds, if it overrides the engine's.
    pub write_timeout_ms: Option<u128>,
    /// The eviction policy.
    pub eviction: Eviction,
    /// Counters and size on this node.
    pub stats: KeySpaceStats,
}

/// The admin routes over `engine`.
pub fn router(engine: Engine) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/keyspaces", get(list_keyspaces))
        .route("/v1/keyspaces/{name}", get(show_keyspace))
        .with_state(engine)
}

/// Serves the admin routes on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(engine)).with_graceful_shutdown(shutdown).await
}

async fn list_keyspaces(State(engine): State<Engine>) -> Json<Vec<KeySpaceView>> {
    // A keyspace deleted between listing and reading is simply left out.
    Json(engine.keyspaces().iter().filter_map(|name| view(&engine, name).ok()).collect())
}

async fn show_keyspace(
    State(engine): State<Engine>,
    Path(name): Path<String>,
) -> Result<Json<KeySpaceView>, ApiError> {
    Ok(Json(view(&engine, &name)?))
}

fn view(engine: &Engine, name: &str) -> Result<KeySpaceView, Error> {
    let def = engine.keyspace(name)?;
    let millis = |d: Option<std::time::Duration>| d.map(|d| d.as_millis());
    Ok(KeySpaceView {
        name: def.name().to_owned(),
        max_bytes: def.max_bytes(),
        default_ttl_ms: millis(def.default_ttl()),
        negative_ttl_ms: millis(def.negative_ttl()),
        read_timeout_ms: millis(def.read_timeout()),
        write_timeout_ms: millis(def.write_timeout()),
        eviction: def.eviction(),
        stats: engine.stats(name)?,
    })
}

/// An engine error as an HTTP response: a status and `{"code": ..., "message": ...}`.
#[derive(Debug)]
struct ApiError(Error);

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        ApiError(err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self.0 {
            Error::KeySpaceNotFound(_) => (StatusCode::NOT_FOUND, "keyspace_not_found"),
            Error::Stopped => (StatusCode::SERVICE_UNAVAILABLE, "stopped"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let body = serde_json::json!({ "code": code, "message": self.0.to_string() });
        (status, Json(body)).into_response()
    }
}
