//! The `node` role: one engine in its own process, driven over the control protocol.
//!
//! The process prints `control <addr>` on stdout once it serves, and exits when its stdin
//! closes (so nodes never outlive an orchestrator that died without killing them).

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use distcache::discovery::StaticDiscovery;
use distcache::{
    Bytes, ClusterConfig, Config, DataSource, Engine, FetchError, KeySpace, async_trait,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::control::{Fields, parse_request, render_reply};
use crate::load::{self, Client, Dist};
use crate::stats::{LoadReport, unix_ms};
use crate::{KEYSPACE, VALUE};

/// Keyspace budget: every key of every workload fits, nothing is evicted.
const MAX_BYTES: u64 = 1 << 30;

/// How a node process is set up; passed on its command line.
#[derive(Debug, Clone)]
pub(crate) struct NodeOptions {
    /// Delay of each data-source fetch, in microseconds (0 answers at once).
    pub(crate) fetch_delay_us: u64,
    pub(crate) hot_cache: bool,
    pub(crate) batching: bool,
    pub(crate) gossip_ms: u64,
    pub(crate) phi: f64,
}

impl Default for NodeOptions {
    /// The engine's own cluster defaults, with an instant data source.
    fn default() -> Self {
        NodeOptions { fetch_delay_us: 0, hot_cache: true, batching: true, gossip_ms: 500, phi: 8.0 }
    }
}

impl NodeOptions {
    pub(crate) fn to_args(&self) -> Vec<String> {
        let flags = [
            ("--delay-us", self.fetch_delay_us.to_string()),
            ("--hot-cache", self.hot_cache.to_string()),
            ("--batching", self.batching.to_string()),
            ("--gossip-ms", self.gossip_ms.to_string()),
            ("--phi", self.phi.to_string()),
        ];
        flags.into_iter().flat_map(|(flag, value)| [flag.to_owned(), value]).collect()
    }
}

/// The `node` command line: `node --index I --label L [--seed ADDR] <NodeOptions flags>`.
#[derive(Debug)]
pub(crate) struct NodeArgs {
    index: usize,
    label: String,
    seed: Option<String>,
    options: NodeOptions,
}

impl NodeArgs {
    pub(crate) fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut parsed = NodeArgs {
            index: 0,
            label: "cluster-load".to_owned(),
            seed: None,
            options: NodeOptions::default(),
        };
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let value = args.next().with_context(|| format!("{flag} needs a value"))?;
            let options = &mut parsed.options;
            match flag.as_str() {
                "--index" => parsed.index = parse_flag(flag, value)?,
                "--label" => parsed.label = value.clone(),
                "--seed" => parsed.seed = Some(value.clone()),
                "--delay-us" => options.fetch_delay_us = parse_flag(flag, value)?,
                "--hot-cache" => options.hot_cache = parse_flag(flag, value)?,
                "--batching" => options.batching = parse_flag(flag, value)?,
                "--gossip-ms" => options.gossip_ms = parse_flag(flag, value)?,
                "--phi" => options.phi = parse_flag(flag, value)?,
                other => bail!("unknown node flag {other}"),
            }
        }
        Ok(parsed)
    }
}

fn parse_flag<T: std::str::FromStr>(flag: &str, value: &str) -> anyhow::Result<T> {
    value.parse().map_err(|_| anyhow::anyhow!("bad value `{value}` for {flag}"))
}

/// The benchmark's data source: a static 1 KiB value after an optional delay, counting calls.
#[derive(Debug)]
struct BenchSource {
    fetches: AtomicU64,
    delay: Duration,
}

#[async_trait]
impl DataSource for BenchSource {
    async fn fetch(&self, _key: &str) -> Result<Bytes, FetchError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        Ok(Bytes::from_static(&VALUE))
    }
}

/// A running node.
#[derive(Debug)]
struct Node {
    engine: Engine,
    source: Arc<BenchSource>,
    /// Set by `stop` to end the load phase in progress.
    stop: Arc<AtomicBool>,
}

/// Runs the node role until stdin closes or the process is killed.
pub(crate) fn run(args: NodeArgs) -> anyhow::Result<()> {
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: NodeArgs) -> anyhow::Result<()> {
    let node = Arc::new(start_engine(&args).await?);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("control {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let node = node.clone();
        tokio::spawn(async move {
            if let Err(err) = connection(node, stream).await {
                eprintln!("control connection failed: {err:#}");
            }
        });
    }
}

async fn start_engine(args: &NodeArgs) -> anyhow::Result<Node> {
    let options = &args.options;
    let source = Arc::new(BenchSource {
        fetches: AtomicU64::new(0),
        delay: Duration::from_micros(options.fetch_delay_us),
    });
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut cluster = ClusterConfig::new(Arc::new(StaticDiscovery::new(args.seed.clone())))
        .with_node_id(format!("node-{}", args.index))
        .with_label(args.label.clone())
        .with_grpc_addr(loopback)
        .with_gossip_addr(loopback)
        .with_gossip_interval(Duration::from_millis(options.gossip_ms))
        .with_phi_threshold(options.phi)
        .with_batching(options.batching);
    if !options.hot_cache {
        cluster = cluster.without_hot_cache();
    }
    let keyspace = KeySpace::new(KEYSPACE, MAX_BYTES, source.clone());
    let engine = Engine::start(Config::standalone([keyspace]).with_cluster(cluster)).await?;
    Ok(Node { engine, source, stop: Arc::new(AtomicBool::new(false)) })
}

async fn connection(node: Arc<Node>, stream: TcpStream) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        let reply = match parse_request(&line) {
            Ok((verb, fields)) => handle(&node, &verb, &fields).await,
            Err(err) => Err(err),
        };
        write.write_all(format!("{}\n", render_reply(&reply)).as_bytes()).await?;
    }
    Ok(())
}

async fn handle(node: &Node, verb: &str, fields: &Fields) -> anyhow::Result<Fields> {
    let engine = &node.engine;
    match verb {
        "info" => Ok(Fields::new()
            .with("id", engine.node_id().context("not a cluster node")?)
            .with("gossip", engine.gossip_addr().context("no gossip address")?)
            .with("pid", std::process::id())),
        "ring" => {
            let ring = engine.ring().context("not a cluster node")?;
            let ids: Vec<&str> = ring.members().iter().map(|m| &*m.node_id).collect();
            Ok(Fields::new().with("epoch", ring.epoch()).with("members", ids.join(",")))
        }
        "stats" => stats(node),
        "warm" => {
            let keys = select_keys(engine, fields)?;
            let started = Instant::now();
            let errors = load::warm(engine, keys.clone(), fields.get_or("concurrency", 64)?).await;
            Ok(Fields::new()
                .with("keys", keys.len())
                .with("errors", errors)
                .with("secs", format!("{:.3}", started.elapsed().as_secs_f64())))
        }
        "load" => run_load(node, fields).await.map(|report| report.to_fields()),
        "stop" => {
            node.stop.store(true, Ordering::Relaxed);
            Ok(Fields::new())
        }
        "redis-fill" => {
            let keys = select_keys(engine, fields)?;
            let redis = fields.text("redis").context("missing field `redis`")?;
            load::redis_fill(redis, &keys, &Bytes::from_static(&VALUE)).await?;
            Ok(Fields::new().with("keys", keys.len()))
        }
        "storm" => storm(node, fields).await,
        other => bail!("unknown command `{other}`"),
    }
}

fn stats(node: &Node) -> anyhow::Result<Fields> {
    let s = node.engine.stats(KEYSPACE)?;
    Ok(Fields::new()
        .with("fetches", node.source.fetches.load(Ordering::Relaxed))
        .with("gets", s.gets)
        .with("hits", s.hits)
        .with("hot_hits", s.hot_hits)
        .with("misses", s.misses)
        .with("deduped", s.fetches_deduped)
        .with("peer_loads", s.peer_loads)
        .with("peer_errors", s.peer_errors)
        .with("fallback_loads", s.fallback_loads)
        .with("served_to_peers", s.served_to_peers)
        .with("handoffs", s.handoffs)
        .with("entries", s.entries))
}

/// The keys `<keys>-0 .. <keys>-<n-1>`, keeping only those owned (in this node's ring) by
/// `owned` when it is given (`self` means this node).
fn select_keys(engine: &Engine, fields: &Fields) -> anyhow::Result<Arc<Vec<String>>> {
    let prefix = fields.text("keys").unwrap_or("key");
    let n: usize = fields.get("n")?;
    let all = (0..n).map(|i| format!("{prefix}-{i}"));
    let keys: Vec<String> = match fields.text("owned") {
        None => all.collect(),
        Some(owner) => {
            let owner =
                if owner == "self" { engine.node_id().unwrap_or_default() } else { owner.into() };
            let ring = engine.ring().context("not a cluster node")?;
            all.filter(|k| ring.owner(k).is_some_and(|m| *m.node_id == *owner)).collect()
        }
    };
    Ok(Arc::new(keys))
}

/// `load target=engine|redis|redis-conns [redis=ADDR] keys=P n=N [owned=ID] dist=uniform|zipf
/// [s=1.1] workers=W secs=T`
async fn run_load(node: &Node, fields: &Fields) -> anyhow::Result<LoadReport> {
    let keys = select_keys(&node.engine, fields)?;
    let dist = Arc::new(Dist::new(
        fields.text("dist").unwrap_or("uniform"),
        fields.get_or("s", 1.1)?,
        keys.len(),
    )?);
    let workers: usize = fields.get("workers")?;
    let duration = Duration::from_secs_f64(fields.get("secs")?);
    let clients = match fields.text("target").unwrap_or("engine") {
        "engine" => vec![Client::Engine(node.engine.clone()); workers],
        // One multiplexed connection shared by every worker, like the engine's peer channel.
        "redis" => {
            let addr = fields.text("redis").context("missing field `redis`")?;
            vec![Client::Redis(load::redis_connection(addr).await?); workers]
        }
        // A connection per worker.
        "redis-conns" => {
            let addr = fields.text("redis").context("missing field `redis`")?;
            let mut clients = Vec::with_capacity(workers);
            for _ in 0..workers {
                clients.push(Client::Redis(load::redis_connection(addr).await?));
            }
            clients
        }
        other => bail!("unknown target `{other}`"),
    };
    node.stop.store(false, Ordering::Relaxed);
    let before = node.source.fetches.load(Ordering::Relaxed);
    let mut report = load::run(clients, keys, dist, duration, node.stop.clone()).await?;
    report.fetches = node.source.fetches.load(Ordering::Relaxed) - before;
    Ok(report)
}

/// `storm keys=P n=N callers=C start_ms=UNIX_MS`
async fn storm(node: &Node, fields: &Fields) -> anyhow::Result<Fields> {
    let keys = select_keys(&node.engine, fields)?;
    let start_ms: u64 = fields.get("start_ms")?;
    let start = Instant::now() + Duration::from_millis(start_ms.saturating_sub(unix_ms()));
    let done = load::storm(&node.engine, keys, fields.get("callers")?, start).await?;
    Ok(Fields::new()
        .with("gets", done.gets)
        .with("errors", done.errors)
        .with("done_ms", done.done_ms)
        .with("p50", done.latency.value_at_quantile(0.5))
        .with("p99", done.latency.value_at_quantile(0.99))
        .with("max", done.latency.max()))
}
