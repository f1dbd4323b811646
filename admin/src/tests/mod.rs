//! Tests of every endpoint against live engines: standalone, and small clusters on loopback.

mod cluster;
mod endpoints;
mod metrics;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use distcache_engine::{Bytes, Config, Engine, KeySpace, source_fn};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// One answer: status, content type and body.
struct Answer {
    status: StatusCode,
    content_type: String,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

async fn call(router: &Router, path: &str) -> Answer {
    let request = Request::get(path).body(Body::empty()).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer { status, content_type, body: String::from_utf8(body.to_vec()).unwrap() }
}

/// A keyspace whose values are their keys; keys starting with `missing` are not found.
fn keyspace(name: &str) -> KeySpace {
    KeySpace::new(
        name,
        1 << 20,
        source_fn(|key: String| async move {
            if key.starts_with("missing") {
                Err(distcache_engine::FetchError::NotFound)
            } else {
                Ok(Bytes::from(key))
            }
        }),
    )
    .with_default_ttl(Duration::from_secs(60))
}

async fn standalone(config: impl FnOnce(Config) -> Config) -> Engine {
    Engine::start(config(Config::standalone([keyspace("users")]))).await.unwrap()
}

/// Polls `check` every 20 ms until it holds, failing after 10 s.
async fn eventually<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let wait = async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// Asserts that `value` reads back as `T` and writes out unchanged: the documented field
/// names are exactly the served ones.
fn round_trips<T: serde::Serialize + serde::de::DeserializeOwned>(value: &serde_json::Value) -> T {
    let typed: T = serde_json::from_value(value.clone()).unwrap();
    assert_eq!(&serde_json::to_value(&typed).unwrap(), value);
    typed
}

/// The keys of a JSON object, sorted.
fn keys(value: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}
