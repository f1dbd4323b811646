//! W1 local hit (see WORKLOADS.md): the cost of `Engine::get` when the value is cached, side by
//! side with a bare moka cache holding the same entries under the same weigher and budget.
//!
//! Run with `cargo bench --bench w1_local_hit`; shorten the runs with `-- --secs 2` or
//! `W1_SECS=2`.
//!
//! How it measures:
//! - Each worker is an OS thread with its own current-thread tokio runtime that `block_on`s one
//!   loop of gets. A hit completes on its first poll, so no scheduler runs between gets and the
//!   figure is the hit path itself. The moka baseline runs in exactly the same kind of worker,
//!   its sync `get` wrapped in the same async loop.
//! - Keys are pre-formatted strings chosen uniformly at random with a per-worker `SmallRng`.
//! - Latency is sampled: one get in [`SAMPLE_EVERY`] is timed with an `Instant` on each side
//!   (so it includes one clock read) and recorded in an HDR histogram; ops/s counts every get.
//! - The miss section uses fresh engines over an instant data source: every get asks for a
//!   distinct cold key, so each one is a miss that fetches once. Every miss is timed. A moka
//!   `get_with` over the same values is shown for reference.

use std::hint::black_box;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use distcache::{Bytes, Config, ENTRY_OVERHEAD, Engine, KeySpace, source_fn};
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const KEYSPACE: &str = "w1";
const KEYS: usize = 100_000;
const VALUE_BYTES: usize = 1024;
/// Large enough for every entry of both sections, so nothing is evicted.
const MAX_BYTES: u64 = 1 << 30;
/// One hit in this many is timed.
const SAMPLE_EVERY: u64 = 8;
/// Gets between two looks at the clock for the end of a run.
const BATCH: u64 = 1024;
const DEFAULT_SECS: f64 = 5.0;

static COLD_VALUE: [u8; VALUE_BYTES] = [b'v'; VALUE_BYTES];

/// Something the load loop can `get` from.
trait Target: Sync {
    /// Looks `key` up; `true` if a value came back.
    async fn get(&self, key: &str) -> bool;
}

struct EngineTarget(Engine);

impl Target for EngineTarget {
    async fn get(&self, key: &str) -> bool {
        black_box(self.0.get(KEYSPACE, key).await).is_ok()
    }
}

/// The baseline: moka alone, no engine around it.
struct BareMoka(moka::sync::Cache<String, Bytes>);

impl Target for BareMoka {
    async fn get(&self, key: &str) -> bool {
        black_box(self.0.get(key)).is_some()
    }
}

/// Reference for the miss path: moka's own read-through, loading the same value.
struct MokaGetWith(moka::sync::Cache<String, Bytes>);

impl Target for MokaGetWith {
    async fn get(&self, key: &str) -> bool {
        !black_box(self.0.get_with_by_ref(key, || Bytes::from_static(&COLD_VALUE))).is_empty()
    }
}

/// What one measurement produced, summed over its workers.
struct Run {
    ops: u64,
    misses: u64,
    ops_per_sec: f64,
    latency: Histogram<u64>,
}

/// What one worker produced.
struct Worker {
    ops: u64,
    misses: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
}

fn main() -> anyhow::Result<()> {
    let secs = run_secs()?;
    let duration = Duration::from_secs_f64(secs);
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let mut worker_counts = vec![1];
    if cores > 1 {
        worker_counts.push(cores);
    }
    let setup = tokio::runtime::Builder::new_current_thread().enable_all().build()?;

    println!(
        "W1 local hit: {KEYS} keys x {VALUE_BYTES} B values, {secs} s per run, {cores} cores; \
         latency sampled 1 get in {SAMPLE_EVERY}"
    );
    let keys: Vec<String> = (0..KEYS).map(|n| format!("key-{n}")).collect();
    let (engine, moka) = setup.block_on(load(&keys))?;
    let before = engine.0.stats(KEYSPACE)?;

    let mut rows = Vec::new();
    for &workers in &worker_counts {
        let engine_run = run_hits(&engine, &keys, workers, duration);
        let moka_run = run_hits(&moka, &keys, workers, duration);
        ensure!(engine_run.misses == 0 && moka_run.misses == 0, "a get missed in the hit runs");
        rows.push((workers, engine_run, moka_run));
    }
    let after = engine.0.stats(KEYSPACE)?;
    let engine_gets: u64 = rows.iter().map(|(_, run, _)| run.ops).sum();
    ensure!(after.gets - before.gets == engine_gets, "the engine counted other gets than we made");
    ensure!(after.hits - before.hits == engine_gets, "the engine missed during the hit runs");
    print_table("hits", &rows);
    setup.block_on(engine.0.stop());

    println!();
    println!(
        "W1 miss path: {KEYS} distinct cold keys per run, each fetched once from an instant \
         data source; every get timed"
    );
    let mut rows = Vec::new();
    for &workers in &worker_counts {
        let cold = cold_engine(&setup)?;
        let keys: Vec<String> = (0..KEYS).map(|n| format!("cold-{n}")).collect();
        let engine_run = run_misses(&cold, &keys, workers);
        let stats = cold.0.stats(KEYSPACE)?;
        setup.block_on(cold.0.stop());
        ensure!(stats.fetches == KEYS as u64, "expected one fetch per key, got {}", stats.fetches);
        let moka_run = run_misses(&MokaGetWith(bare_moka()), &keys, workers);
        ensure!(engine_run.misses == 0 && moka_run.misses == 0, "a miss returned no value");
        rows.push((workers, engine_run, moka_run));
    }
    print_table("misses (moka = get_with, for reference)", &rows);
    Ok(())
}

/// Seconds per run: `--secs N` (or `--secs=N`), else `W1_SECS`, else 5. Other arguments (cargo
/// passes `--bench`) are ignored.
/// Seconds per run when built as a test (`cargo test --all-targets`): just proves it works.
const SMOKE_SECS: f64 = 0.05;

fn run_secs() -> anyhow::Result<f64> {
    let args: Vec<String> = std::env::args().collect();
    let flag = args.iter().enumerate().find_map(|(i, arg)| match arg.strip_prefix("--secs") {
        Some("") => args.get(i + 1).cloned(),
        Some(rest) => rest.strip_prefix('=').map(str::to_owned),
        None => None,
    });
    let Some(text) = flag.or_else(|| std::env::var("W1_SECS").ok()) else {
        // `cargo bench` passes `--bench`; under `cargo test` this is only a smoke run.
        return Ok(if args.iter().any(|a| a == "--bench") { DEFAULT_SECS } else { SMOKE_SECS });
    };
    let secs: f64 = text.parse().with_context(|| format!("--secs/W1_SECS `{text}`"))?;
    ensure!(secs > 0.0 && secs.is_finite(), "--secs/W1_SECS must be a positive number of seconds");
    Ok(secs)
}

/// An engine and a bare moka cache, both holding every key with its own 1 KiB value.
async fn load(keys: &[String]) -> anyhow::Result<(EngineTarget, BareMoka)> {
    let source = source_fn(|key: String| async move {
        Err(distcache::FetchError::failed(format!("W1 loads by put; unexpected fetch of {key}")))
    });
    let engine =
        Engine::start(Config::standalone([KeySpace::new(KEYSPACE, MAX_BYTES, source)])).await?;
    let moka = bare_moka();
    for (n, key) in keys.iter().enumerate() {
        let value = Bytes::from(vec![n as u8; VALUE_BYTES]);
        engine.put(KEYSPACE, (key.clone(), value.clone())).await?;
        moka.insert(key.clone(), value);
    }
    moka.run_pending_tasks();
    let stats = engine.stats(KEYSPACE)?;
    println!(
        "loaded: engine {} entries / {} bytes, moka {} entries / {} bytes (budget {MAX_BYTES})",
        stats.entries,
        stats.bytes,
        moka.entry_count(),
        moka.weighted_size()
    );
    ensure!(stats.entries == KEYS as u64, "the engine did not keep every key");
    ensure!(moka.entry_count() == KEYS as u64, "moka did not keep every key");
    Ok((EngineTarget(engine), BareMoka(moka)))
}

/// A bare moka cache weighted like the engine's store: key + value + `ENTRY_OVERHEAD`.
fn bare_moka() -> moka::sync::Cache<String, Bytes> {
    moka::sync::Cache::builder()
        .max_capacity(MAX_BYTES)
        .weigher(|key: &String, value: &Bytes| {
            let weight = key.len() as u64 + value.len() as u64 + ENTRY_OVERHEAD;
            u32::try_from(weight).unwrap_or(u32::MAX)
        })
        .build()
}

/// A fresh engine whose data source answers at once.
fn cold_engine(setup: &tokio::runtime::Runtime) -> anyhow::Result<EngineTarget> {
    let source = source_fn(|_key: String| async { Ok(Bytes::from_static(&COLD_VALUE)) });
    let keyspace = KeySpace::new(KEYSPACE, MAX_BYTES, source);
    Ok(EngineTarget(setup.block_on(Engine::start(Config::standalone([keyspace])))?))
}

/// `workers` threads get uniformly random keys for `duration`.
fn run_hits<T: Target>(target: &T, keys: &[String], workers: usize, duration: Duration) -> Run {
    run_workers(workers, |worker, start| hit_loop(target, keys, start + duration, worker as u64))
}

/// `workers` threads share `keys` out and get each once.
fn run_misses<T: Target>(target: &T, keys: &[String], workers: usize) -> Run {
    run_workers(workers, |worker, _| miss_loop(target, keys.iter().skip(worker).step_by(workers)))
}

/// Starts `workers` threads together, each `block_on`ing its loop on a current-thread runtime.
fn run_workers<F, Fut>(workers: usize, worker_loop: F) -> Run
where
    F: Fn(usize, Instant) -> Fut + Sync,
    Fut: Future<Output = Worker>,
{
    let barrier = Barrier::new(workers);
    let results: Vec<Worker> = thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|worker| {
                let (barrier, worker_loop) = (&barrier, &worker_loop);
                scope.spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build()
                        .expect("a bench worker needs a tokio runtime");
                    barrier.wait();
                    runtime.block_on(worker_loop(worker, Instant::now()))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a bench worker panicked")).collect()
    });
    let mut run = Run { ops: 0, misses: 0, ops_per_sec: 0.0, latency: histogram() };
    for worker in results {
        run.ops += worker.ops;
        run.misses += worker.misses;
        run.ops_per_sec += worker.ops as f64 / worker.elapsed.as_secs_f64();
        run.latency.add(&worker.latency).expect("histograms share their bounds");
    }
    run
}

async fn hit_loop<T: Target>(target: &T, keys: &[String], until: Instant, seed: u64) -> Worker {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut latency = histogram();
    let (mut ops, mut misses) = (0, 0);
    let started = Instant::now();
    loop {
        for _ in 0..BATCH {
            let key = &keys[rng.random_range(0..keys.len())];
            let timer = (ops % SAMPLE_EVERY == 0).then(Instant::now);
            let hit = target.get(key).await;
            if let Some(timer) = timer {
                latency.saturating_record(timer.elapsed().as_nanos() as u64);
            }
            misses += u64::from(!hit);
            ops += 1;
        }
        if Instant::now() >= until {
            break;
        }
    }
    Worker { ops, misses, elapsed: started.elapsed(), latency }
}

async fn miss_loop<T: Target>(target: &T, keys: impl Iterator<Item = &String>) -> Worker {
    let mut latency = histogram();
    let (mut ops, mut misses) = (0, 0);
    let started = Instant::now();
    for key in keys {
        let timer = Instant::now();
        let found = target.get(key).await;
        latency.saturating_record(timer.elapsed().as_nanos() as u64);
        misses += u64::from(!found);
        ops += 1;
    }
    Worker { ops, misses, elapsed: started.elapsed(), latency }
}

/// Nanoseconds from 1 ns to 60 s at 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

fn print_table(what: &str, rows: &[(usize, Run, Run)]) {
    println!("{what}:");
    println!(
        "{:>7}  {:<6}  {:>12}  {:>9}  {:>9}  {:>9}",
        "workers", "target", "ops/s", "p50 ns", "p99 ns", "p999 ns"
    );
    for (workers, engine, moka) in rows {
        for (name, run) in [("engine", engine), ("moka", moka)] {
            let q = |quantile| run.latency.value_at_quantile(quantile);
            println!(
                "{workers:>7}  {name:<6}  {:>12.0}  {:>9}  {:>9}  {:>9}",
                run.ops_per_sec,
                q(0.5),
                q(0.99),
                q(0.999)
            );
        }
    }
    for (workers, engine, moka) in rows {
        let ratio = |q| {
            engine.latency.value_at_quantile(q) as f64 / moka.latency.value_at_quantile(q) as f64
        };
        println!(
            "ratio engine/moka at {workers} worker(s): ops/s {:.2}; latency p50 {:.2}x, p99 {:.2}x",
            engine.ops_per_sec / moka.ops_per_sec,
            ratio(0.5),
            ratio(0.99)
        );
    }
}
