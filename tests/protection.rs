//! Data-source protection and warmth on one engine: rate limit, circuit breaker, serve-stale,
//! refresh-ahead and warm keys. Time runs on tokio's paused clock (governor included).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use distcache::{
    BreakerState, Bytes, CircuitBreaker, Config, DataSource, Engine, Error, FetchError, KeySpace,
    RateLimit, async_trait,
};
use tokio::sync::Semaphore;
use tokio::time::{Instant, advance};

const KS: &str = "ks";

/// A source that can be switched between healthy and failing, optionally held at a gate;
/// answers `key#n` where n counts fetches.
#[derive(Default)]
struct Switch {
    fetches: AtomicUsize,
    failing: AtomicBool,
    gate: Option<Semaphore>,
}

impl Switch {
    fn fail(&self, failing: bool) {
        self.failing.store(failing, SeqCst);
    }
    fn fetches(&self) -> usize {
        self.fetches.load(SeqCst)
    }
}

#[async_trait]
impl DataSource for Switch {
    async fn fetch(&self, key: &str) -> Result<Bytes, FetchError> {
        let n = self.fetches.fetch_add(1, SeqCst) + 1;
        if let Some(gate) = &self.gate {
            gate.acquire().await.expect("gate open").forget();
        }
        if key.starts_with("missing") {
            return Err(FetchError::NotFound);
        }
        if self.failing.load(SeqCst) {
            return Err(FetchError::failed("backend down"));
        }
        Ok(Bytes::from(format!("{key}#{n}")))
    }
}

async fn engine_with(source: &Arc<Switch>, keyspace: impl FnOnce(KeySpace) -> KeySpace) -> Engine {
    let def = keyspace(KeySpace::new(KS, 1 << 20, source.clone()));
    Engine::start(Config::standalone([def])).await.expect("engine starts")
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_applies_to_fetches_not_to_hits() {
    let source = Arc::new(Switch::default());
    let engine =
        engine_with(&source, |ks| ks.with_rate_limit(RateLimit::per_second(10).with_burst(2)))
            .await;
    assert_eq!(engine.get(KS, "a").await.unwrap(), "a#1");
    assert_eq!(engine.get(KS, "b").await.unwrap(), "b#2");
    assert!(matches!(engine.get(KS, "c").await, Err(Error::RateLimited)));
    for _ in 0..100 {
        assert_eq!(engine.get(KS, "a").await.unwrap(), "a#1", "hits are never limited");
    }
    advance(Duration::from_millis(100)).await;
    assert_eq!(engine.get(KS, "c").await.unwrap(), "c#3", "one token per 100 ms");
    assert!(matches!(engine.get(KS, "d").await, Err(Error::RateLimited)));
    let stats = engine.stats(KS).unwrap();
    assert_eq!((stats.fetches, stats.rate_limited), (3, 2));
    engine.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_limited_fetch_waits_up_to_its_max_wait() {
    let source = Arc::new(Switch::default());
    let limit = RateLimit::per_second(10).with_burst(1).with_max_wait(Duration::from_millis(150));
    let engine = engine_with(&source, |ks| ks.with_rate_limit(limit)).await;
    engine.get(KS, "a").await.unwrap();
    let started = Instant::now();
    assert_eq!(engine.get(KS, "b").await.unwrap(), "b#2");
    assert_eq!(started.elapsed(), Duration::from_millis(100), "waited for the next token");

    let slow = RateLimit::per_second(1).with_burst(1).with_max_wait(Duration::from_millis(150));
    engine
        .update_keyspace(KeySpace::new(KS, 1 << 20, source.clone()).with_rate_limit(slow))
        .await
        .unwrap();
    engine.get(KS, "c").await.unwrap();
    let started = Instant::now();
    assert!(matches!(engine.get(KS, "d").await, Err(Error::RateLimited)));
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "no waiting for a token that comes too late"
    );
    engine.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_probes_once_and_closes() {
    let source = Arc::new(Switch { gate: Some(Semaphore::new(1000)), ..Switch::default() });
    let engine = engine_with(&source, |ks| {
        ks.with_circuit_breaker(CircuitBreaker::new(3, Duration::from_secs(5)))
    })
    .await;
    source.fail(true);
    for key in ["a", "b", "c"] {
        assert!(matches!(engine.get(KS, key).await, Err(Error::DataSource(_))));
    }
    assert_eq!(engine.stats(KS).unwrap().breaker, Some(BreakerState::Open));
    assert!(matches!(engine.get(KS, "d").await, Err(Error::CircuitOpen)));
    assert_eq!(source.fetches(), 3, "an open breaker calls nothing");

    // After the cooldown one probe goes through; others are refused while it runs.
    advance(Duration::from_secs(5)).await;
    source.fail(false);
    let gate = source.gate.as_ref().unwrap();
    gate.forget_permits(gate.available_permits());
    let probe = tokio::spawn({
        let engine = engine.clone();
        async move { engine.get(KS, "e").await }
    });
    while source.fetches() < 4 {
        tokio::task::yield_now().await;
    }
    assert!(matches!(engine.get(KS, "f").await, Err(Error::CircuitOpen)), "only one probe");
    gate.add_permits(1000);
    assert_eq!(probe.await.unwrap().unwrap(), "e#4");
    assert_eq!(engine.stats(KS).unwrap().breaker, Some(BreakerState::Closed));
    assert_eq!(engine.get(KS, "f").await.unwrap(), "f#5");
    assert_eq!(engine.stats(KS).unwrap().circuit_rejections, 2);
    engine.stop().await;
}

#[tokio::test(start_paused = true)]
async fn not_found_never_opens_the_breaker() {
    let source = Arc::new(Switch::default());
    let engine = engine_with(&source, |ks| {
        ks.with_circuit_breaker(CircuitBreaker::new(2, Duration::from_secs(5)))
    })
    .await;
    for i in 0..10 {
        assert!(matches!(engine.get(KS, &format!("missing-{i}")).await, Err(Error::NotFound)));
    }
    assert_eq!(engine.stats(KS).unwrap().breaker, Some(BreakerState::Closed));
    assert_eq!(engine.get(KS, "a").await.unwrap(), "a#11");
    engine.stop().await;
}

#[tokio::test(start_paused = true)]
async fn stale_values_are_served_while_the_source_fails() {
    let source = Arc::new(Switch::default());
    let engine = engine_with(&source, |ks| {
        ks.with_default_ttl(Duration::from_secs(10))
            .with_stale_for(Duration::from_secs(60))
            .with_circuit_breaker(CircuitBreaker::new(2, Duration::from_secs(30)))
    })
    .await;
    assert_eq!(engine.get(KS, "k").await.unwrap(), "k#1");
    advance(Duration::from_secs(11)).await;
    source.fail(true);
    assert_eq!(engine.get(KS, "k").await.unwrap(), "k#1", "stale while the source fails");
    assert_eq!(engine.get(KS, "k").await.unwrap(), "k#1");
    assert_eq!(engine.stats(KS).unwrap().breaker, Some(BreakerState::Open));
    assert_eq!(engine.get(KS, "k").await.unwrap(), "k#1", "stale while the breaker is open");
    assert!(matches!(engine.get(KS, "never-loaded").await, Err(Error::CircuitOpen)));
    assert_eq!(engine.stats(KS).unwrap().stale_served, 3);

    advance(Duration::from_secs(30)).await;
    source.fail(false);
    assert_eq!(engine.get(KS, "k").await.unwrap(), "k#4", "fresh once the source recovers");
    assert_eq!(engine.get(KS, "k").await.unwrap(), "k#4");

    // Past the grace period nothing stale is left to serve.
    advance(Duration::from_secs(75)).await;
    source.fail(true);
    assert!(matches!(engine.get(KS, "k").await, Err(Error::DataSource(_))));
    engine.stop().await;
}

#[tokio::test(start_paused = true)]
async fn refresh_ahead_reloads_once_before_expiry() {
    let source = Arc::new(Switch::default());
    let engine = engine_with(&source, |ks| {
        ks.with_default_ttl(Duration::from_secs(10)).with_refresh_ahead(Duration::from_secs(3))
    })
    .await;
    assert_eq!(engine.get(KS, "k").await.unwrap(), "k#1");
    advance(Duration::from_secs(5)).await;
    assert_eq!(engine.get(KS, "k").await.unwrap(), "k#1", "not yet in the refresh window");
    advance(Duration::from_secs(3)).await;
    for _ in 0..20 {
        assert_eq!(engine.get(KS, "k").await.unwrap(), "k#1", "served while refreshing");
    }
    while source.fetches() < 2 {
        tokio::task::yield_now().await;
    }
    tokio::task::yield_now().await;
    assert_eq!(engine.get(KS, "k").await.unwrap(), "k#2");
    advance(Duration::from_secs(5)).await;
    assert_eq!(engine.get(KS, "k").await.unwrap(), "k#2", "the refreshed value has a new lifetime");
    let stats = engine.stats(KS).unwrap();
    assert_eq!((stats.fetches, stats.refreshes), (2, 1), "one refresh for many gets");
    engine.stop().await;
}

#[tokio::test(start_paused = true)]
async fn warm_keys_are_loaded_at_start() {
    let source = Arc::new(Switch::default());
    let engine = engine_with(&source, |ks| ks.with_warm_keys(["a", "b", "missing-c"])).await;
    while engine.stats(KS).unwrap().warmed < 2 {
        tokio::task::yield_now().await;
    }
    assert_eq!(source.fetches(), 3);
    assert_eq!(engine.get(KS, "a").await.unwrap(), "a#1");
    assert_eq!(engine.get(KS, "b").await.unwrap(), "b#2");
    assert_eq!(source.fetches(), 3, "warm keys are hits");
    engine.stop().await;
}

#[tokio::test(start_paused = true)]
async fn hot_keys_are_tracked_hottest_first() {
    let source = Arc::new(Switch::default());
    let engine = engine_with(&source, |ks| ks).await;
    for i in 0..6000 {
        let key = if i % 2 == 0 {
            "hot".to_owned()
        } else if i % 3 == 0 {
            "warm".to_owned()
        } else {
            format!("cold-{i}")
        };
        engine.get(KS, &key).await.unwrap();
    }
    let hot = engine.hot_keys(KS).unwrap();
    assert!(hot.len() <= 32);
    assert_eq!(hot[0].0, "hot");
    assert_eq!(hot[1].0, "warm");
    assert!(matches!(engine.hot_keys("nope"), Err(Error::KeySpaceNotFound(_))));
    engine.stop().await;
}

#[tokio::test]
async fn invalid_protection_settings_are_refused() {
    let source = Arc::new(Switch::default());
    let zero_rate =
        KeySpace::new(KS, 1 << 20, source.clone()).with_rate_limit(RateLimit::per_second(0));
    let err = Engine::start(Config::standalone([zero_rate])).await.unwrap_err();
    assert!(matches!(&err, Error::InvalidArgument(m) if m.contains("rate limit")));
    let zero_breaker = KeySpace::new(KS, 1 << 20, source.clone())
        .with_circuit_breaker(CircuitBreaker::new(0, Duration::from_secs(1)));
    let err = Engine::start(Config::standalone([zero_breaker])).await.unwrap_err();
    assert!(matches!(&err, Error::InvalidArgument(m) if m.contains("circuit breaker")));
    let zero_stale = KeySpace::new(KS, 1 << 20, source).with_stale_for(Duration::ZERO);
    let err = Engine::start(Config::standalone([zero_stale])).await.unwrap_err();
    assert!(matches!(&err, Error::InvalidArgument(m) if m.contains("stale_for")));
}

// Across a cluster: refresh-ahead on the owner only, and warm handoff to a new owner.

mod common;

use common::{KEYSPACE, Options, TestCluster, value_of};

/// A cluster of `n` nodes whose keyspace is adjusted by `keyspace`; hot cache off, so every
/// get of a peer-owned key reaches its owner.
async fn cluster_with(n: usize, keyspace: fn(KeySpace) -> KeySpace) -> TestCluster {
    let options = Options { hot_cache: false, source_delay: Duration::ZERO, ..Options::default() };
    let mut cluster = TestCluster::new(options);
    for _ in 0..n {
        cluster
            .add_node_with(|mut setup| {
                setup.keyspaces = setup.keyspaces.into_iter().map(keyspace).collect();
                setup
            })
            .await;
    }
    cluster.wait_converged().await;
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_ahead_runs_once_per_interval_on_the_owner_only() {
    let cluster = cluster_with(3, |ks| {
        ks.with_default_ttl(Duration::from_millis(1500))
            .with_refresh_ahead(Duration::from_millis(1000))
    })
    .await;
    let key = "refreshed";
    let owner = cluster.owner_of(key);
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        for node in 0..3 {
            assert_eq!(cluster.engine(node).get(KEYSPACE, key).await.unwrap(), value_of(key));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let fetches = cluster.fetches(owner);
    assert_eq!(cluster.total_fetches(), fetches, "only the owner loads or refreshes");
    // One load, then at most one refresh per 500 ms of a value's life (+1 for timing slack).
    assert!((2..=6).contains(&fetches), "{fetches} fetches in 2 s");
    assert!(cluster.stats(owner).refreshes >= 1);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_owner_takes_the_previous_owners_copy_instead_of_fetching() {
    let mut cluster = cluster_with(3, |ks| ks).await;
    let keys: Vec<String> = (0..300).map(|i| format!("key-{i}")).collect();
    for key in &keys {
        assert_eq!(cluster.engine(0).get(KEYSPACE, key).await.unwrap(), value_of(key));
    }
    assert_eq!(cluster.total_fetches(), keys.len());
    let old_ring = cluster.engine(0).ring().unwrap();

    let newcomer = cluster.add_node_with(|setup| setup).await;
    cluster.wait_converged().await;
    let moved: Vec<&String> = keys.iter().filter(|k| cluster.owner_of(k) == newcomer).collect();
    assert!(!moved.is_empty(), "a quarter of the keys move to the newcomer");
    for key in &moved {
        assert_eq!(cluster.engine(1).get(KEYSPACE, key).await.unwrap(), value_of(key));
    }
    assert_eq!(cluster.fetches(newcomer), 0, "moved keys came from the previous owners");
    assert_eq!(cluster.total_fetches(), keys.len());
    // Node 1 asks the new owner even for the keys it owned itself (a copy an old owner kept
    // is not served: the new owner takes the writes now); every moved key was handed off,
    // node 1's own among them.
    let from_node_1 = moved.iter().filter(|k| &*old_ring.owner(k).unwrap().node_id == "node-1");
    assert!(from_node_1.count() > 0, "node 1 owned some of the moved keys");
    assert_eq!(cluster.stats(newcomer).handoffs, moved.len() as u64);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protection_errors_of_the_owner_reach_the_caller_unchanged() {
    let cluster = cluster_with(2, |ks| {
        ks.with_rate_limit(RateLimit::per_second(1).with_burst(1))
            .with_circuit_breaker(CircuitBreaker::new(1, Duration::from_secs(60)))
    })
    .await;
    let keys = cluster.keys_owned_by(1, "limited", 2);
    assert_eq!(cluster.engine(0).get(KEYSPACE, &keys[0]).await.unwrap(), value_of(&keys[0]));
    let limited = cluster.engine(0).get(KEYSPACE, &keys[1]).await;
    assert!(matches!(limited, Err(Error::RateLimited)), "{limited:?}");

    // One failure opens the owner's breaker; the caller sees CircuitOpen, not a local load.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let failing = cluster.keys_owned_by(1, "failing", 2);
    assert!(matches!(
        cluster.engine(0).get(KEYSPACE, &failing[0]).await,
        Err(Error::DataSource(_))
    ));
    let open = cluster.engine(0).get(KEYSPACE, &failing[1]).await;
    assert!(matches!(open, Err(Error::CircuitOpen)), "{open:?}");
    assert_eq!(cluster.fetches(0), 0, "the caller never loaded around its owner");
    cluster.stop().await;
}
