//! W3 cluster, skewed: three nodes, 100,000 keys, Zipf 1.1, 32 workers per node getting from
//! itself, a data source that sleeps 1 ms; every key warmed once at its owner.

use anyhow::ensure;
use futures::future::try_join_all;

use crate::Settings;
use crate::cluster::Cluster;
use crate::control::Fields;
use crate::node::NodeOptions;
use crate::stats::{LoadReport, header, micros, row};

pub(crate) const KEYS: usize = 100_000;
pub(crate) const ZIPF_S: f64 = 1.1;
pub(crate) const WORKERS: usize = 32;
/// The data source's delay per fetch.
pub(crate) const FETCH_DELAY_US: u64 = 1000;

pub(crate) async fn run(settings: &Settings) -> anyhow::Result<()> {
    let secs = settings.secs(10.0);
    let options = NodeOptions { fetch_delay_us: FETCH_DELAY_US, ..NodeOptions::default() };
    println!(
        "W3 cluster, skewed: 3 node processes (hot cache and batching on, engine defaults), \
         {KEYS} keys, Zipf s={ZIPF_S}, {WORKERS} workers per node getting from itself, data \
         source sleeps {} ms, {secs} s window",
        FETCH_DELAY_US / 1000
    );
    let cluster = Cluster::start(3, options).await?;
    let all = [0, 1, 2];
    warm_owned(&cluster, &all).await?;
    let before = cluster.stats(&all).await?;
    let load = zipf_load(secs);
    let reports = try_join_all(cluster.nodes.iter().map(|node| {
        let load = &load;
        async move { LoadReport::from_fields(&node.call("load", load).await?) }
    }))
    .await?;
    let after = cluster.stats(&all).await?;

    println!("{}", header("node"));
    for (node, report) in cluster.nodes.iter().zip(&reports) {
        println!("{}", row(&node.id, report));
    }
    let sum = |key: &str, of: &[Fields]| -> anyhow::Result<u64> {
        of.iter().map(|f| f.get::<u64>(key)).sum()
    };
    let delta = |key: &str| -> anyhow::Result<u64> { Ok(sum(key, &after)? - sum(key, &before)?) };
    let ops: u64 = reports.iter().map(|r| r.ops).sum();
    let ops_per_sec: f64 = reports.iter().map(LoadReport::ops_per_sec).sum();
    let (gets, hits, hot_hits) = (delta("gets")?, delta("hits")?, delta("hot_hits")?);
    let fetches = delta("fetches")?;
    let worst_p99 = reports.iter().map(|r| r.p99_ns).max().unwrap_or(0);
    println!(
        "aggregate: {ops_per_sec:.0} ops/s ({ops} gets, {} errors); worst p99 {} µs",
        reports.iter().map(|r| r.errors).sum::<u64>(),
        micros(worst_p99)
    );
    println!(
        "window: {fetches} data-source fetches; local hit ratio {:.4} (hits incl. {hot_hits} \
         hot-cache hits / gets); cluster hit ratio {:.6} (1 - fetches / gets); {} peer loads",
        hits as f64 / gets.max(1) as f64,
        1.0 - fetches as f64 / gets.max(1) as f64,
        delta("peer_loads")?
    );
    Ok(())
}

/// Each node in `indices` gets, once, every key of `key-0..key-<KEYS>` it owns.
pub(crate) async fn warm_owned(cluster: &Cluster, indices: &[usize]) -> anyhow::Result<()> {
    let warm = Fields::new().with("keys", "key").with("n", KEYS).with("owned", "self");
    let warmed =
        try_join_all(indices.iter().map(|&i| cluster.nodes[i].call("warm", &warm))).await?;
    let mut total = 0;
    for fields in &warmed {
        ensure!(fields.get::<u64>("errors")? == 0, "warming failed");
        total += fields.get::<usize>("keys")?;
    }
    ensure!(total == KEYS, "the owners warmed {total} keys, not {KEYS}: rings disagree");
    let secs: Vec<String> =
        warmed.iter().map(|f| f.text("secs").unwrap_or("?").to_owned()).collect();
    println!("warmed {total} keys at their owners in {} s", secs.join("/"));
    Ok(())
}

/// The W3 load of one node: Zipf over every key, [`WORKERS`] workers, `secs` at most.
pub(crate) fn zipf_load(secs: f64) -> Fields {
    Fields::new()
        .with("target", "engine")
        .with("keys", "key")
        .with("n", KEYS)
        .with("dist", "zipf")
        .with("s", ZIPF_S)
        .with("workers", WORKERS)
        .with("secs", secs)
}
