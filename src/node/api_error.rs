//! Errors as the node's HTTP APIs send them: a status and `{"code": ..., "message": ...}`.
//!
//! Each engine [`Error`] variant has one stable `code` and status:
//!
//! | code | status | when |
//! | --- | --- | --- |
//! | `not_found` | 404 | the data source has no value for the key |
//! | `keyspace_not_found` | 404 | no keyspace of that name |
//! | `invalid_argument` | 400 | bad key, TTL, body or request |
//! | `rate_limited` | 429 | the keyspace's rate limit refused a fetch |
//! | `circuit_open` | 503 | the keyspace's breaker is open |
//! | `unavailable` | 503 | neither the owner nor this node could load |
//! | `stopped` | 503 | the node is shutting down |
//! | `timeout` | 504 | the read or write timeout passed |
//! | `data_source` | 502 | the data source failed |
//! | `unauthorized` | 401 | missing or wrong bearer token |
//! | `too_large` | 413 | the value is above `client_api.max_value_bytes` |
//! | `route_not_found` | 404 | no such endpoint |
//! | `internal` | 500 | anything else |

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use distcache_engine::Error;
use serde::{Deserialize, Serialize};

/// An error body of the node's HTTP APIs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable, machine-readable code (see the module table).
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}

impl ApiError {
    /// An error with this code and message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError { code: code.into(), message: message.into() }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// The stable code and HTTP status of an engine error.
pub fn error_code(err: &Error) -> (StatusCode, &'static str) {
    match err {
        Error::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        Error::KeySpaceNotFound(_) => (StatusCode::NOT_FOUND, "keyspace_not_found"),
        Error::InvalidArgument(_) => (StatusCode::BAD_REQUEST, "invalid_argument"),
        Error::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        Error::CircuitOpen => (StatusCode::SERVICE_UNAVAILABLE, "circuit_open"),
        Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        Error::Stopped => (StatusCode::SERVICE_UNAVAILABLE, "stopped"),
        Error::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
        Error::DataSource(_) => (StatusCode::BAD_GATEWAY, "data_source"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

impl From<&Error> for ApiError {
    fn from(err: &Error) -> Self {
        ApiError::new(error_code(err).1, err.to_string())
    }
}

/// An [`ApiError`] with its status, ready to send.
#[derive(Debug)]
pub(crate) struct ErrorResponse(pub(crate) StatusCode, pub(crate) ApiError);

impl ErrorResponse {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        ErrorResponse(StatusCode::BAD_REQUEST, ApiError::new("invalid_argument", message))
    }
}

impl From<Error> for ErrorResponse {
    fn from(err: Error) -> Self {
        ErrorResponse(error_code(&err).0, ApiError::from(&err))
    }
}

impl IntoResponse for ErrorResponse {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}
