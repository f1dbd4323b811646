//! The load loop a node runs on itself: N concurrent workers calling `get` for a while, against
//! the node's engine or, for W2's baseline, a Redis server, through exactly the same loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use distcache::{Bytes, Engine};
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;

use crate::stats::{LoadReport, MAX_ERROR_TIMES, histogram, unix_ms};
use crate::{KEYSPACE, VALUE_BYTES};

/// How keys are drawn from a key set.
#[derive(Debug)]
pub(crate) enum Dist {
    Uniform,
    /// Zipf by rank: `cdf[i]` is the probability of drawing one of the keys `0..=i`.
    Zipf {
        cdf: Vec<f64>,
    },
}

impl Dist {
    /// `uniform`, or `zipf` with exponent `s` over `n` keys (key 0 the most popular).
    pub(crate) fn new(name: &str, s: f64, n: usize) -> anyhow::Result<Self> {
        match name {
            "uniform" => Ok(Dist::Uniform),
            "zipf" => {
                ensure!(s > 0.0 && n > 0, "zipf needs s > 0 and keys");
                let mut cdf = Vec::with_capacity(n);
                let mut total = 0.0;
                for rank in 1..=n {
                    total += (rank as f64).powf(-s);
                    cdf.push(total);
                }
                cdf.iter_mut().for_each(|c| *c /= total);
                Ok(Dist::Zipf { cdf })
            }
            other => anyhow::bail!("unknown distribution `{other}` (uniform or zipf)"),
        }
    }

    /// An index into a key set of `n` keys.
    pub(crate) fn sample(&self, rng: &mut SmallRng, n: usize) -> usize {
        match self {
            Dist::Uniform => rng.random_range(0..n),
            Dist::Zipf { cdf } => {
                let u: f64 = rng.random();
                cdf.partition_point(|&c| c < u).min(n - 1)
            }
        }
    }
}

/// What a worker calls `get` on.
#[derive(Debug, Clone)]
pub(crate) enum Client {
    Engine(Engine),
    Redis(MultiplexedConnection),
}

impl Client {
    /// Looks `key` up; `true` if a value of the expected size came back.
    async fn get(&mut self, key: &str) -> bool {
        match self {
            Client::Engine(engine) => {
                engine.get(KEYSPACE, key).await.is_ok_and(|v| v.len() == VALUE_BYTES)
            }
            Client::Redis(conn) => redis::cmd("GET")
                .arg(key)
                .query_async::<Option<Bytes>>(conn)
                .await
                .is_ok_and(|v| v.is_some_and(|v| v.len() == VALUE_BYTES)),
        }
    }
}

/// A multiplexed connection to Redis, with the engine's read timeout (not redis-rs's 500 ms).
pub(crate) async fn redis_connection(addr: &str) -> anyhow::Result<MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://{addr}/"))?;
    let config = AsyncConnectionConfig::new()
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_connection_timeout(Some(Duration::from_secs(5)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .with_context(|| format!("connecting to Redis at {addr}"))
}

/// Stores `keys` in Redis with the benchmark's value, pipelined.
pub(crate) async fn redis_fill(addr: &str, keys: &[String], value: &Bytes) -> anyhow::Result<()> {
    let mut conn = redis_connection(addr).await?;
    for chunk in keys.chunks(1000) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd("SET").arg(key).arg(value.as_ref()).ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
    }
    Ok(())
}

/// One load phase: `clients.len()` workers (one client each) draw keys from `keys` by `dist`
/// until `duration` has passed or `stop` is set. Every get is timed.
pub(crate) async fn run(
    clients: Vec<Client>,
    keys: Arc<Vec<String>>,
    dist: Arc<Dist>,
    duration: Duration,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<LoadReport> {
    ensure!(!keys.is_empty(), "the key set is empty");
    let started = Instant::now();
    let (started_ms, until) = (unix_ms(), started + duration);
    let workers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(seed, client)| {
            let (keys, dist, stop) = (keys.clone(), dist.clone(), stop.clone());
            let at = Origin { instant: started, unix_ms: started_ms };
            tokio::spawn(worker(client, keys, dist, seed as u64, until, stop, at))
        })
        .collect();
    let mut latency = histogram();
    let (mut ops, mut errors, mut error_times) = (0, 0, Vec::new());
    for worker in workers {
        let done = worker.await.context("a load worker panicked")?;
        ops += done.ops;
        errors += done.errors;
        error_times.extend(done.error_times);
        latency.add(&done.latency).expect("histograms share their bounds");
    }
    let mut report = LoadReport::new(ops, started.elapsed().as_secs_f64(), errors, &latency);
    error_times.sort_unstable();
    error_times.truncate(MAX_ERROR_TIMES);
    report.error_times_ms = error_times;
    Ok(report)
}

/// A shared point in time, to turn `Instant`s into Unix milliseconds.
#[derive(Debug, Clone, Copy)]
struct Origin {
    instant: Instant,
    unix_ms: u64,
}

impl Origin {
    fn unix_ms(&self, at: Instant) -> u64 {
        self.unix_ms + at.saturating_duration_since(self.instant).as_millis() as u64
    }
}

struct WorkerDone {
    ops: u64,
    errors: u64,
    error_times: Vec<u64>,
    latency: Histogram<u64>,
}

async fn worker(
    mut client: Client,
    keys: Arc<Vec<String>>,
    dist: Arc<Dist>,
    seed: u64,
    until: Instant,
    stop: Arc<AtomicBool>,
    origin: Origin,
) -> WorkerDone {
    let mut rng = SmallRng::seed_from_u64(seed ^ (u64::from(std::process::id()) << 20));
    let mut done = WorkerDone { ops: 0, errors: 0, error_times: Vec::new(), latency: histogram() };
    loop {
        let key = &keys[dist.sample(&mut rng, keys.len())];
        let start = Instant::now();
        if start >= until || stop.load(Ordering::Relaxed) {
            return done;
        }
        let ok = client.get(key).await;
        done.latency.saturating_record(start.elapsed().as_nanos() as u64);
        done.ops += 1;
        if !ok {
            done.errors += 1;
            if done.error_times.len() < MAX_ERROR_TIMES {
                done.error_times.push(origin.unix_ms(start));
            }
        }
        // A hit completes without suspending: take part in tokio's cooperative budget so the
        // workers, the peer server and the control connections all get their turn.
        tokio::task::coop::consume_budget().await;
    }
}

/// Gets every key once with `concurrency` tasks; returns the number of failed gets.
pub(crate) async fn warm(engine: &Engine, keys: Arc<Vec<String>>, concurrency: usize) -> u64 {
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (engine, keys, next) = (engine.clone(), keys.clone(), next.clone());
            tokio::spawn(async move {
                let mut errors = 0;
                while let Some(key) = keys.get(next.fetch_add(1, Ordering::Relaxed)) {
                    errors += u64::from(engine.get(KEYSPACE, key).await.is_err());
                }
                errors
            })
        })
        .collect();
    let mut errors = 0;
    for task in tasks {
        errors += task.await.unwrap_or(1);
    }
    errors
}

/// What a node's share of a miss storm saw.
#[derive(Debug)]
pub(crate) struct StormDone {
    pub(crate) gets: u64,
    pub(crate) errors: u64,
    /// When the last of this node's callers had every answer (Unix ms).
    pub(crate) done_ms: u64,
    pub(crate) latency: Histogram<u64>,
}

/// `callers` tasks wait for `start`, then each gets every key of `keys` in order.
pub(crate) async fn storm(
    engine: &Engine,
    keys: Arc<Vec<String>>,
    callers: usize,
    start: Instant,
) -> anyhow::Result<StormDone> {
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (engine, keys) = (engine.clone(), keys.clone());
            tokio::spawn(async move {
                tokio::time::sleep_until(start.into()).await;
                let (mut errors, mut latency) = (0, histogram());
                for key in keys.iter() {
                    let timer = Instant::now();
                    errors += u64::from(engine.get(KEYSPACE, key).await.is_err());
                    latency.saturating_record(timer.elapsed().as_nanos() as u64);
                }
                (errors, latency, unix_ms())
            })
        })
        .collect();
    let mut done = StormDone { gets: 0, errors: 0, done_ms: 0, latency: histogram() };
    for task in tasks {
        let (errors, latency, finished) = task.await.context("a storm caller panicked")?;
        done.gets += keys.len() as u64;
        done.errors += errors;
        done.done_ms = done.done_ms.max(finished);
        done.latency.add(&latency).expect("histograms share their bounds");
    }
    Ok(done)
}
