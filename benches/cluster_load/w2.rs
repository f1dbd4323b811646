//! W2 peer hit: node A gets keys that node B owns and holds, hot cache off; Redis GET through
//! the same load loop (in node A's process) as the baseline. Batching on and off are two
//! clusters side by side, measured in turn at each concurrency.

use anyhow::ensure;

use crate::Settings;
use crate::cluster::{Cluster, RedisServer};
use crate::control::Fields;
use crate::node::NodeOptions;
use crate::stats::{LoadReport, header, row};

/// Keys `key-0..` considered; about half are owned by node B.
const CANDIDATE_KEYS: usize = 20_000;
const CONCURRENCY: [usize; 2] = [1, 50];

pub(crate) async fn run(settings: &Settings) -> anyhow::Result<()> {
    let secs = settings.secs(5.0);
    let redis = RedisServer::start().await?;
    let mut clusters = Vec::new();
    for batching in [true, false] {
        let options = NodeOptions { hot_cache: false, batching, ..NodeOptions::default() };
        clusters.push((batching, Cluster::start(2, options).await?));
    }
    let mut keys = 0;
    for (_, cluster) in &clusters {
        let owner = &cluster.nodes[1];
        let warmed = owner.call("warm", &key_set("self")).await?;
        ensure!(warmed.get::<u64>("errors")? == 0, "warming {} failed", owner.id);
        keys = warmed.get("keys")?;
    }
    let client = &clusters[0].1.nodes[0];
    if let Some(redis) = &redis {
        let fields = key_set(&clusters[0].1.nodes[1].id).with("redis", &redis.addr);
        client.call("redis-fill", &fields).await?;
    }
    println!(
        "W2 peer hit: 2 node processes, hot cache off; node-0 gets {keys} keys owned (and \
         cached) by node-1, uniformly, {} B values, {secs} s per run",
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

    let mut rows = Vec::new();
    for workers in CONCURRENCY {
        for (batching, cluster) in &clusters {
            let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
            let before = cluster.stats(&[0, 1]).await?;
            let load = key_set(&b.id).with("target", "engine");
            let report = run_load(a, load, workers, secs).await?;
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
            let name = if *batching { "distcache batching" } else { "distcache no batching" };
            rows.push((workers, name, report));
        }
        if let Some(redis) = &redis {
            let targets: &[&str] =
                if workers == 1 { &["redis"] } else { &["redis", "redis-conns"] };
            for target in targets {
                let load = key_set(&clusters[0].1.nodes[1].id)
                    .with("target", target)
                    .with("redis", &redis.addr);
                rows.push((workers, target, run_load(client, load, workers, secs).await?));
            }
        }
    }
    print(&rows);
    Ok(())
}

/// The keys `key-<n>`, `n < CANDIDATE_KEYS`, owned by `owner`.
fn key_set(owner: &str) -> Fields {
    Fields::new().with("keys", "key").with("n", CANDIDATE_KEYS).with("owned", owner)
}

async fn run_load(
    node: &crate::cluster::NodeProcess,
    fields: Fields,
    workers: usize,
    secs: f64,
) -> anyhow::Result<LoadReport> {
    let fields = fields.with("dist", "uniform").with("workers", workers).with("secs", secs);
    let report = LoadReport::from_fields(&node.call("load", &fields).await?)?;
    ensure!(report.errors == 0, "{} gets failed", report.errors);
    Ok(report)
}

fn print(rows: &[(usize, &str, LoadReport)]) {
    println!("{}", header("conc  target"));
    for (workers, name, report) in rows {
        println!("{}", row(&format!("{workers:>4}  {name}"), report));
    }
    let find = |workers: usize, name: &str| {
        rows.iter().find(|(w, n, _)| *w == workers && *n == name).map(|(_, _, r)| r)
    };
    for name in ["distcache batching", "distcache no batching"] {
        for baseline in ["redis", "redis-conns"] {
            if let (Some(ours), Some(redis)) = (find(50, name), find(50, baseline)) {
                println!(
                    "c=50 {name} / {baseline}: ops/s {:.2}, p50 {:.2}x, p99 {:.2}x",
                    ours.ops_per_sec() / redis.ops_per_sec(),
                    ours.p50_ns as f64 / redis.p50_ns as f64,
                    ours.p99_ns as f64 / redis.p99_ns as f64
                );
            }
        }
        if let (Some(ours), Some(redis)) = (find(1, name), find(1, "redis")) {
            println!(
                "c=1  {name} / redis: ops/s {:.2}, p50 {:.2}x, p99 {:.2}x",
                ours.ops_per_sec() / redis.ops_per_sec(),
                ours.p50_ns as f64 / redis.p50_ns as f64,
                ours.p99_ns as f64 / redis.p99_ns as f64
            );
        }
    }
    if let (Some(on), Some(off)) =
        (find(50, "distcache batching"), find(50, "distcache no batching"))
    {
        println!("c=50 batching on / off: ops/s {:.2}", on.ops_per_sec() / off.ops_per_sec());
    }
}
