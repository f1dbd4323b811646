//! The distcache admin HTTP server: what an operator (or a load balancer, Prometheus, a
//! browser) asks a running node.
//!
//! [`Admin`] (`server`) builds the axum routes over an [`Engine`](distcache_engine::Engine)
//! and serves them on a bound listener until a shutdown future resolves; [`router`] and
//! [`serve`] are the short forms without `/metrics`. The JSON handlers (`routes`) answer with
//! the documents in `views`; [`Metrics`] (`metrics`) is the OpenTelemetry meter provider whose
//! Prometheus registry `/metrics` renders (and which pushes OTLP with the `otlp` feature);
//! with that feature `Traces` (`traces`) pushes the engine's `tracing` spans over OTLP too.
//! `dashboard` serves a live page that polls the JSON endpoints.
//!
//! # Endpoints
//!
//! | endpoint | status | body |
//! | --- | --- | --- |
//! | `GET /healthz` | 200 | `ok` (text) while the server serves |
//! | `GET /readyz` | 200 or 503 | [`ReadinessView`]: `{"ready":true}`, or `{"ready":false,"reason":"stopped"` or `"not_in_ring","message":"…"}` |
//! | `GET /metrics` | 200 | Prometheus text, `text/plain; version=0.0.4` (404 `metrics_not_configured` without a registry) |
//! | `GET /v1/keyspaces` | 200 | `[`[`KeySpaceView`]`]`, sorted by name |
//! | `GET /v1/keyspaces/{name}` | 200 or 404 | [`KeySpaceView`], or [`ErrorView`] `keyspace_not_found` |
//! | `GET /v1/keyspaces/{name}/hot-keys` | 200 or 404 | `[`[`HotKeyView`]`]`, hottest first (at most 32) |
//! | `GET /v1/peers` | 200 | `[`[`PeerView`]`]` sorted by node id, this node included (`[]` standalone) |
//! | `GET /v1/ring` | 200 | [`RingView`] (`null` standalone) |
//! | `GET /`, `GET /dashboard` | 200 | the dashboard (HTML; its assets under `/assets/`) |
//! | anything else | 404 | [`ErrorView`] `not_found` |
//!
//! Errors are `{"code": "...", "message": "..."}`. A keyspace (`/v1/keyspaces/users`):
//!
//! ```json
//! {"name": "users", "max_bytes": 67108864, "default_ttl_ms": 60000, "negative_ttl_ms": null,
//!  "read_timeout_ms": null, "write_timeout_ms": null, "stale_for_ms": null,
//!  "refresh_ahead_ms": null, "eviction": "tiny_lfu",
//!  "rate_limit": {"per_second": 100, "burst": 100, "max_wait_ms": 0},
//!  "circuit_breaker": {"failures": 5, "cooldown_ms": 10000}, "warm_keys": 0,
//!  "stats": {"gets": 2, "hits": 1, "misses": 1, "negative_hits": 0, "fetches": 1, "...": 0,
//!            "entries": 1, "bytes": 170, "max_bytes": 67108864, "hot_entries": 0,
//!            "hot_bytes": 0, "breaker": "closed", "hit_ratio": 0.5}}
//! ```
//!
//! A peer (`/v1/peers`) and the ring (`/v1/ring`):
//!
//! ```json
//! [{"node_id": "node-1", "is_self": false, "state": "in_ring", "ready": true,
//!   "generation": 1763769195000000000, "gossip_addr": "10.0.0.2:3322",
//!   "grpc_addr": "10.0.0.2:3320", "admin_addr": "10.0.0.2:9090", "ownership": 0.333,
//!   "breaker": "closed", "keyspaces_hash": "9c1e…", "keyspaces_match": true}]
//! {"epoch": 3, "members": [{"node_id": "node-0", "grpc_addr": "10.0.0.1:3320", "ownership": 0.334}]}
//! ```
//!
//! `state` is `in_ring`, `ready` (not in this node's ring yet) or `not_ready` (joining or
//! draining); `breaker` is `closed`, `open`, `half_open` or `null`; `keyspaces_match: false`
//! flags a node whose keyspace settings differ from this node's.
//!
//! # Metrics
//!
//! The Prometheus names of the engine's instruments are listed on [`Metrics`], e.g.
//! `distcache_hits_total{keyspace="users",otel_scope_name="distcache"}`.
#![warn(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod dashboard;
mod error;
mod metrics;
mod routes;
mod server;
#[cfg(feature = "otlp")]
mod traces;
mod views;

#[cfg(test)]
mod tests;

pub use error::{Error, Result};
pub use metrics::Metrics;
pub use server::{Admin, router, serve};
#[cfg(feature = "otlp")]
pub use traces::Traces;
pub use views::{
    BreakerView, CircuitBreakerView, ErrorView, EvictionView, HotKeyView, KeySpaceView, NotReady,
    PeerState, PeerView, RateLimitView, ReadinessView, RingMemberView, RingView, StatsView,
};
