//! A reusable in-process cluster: N real nodes on 127.0.0.1 (port 0), each with its own data
//! source that counts fetches.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use distcache::discovery::StaticDiscovery;
use distcache::{
    Bytes, ClusterConfig, Config, DataSource, Engine, FetchError, KeySpace, async_trait,
};

/// The keyspace every test node serves.
pub const KEYSPACE: &str = "items";

/// A data source that answers `value-of-<key>@<node>` (or not found for keys starting with
/// `missing`), counting fetches, optionally slowly.
#[derive(Debug)]
pub struct CountingSource {
    pub node: usize,
    pub fetches: AtomicUsize,
    pub delay: Duration,
}

#[async_trait]
impl DataSource for CountingSource {
    async fn fetch(&self, key: &str) -> Result<Bytes, FetchError> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if key.starts_with("missing") {
            return Err(FetchError::NotFound);
        }
        if key.starts_with("failing") {
            return Err(FetchError::failed("the database is down"));
        }
        Ok(Bytes::from(format!("value-of-{key}")))
    }
}

/// One node of a test cluster.
#[derive(Debug)]
pub struct Node {
    pub engine: Engine,
    pub source: Arc<CountingSource>,
}

/// How test nodes are set up.
#[derive(Debug, Clone)]
pub struct Options {
    pub source_delay: Duration,
    pub hot_cache: bool,
    pub batching: bool,
    pub read_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            source_delay: Duration::from_millis(20),
            hot_cache: true,
            batching: true,
            read_timeout: Duration::from_secs(5),
        }
    }
}

/// N nodes seeded with the first node's gossip address.
#[derive(Debug)]
pub struct TestCluster {
    pub nodes: Vec<Node>,
    pub options: Options,
}

/// Fast gossip and failure detection for loopback tests.
pub fn cluster_config(seeds: Vec<String>, options: &Options) -> ClusterConfig {
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let config = ClusterConfig::new(Arc::new(StaticDiscovery::new(seeds)))
        .with_label("test-cluster")
        .with_grpc_addr(loopback)
        .with_gossip_addr(loopback)
        .with_gossip_interval(Duration::from_millis(50))
        .with_phi_threshold(5.0)
        .with_rediscover_interval(Duration::from_millis(200))
        .with_connect_timeout(Duration::from_millis(500))
        .with_peer_breaker(3, Duration::from_millis(500))
        .with_batching(options.batching)
        .with_hot_cache(0.0, Duration::from_secs(60));
    if options.hot_cache { config } else { config.without_hot_cache() }
}

impl TestCluster {
    /// Starts `n` nodes and waits until every node routes by a ring of all of them.
    pub async fn start(n: usize) -> Self {
        Self::start_with(n, Options::default()).await
    }

    pub async fn start_with(n: usize, options: Options) -> Self {
        let mut cluster = TestCluster { nodes: Vec::new(), options };
        for _ in 0..n {
            cluster.add_node().await;
        }
        cluster.wait_converged().await;
        cluster
    }

    /// Starts one more node (not waiting for convergence).
    pub async fn add_node(&mut self) -> &Node {
        let index = self.nodes.len();
        let source = Arc::new(CountingSource {
            node: index,
            fetches: AtomicUsize::new(0),
            delay: self.options.source_delay,
        });
        let seeds = self
            .nodes
            .first()
            .and_then(|n| n.engine.gossip_addr())
            .map(|a| vec![a.to_string()])
            .unwrap_or_default();
        let keyspace = KeySpace::new(KEYSPACE, 64 << 20, source.clone())
            .with_negative_ttl(Duration::from_secs(30))
            .with_read_timeout(self.options.read_timeout);
        let config = Config::standalone([keyspace]).with_cluster(
            cluster_config(seeds, &self.options).with_node_id(format!("node-{index}")),
        );
        let engine = Engine::start(config).await.expect("node starts");
        self.nodes.push(Node { engine, source });
        &self.nodes[index]
    }

    /// Waits until every running node's ring holds exactly the node ids of `running`.
    pub async fn wait_for_ring(&self, running: &[usize]) {
        let mut expected: Vec<String> = running.iter().map(|i| format!("node-{i}")).collect();
        expected.sort();
        let converged = || {
            running.iter().all(|&i| {
                let ring = self.nodes[i].engine.ring().expect("a cluster node has a ring");
                let ids: Vec<String> =
                    ring.members().iter().map(|m| m.node_id.to_string()).collect();
                ids == expected
            })
        };
        eventually(Duration::from_secs(20), converged).await;
    }

    /// Waits until every node's ring holds every node.
    pub async fn wait_converged(&self) {
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        self.wait_for_ring(&all).await;
    }

    pub fn engine(&self, index: usize) -> &Engine {
        &self.nodes[index].engine
    }

    /// Data-source fetches on every node, in total.
    pub fn total_fetches(&self) -> usize {
        self.nodes.iter().map(|n| n.source.fetches.load(Ordering::SeqCst)).sum()
    }

    /// The index of the node that owns `key` in node 0's ring.
    pub fn owner_of(&self, key: &str) -> usize {
        let ring = self.engine(0).ring().expect("ring");
        let owner = ring.owner(key).expect("a non-empty ring");
        self.nodes
            .iter()
            .position(|n| n.engine.node_id().as_deref() == Some(&*owner.node_id))
            .expect("owner is a node of this cluster")
    }

    /// A key owned by node `owner`, and not by `others`.
    pub fn key_owned_by(&self, owner: usize, prefix: &str) -> String {
        (0..)
            .map(|i| format!("{prefix}-{i}"))
            .find(|k| self.owner_of(k) == owner)
            .expect("some key lands on every node")
    }

    pub async fn stop(self) {
        for node in &self.nodes {
            node.engine.stop().await;
        }
    }
}

/// Polls `condition` until it holds, failing the test after `within`.
pub async fn eventually(within: Duration, mut condition: impl FnMut() -> bool) {
    let polled = tokio::time::timeout(within, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(polled.is_ok(), "condition not met within {within:?}");
}

/// Polls an async condition until it holds, failing the test after `within`.
pub async fn eventually_async<F, Fut>(within: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let polled = tokio::time::timeout(within, async {
        while !condition().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(polled.is_ok(), "condition not met within {within:?}");
}
