//! Quickstart: a standalone engine in front of a slow data source.
//!
//! The first `get` of a key fetches it from the source (slow); later gets are answered from the
//! cache (fast). Keys the source does not have are remembered as "not found" for a while, and
//! values you `put` are served without a fetch.
//!
//! Run with `cargo run --example quickstart`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use distcache::{Bytes, Config, DataSource, Engine, Error, FetchError, KeySpace, async_trait};

/// A stand-in for a database: every fetch takes 200 ms, and we count them.
#[derive(Debug, Default)]
struct SlowDatabase {
    fetches: AtomicUsize,
}

#[async_trait]
impl DataSource for SlowDatabase {
    async fn fetch(&self, key: &str) -> Result<Bytes, FetchError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(200)).await;
        match key.strip_prefix("user-") {
            Some(id) => Ok(Bytes::from(format!("profile of user {id}"))),
            // Saying "not found" (rather than failing) lets the engine cache the absence.
            None => Err(FetchError::NotFound),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let db = Arc::new(SlowDatabase::default());
    let users = KeySpace::new("users", 64 << 20, db.clone()) // at most 64 MiB on this node
        .with_default_ttl(Duration::from_secs(300))
        .with_negative_ttl(Duration::from_secs(30));
    let engine = Engine::start(Config::standalone([users])).await?;

    // A miss: the engine fetches from the database, then caches the value.
    let started = Instant::now();
    let value = engine.get("users", "user-42").await?;
    println!("first get:  {value:?} in {:?} (fetched)", started.elapsed());

    // A hit: answered from memory.
    let started = Instant::now();
    let value = engine.get("users", "user-42").await?;
    println!("second get: {value:?} in {:?} (cached)", started.elapsed());
    println!("fetches so far: {}", db.fetches.load(Ordering::Relaxed));

    // Not found is an error you can match on; thanks to the negative TTL the second
    // lookup is answered from the cache instead of asking the database again.
    for attempt in 1..=2 {
        let started = Instant::now();
        match engine.get("users", "nobody").await {
            Err(Error::NotFound) => {
                println!("get nobody #{attempt}: not found in {:?}", started.elapsed())
            }
            other => anyhow::bail!("expected not found, got {other:?}"),
        }
    }
    println!("fetches so far: {}", db.fetches.load(Ordering::Relaxed));

    // A put stores a value directly; the next get is a hit with no fetch.
    engine.put("users", ("user-7", "profile written by the app")).await?;
    let value = engine.get("users", "user-7").await?;
    println!("after put:  {value:?}");
    println!("fetches in total: {}", db.fetches.load(Ordering::Relaxed));

    let stats = engine.stats("users")?;
    println!("stats: {} gets, {} hits, {} fetches", stats.gets, stats.hits, stats.fetches);

    engine.stop().await;
    Ok(())
}
