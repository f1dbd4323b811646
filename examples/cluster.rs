//! A three-node cluster: a key is fetched once, by its owner, and served by every node.
//!
//! Run all three nodes in this process:    `cargo run --example cluster`
//! Or one node per terminal (same machine):  `cargo run --example cluster -- 0` (then 1, 2)
//! Node i serves peers on 127.0.0.1:4320+i and gossips on 127.0.0.1:4420+i; nodes 1 and 2
//! find the cluster through node 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use distcache::discovery::StaticDiscovery;
use distcache::{
    Bytes, ClusterConfig, Config, DataSource, Engine, FetchError, KeySpace, async_trait,
};

/// Each node's own view of the backing database; counts what it is asked.
#[derive(Debug)]
struct Database {
    node: usize,
    fetches: AtomicUsize,
}

#[async_trait]
impl DataSource for Database {
    async fn fetch(&self, key: &str) -> Result<Bytes, FetchError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(50)).await;
        println!("  node {} fetched {key:?} from the database", self.node);
        Ok(Bytes::from(format!("price of {key}: 42")))
    }
}

async fn start_node(index: usize) -> anyhow::Result<(Engine, Arc<Database>)> {
    let addr = |base: u16| SocketAddr::from(([127, 0, 0, 1], base + index as u16));
    let database = Arc::new(Database { node: index, fetches: AtomicUsize::new(0) });
    let prices = KeySpace::new("prices", 32 << 20, database.clone())
        .with_default_ttl(Duration::from_secs(60));
    let cluster = ClusterConfig::new(Arc::new(StaticDiscovery::new(["127.0.0.1:4420"])))
        .with_node_id(format!("node-{index}"))
        .with_grpc_addr(addr(4320))
        .with_gossip_addr(addr(4420))
        .with_gossip_interval(Duration::from_millis(100));
    let engine = Engine::start(Config::standalone([prices]).with_cluster(cluster)).await?;
    Ok((engine, database))
}

/// Waits until `engine` routes by a ring of `size` nodes.
async fn wait_for_ring(engine: &Engine, size: usize) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(10), async {
        while engine.ring().map_or(0, |r| r.members().len()) < size {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if let Some(index) = std::env::args().nth(1) {
        let (engine, _) = start_node(index.parse()?).await?;
        println!("node {index} running; Ctrl-C to leave the cluster");
        tokio::signal::ctrl_c().await?;
        engine.stop().await;
        return Ok(());
    }

    let mut nodes = Vec::new();
    for index in 0..3 {
        nodes.push(start_node(index).await?);
    }
    for (engine, _) in &nodes {
        wait_for_ring(engine, 3).await?;
    }
    let ring = nodes[0].0.ring().expect("a cluster node has a ring");
    println!("ring epoch {}:", ring.epoch());
    for (member, share) in ring.members().iter().zip(ring.shares()) {
        println!("  {} at {} owns {:.1}% of keys", member.node_id, member.grpc_addr, share * 100.0);
    }

    for key in ["apple", "banana", "cherry"] {
        let owner = ring.owner(key).map(|m| m.node_id.to_string()).unwrap_or_default();
        println!("{key:?} is owned by {owner}; every node asks for it at once:");
        let gets = nodes.iter().map(|(engine, _)| engine.get("prices", key));
        for (index, value) in futures::future::join_all(gets).await.into_iter().enumerate() {
            println!("  node {index} got {:?}", String::from_utf8_lossy(&value?));
        }
    }
    let fetches: usize = nodes.iter().map(|(_, db)| db.fetches.load(Ordering::Relaxed)).sum();
    println!("database fetches in the whole cluster: {fetches} (one per key)");

    for (engine, _) in &nodes {
        engine.stop().await;
    }
    Ok(())
}
