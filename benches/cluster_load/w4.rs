//! W4 miss storm: three nodes, 1,000 cold keys, 200 callers spread over the nodes; at one
//! agreed instant every caller gets every key, in the same order (so all 200 want the same key
//! at about the same time). The figure is the data-source fetches in the whole cluster.

use futures::future::try_join_all;

use crate::Settings;
use crate::cluster::Cluster;
use crate::control::Fields;
use crate::node::NodeOptions;
use crate::stats::{micros, unix_ms};
use crate::w3::FETCH_DELAY_US;

const KEYS: usize = 1_000;
const CALLERS: usize = 200;
const NODES: usize = 3;

pub(crate) async fn run(_settings: &Settings) -> anyhow::Result<()> {
    println!(
        "W4 miss storm: {NODES} node processes (engine defaults), {KEYS} cold keys, {CALLERS} \
         callers spread over the nodes, each getting every key in the same order from one \
         agreed instant; data source sleeps {} ms",
        FETCH_DELAY_US / 1000
    );
    let options = NodeOptions { fetch_delay_us: FETCH_DELAY_US, ..NodeOptions::default() };
    let cluster = Cluster::start(NODES, options).await?;
    let all: Vec<usize> = (0..NODES).collect();
    let before = cluster.stats(&all).await?;
    // Far enough ahead that every node has its callers waiting.
    let start_ms = unix_ms() + 500;
    let storms = try_join_all(cluster.nodes.iter().map(|node| {
        let callers = CALLERS / NODES + usize::from(node.index < CALLERS % NODES);
        let storm = Fields::new()
            .with("keys", "cold")
            .with("n", KEYS)
            .with("callers", callers)
            .with("start_ms", start_ms);
        async move { node.call("storm", &storm).await.map(|reply| (callers, reply)) }
    }))
    .await?;
    let after = cluster.stats(&all).await?;

    println!(
        "{:<8} {:>7} {:>8} {:>7} {:>8} {:>8} {:>11} {:>11} {:>11}",
        "node", "callers", "gets", "errors", "fetches", "deduped", "p50 µs", "p99 µs", "max µs"
    );
    let (mut fetches, mut errors, mut done_ms) = (0, 0, 0);
    for (index, (callers, reply)) in storms.iter().enumerate() {
        let delta = |key: &str| -> anyhow::Result<u64> {
            Ok(after[index].get::<u64>(key)? - before[index].get::<u64>(key)?)
        };
        fetches += delta("fetches")?;
        errors += reply.get::<u64>("errors")?;
        done_ms = done_ms.max(reply.get::<u64>("done_ms")?);
        println!(
            "{:<8} {callers:>7} {:>8} {:>7} {:>8} {:>8} {:>11} {:>11} {:>11}",
            cluster.nodes[index].id,
            reply.get::<u64>("gets")?,
            reply.get::<u64>("errors")?,
            delta("fetches")?,
            delta("deduped")?,
            micros(reply.get("p50")?),
            micros(reply.get("p99")?),
            micros(reply.get("max")?)
        );
    }
    println!(
        "total: {fetches} data-source fetches for {KEYS} keys (goal {KEYS}); {errors} failed \
         gets; all {CALLERS} callers answered {:.3} s after the start",
        done_ms.saturating_sub(start_ms) as f64 / 1000.0
    );
    Ok(())
}
