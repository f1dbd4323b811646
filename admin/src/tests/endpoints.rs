//! Every endpoint of a standalone engine: status codes, content types and JSON shapes.

use std::time::Duration;

use axum::http::StatusCode;
use distcache_engine::{CircuitBreaker, KeySpaceStats, RateLimit};
use serde_json::json;

use super::{call, keys, keyspace, round_trips, standalone};
use crate::{ErrorView, KeySpaceView, ReadinessView, router};

/// The fields of a keyspace, as the crate docs and README list them.
const KEYSPACE_FIELDS: [&str; 13] = [
    "circuit_breaker",
    "default_ttl_ms",
    "eviction",
    "max_bytes",
    "name",
    "negative_ttl_ms",
    "rate_limit",
    "read_timeout_ms",
    "refresh_ahead_ms",
    "stale_for_ms",
    "stats",
    "warm_keys",
    "write_timeout_ms",
];

#[tokio::test]
async fn health_and_readiness_follow_the_engine() {
    let engine = standalone(|c| c).await;
    let admin = router(engine.clone());
    let health = call(&admin, "/healthz").await;
    assert_eq!((health.status, health.body.as_str()), (StatusCode::OK, "ok"));

    let ready = call(&admin, "/readyz").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json(), json!({ "ready": true }));
    round_trips::<ReadinessView>(&ready.json());

    engine.stop().await;
    let stopped = call(&admin, "/readyz").await;
    assert_eq!(stopped.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(stopped.content_type.starts_with("application/json"), "{}", stopped.content_type);
    let view: ReadinessView = round_trips(&stopped.json());
    assert_eq!((view.ready, view.reason), (false, Some(crate::NotReady::Stopped)));
    assert_eq!(stopped.json()["reason"], "stopped");
    // Health is about the process, not the engine.
    assert_eq!(call(&admin, "/healthz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn keyspaces_show_settings_and_live_stats() {
    let limited = keyspace("limited")
        .with_rate_limit(RateLimit::per_second(100).with_burst(20))
        .with_circuit_breaker(CircuitBreaker::new(5, Duration::from_secs(10)))
        .with_warm_keys(["a", "b"]);
    let engine = standalone(|c| c.with_keyspace(limited)).await;
    engine.get("users", "a").await.unwrap();
    engine.get("users", "a").await.unwrap();
    engine.get("users", "a").await.unwrap();
    assert!(engine.get("users", "missing-1").await.is_err());
    let admin = router(engine.clone());

    let list = call(&admin, "/v1/keyspaces").await;
    assert_eq!(list.status, StatusCode::OK);
    let json = list.json();
    let views: Vec<KeySpaceView> = round_trips(&json);
    assert_eq!(views.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["limited", "users"]);
    assert_eq!(keys(&json[1]), KEYSPACE_FIELDS);

    let users = &json[1];
    assert_eq!(users["default_ttl_ms"], 60_000);
    assert_eq!(users["eviction"], "tiny_lfu");
    assert_eq!(users["rate_limit"], serde_json::Value::Null);
    let stats = &users["stats"];
    assert_eq!((stats["gets"].as_u64(), stats["hits"].as_u64()), (Some(4), Some(2)));
    assert_eq!((stats["misses"].as_u64(), stats["fetches"].as_u64()), (Some(2), Some(2)));
    assert_eq!(stats["entries"], 1);
    assert_eq!(stats["hit_ratio"], 0.5);

    let limited = &json[0];
    assert_eq!(limited["rate_limit"], json!({ "per_second": 100, "burst": 20, "max_wait_ms": 0 }));
    assert_eq!(limited["circuit_breaker"], json!({ "failures": 5, "cooldown_ms": 10_000 }));
    assert_eq!(limited["warm_keys"], 2);
    assert_eq!(limited["stats"]["hit_ratio"], serde_json::Value::Null, "no gets yet");

    let one = call(&admin, "/v1/keyspaces/users").await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json(), *users);

    let unknown = call(&admin, "/v1/keyspaces/nope").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let error: ErrorView = round_trips(&unknown.json());
    assert_eq!(error.code, "keyspace_not_found");
    engine.stop().await;
}

#[tokio::test]
async fn stats_view_shows_every_engine_counter() {
    let engine_fields = keys(&serde_json::to_value(KeySpaceStats::default()).unwrap());
    let view = serde_json::to_value(crate::StatsView::from(&KeySpaceStats::default())).unwrap();
    let view_fields = keys(&view);
    let missing: Vec<_> = engine_fields.iter().filter(|f| !view_fields.contains(f)).collect();
    assert!(missing.is_empty(), "StatsView lacks {missing:?}: add them to views.rs and the docs");
}

#[tokio::test]
async fn standalone_has_no_peers_nor_ring() {
    let engine = standalone(|c| c).await;
    let admin = router(engine.clone());
    let peers = call(&admin, "/v1/peers").await;
    assert_eq!((peers.status, peers.json()), (StatusCode::OK, json!([])));
    let ring = call(&admin, "/v1/ring").await;
    assert_eq!((ring.status, ring.json()), (StatusCode::OK, serde_json::Value::Null));
    engine.stop().await;
}

#[tokio::test]
async fn unknown_paths_and_missing_metrics_are_json_404s() {
    let engine = standalone(|c| c).await;
    let admin = router(engine.clone());
    let unknown = call(&admin, "/v2/nothing").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.json()["code"], "not_found");
    let metrics = call(&admin, "/metrics").await;
    assert_eq!(metrics.status, StatusCode::NOT_FOUND);
    assert_eq!(metrics.json()["code"], "metrics_not_configured");
    engine.stop().await;
}

#[tokio::test]
async fn dashboard_and_its_assets_are_served() {
    let engine = standalone(|c| c).await;
    let admin = router(engine.clone());
    for path in ["/", "/dashboard"] {
        let page = call(&admin, path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert_eq!(page.content_type, "text/html; charset=utf-8");
        assert!(page.body.contains(r#"<script src="assets/dashboard.js">"#));
    }
    let css = call(&admin, "/assets/dashboard.css").await;
    assert_eq!(
        (css.status, css.content_type.as_str()),
        (StatusCode::OK, "text/css; charset=utf-8")
    );
    let js = call(&admin, "/assets/dashboard.js").await;
    assert_eq!(js.status, StatusCode::OK);
    assert_eq!(js.content_type, "text/javascript; charset=utf-8");
    // The page polls the JSON endpoints with relative URLs, so it works nested under a prefix.
    for endpoint in [r#""v1/peers""#, r#""v1/ring""#, r#""v1/keyspaces""#, r#""readyz""#] {
        assert!(js.body.contains(endpoint), "the script polls {endpoint}");
    }
    engine.stop().await;
}

#[tokio::test]
async fn hot_keys_list_the_hottest_first() {
    let engine = standalone(|c| c).await;
    for i in 0..6000 {
        let key = if i % 2 == 0 { "hot".to_owned() } else { format!("cold-{i}") };
        engine.get("users", &key).await.unwrap();
    }
    let admin = router(engine.clone());
    let hot = call(&admin, "/v1/keyspaces/users/hot-keys").await;
    assert_eq!(hot.status, StatusCode::OK);
    let list: Vec<crate::HotKeyView> = serde_json::from_value(hot.json()).unwrap();
    assert!(!list.is_empty() && list.len() <= 32);
    assert_eq!(list[0].key, "hot");
    assert!(list[0].rate > list.last().unwrap().rate || list.len() == 1);
    let unknown = call(&admin, "/v1/keyspaces/nope/hot-keys").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    engine.stop().await;
}
