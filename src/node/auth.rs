//! Optional bearer-token protection of an API: `Authorization: Bearer <token>` on every
//! request but a few open paths (health checks), else 401 with a JSON error.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

use super::api_error::{ApiError, ErrorResponse};

#[derive(Debug)]
struct Guard {
    token: String,
    open: &'static [&'static str],
}

/// `router`, requiring `token` (when set) on every path except `open`.
pub(crate) fn require_token(
    router: Router,
    token: Option<String>,
    open: &'static [&'static str],
) -> Router {
    match token {
        None => router,
        Some(token) => {
            router.layer(middleware::from_fn_with_state(Arc::new(Guard { token, open }), check))
        }
    }
}

async fn check(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    if guard.open.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match presented {
        Some(token) if same(token.trim().as_bytes(), guard.token.as_bytes()) => {
            next.run(request).await
        }
        _ => {
            let error = ApiError::new(
                "unauthorized",
                "missing or wrong bearer token: send `Authorization: Bearer <token>`",
            );
            let mut response = ErrorResponse(StatusCode::UNAUTHORIZED, error).into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            response
        }
    }
}

/// Compares without stopping at the first difference, so timing tells nothing about the token.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn compares_whole_tokens() {
        assert!(super::same(b"secret", b"secret"));
        assert!(!super::same(b"secret", b"secreT"));
        assert!(!super::same(b"secret", b"secret2"));
        assert!(!super::same(b"", b"x"));
    }
}
