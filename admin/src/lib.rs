//! The distcache admin HTTP server: what an operator asks a running node.
//!
//! [`router`] builds the axum routes over an [`Engine`]; [`serve`] runs them on a bound
//! listener until a shutdown future resolves. Endpoints (all JSON unless noted):
//! - `GET /healthz`: `ok` (text) while the process serves.
//! - `GET /v1/keyspaces`: every keyspace with its settings and stats.
//! - `GET /v1/keyspaces/{name}`: one keyspace; 404 with a JSON error if unknown.
//! - `GET /v1/peers`: every live node gossip knows of, with its ownership share and this node's
//!   breaker state for it (empty for a standalone engine).
//! - `GET /v1/ring`: the ring this node routes by: epoch and members with their shares.

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
        .route("/v1/peers", get(|State(engine): State<Engine>| async move { Json(engine.peers()) }))
        .route("/v1/ring", get(show_ring))
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

/// The ring as the admin API shows it.
#[derive(Debug, Serialize)]
pub struct RingView {
    /// Increases each time this node rebuilds its ring.
    pub epoch: u64,
    /// The members, sorted by node id.
    pub members: Vec<RingMemberView>,
}

/// One ring member.
#[derive(Debug, Serialize)]
pub struct RingMemberView {
    /// The node id.
    pub node_id: String,
    /// Where it serves peers.
    pub grpc_addr: String,
    /// Its share of the keys.
    pub ownership: f64,
}

async fn show_ring(State(engine): State<Engine>) -> Json<Option<RingView>> {
    Json(engine.ring().map(|ring| {
        RingView {
            epoch: ring.epoch(),
            members: ring
                .members()
                .iter()
                .zip(ring.shares())
                .map(|(m, ownership)| RingMemberView {
                    node_id: m.node_id.to_string(),
                    grpc_addr: m.grpc_addr.to_string(),
                    ownership,
                })
                .collect(),
        }
    }))
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

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use distcache_engine::{Config, KeySpace, source_fn};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn call(engine: &Engine, path: &str) -> (StatusCode, serde_json::Value) {
        let request = Request::get(path).body(Body::empty()).unwrap();
        let response = router(engine.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&body)
            .unwrap_or(serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()));
        (status, json)
    }

    #[tokio::test]
    async fn serves_health_and_keyspaces_with_live_stats() {
        let source = source_fn(|key: String| async move { Ok(bytes_of(&key)) });
        let users = KeySpace::new("users", 1 << 20, source)
            .with_default_ttl(std::time::Duration::from_secs(60));
        let engine = Engine::start(Config::standalone([users])).await.unwrap();
        engine.get("users", "a").await.unwrap();
        engine.get("users", "a").await.unwrap();

        assert_eq!(call(&engine, "/healthz").await, (StatusCode::OK, "ok".into()));
        let (status, list) = call(&engine, "/v1/keyspaces").await;
        assert_eq!(status, StatusCode::OK);
        let users = &list[0];
        assert_eq!(users["name"], "users");
        assert_eq!(users["default_ttl_ms"], 60_000);
        assert_eq!(users["eviction"], "tiny_lfu");
        assert_eq!(users["stats"]["gets"], 2);
        assert_eq!(users["stats"]["hits"], 1);
        assert_eq!(users["stats"]["fetches"], 1);
        assert_eq!(users["stats"]["entries"], 1);

        let (status, error) = call(&engine, "/v1/keyspaces/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(error["code"], "keyspace_not_found");
        assert_eq!(call(&engine, "/v1/peers").await.1, serde_json::json!([]));
        assert_eq!(call(&engine, "/v1/ring").await.1, serde_json::Value::Null);
        engine.stop().await;
    }

    fn bytes_of(key: &str) -> distcache_engine::Bytes {
        distcache_engine::Bytes::from(key.to_owned())
    }
}
