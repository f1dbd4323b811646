//! The JSON endpoints: health, readiness, keyspaces, peers and the ring.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use distcache_engine::{Engine, Error};

use crate::views::{
    ErrorView, HotKeyView, KeySpaceView, NotReady, PeerView, ReadinessView, RingView,
};

/// `GET /healthz`: the process serves HTTP.
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: 200 when the engine runs and, in a cluster, this node is in its own ring.
pub(crate) async fn readyz(State(engine): State<Engine>) -> (StatusCode, Json<ReadinessView>) {
    match readiness(&engine) {
        Ok(()) => {
            (StatusCode::OK, Json(ReadinessView { ready: true, reason: None, message: None }))
        }
        Err((reason, message)) => {
            let view = ReadinessView { ready: false, reason: Some(reason), message: Some(message) };
            (StatusCode::SERVICE_UNAVAILABLE, Json(view))
        }
    }
}

fn readiness(engine: &Engine) -> Result<(), (NotReady, String)> {
    if !engine.is_running() {
        return Err((NotReady::Stopped, "the engine is stopped".to_owned()));
    }
    let (Some(node_id), Some(ring)) = (engine.node_id(), engine.ring()) else {
        return Ok(()); // Standalone: running is ready.
    };
    if ring.members().iter().any(|m| *m.node_id == *node_id) {
        Ok(())
    } else {
        let message = format!(
            "node {node_id} is not in its own ring (epoch {}): joining, or draining to leave",
            ring.epoch()
        );
        Err((NotReady::NotInRing, message))
    }
}

/// `GET /v1/keyspaces`.
pub(crate) async fn list_keyspaces(State(engine): State<Engine>) -> Json<Vec<KeySpaceView>> {
    // A keyspace deleted between listing and reading is simply left out.
    Json(engine.keyspaces().iter().filter_map(|name| view(&engine, name).ok()).collect())
}

/// `GET /v1/keyspaces/{name}`.
pub(crate) async fn show_keyspace(
    State(engine): State<Engine>,
    Path(name): Path<String>,
) -> Result<Json<KeySpaceView>, ApiError> {
    Ok(Json(view(&engine, &name)?))
}

/// `GET /v1/keyspaces/{name}/hot-keys`.
pub(crate) async fn hot_keys(
    State(engine): State<Engine>,
    Path(name): Path<String>,
) -> Result<Json<Vec<HotKeyView>>, ApiError> {
    let hottest = engine.hot_keys(&name)?;
    Ok(Json(hottest.into_iter().map(|(key, rate)| HotKeyView { key, rate }).collect()))
}

fn view(engine: &Engine, name: &str) -> Result<KeySpaceView, Error> {
    Ok(KeySpaceView::new(&engine.keyspace(name)?, &engine.stats(name)?))
}

/// `GET /v1/peers`.
pub(crate) async fn list_peers(State(engine): State<Engine>) -> Json<Vec<PeerView>> {
    Json(PeerView::list(engine.peers()))
}

/// `GET /v1/ring`.
pub(crate) async fn show_ring(State(engine): State<Engine>) -> Json<Option<RingView>> {
    Json(engine.ring().map(|ring| RingView::from(ring.as_ref())))
}

/// An engine error as an HTTP response: a status and an [`ErrorView`].
#[derive(Debug)]
pub(crate) struct ApiError(Error);

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
        error_response(status, code, self.0.to_string())
    }
}

/// A JSON error answer.
pub(crate) fn error_response(status: StatusCode, code: &str, message: String) -> Response {
    (status, Json(ErrorView { code: code.to_owned(), message })).into_response()
}
