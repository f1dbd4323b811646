//! The single-node engine seen from an application: loads, dedup, expiry, budgets, fencing,
//! validation, keyspace changes and shutdown.
//!
//! Time-dependent tests run on a paused clock (`start_paused`): the engine checks expiry against
//! `tokio::time::Instant`, so `advance` moves TTLs without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, SystemTime};

use distcache::{
    Bytes, Config, DataSource, ENTRY_OVERHEAD, Engine, Entry, Error, Eviction, Expiration,
    FetchError, KeySpace, MAX_KEY_BYTES, Result, async_trait,
};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::{Instant, advance, sleep, timeout};

const KS: &str = "ks";
const MIB: u64 = 1 << 20;
const KIB: u64 = 1 << 10;

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// A data source that counts its fetches, can hold each fetch at a gate until the test
/// releases it, and answers `key#n` (n: which fetch this is) unless told otherwise.
struct Source {
    fetches: AtomicUsize,
    started: Notify,
    gate: Option<Semaphore>,
    delay: Duration,
    answer: fn(&str, usize) -> Result<Bytes, FetchError>,
}

impl Source {
    fn new() -> Self {
        Source {
            fetches: AtomicUsize::new(0),
            started: Notify::new(),
            gate: None,
            delay: Duration::ZERO,
            answer: |key, n| Ok(Bytes::from(format!("{key}#{n}"))),
        }
    }
    /// Each fetch waits for a permit from [`Source::release`].
    fn gated(self) -> Self {
        Source { gate: Some(Semaphore::new(0)), ..self }
    }
    fn delayed(self, delay: Duration) -> Self {
        Source { delay, ..self }
    }
    fn answering(self, answer: fn(&str, usize) -> Result<Bytes, FetchError>) -> Self {
        Source { answer, ..self }
    }
    fn arc(self) -> Arc<Self> {
        Arc::new(self)
    }
    fn release(&self, fetches: usize) {
        self.gate.as_ref().expect("a gated source").add_permits(fetches);
    }
    fn fetches(&self) -> usize {
        self.fetches.load(SeqCst)
    }
}

#[async_trait]
impl DataSource for Source {
    async fn fetch(&self, key: &str) -> Result<Bytes, FetchError> {
        let n = self.fetches.fetch_add(1, SeqCst) + 1;
        self.started.notify_one();
        if let Some(gate) = &self.gate {
            gate.acquire().await.expect("gate never closed").forget();
        }
        if !self.delay.is_zero() {
            sleep(self.delay).await;
        }
        (self.answer)(key, n)
    }
}

fn keyspace(name: &str, source: &Arc<Source>) -> KeySpace {
    KeySpace::new(name, MIB, source.clone())
}

async fn start(keyspaces: impl IntoIterator<Item = KeySpace>) -> Engine {
    Engine::start(Config::standalone(keyspaces)).await.expect("a valid config")
}

/// A `get` in its own task, reporting its result and how long it took.
fn spawn_get(engine: &Engine, key: &str) -> JoinHandle<(Result<Bytes>, Duration)> {
    let (engine, key, begun) = (engine.clone(), key.to_owned(), Instant::now());
    tokio::spawn(async move { (engine.get(KS, &key).await, begun.elapsed()) })
}

/// Polls `cond` until it holds; fails after 10 s (virtual seconds under a paused clock).
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let poll = async {
        while !cond() {
            sleep(ms(1)).await;
        }
    };
    timeout(Duration::from_secs(10), poll).await.unwrap_or_else(|_| panic!("never: {what}"));
}

fn deduped(engine: &Engine) -> u64 {
    engine.stats(KS).expect("keyspace exists").fetches_deduped
}

// ---- loads and dedup ----

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_cold_gets_fetch_once() -> anyhow::Result<()> {
    let source = Source::new().gated().arc();
    let engine = start([keyspace(KS, &source)]).await;
    let gets: Vec<_> = (0..100).map(|_| spawn_get(&engine, "k")).collect();
    eventually("99 callers joined the load", || deduped(&engine) == 99).await;
    source.release(1);
    for get in gets {
        assert_eq!(get.await?.0?, "k#1");
    }
    assert_eq!(source.fetches(), 1);
    let s = engine.stats(KS)?;
    assert_eq!((s.gets, s.misses, s.hits, s.fetches, s.fetches_deduped), (100, 100, 0, 1, 99));
    assert_eq!(engine.get(KS, "k").await?, "k#1");
    assert_eq!((engine.stats(KS)?.hits, source.fetches()), (1, 1));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn cancelled_callers_cancel_nobody_else() -> anyhow::Result<()> {
    let source = Source::new().gated().arc();
    let engine = start([keyspace(KS, &source)]).await;
    let first = spawn_get(&engine, "k");
    source.started.notified().await;
    first.abort();
    assert!(first.await.expect_err("aborted").is_cancelled());
    // A follower giving up on its own does not end the load either.
    assert!(timeout(ms(10), engine.get(KS, "k")).await.is_err());
    let second = spawn_get(&engine, "k");
    eventually("the second caller joined", || deduped(&engine) == 2).await;
    source.release(1);
    assert_eq!(second.await?.0?, "k#1");
    assert_eq!(engine.get(KS, "k").await?, "k#1");
    assert_eq!(source.fetches(), 1);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn read_timeout_bounds_the_load_and_every_waiter() -> anyhow::Result<()> {
    let source = Source::new().delayed(ms(150)).arc();
    let engine = start([keyspace(KS, &source).with_read_timeout(ms(100))]).await;
    let first = spawn_get(&engine, "k");
    sleep(ms(40)).await;
    let second = spawn_get(&engine, "k");
    let ((first, first_took), (second, second_took)) = (first.await?, second.await?);
    assert!(matches!(first, Err(Error::Timeout(t)) if t == ms(100)), "{first:?}");
    assert_eq!(first_took, ms(100));
    // The fetch itself is bounded by the read timeout, so the later waiter gets the load's
    // timeout when it ends, before its own deadline (40 + 100 ms).
    assert!(matches!(second, Err(Error::Timeout(_))), "{second:?}");
    assert_eq!(second_took, ms(60));
    let s = engine.stats(KS)?;
    assert_eq!((s.fetches, s.fetches_deduped, s.fetch_errors, s.entries), (1, 1, 1, 0));
    // A timed-out load stores nothing: the next get fetches again.
    assert!(matches!(engine.get(KS, "k").await, Err(Error::Timeout(_))));
    assert_eq!(source.fetches(), 2);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn each_waiter_honours_its_own_deadline() -> anyhow::Result<()> {
    let source = Source::new().delayed(ms(500)).arc();
    let engine = start([keyspace(KS, &source).with_read_timeout(Duration::from_secs(1))]).await;
    let first = spawn_get(&engine, "k");
    source.started.notified().await;
    // Later callers get a shorter deadline than the load in flight (bounded by 1 s).
    engine.update_keyspace(keyspace(KS, &source).with_read_timeout(ms(100))).await?;
    sleep(ms(20)).await;
    let (second, second_took) = spawn_get(&engine, "k").await?;
    assert!(matches!(second, Err(Error::Timeout(t)) if t == ms(100)), "{second:?}");
    assert_eq!(second_took, ms(100));
    assert!(!first.is_finished(), "the load goes on after a waiter's deadline");
    let (first, first_took) = first.await?;
    assert_eq!((first?, first_took), (Bytes::from("k#1"), ms(500)));
    assert_eq!(engine.get(KS, "k").await?, "k#1");
    assert_eq!(source.fetches(), 1);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn panicking_source_fails_every_waiter_then_retries() -> anyhow::Result<()> {
    let source = Source::new()
        .gated()
        .answering(|key, n| match n {
            1 => panic!("boom on {key}"),
            _ => Ok(Bytes::from(format!("{key}#{n}"))),
        })
        .arc();
    let engine = start([keyspace(KS, &source)]).await;
    let gets: Vec<_> = (0..3).map(|_| spawn_get(&engine, "k")).collect();
    eventually("two callers joined the load", || deduped(&engine) == 2).await;
    source.release(1);
    for get in gets {
        let (result, _) = timeout(Duration::from_secs(1), get).await??;
        match result {
            Err(Error::DataSource(err)) => {
                let msg = err.to_string();
                assert!(msg.contains("panicked") && msg.contains("boom on k"), "{msg}");
            }
            other => panic!("expected a data-source error, got {other:?}"),
        }
    }
    assert_eq!(engine.stats(KS)?.fetch_errors, 1);
    source.release(1);
    assert_eq!(engine.get(KS, "k").await?, "k#2");
    assert_eq!(source.fetches(), 2);
    Ok(())
}

#[tokio::test]
async fn source_errors_reach_the_caller_and_are_not_cached() -> anyhow::Result<()> {
    let source = Source::new().answering(|_, _| Err(FetchError::failed("backend down"))).arc();
    let engine = start([keyspace(KS, &source)]).await;
    for _ in 0..2 {
        let err = engine.get(KS, "k").await.expect_err("the source fails");
        assert!(matches!(&err, Error::DataSource(e) if e.to_string() == "backend down"), "{err}");
    }
    assert_eq!((source.fetches(), engine.stats(KS)?.fetch_errors), (2, 2));
    Ok(())
}

// ---- not found ----

#[tokio::test(start_paused = true)]
async fn not_found_is_negatively_cached_only_with_a_negative_ttl() -> anyhow::Result<()> {
    let missing = |_: &str, _| Err(FetchError::NotFound);
    let remembered = Source::new().answering(missing).arc();
    let forgotten = Source::new().answering(missing).arc();
    let engine = start([
        keyspace(KS, &remembered).with_negative_ttl(Duration::from_secs(10)),
        keyspace("plain", &forgotten),
    ])
    .await;

    assert!(matches!(engine.get(KS, "k").await, Err(Error::NotFound)));
    assert!(matches!(engine.get(KS, "k").await, Err(Error::NotFound)));
    assert_eq!((remembered.fetches(), engine.stats(KS)?.negative_hits), (1, 1));
    advance(Duration::from_secs(9)).await;
    assert!(matches!(engine.get(KS, "k").await, Err(Error::NotFound)));
    assert_eq!(remembered.fetches(), 1);
    advance(Duration::from_secs(2)).await;
    assert!(matches!(engine.get(KS, "k").await, Err(Error::NotFound)));
    assert_eq!(remembered.fetches(), 2);
    // A put replaces the remembered absence.
    engine.put(KS, ("k", "now here")).await?;
    assert_eq!(engine.get(KS, "k").await?, "now here");

    for _ in 0..3 {
        assert!(matches!(engine.get("plain", "k").await, Err(Error::NotFound)));
    }
    let s = engine.stats("plain")?;
    assert_eq!((forgotten.fetches(), s.negative_hits, s.misses), (3, 0, 3));
    Ok(())
}

// ---- expiry ----

#[tokio::test(start_paused = true)]
async fn default_ttl_expires_values() -> anyhow::Result<()> {
    let source = Source::new().arc();
    let engine = start([keyspace(KS, &source).with_default_ttl(Duration::from_secs(60))]).await;
    assert_eq!(engine.get(KS, "k").await?, "k#1");
    engine.put(KS, ("p", "put")).await?;
    advance(Duration::from_secs(59)).await;
    assert_eq!(engine.get(KS, "k").await?, "k#1");
    assert_eq!(engine.get(KS, "p").await?, "put");
    advance(Duration::from_secs(2)).await;
    assert_eq!(engine.get(KS, "k").await?, "k#2");
    assert_eq!(engine.get(KS, "p").await?, "p#3", "put values follow the default TTL too");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn expiry_fn_chooses_by_value_over_the_default_ttl() -> anyhow::Result<()> {
    let source = Source::new().arc();
    let ks = keyspace(KS, &source).with_default_ttl(Duration::from_secs(1)).with_expiry(
        |_key, value| {
            if value.starts_with(b"perm") {
                Expiration::Never
            } else {
                Expiration::After(Duration::from_secs(10))
            }
        },
    );
    let engine = start([ks]).await;
    assert_eq!(engine.get(KS, "perm").await?, "perm#1");
    assert_eq!(engine.get(KS, "temp").await?, "temp#2");
    advance(Duration::from_secs(9)).await;
    assert_eq!(engine.get(KS, "temp").await?, "temp#2", "the fn's 10 s beat the default 1 s");
    advance(Duration::from_secs(2)).await;
    assert_eq!(engine.get(KS, "temp").await?, "temp#3");
    advance(Duration::from_secs(365 * 24 * 3600)).await;
    assert_eq!(engine.get(KS, "perm").await?, "perm#1");
    assert_eq!(source.fetches(), 3);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn put_with_its_own_expiry_overrides_the_policy() -> anyhow::Result<()> {
    let source = Source::new().arc();
    let engine = start([keyspace(KS, &source).with_default_ttl(Duration::from_secs(60))]).await;
    engine.put(KS, Entry::new("short", "s").with_ttl(Duration::from_secs(5))).await?;
    engine.put(KS, Entry::new("forever", "f").with_expiration(Expiration::Never)).await?;
    advance(Duration::from_secs(4)).await;
    assert_eq!(engine.get(KS, "short").await?, "s");
    advance(Duration::from_secs(2)).await;
    assert_eq!(engine.get(KS, "short").await?, "short#1");
    advance(Duration::from_secs(10 * 365 * 24 * 3600)).await;
    assert_eq!(engine.get(KS, "forever").await?, "f");
    assert_eq!(source.fetches(), 1);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn expiration_at_a_wall_clock_instant() -> anyhow::Result<()> {
    let source = Source::new().arc();
    let engine = start([keyspace(KS, &source)]).await;
    let past = SystemTime::now() - Duration::from_secs(1);
    let future = SystemTime::now() + Duration::from_secs(30);

    // Already expired: not stored, and it removes what was there.
    engine.put(KS, Entry::new("gone", "old")).await?;
    engine.put(KS, Entry::new("gone", "new").with_expiration(Expiration::At(past))).await?;
    assert_eq!(engine.get(KS, "gone").await?, "gone#1");

    // In the future: stored, for the time left then (the paused clock moves it).
    engine.put(KS, Entry::new("later", "v").with_expiration(Expiration::At(future))).await?;
    advance(Duration::from_secs(25)).await;
    assert_eq!(engine.get(KS, "later").await?, "v");
    advance(Duration::from_secs(10)).await;
    assert_eq!(engine.get(KS, "later").await?, "later#2");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn huge_ttls_mean_practically_never() -> anyhow::Result<()> {
    let source = Source::new().answering(|_, _| Err(FetchError::NotFound)).arc();
    let ks = keyspace(KS, &source).with_default_ttl(Duration::MAX).with_negative_ttl(Duration::MAX);
    let engine = start([ks.clone()]).await;
    engine.put(KS, ("policy", "p")).await?;
    engine.put(KS, Entry::new("own", "o").with_ttl(Duration::MAX)).await?;
    assert!(matches!(engine.get(KS, "absent").await, Err(Error::NotFound)));
    engine.update_keyspace(ks).await?;
    advance(Duration::from_secs(100 * 365 * 24 * 3600)).await;
    assert_eq!(engine.get(KS, "policy").await?, "p");
    assert_eq!(engine.get(KS, "own").await?, "o");
    assert!(matches!(engine.get(KS, "absent").await, Err(Error::NotFound)));
    assert_eq!(source.fetches(), 1);
    Ok(())
}

// ---- byte budget ----

#[tokio::test]
async fn byte_budget_evicts_the_least_recently_used() -> anyhow::Result<()> {
    let source = Source::new().arc();
    let max_bytes = 100 * KIB;
    let engine =
        start([KeySpace::new(KS, max_bytes, source.clone()).with_eviction(Eviction::Lru)]).await;
    let value = Bytes::from(vec![7u8; 1024]);
    for i in 0..1000 {
        engine.put(KS, (format!("key-{i:04}"), value.clone())).await?;
    }
    let s = engine.stats(KS)?;
    let per_entry = 1024 + "key-0000".len() as u64 + ENTRY_OVERHEAD;
    assert!(s.bytes <= max_bytes * 105 / 100, "{s:?}");
    assert_eq!(s.bytes, s.entries * per_entry, "{s:?}");
    assert!(s.entries >= max_bytes / per_entry * 9 / 10, "the budget is used: {s:?}");
    assert!(s.evictions >= 1000 - s.entries, "{s:?}");
    assert_eq!(s.max_bytes, max_bytes);
    assert_eq!(engine.get(KS, "key-0999").await?, value, "the newest value stays");
    assert_eq!(engine.get(KS, "key-0000").await?, "key-0000#1", "the oldest was evicted");
    Ok(())
}

#[tokio::test]
async fn values_larger_than_the_budget() -> anyhow::Result<()> {
    let source = Source::new().answering(|_, _| Ok(Bytes::from(vec![0u8; 4096]))).arc();
    let engine = start([KeySpace::new(KS, 4096, source.clone())]).await;
    let fitting = vec![1u8; 4096 - ENTRY_OVERHEAD as usize - 1];
    engine.put(KS, ("k", fitting.clone())).await?;
    assert_eq!(engine.get(KS, "k").await?, fitting);
    let err = engine.put(KS, ("k", vec![1u8; 4096])).await.expect_err("too big");
    assert!(matches!(&err, Error::InvalidArgument(m) if m.contains("max_bytes")), "{err}");
    // A fetched value that cannot fit is served but not stored.
    assert_eq!(engine.get(KS, "big").await?.len(), 4096);
    assert_eq!(engine.get(KS, "big").await?.len(), 4096);
    assert_eq!(source.fetches(), 2);
    Ok(())
}

// ---- fencing ----

#[tokio::test(start_paused = true)]
async fn put_wins_over_a_load_in_flight() -> anyhow::Result<()> {
    let source = Source::new().gated().arc();
    let engine = start([keyspace(KS, &source)]).await;
    let get = spawn_get(&engine, "k");
    source.started.notified().await;
    engine.put(KS, ("k", "put")).await?;
    assert_eq!(engine.get(KS, "k").await?, "put");
    source.release(1);
    assert_eq!(get.await?.0?, "k#1", "the load answers its own callers");
    assert_eq!(engine.get(KS, "k").await?, "put", "but does not write over the put");
    assert_eq!(source.fetches(), 1);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn delete_wins_over_a_load_in_flight() -> anyhow::Result<()> {
    let source = Source::new().gated().arc();
    let engine = start([keyspace(KS, &source)]).await;
    let get = spawn_get(&engine, "k");
    source.started.notified().await;
    engine.delete(KS, "k").await?;
    source.release(1);
    assert_eq!(get.await?.0?, "k#1");
    source.release(1);
    assert_eq!(engine.get(KS, "k").await?, "k#2", "the fenced load stored nothing");
    assert_eq!(source.fetches(), 2);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn get_after_delete_does_not_join_the_stale_load() -> anyhow::Result<()> {
    let source = Source::new().gated().arc();
    let engine = start([keyspace(KS, &source)]).await;
    let before = spawn_get(&engine, "k");
    source.started.notified().await;
    engine.delete(KS, "k").await?;
    let after = spawn_get(&engine, "k");
    eventually("a fresh load started", || source.fetches() == 2).await;
    source.release(2);
    assert_eq!(before.await?.0?, "k#1");
    assert_eq!(after.await?.0?, "k#2", "a get issued after the delete sees a later value");
    assert_eq!(engine.get(KS, "k").await?, "k#2");
    assert_eq!(source.fetches(), 2);
    Ok(())
}

// ---- invalid input ----

#[tokio::test]
async fn invalid_keys_are_rejected() -> anyhow::Result<()> {
    let source = Source::new().arc();
    let engine = start([keyspace(KS, &source)]).await;
    let invalid = |r: Result<_>| matches!(r, Err(Error::InvalidArgument(_)));
    for key in [String::new(), "x".repeat(MAX_KEY_BYTES + 1)] {
        assert!(invalid(engine.get(KS, &key).await.map(drop)), "get {}", key.len());
        assert!(invalid(engine.put(KS, (key.clone(), "v")).await), "put {}", key.len());
        assert!(invalid(engine.delete(KS, &key).await), "delete {}", key.len());
    }
    let longest = "x".repeat(MAX_KEY_BYTES);
    assert_eq!(engine.get(KS, &longest).await?, format!("{longest}#1"));
    engine.put(KS, (longest.clone(), "v")).await?;
    engine.delete(KS, &longest).await?;
    assert_eq!(source.fetches(), 1, "rejected keys never reach the source");
    Ok(())
}

#[tokio::test]
async fn invalid_configs_fail_to_start_naming_the_problem() {
    let source = Source::new().arc();
    let ks = |name: &str| keyspace(name, &source);
    let cases = [
        (Config::standalone([ks("a"), ks("b"), ks("a")]), "declared twice"),
        (Config::standalone([KeySpace::new("a", 0, source.clone())]), "max_bytes 0"),
        (Config::standalone([ks("")]), "name must not be empty"),
        (Config::standalone([ks("  ")]), "name must not be empty"),
        (Config::standalone([ks("a")]).with_read_timeout(Duration::ZERO), "read_timeout"),
        (Config::standalone([ks("a")]).with_write_timeout(Duration::ZERO), "write_timeout"),
        (Config::standalone([ks("a").with_read_timeout(Duration::ZERO)]), "read_timeout 0"),
        (Config::standalone([ks("a").with_write_timeout(Duration::ZERO)]), "write_timeout 0"),
        (Config::standalone([ks("a").with_default_ttl(Duration::ZERO)]), "default_ttl 0"),
        (Config::standalone([ks("a").with_negative_ttl(Duration::ZERO)]), "negative_ttl 0"),
    ];
    for (config, problem) in cases {
        match Engine::start(config).await {
            Err(Error::InvalidArgument(msg)) => assert!(msg.contains(problem), "{msg}"),
            other => panic!("expected InvalidArgument naming {problem:?}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn unknown_keyspace_fails_every_operation() {
    let source = Source::new().arc();
    let engine = start([keyspace(KS, &source)]).await;
    let unknown = |r: Result<()>| matches!(r, Err(Error::KeySpaceNotFound(n)) if n == "nope");
    assert!(unknown(engine.get("nope", "k").await.map(drop)));
    assert!(unknown(engine.get_many("nope", &["k"]).await.map(drop)));
    assert!(unknown(engine.put("nope", ("k", "v")).await));
    assert!(unknown(engine.put_many("nope", [("k", "v")]).await.map(drop)));
    assert!(unknown(engine.delete("nope", "k").await));
    assert!(unknown(engine.delete_many("nope", &["k"]).await.map(drop)));
    assert!(unknown(engine.delete_keyspace("nope").await));
    assert!(unknown(engine.stats("nope").map(drop)));
    assert!(unknown(engine.keyspace("nope").map(drop)));
    assert_eq!(source.fetches(), 0);
}

#[tokio::test]
async fn operations_after_stop_fail_with_stopped() {
    let source = Source::new().arc();
    let engine = start([keyspace(KS, &source)]).await;
    engine.stop().await;
    engine.stop().await;
    let stopped = |r: Result<()>| matches!(r, Err(Error::Stopped));
    assert!(stopped(engine.get(KS, "k").await.map(drop)));
    assert!(stopped(engine.get_many(KS, &["k"]).await.map(drop)));
    assert!(stopped(engine.put(KS, ("k", "v")).await));
    assert!(stopped(engine.put_many(KS, [("k", "v")]).await.map(drop)));
    assert!(stopped(engine.delete(KS, "k").await));
    assert!(stopped(engine.delete_many(KS, &["k"]).await.map(drop)));
    assert!(stopped(engine.update_keyspace(keyspace("new", &source)).await));
    assert!(stopped(engine.delete_keyspace(KS).await));
    assert!(stopped(engine.delete_keyspaces(&[KS]).await));
    assert_eq!(source.fetches(), 0);
}

// ---- keyspace changes ----

#[tokio::test(start_paused = true)]
async fn update_keyspace_caps_stored_values_to_the_new_ttl() -> anyhow::Result<()> {
    let source = Source::new().arc();
    let engine = start([keyspace(KS, &source)]).await;
    assert_eq!(engine.get(KS, "fetched").await?, "fetched#1");
    engine.put(KS, ("put", "p")).await?;
    engine.put(KS, Entry::new("own", "o").with_ttl(Duration::from_secs(3600))).await?;
    advance(Duration::from_secs(3000)).await;

    engine.update_keyspace(keyspace(KS, &source).with_default_ttl(Duration::from_secs(10))).await?;
    assert_eq!(engine.keyspace(KS)?.default_ttl(), Some(Duration::from_secs(10)));
    advance(Duration::from_secs(9)).await;
    assert_eq!(engine.get(KS, "fetched").await?, "fetched#1");
    assert_eq!(engine.get(KS, "put").await?, "p");
    advance(Duration::from_secs(2)).await;
    assert_eq!(engine.get(KS, "fetched").await?, "fetched#2");
    assert_eq!(engine.get(KS, "put").await?, "put#3");
    assert_eq!(engine.get(KS, "own").await?, "o", "a put's own expiry is kept");
    advance(Duration::from_secs(600)).await;
    assert_eq!(engine.get(KS, "own").await?, "own#4");
    assert_eq!(engine.get(KS, "put").await?, "put#5", "new loads get the new TTL");
    assert_eq!(engine.stats(KS)?.puts, 2, "counters carry on");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn update_keyspace_dropping_the_negative_ttl_forgets_absences() -> anyhow::Result<()> {
    let source = Source::new().answering(|_, _| Err(FetchError::NotFound)).arc();
    let engine = start([keyspace(KS, &source).with_negative_ttl(Duration::from_secs(60))]).await;
    assert!(matches!(engine.get(KS, "k").await, Err(Error::NotFound)));
    assert!(matches!(engine.get(KS, "k").await, Err(Error::NotFound)));
    engine.update_keyspace(keyspace(KS, &source)).await?;
    assert!(matches!(engine.get(KS, "k").await, Err(Error::NotFound)));
    assert_eq!(source.fetches(), 2);
    Ok(())
}

#[tokio::test]
async fn update_keyspace_applies_a_smaller_budget() -> anyhow::Result<()> {
    let source = Source::new().arc();
    let lru = |max_bytes| KeySpace::new(KS, max_bytes, source.clone()).with_eviction(Eviction::Lru);
    let engine = start([lru(100 * KIB)]).await;
    let value = Bytes::from(vec![7u8; 1024]);
    for i in 0..50 {
        engine.put(KS, (format!("key-{i:04}"), value.clone())).await?;
    }
    let before = engine.stats(KS)?;
    assert_eq!((before.entries, before.evictions), (50, 0));

    engine.update_keyspace(lru(20 * KIB)).await?;
    let after = engine.stats(KS)?;
    assert_eq!(after.max_bytes, 20 * KIB);
    assert!(after.bytes <= 20 * KIB && after.entries < 50, "{after:?}");
    assert!(after.entries > 0 && after.evictions >= 50 - after.entries, "{after:?}");
    assert_eq!(after.puts, 50, "counters carry on");
    Ok(())
}

#[tokio::test]
async fn update_keyspace_adds_and_validates() -> anyhow::Result<()> {
    let source = Source::new().arc();
    let engine = start([keyspace(KS, &source)]).await;
    engine.update_keyspace(keyspace("added", &source)).await?;
    assert_eq!(engine.keyspaces(), ["added", "ks"]);
    assert_eq!(engine.get("added", "k").await?, "k#1");
    assert_eq!(engine.stats("added")?.fetches, 1);

    let err = engine.update_keyspace(KeySpace::new(KS, 0, source.clone())).await;
    assert!(matches!(err, Err(Error::InvalidArgument(m)) if m.contains("max_bytes")));
    assert_eq!(engine.keyspace(KS)?.max_bytes(), MIB, "a rejected update changes nothing");
    Ok(())
}

#[tokio::test]
async fn delete_keyspace_removes_its_data() -> anyhow::Result<()> {
    let source = Source::new().arc();
    let engine = start([keyspace(KS, &source), keyspace("other", &source)]).await;
    engine.put(KS, ("k", "v")).await?;
    engine.put("other", ("k", "o")).await?;

    let err = engine.delete_keyspaces(&["other", "unknown"]).await;
    assert!(matches!(err, Err(Error::KeySpaceNotFound(n)) if n == "unknown"));
    assert_eq!(engine.keyspaces(), ["ks", "other"], "none removed");
    assert_eq!(engine.get("other", "k").await?, "o");

    engine.delete_keyspace(KS).await?;
    assert_eq!(engine.keyspaces(), ["other"]);
    assert!(matches!(engine.get(KS, "k").await, Err(Error::KeySpaceNotFound(_))));
    assert!(matches!(engine.put(KS, ("k", "v")).await, Err(Error::KeySpaceNotFound(_))));
    assert!(matches!(engine.delete_keyspace(KS).await, Err(Error::KeySpaceNotFound(_))));

    engine.update_keyspace(keyspace(KS, &source)).await?;
    assert_eq!(engine.get(KS, "k").await?, "k#1", "a re-added keyspace starts empty");
    assert_eq!(engine.stats(KS)?.puts, 0);
    Ok(())
}

// ---- batches ----

#[tokio::test]
async fn batch_operations_answer_per_key_in_order() -> anyhow::Result<()> {
    let source = Source::new()
        .answering(|key, n| {
            if key.starts_with("missing") {
                Err(FetchError::NotFound)
            } else {
                Ok(Bytes::from(format!("{key}#{n}")))
            }
        })
        .arc();
    let engine = start([KeySpace::new(KS, 64 * KIB, source.clone())]).await;

    let puts = engine
        .put_many(KS, [("a", vec![1u8]), ("", vec![2]), ("b", vec![3]), ("c", vec![0; 65536])])
        .await?;
    assert!(matches!(
        puts[..],
        [Ok(()), Err(Error::InvalidArgument(_)), Ok(()), Err(Error::InvalidArgument(_))]
    ));

    let got = engine.get_many(KS, &["a", "", "missing", "b", "d", "d"]).await?;
    assert_eq!(got.len(), 6);
    assert_eq!(got[0].as_ref().ok(), Some(&Bytes::from_static(&[1])));
    assert!(matches!(got[1], Err(Error::InvalidArgument(_))));
    assert!(matches!(got[2], Err(Error::NotFound)));
    assert_eq!(got[3].as_ref().ok(), Some(&Bytes::from_static(&[3])));
    let fetched = got[4].as_ref().ok().cloned();
    assert!(fetched.as_ref().is_some_and(|v| v.starts_with(b"d#")), "{fetched:?}");
    assert_eq!(got[5].as_ref().ok(), fetched.as_ref(), "the same key in one batch loads once");
    assert_eq!(source.fetches(), 2);

    let deleted = engine.delete_many(KS, &["a", "", "b"]).await?;
    assert!(matches!(deleted[..], [Ok(()), Err(Error::InvalidArgument(_)), Ok(())]));
    let got = engine.get_many(KS, &["a", "b"]).await?;
    let got: Vec<_> = got.into_iter().collect::<Result<_>>()?;
    assert!(got[0].starts_with(b"a#") && got[1].starts_with(b"b#"), "{got:?}");
    assert_eq!(source.fetches(), 4, "deleted keys load again");
    Ok(())
}

// ---- shutdown ----

#[tokio::test(start_paused = true)]
async fn stop_ends_loads_in_flight() -> anyhow::Result<()> {
    let source = Source::new().gated().arc();
    let engine = start([keyspace(KS, &source)]).await;
    let gets: Vec<_> = (0..2).map(|_| spawn_get(&engine, "k")).collect();
    eventually("both callers wait on the load", || deduped(&engine) == 1).await;
    timeout(Duration::from_secs(1), engine.stop()).await.expect("stop returns");
    for get in gets {
        let (result, _) = timeout(Duration::from_secs(1), get).await??;
        assert!(matches!(result, Err(Error::Stopped)), "{result:?}");
    }
    assert_eq!(source.fetches(), 1);
    Ok(())
}

#[tokio::test]
async fn stats_add_up() -> anyhow::Result<()> {
    let source = Source::new().arc();
    let engine = start([keyspace(KS, &source)]).await;
    engine.get(KS, "a").await?;
    engine.get(KS, "a").await?;
    engine.put(KS, ("b", "v")).await?;
    engine.delete(KS, "b").await?;
    let s = engine.stats(KS)?;
    assert_eq!(s.gets, s.hits + s.negative_hits + s.misses);
    assert_eq!((s.gets, s.hits, s.misses, s.puts, s.deletes, s.entries), (2, 1, 1, 1, 1, 1));
    assert_eq!(s.bytes, "a".len() as u64 + "a#1".len() as u64 + ENTRY_OVERHEAD);
    Ok(())
}
