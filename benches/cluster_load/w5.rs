//! W5 membership change: three nodes under the W3 load; a fourth joins, then one of the first
//! three is killed with SIGKILL. Measures how long until every node routes by the new ring,
//! the gets that failed, and the data-source fetches the changes caused against the keys whose
//! owner changed.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use distcache::{Member, Ring};
use tokio::task::JoinHandle;

use crate::Settings;
use crate::cluster::Cluster;
use crate::control::Fields;
use crate::node::NodeOptions;
use crate::stats::{LoadReport, header, row, unix_ms};
use crate::w3::{FETCH_DELAY_US, KEYS, WORKERS, ZIPF_S, warm_owned, zipf_load};

/// The node killed: one of the three loaded, not the gossip seed (node 0).
const VICTIM: usize = 2;

/// Fetch counters summed over some nodes.
fn total(stats: &[Fields], key: &str) -> anyhow::Result<u64> {
    stats.iter().map(|f| f.get::<u64>(key)).sum()
}

pub(crate) async fn run(settings: &Settings) -> anyhow::Result<()> {
    let phase = Duration::from_secs_f64(settings.secs(10.0) / 2.0);
    let options = NodeOptions { fetch_delay_us: FETCH_DELAY_US, ..NodeOptions::default() };
    println!(
        "W5 membership change: 3 node processes under the W3 load ({KEYS} keys, Zipf s={ZIPF_S}, \
         {WORKERS} workers each, source sleeps {} ms); gossip every {} ms, phi {}; node-3 joins \
         after {phase:?}, node-{VICTIM} gets SIGKILL {phase:?} after the join converged, the \
         load stops {phase:?} after the leave converged",
        FETCH_DELAY_US / 1000,
        options.gossip_ms,
        options.phi
    );
    let mut cluster = Cluster::start(3, options).await?;
    warm_owned(&cluster, &[0, 1, 2]).await?;

    let mut loads: Vec<JoinHandle<anyhow::Result<Fields>>> = Vec::new();
    for node in &cluster.nodes {
        let mut control = node.connect().await?;
        let load = zipf_load(3600.0);
        loads.push(tokio::spawn(async move { control.call("load", &load).await }));
    }
    let start = cluster.stats(&[0, 1, 2]).await?;
    tokio::time::sleep(phase).await;
    let steady = cluster.stats(&[0, 1, 2]).await?;

    let join_started = std::time::Instant::now();
    cluster.add_node().await?;
    let join_converged = cluster.wait_for_ring(&[0, 1, 2, 3]).await?;
    debug_assert!(join_converged <= join_started.elapsed());
    let join_detected = cluster.stats(&[0, 1, 2]).await?;
    tokio::time::sleep(phase).await;
    let joined = cluster.stats(&[0, 1, 2, 3]).await?;

    let killed_ms = unix_ms();
    cluster.nodes[VICTIM].kill()?;
    let leave_converged = cluster.wait_for_ring(&[0, 1, 3]).await?;
    let detected_ms = unix_ms();
    let leave_detected = cluster.stats(&[0, 1]).await?;
    tokio::time::sleep(phase).await;
    let left = cluster.stats(&[0, 1, 3]).await?;

    for index in [0, 1] {
        cluster.nodes[index].call("stop", &Fields::new()).await?;
    }
    let mut reports = Vec::new();
    for (index, load) in loads.into_iter().enumerate() {
        match load.await.context("a load call panicked")? {
            Ok(fields) => reports.push((index, LoadReport::from_fields(&fields)?)),
            Err(_) if index == VICTIM => {}
            Err(err) => return Err(err),
        }
    }

    println!("{}", header("node (whole run)"));
    for (index, report) in &reports {
        println!("{}", row(&format!("node-{index}"), report));
    }
    let failed: u64 = reports.iter().map(|(_, r)| r.errors).sum();
    let after_detection: usize = reports
        .iter()
        .map(|(_, r)| r.error_times_ms.iter().filter(|&&t| t >= detected_ms).count())
        .sum();
    let before_kill: usize = reports
        .iter()
        .map(|(_, r)| r.error_times_ms.iter().filter(|&&t| t < killed_ms).count())
        .sum();
    println!(
        "join: every node routed by the 4-node ring {:.3} s after node-3 was started",
        join_converged.as_secs_f64()
    );
    println!(
        "kill: every survivor routed by the 3-node ring {:.3} s after the SIGKILL",
        leave_converged.as_secs_f64()
    );
    println!(
        "failed gets on the survivors: {failed} in total, {before_kill} started before the \
         kill, {after_detection} started after the leave was detected (node-{VICTIM}'s own \
         gets died with it)"
    );

    let ids = |nodes: &[usize]| nodes.iter().map(|n| format!("node-{n}")).collect::<Vec<_>>();
    let (three, four, after) = (ids(&[0, 1, 2]), ids(&[0, 1, 2, 3]), ids(&[0, 1, 3]));
    let baseline = total(&steady, "fetches")? - total(&start, "fetches")?;
    let join_fetches = total(&joined, "fetches")? - total(&steady, "fetches")?;
    let leave_fetches = total(&left, "fetches")?
        - total(&joined[..2], "fetches")?
        - joined[3].get::<u64>("fetches")?;
    let gets = |a: &[Fields], b: &[Fields]| -> anyhow::Result<u64> {
        Ok(total(b, "gets")?.saturating_sub(total(a, "gets")?))
    };
    // Keys move when the rings change, so count the gets made after that.
    let join_gets = gets(&join_detected, &joined[..3])?;
    let leave_gets = gets(&leave_detected, &left[..2])?;
    let fallbacks = total(&left, "fallback_loads")?
        - total(&joined[..2], "fallback_loads")?
        - joined[3].get::<u64>("fallback_loads")?;
    let join_handoffs = total(&joined, "handoffs")? - total(&steady, "handoffs")?;
    let leave_handoffs = total(&left, "handoffs")?
        - total(&joined[..2], "handoffs")?
        - joined[3].get::<u64>("handoffs")?;
    println!(
        "data-source fetches: {baseline} in the {phase:?} before the join (steady state); \
         {join_fetches} from the join to the kill; {leave_fetches} from the kill to the end \
         ({fallbacks} of them fallback loads while the victim was unreachable); values taken \
         from the previous owner instead (handoffs): {join_handoffs} after the join, \
         {leave_handoffs} after the kill"
    );
    // Who fetched during the join: the newcomer (loads it could not take over) or the
    // others (loads around a newcomer they could not reach, or before they knew of it).
    let mut by_node = Vec::new();
    for (index, after) in joined.iter().enumerate() {
        let before = |key: &str| steady.get(index).map_or(Ok(0), |f| f.get::<u64>(key));
        let delta =
            |key: &str| -> anyhow::Result<u64> { Ok(after.get::<u64>(key)? - before(key)?) };
        by_node.push(format!(
            "node-{index} {}/{}/{}",
            delta("fetches")?,
            delta("handoffs")?,
            delta("fallback_loads")?
        ));
    }
    println!("join, per node (fetches/handoffs/fallback loads): {}", by_node.join(", "));
    for (what, from, to, fetches, gets) in [
        ("join", &three, &four, join_fetches, join_gets),
        ("leave", &four, &after, leave_fetches, leave_gets),
    ] {
        let moved = moved_keys(from, to);
        let requested = expected_requested(&moved, gets);
        println!(
            "{what}: {} of {KEYS} keys changed owner ({:.1}%); the {gets} gets made after the \
             rings converged would touch ~{requested:.0} of them (Zipf model); fetches / moved \
             keys {:.2}, fetches / moved keys requested {:.2}",
            moved.len(),
            100.0 * moved.len() as f64 / KEYS as f64,
            fetches as f64 / moved.len().max(1) as f64,
            fetches as f64 / requested.max(1.0)
        );
    }
    Ok(())
}

/// Indices of the keys `key-<i>` whose owner differs between rings over `from` and `to`.
fn moved_keys(from: &[String], to: &[String]) -> Vec<usize> {
    let ring = |ids: &[String]| {
        let anywhere = SocketAddr::from(([127, 0, 0, 1], 0));
        let members =
            ids.iter().map(|id| Member { node_id: id.as_str().into(), grpc_addr: anywhere });
        Ring::new(0, members.collect())
    };
    let (from, to) = (ring(from), ring(to));
    (0..KEYS)
        .filter(|i| {
            let key = format!("key-{i}");
            from.owner(&key).map(|m| &m.node_id) != to.owner(&key).map(|m| &m.node_id)
        })
        .collect()
}

/// How many of `moved` (Zipf ranks) `gets` draws would ask for at least once.
fn expected_requested(moved: &[usize], gets: u64) -> f64 {
    let norm: f64 = (1..=KEYS).map(|rank| (rank as f64).powf(-ZIPF_S)).sum();
    moved
        .iter()
        .map(|&i| {
            let p = ((i + 1) as f64).powf(-ZIPF_S) / norm;
            1.0 - (1.0 - p).powf(gets as f64)
        })
        .sum()
}
