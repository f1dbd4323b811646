//! The client API: plain HTTP that applications in any language call.
//!
//! - `GET /v1/keyspaces/{keyspace}/keys/{key}`: the value (`application/octet-stream`).
//! - `PUT /v1/keyspaces/{keyspace}/keys/{key}`: stores the body; `x-distcache-ttl` (`"30s"`,
//!   or a number of milliseconds) gives it its own TTL. `204` on success.
//! - `DELETE /v1/keyspaces/{keyspace}/keys/{key}`: removes the key. `204`.
//! - `POST /v1/keyspaces/{keyspace}/batch-get` with `{"keys": [...]}`: per-key results,
//!   `{"results": [{"key": ..., "value": "<base64>"} | {"key": ..., "error": {...}}]}`.
//! - `GET /healthz`: `ok`.
//!
//! Keys may hold `/` (the rest of the path is the key) and any percent-encoded byte. Errors are
//! JSON `{"code": ..., "message": ...}` with the status of [`error_code`](super::error_code).

use std::time::Duration;

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use bytes::Bytes;
use distcache_engine::{Engine, Entry};
use serde::{Deserialize, Serialize};

use super::api_error::{ApiError, ErrorResponse};
use super::units::parse_duration;

/// The header a put gives its TTL in.
pub const TTL_HEADER: &str = "x-distcache-ttl";

#[derive(Debug, Clone)]
struct Api {
    engine: Engine,
    max_batch_keys: usize,
}

/// The client API routes over `engine`.
pub(crate) fn router(engine: Engine, max_value_bytes: usize, max_batch_keys: usize) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/keyspaces/{keyspace}/keys/{*key}", get(get_key).put(put_key).delete(delete_key))
        .route("/v1/keyspaces/{keyspace}/batch-get", post(batch_get))
        .fallback(|| async {
            ErrorResponse(
                StatusCode::NOT_FOUND,
                ApiError::new(
                    "route_not_found",
                    "no such endpoint: see the client API in the README",
                ),
            )
        })
        .layer(DefaultBodyLimit::max(max_value_bytes))
        .with_state(Api { engine, max_batch_keys })
}

type KeyPath = Result<Path<(String, String)>, PathRejection>;

fn key_path(path: KeyPath) -> Result<(String, String), ErrorResponse> {
    path.map(|Path(parts)| parts)
        .map_err(|err| ErrorResponse::invalid(format!("bad keyspace or key in the path: {err}")))
}

async fn get_key(State(api): State<Api>, path: KeyPath) -> Result<Response, ErrorResponse> {
    let (keyspace, key) = key_path(path)?;
    let value = api.engine.get(&keyspace, &key).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], value).into_response())
}

async fn put_key(
    State(api): State<Api>,
    path: KeyPath,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ErrorResponse> {
    let (keyspace, key) = key_path(path)?;
    let value = body.map_err(|err| {
        if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ErrorResponse(
                StatusCode::PAYLOAD_TOO_LARGE,
                ApiError::new("too_large", format!("{err}: raise client_api.max_value_bytes")),
            )
        } else {
            ErrorResponse::invalid(format!("cannot read the body: {err}"))
        }
    })?;
    let mut entry = Entry::new(key, value);
    if let Some(ttl) = headers.get(TTL_HEADER) {
        entry = entry.with_ttl(ttl_of(ttl.to_str().unwrap_or_default())?);
    }
    api.engine.put(&keyspace, entry).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A TTL header: a duration (`"30s"`) or a number of milliseconds.
fn ttl_of(text: &str) -> Result<Duration, ErrorResponse> {
    let ttl = match text.trim().parse::<u64>() {
        Ok(millis) => Duration::from_millis(millis),
        Err(_) => parse_duration(text)
            .map_err(|err| ErrorResponse::invalid(format!("{TTL_HEADER}: {err}")))?,
    };
    if ttl.is_zero() {
        return Err(ErrorResponse::invalid(format!("{TTL_HEADER} must be above zero")));
    }
    Ok(ttl)
}

async fn delete_key(State(api): State<Api>, path: KeyPath) -> Result<StatusCode, ErrorResponse> {
    let (keyspace, key) = key_path(path)?;
    api.engine.delete(&keyspace, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The body of a batch get.
#[derive(Debug, Deserialize)]
struct BatchGet {
    keys: Vec<String>,
}

/// One key's outcome in a batch get.
#[derive(Debug, Serialize)]
struct BatchResult {
    key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ApiError>,
}

async fn batch_get(
    State(api): State<Api>,
    keyspace: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ErrorResponse> {
    let Path(keyspace) = keyspace
        .map_err(|err| ErrorResponse::invalid(format!("bad keyspace in the path: {err}")))?;
    // Any content type: the body is JSON whatever a client (or curl -d) labels it.
    let body =
        body.map_err(|err| ErrorResponse::invalid(format!("cannot read the body: {err}")))?;
    let BatchGet { keys } = serde_json::from_slice(&body).map_err(|err| {
        ErrorResponse::invalid(format!("the body must be JSON {{\"keys\": [\"...\"]}}: {err}"))
    })?;
    if keys.len() > api.max_batch_keys {
        return Err(ErrorResponse::invalid(format!(
            "{} keys asked, at most {} per batch (client_api.max_batch_keys)",
            keys.len(),
            api.max_batch_keys
        )));
    }
    let outcomes = api.engine.get_many(&keyspace, &keys).await?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let results: Vec<BatchResult> = keys
        .into_iter()
        .zip(outcomes)
        .map(|(key, outcome)| match outcome {
            Ok(value) => BatchResult { key, value: Some(b64.encode(value)), error: None },
            Err(err) => BatchResult { key, value: None, error: Some(ApiError::from(&err)) },
        })
        .collect();
    Ok(Json(serde_json::json!({ "results": results })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_headers_take_durations_or_millis() {
        assert_eq!(ttl_of("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(ttl_of("1500").unwrap(), Duration::from_millis(1500));
        assert!(ttl_of("0").is_err());
        assert!(ttl_of("soon").is_err());
    }
}
