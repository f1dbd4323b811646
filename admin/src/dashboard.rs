//! The dashboard: one HTML page, its stylesheet and its script, compiled into the binary (no
//! CDN). The script polls the JSON endpoints every second and derives rates from successive
//! counter values; it uses relative URLs, so the admin routes can be nested under a prefix.

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;

const HTML: &str = include_str!("../assets/dashboard.html");
const CSS: &str = include_str!("../assets/dashboard.css");
const JS: &str = include_str!("../assets/dashboard.js");

/// `GET /` and `/dashboard` (the page), `/assets/dashboard.css`, `/assets/dashboard.js`.
pub(crate) fn routes() -> Router {
    Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", HTML)))
        .route("/dashboard", get(|| asset("text/html; charset=utf-8", HTML)))
        .route("/assets/dashboard.css", get(|| asset("text/css; charset=utf-8", CSS)))
        .route("/assets/dashboard.js", get(|| asset("text/javascript; charset=utf-8", JS)))
}

async fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    // Assets change only with the binary; no-cache makes a browser revalidate after upgrades.
    ([(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")], body)
}
