//! A reusable in-process cluster: N real nodes on 127.0.0.1 (port 0), each with its own data
//! source that counts fetches.
//!
//! Every node runs on its own tokio runtime, as if it were its own process: the test calls its
//! engine from the test runtime, while the node's gossip, peer server and peer clients live on
//! the node's runtime. [`TestCluster::kill_node`] shuts that runtime down, which drops every
//! socket and task of the node at once with no goodbye to its peers: the in-process stand-in
//! for `kill -9`. [`TestCluster::stop_node`] is the graceful path ([`Engine::stop`]).
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use distcache::discovery::{Discovery, StaticDiscovery};
use distcache::{
    Bytes, ClusterConfig, Config, DataSource, Engine, FetchError, KeySpace, KeySpaceStats,
    async_trait,
};
use tokio::sync::Semaphore;

/// The keyspace every test node serves.
pub const KEYSPACE: &str = "items";

/// How long a fetch of a `slow…` key takes.
pub const SLOW_FETCH: Duration = Duration::from_secs(2);

/// The value [`CountingSource`] answers for `key`.
pub fn value_of(key: &str) -> String {
    format!("value-of-{key}")
}

/// A data source that counts its fetches and answers [`value_of`]`(key)` after `delay`, except
/// for keys that start with:
/// - `missing`: not found;
/// - `failing`: fails with "the database is down";
/// - `slow`: answers after [`SLOW_FETCH`];
/// - `gated`: waits for a permit from [`release`](Self::release) first.
#[derive(Debug)]
pub struct CountingSource {
    pub node: usize,
    pub fetches: AtomicUsize,
    pub delay: Duration,
    gate: Semaphore,
}

impl CountingSource {
    /// Lets `fetches` waiting (or future) fetches of `gated…` keys through.
    pub fn release(&self, fetches: usize) {
        self.gate.add_permits(fetches);
    }

    /// Fetches made so far.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl DataSource for CountingSource {
    async fn fetch(&self, key: &str) -> Result<Bytes, FetchError> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        if key.starts_with("gated") {
            self.gate.acquire().await.expect("the gate is never closed").forget();
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if key.starts_with("slow") {
            tokio::time::sleep(SLOW_FETCH).await;
        }
        if key.starts_with("missing") {
            return Err(FetchError::NotFound);
        }
        if key.starts_with("failing") {
            return Err(FetchError::failed("the database is down"));
        }
        Ok(Bytes::from(value_of(key)))
    }
}

/// One node of a test cluster.
#[derive(Debug)]
pub struct Node {
    pub engine: Engine,
    pub source: Arc<CountingSource>,
    /// The node's own runtime; `None` once it was killed.
    runtime: Option<tokio::runtime::Runtime>,
    /// Whether the node still runs (neither stopped nor killed).
    pub up: bool,
}

impl Drop for Node {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is not allowed on the test's runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// How test nodes are set up.
#[derive(Debug, Clone)]
pub struct Options {
    pub source_delay: Duration,
    pub hot_cache: bool,
    pub batching: bool,
    pub read_timeout: Duration,
    /// Applied last to every node's cluster settings.
    pub configure: fn(ClusterConfig) -> ClusterConfig,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            source_delay: Duration::from_millis(20),
            hot_cache: true,
            batching: true,
            read_timeout: Duration::from_secs(5),
            configure: |config| config,
        }
    }
}

/// What [`TestCluster::add_node_with`] lets a test change about one node before it starts.
#[derive(Debug)]
pub struct NodeSetup {
    pub cluster: ClusterConfig,
    /// The node's keyspaces ([`KEYSPACE`] first).
    pub keyspaces: Vec<KeySpace>,
    /// The node's data source, to back extra keyspaces with.
    pub source: Arc<CountingSource>,
}

/// Nodes seeded with each other's gossip addresses.
#[derive(Debug)]
pub struct TestCluster {
    pub nodes: Vec<Node>,
    pub options: Options,
}

/// Fast gossip and failure detection for loopback tests.
pub fn cluster_config(seeds: Vec<String>, options: &Options) -> ClusterConfig {
    cluster_config_with(Arc::new(StaticDiscovery::new(seeds)), options)
}

/// [`cluster_config`] finding peers with `discovery` instead of static seeds.
pub fn cluster_config_with(discovery: Arc<dyn Discovery>, options: &Options) -> ClusterConfig {
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let config = ClusterConfig::new(discovery)
        .with_label("test-cluster")
        .with_grpc_addr(loopback)
        .with_gossip_addr(loopback)
        .with_gossip_interval(Duration::from_millis(50))
        .with_phi_threshold(20.0)
        .with_rediscover_interval(Duration::from_millis(200))
        .with_connect_timeout(Duration::from_millis(500))
        .with_peer_breaker(3, Duration::from_millis(500))
        .with_batching(options.batching)
        .with_hot_cache(0.0, Duration::from_secs(60));
    let config = if options.hot_cache { config } else { config.without_hot_cache() };
    (options.configure)(config)
}

impl TestCluster {
    /// A cluster of no nodes yet: add them with [`add_node`](Self::add_node) or
    /// [`add_node_with`](Self::add_node_with), then [`wait_converged`](Self::wait_converged).
    pub fn new(options: Options) -> Self {
        TestCluster { nodes: Vec::new(), options }
    }

    /// Starts `n` nodes and waits until every node routes by a ring of all of them.
    pub async fn start(n: usize) -> Self {
        Self::start_with(n, Options::default()).await
    }

    pub async fn start_with(n: usize, options: Options) -> Self {
        let mut cluster = Self::new(options);
        for _ in 0..n {
            cluster.add_node().await;
        }
        cluster.wait_converged().await;
        cluster
    }

    /// Starts one more node (not waiting for convergence); returns its index.
    pub async fn add_node(&mut self) -> usize {
        self.add_node_with(|setup| setup).await
    }

    /// Starts one more node that finds its peers with `discovery` only; returns its index.
    pub async fn add_node_discovering(&mut self, discovery: Arc<dyn Discovery>) -> usize {
        let node_id = format!("node-{}", self.nodes.len());
        let cluster = cluster_config_with(discovery, &self.options).with_node_id(node_id);
        self.add_node_with(|setup| NodeSetup { cluster, ..setup }).await
    }

    /// Starts one more node, set up as `customize` says; returns its index.
    pub async fn add_node_with(&mut self, customize: impl FnOnce(NodeSetup) -> NodeSetup) -> usize {
        let index = self.nodes.len();
        let source = Arc::new(CountingSource {
            node: index,
            fetches: AtomicUsize::new(0),
            delay: self.options.source_delay,
            gate: Semaphore::new(0),
        });
        let seeds = self
            .up()
            .into_iter()
            .filter_map(|i| self.engine(i).gossip_addr())
            .map(|a| a.to_string())
            .collect();
        let keyspace = KeySpace::new(KEYSPACE, 64 << 20, source.clone())
            .with_negative_ttl(Duration::from_secs(30))
            .with_read_timeout(self.options.read_timeout);
        let setup = customize(NodeSetup {
            cluster: cluster_config(seeds, &self.options).with_node_id(format!("node-{index}")),
            keyspaces: vec![keyspace],
            source: source.clone(),
        });
        let config = Config::standalone(setup.keyspaces).with_cluster(setup.cluster);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("node-{index}"))
            .enable_all()
            .build()
            .expect("a node runtime");
        let engine = runtime
            .spawn(Engine::start(config))
            .await
            .expect("the start task completes")
            .expect("node starts");
        self.nodes.push(Node { engine, source, runtime: Some(runtime), up: true });
        index
    }

    /// Stops a node gracefully: it leaves the ring, then stops serving.
    pub async fn stop_node(&mut self, index: usize) {
        self.nodes[index].engine.stop().await;
        self.nodes[index].up = false;
    }

    /// Kills a node: every socket and task of it is gone when this returns, and it told no peer.
    pub async fn kill_node(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        node.up = false;
        if let Some(runtime) = node.runtime.take() {
            tokio::task::spawn_blocking(move || runtime.shutdown_timeout(Duration::from_secs(5)))
                .await
                .expect("the runtime shuts down");
        }
    }

    /// Indexes of the nodes still running.
    pub fn up(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].up).collect()
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

    /// Waits until every running node's ring holds every running node.
    pub async fn wait_converged(&self) {
        self.wait_for_ring(&self.up()).await;
    }

    pub fn engine(&self, index: usize) -> &Engine {
        &self.nodes[index].engine
    }

    /// The data source of node `index`.
    pub fn source(&self, index: usize) -> &CountingSource {
        &self.nodes[index].source
    }

    /// Data-source fetches of node `index`.
    pub fn fetches(&self, index: usize) -> usize {
        self.source(index).fetches()
    }

    /// The counters of [`KEYSPACE`] on node `index`.
    pub fn stats(&self, index: usize) -> KeySpaceStats {
        self.engine(index).stats(KEYSPACE).expect("the test keyspace exists")
    }

    /// Data-source fetches on every node, in total.
    pub fn total_fetches(&self) -> usize {
        (0..self.nodes.len()).map(|i| self.fetches(i)).sum()
    }

    /// The index of the node that owns `key` in the first running node's ring.
    pub fn owner_of(&self, key: &str) -> usize {
        let viewer = *self.up().first().expect("a running node");
        let ring = self.engine(viewer).ring().expect("ring");
        let owner = ring.owner(key).expect("a non-empty ring");
        self.nodes
            .iter()
            .position(|n| n.engine.node_id().as_deref() == Some(&*owner.node_id))
            .expect("owner is a node of this cluster")
    }

    /// The first key `<prefix>-<i>` owned by node `owner`.
    pub fn key_owned_by(&self, owner: usize, prefix: &str) -> String {
        self.keys_owned_by(owner, prefix, 1).remove(0)
    }

    /// The first `count` keys `<prefix>-<i>` owned by node `owner`.
    pub fn keys_owned_by(&self, owner: usize, prefix: &str, count: usize) -> Vec<String> {
        (0..100_000)
            .map(|i| format!("{prefix}-{i}"))
            .filter(|k| self.owner_of(k) == owner)
            .take(count)
            .collect()
    }

    /// Stops every running node (concurrently) and releases the rest.
    pub async fn stop(self) {
        let running = self.up().into_iter().map(|i| self.nodes[i].engine.stop());
        futures::future::join_all(running).await;
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
