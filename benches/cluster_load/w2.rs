//! W2 peer hit: node A gets keys that node B owns and holds, hot cache off; Redis GET through
//! the same load loop (in node A's process) as the baseline. Batching on and off are two
//! clusters side by side.
//!
//! The host's noise moves absolute figures a lot, so every target runs once per round, rounds
//! alternate the order, and each figure is the median over rounds of the ratio within a round:
//! a disturbance hits a ratio only when it hits one side of it.

use std::time::Duration;

use anyhow::ensure;

use crate::Settings;
use crate::cluster::{Cluster, NodeProcess, RedisServer};
use crate::control::Fields;
use crate::node::NodeOptions;
use crate::stats::{LoadReport, header, median, row};

/// Keys `key-0..` considered; about half are owned by node B.
const CANDIDATE_KEYS: usize = 20_000;
const CONCURRENCY: [usize; 2] = [1, 50];
const BATCHING: &str = "distcache batching";
const NO_BATCHING: &str = "distcache no batching";

/// One measured run.
struct Run {
    round: usize,
    workers: usize,
    target: &'static str,
    report: LoadReport,
    /// CPU time per get of the calling process (node-0) and of the serving one (node-1 or
    /// `redis-server`), in microseconds.
    client_us: f64,
    server_us: f64,
}

pub(crate) async fn run(settings: &Settings) -> anyhow::Result<()> {
    let secs = settings.secs(3.0);
    let rounds = settings.rounds(3);
    let redis = RedisServer::start().await?;
    let mut clusters = Vec::new();
    for batching in [true, false] {
        let options = NodeOptions { hot_cache: false, batching, ..NodeOptions::default() };
        let name = if batching { BATCHING } else { NO_BATCHING };
        clusters.push((name, Cluster::start(2, options).await?));
    }
    let mut keys = 0;
    for (_, cluster) in &clusters {
        let owner = &cluster.nodes[1];
        let warmed = owner.call("warm", &key_set("self")).await?;
        ensure!(warmed.get::<u64>("errors")? == 0, "warming {} failed", owner.id);
        keys = warmed.get("keys")?;
    }
    let client = &clusters[0].1.nodes[0];
    let redis_keys = key_set(&clusters[0].1.nodes[1].id);
    if let Some(redis) = &redis {
        client.call("redis-fill", &redis_keys.clone().with("redis", &redis.addr)).await?;
    }
    println!(
        "W2 peer hit: 2 node processes, hot cache off; node-0 gets {keys} keys owned (and \
         cached) by node-1, uniformly, {} B values; {rounds} rounds of {secs} s per target, \
         order alternating",
        crate::VALUE_BYTES
    );
    match &redis {
        Some(redis) => println!(
            "baseline: {} on {}, persistence off, filled with the same keys; GET through \
             redis-rs from node-0's process (redis = one multiplexed connection shared by \
             all workers; redis-conns = one connection per worker)",
            redis.version, redis.addr
        ),
        None => println!("baseline: none (redis-server missing)"),
    }

    let mut runs = Vec::new();
    for round in 0..rounds {
        for workers in CONCURRENCY {
            let mut targets: Vec<&'static str> = vec![BATCHING, NO_BATCHING];
            if redis.is_some() {
                targets.push("redis");
                if workers > 1 {
                    targets.push("redis-conns");
                }
            }
            if round % 2 == 1 {
                targets.reverse();
            }
            for target in targets {
                let run = match clusters.iter().find(|(name, _)| *name == target) {
                    Some((_, cluster)) => {
                        let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
                        let cpu = Cpu::start(a.cpu()?, b.cpu()?);
                        let report = measure_peer_hits(cluster, workers, secs).await?;
                        cpu.finish(round, workers, target, report, a.cpu()?, b.cpu()?)
                    }
                    None => {
                        let server = redis.as_ref().expect("a Redis target has a server");
                        let cpu = Cpu::start(client.cpu()?, server.cpu()?);
                        let load =
                            redis_keys.clone().with("target", target).with("redis", &server.addr);
                        let report = run_load(client, load, workers, secs).await?;
                        cpu.finish(round, workers, target, report, client.cpu()?, server.cpu()?)
                    }
                };
                runs.push(run);
            }
        }
    }
    print(&runs, rounds);
    Ok(())
}

/// The CPU time of the calling and serving processes when a run started.
struct Cpu {
    client: Duration,
    server: Duration,
}

impl Cpu {
    fn start(client: Duration, server: Duration) -> Self {
        Cpu { client, server }
    }

    fn finish(
        self,
        round: usize,
        workers: usize,
        target: &'static str,
        report: LoadReport,
        client: Duration,
        server: Duration,
    ) -> Run {
        let per_get = |used: Duration| used.as_secs_f64() * 1e6 / report.ops.max(1) as f64;
        let (client_us, server_us) = (per_get(client - self.client), per_get(server - self.server));
        Run { round, workers, target, report, client_us, server_us }
    }
}

/// Node 0 gets node 1's keys; checks every get was a peer load and none reached a source.
async fn measure_peer_hits(
    cluster: &Cluster,
    workers: usize,
    secs: f64,
) -> anyhow::Result<LoadReport> {
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let before = cluster.stats(&[0, 1]).await?;
    let report = run_load(a, key_set(&b.id).with("target", "engine"), workers, secs).await?;
    let after = cluster.stats(&[0, 1]).await?;
    let delta = |node: usize, key: &str| -> anyhow::Result<u64> {
        Ok(after[node].get::<u64>(key)? - before[node].get::<u64>(key)?)
    };
    let (peer_loads, deduped) = (delta(0, "peer_loads")?, delta(0, "deduped")?);
    ensure!(
        peer_loads + deduped == report.ops && delta(0, "hits")? == 0,
        "{} gets, but {peer_loads} peer loads + {deduped} joined a call in flight",
        report.ops
    );
    ensure!(delta(0, "fetches")? + delta(1, "fetches")? == 0, "a get reached the source");
    Ok(report)
}

/// The keys `key-<n>`, `n < CANDIDATE_KEYS`, owned by `owner`.
fn key_set(owner: &str) -> Fields {
    Fields::new().with("keys", "key").with("n", CANDIDATE_KEYS).with("owned", owner)
}

async fn run_load(
    node: &NodeProcess,
    fields: Fields,
    workers: usize,
    secs: f64,
) -> anyhow::Result<LoadReport> {
    let fields = fields.with("dist", "uniform").with("workers", workers).with("secs", secs);
    let report = LoadReport::from_fields(&node.call("load", &fields).await?)?;
    ensure!(report.errors == 0, "{} gets failed", report.errors);
    Ok(report)
}

fn print(runs: &[Run], rounds: usize) {
    println!("{} {:>10} {:>10}", header("round conc  target"), "cli µs/op", "srv µs/op");
    for run in runs {
        let first = format!("{:>5} {:>4}  {}", run.round + 1, run.workers, run.target);
        println!("{} {:>10.1} {:>10.1}", row(&first, &run.report), run.client_us, run.server_us);
    }
    let find = |round: usize, workers: usize, target: &str| {
        runs.iter()
            .find(|r| r.round == round && r.workers == workers && r.target == target)
            .map(|r| &r.report)
    };
    // A figure: the ratio of `ours` to `theirs` in every round, and its median.
    let figure =
        |label: String, workers: usize, ours: &str, theirs: &str, of: fn(&LoadReport) -> f64| {
            let ratios: Vec<f64> = (0..rounds)
                .filter_map(|round| {
                    Some(of(find(round, workers, ours)?) / of(find(round, workers, theirs)?))
                })
                .collect();
            if let Some(mid) = median(&ratios) {
                let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
                println!("{label}: median {mid:.2} (rounds {})", each.join(", "));
            }
        };
    let ops = |r: &LoadReport| r.ops_per_sec();
    let p50 = |r: &LoadReport| r.p50_ns as f64;
    for ours in [BATCHING, NO_BATCHING] {
        for theirs in ["redis", "redis-conns"] {
            figure(format!("c=50 ops/s {ours} / {theirs}"), 50, ours, theirs, ops);
        }
        figure(format!("c=1  p50 {ours} / redis"), 1, ours, "redis", p50);
    }
    figure("c=50 ops/s batching on / off".to_owned(), 50, BATCHING, NO_BATCHING, ops);
    // CPU per get is steadier than wall time on a shared host (it still counts what a
    // disturbed cache or scheduler costs); the median per target over all rounds.
    println!("CPU per get (µs, median over rounds): client + server = total");
    for workers in CONCURRENCY {
        for target in [BATCHING, NO_BATCHING, "redis", "redis-conns"] {
            let of = |f: fn(&Run) -> f64| {
                let values: Vec<f64> = runs
                    .iter()
                    .filter(|r| r.workers == workers && r.target == target)
                    .map(f)
                    .collect();
                median(&values)
            };
            if let (Some(client), Some(server)) = (of(|r| r.client_us), of(|r| r.server_us)) {
                println!(
                    "  c={workers:<2} {target:<22} {client:>6.1} + {server:>5.1} = {:>6.1}",
                    client + server
                );
            }
        }
    }
}
