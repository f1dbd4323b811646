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

mod expiry;
mod keyspaces;
mod loads;
mod validation;
mod writes;
