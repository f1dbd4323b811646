//! The orchestrator's processes: distcache nodes (this program re-executed in its `node` role)
//! and the Redis baseline. Every process is killed when its handle is dropped, so an error or
//! a panic in the orchestrator leaves nothing running.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::control::{ControlClient, Fields};
use crate::node::NodeOptions;

/// How long a cluster may take to agree on its members before the run fails.
const CONVERGE_WITHIN: Duration = Duration::from_secs(60);
/// How often rings are polled.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// One node process.
#[derive(Debug)]
pub(crate) struct NodeProcess {
    pub(crate) index: usize,
    pub(crate) id: String,
    pub(crate) gossip: String,
    control: SocketAddr,
    child: Child,
    /// Kept open: the node exits when its stdin closes.
    _stdout: BufReader<ChildStdout>,
}

impl NodeProcess {
    async fn spawn(
        index: usize,
        label: &str,
        seed: Option<&str>,
        options: &NodeOptions,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating this program to run a node")?;
        let mut command = Command::new(exe);
        command.args(["node", "--index", &index.to_string(), "--label", label]);
        if let Some(seed) = seed {
            command.args(["--seed", seed]);
        }
        command.args(options.to_args());
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = command.spawn().context("starting a node process")?;
        let mut stdout = BufReader::new(child.stdout.take().context("node stdout")?);
        let mut line = String::new();
        // Blocking, but only until the node prints its first line (milliseconds).
        let read = stdout.read_line(&mut line);
        let control = match read.ok().and_then(|_| line.trim().strip_prefix("control ")) {
            Some(addr) => addr.parse().with_context(|| format!("node control address `{addr}`"))?,
            None => {
                let _ = child.kill();
                bail!("node-{index} did not start (it printed `{}`)", line.trim());
            }
        };
        let mut node = NodeProcess {
            index,
            id: format!("node-{index}"),
            gossip: String::new(),
            control,
            child,
            _stdout: stdout,
        };
        let info = node.call("info", &Fields::new()).await?;
        node.gossip = info.get("gossip")?;
        Ok(node)
    }

    /// A fresh control connection (for calls that run alongside others, like a load).
    pub(crate) async fn connect(&self) -> anyhow::Result<ControlClient> {
        ControlClient::connect(&self.id, self.control).await
    }

    /// One request on a fresh connection.
    pub(crate) async fn call(&self, verb: &str, fields: &Fields) -> anyhow::Result<Fields> {
        self.connect().await?.call(verb, fields).await
    }

    /// The node ids in this node's ring, sorted.
    pub(crate) async fn ring(&self) -> anyhow::Result<Vec<String>> {
        let ring = self.call("ring", &Fields::new()).await?;
        let members = ring.text("members").unwrap_or_default();
        Ok(members.split(',').filter(|m| !m.is_empty()).map(str::to_owned).collect())
    }

    /// CPU time this node's process has used so far.
    pub(crate) fn cpu(&self) -> anyhow::Result<std::time::Duration> {
        crate::stats::process_cpu(self.child.id())
    }

    /// SIGKILL, then reap.
    pub(crate) fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill().with_context(|| format!("killing {}", self.id))?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A set of node processes that gossip under their own label.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub(crate) nodes: Vec<NodeProcess>,
    label: String,
    options: NodeOptions,
}

impl Cluster {
    /// Starts `n` nodes seeded with the first one and waits until every ring holds all.
    pub(crate) async fn start(n: usize, options: NodeOptions) -> anyhow::Result<Self> {
        static CLUSTERS: AtomicUsize = AtomicUsize::new(0);
        let serial = CLUSTERS.fetch_add(1, Ordering::Relaxed);
        let label = format!("cluster-load-{}-{serial}", std::process::id());
        let mut cluster = Cluster { nodes: Vec::new(), label, options };
        for _ in 0..n {
            cluster.add_node().await?;
        }
        let all: Vec<usize> = (0..n).collect();
        cluster.wait_for_ring(&all).await?;
        Ok(cluster)
    }

    /// Starts one more node, seeded with node 0 (not waiting for the rings).
    pub(crate) async fn add_node(&mut self) -> anyhow::Result<&NodeProcess> {
        let index = self.nodes.len();
        let seed = self.nodes.first().map(|n| n.gossip.clone());
        let node = NodeProcess::spawn(index, &self.label, seed.as_deref(), &self.options).await?;
        self.nodes.push(node);
        Ok(&self.nodes[index])
    }

    /// Polls until the ring of every node in `running` holds exactly `running`; returns how
    /// long that took.
    pub(crate) async fn wait_for_ring(&self, running: &[usize]) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let mut expected: Vec<String> = running.iter().map(|i| self.nodes[*i].id.clone()).collect();
        expected.sort();
        loop {
            let mut agreed = true;
            for &index in running {
                agreed &= self.nodes[index].ring().await? == expected;
            }
            if agreed {
                return Ok(started.elapsed());
            }
            if started.elapsed() > CONVERGE_WITHIN {
                bail!("the rings of {expected:?} did not converge within {CONVERGE_WITHIN:?}");
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Every node's `stats`, in node order.
    pub(crate) async fn stats(&self, indices: &[usize]) -> anyhow::Result<Vec<Fields>> {
        let mut all = Vec::new();
        for &index in indices {
            all.push(self.nodes[index].call("stats", &Fields::new()).await?);
        }
        Ok(all)
    }
}

/// A `redis-server` on a free loopback port, persistence off.
#[derive(Debug)]
pub(crate) struct RedisServer {
    pub(crate) addr: String,
    pub(crate) version: String,
    child: Child,
}

impl RedisServer {
    /// Starts one; `None` (after saying so) when `redis-server` is not installed.
    pub(crate) async fn start() -> anyhow::Result<Option<Self>> {
        let version = match Command::new("redis-server").arg("--version").output() {
            Ok(out) => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                println!(
                    "redis-server is not installed: the Redis baseline is skipped. Install it \
                     (Debian/Ubuntu: `apt-get install redis-server`) and run again."
                );
                return Ok(None);
            }
            Err(err) => return Err(err).context("running redis-server --version"),
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--protected-mode", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("starting redis-server")?;
        let server = RedisServer { addr: format!("127.0.0.1:{port}"), version, child };
        let started = Instant::now();
        while crate::load::redis_connection(&server.addr).await.is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                bail!("redis-server did not accept connections on {} within 10 s", server.addr);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Some(server))
    }

    /// CPU time the server process has used so far.
    pub(crate) fn cpu(&self) -> anyhow::Result<std::time::Duration> {
        crate::stats::process_cpu(self.child.id())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
