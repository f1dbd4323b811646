//! The `distcache` binary end to end: node processes started from config files, their client
//! and admin APIs, `ctl`, TLS between peers and on the APIs, bearer tokens, config errors, the
//! data sources the binary provides, and `dev-cluster`.
//!
//! Every node process is owned by a [`NodeProcess`] guard that kills it when dropped, and runs
//! with `--stop-on-stdin-close`, so a test that fails (or a test binary that dies) leaves no
//! node behind.
#![cfg(feature = "node")]

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use distcache::node::sources::HttpSource;
use distcache::node::{ClientError, ClientOptions, HttpSourceConfig, NodeClient};
use distcache::{DataSource, FetchError};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_distcache");

// ---------------------------------------------------------------------------------------------
// Harness: node processes, free ports, polling.
// ---------------------------------------------------------------------------------------------

/// A running `distcache serve`, killed when dropped.
struct NodeProcess {
    name: String,
    child: Child,
    log: PathBuf,
    ready: Value,
}

impl NodeProcess {
    fn url(&self, which: &str) -> String {
        self.ready[which]
            .as_str()
            .unwrap_or_else(|| panic!("{} has no {which}", self.name))
            .to_owned()
    }

    fn client_url(&self) -> String {
        self.url("client_api")
    }

    fn admin_url(&self) -> String {
        self.url("admin")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary, with no `DISTCACHE_*` variable of the test's environment leaking in.
fn distcache() -> Command {
    let mut command = Command::new(BIN);
    for (name, _) in std::env::vars() {
        if name.starts_with("DISTCACHE_") {
            command.env_remove(name);
        }
    }
    command
}

/// Starts a node from `config`; on failure returns its log.
fn spawn_node(dir: &Path, name: &str, config: &str) -> Result<NodeProcess, String> {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config).expect("write the config");
    let log = dir.join(format!("{name}.log"));
    let mut child = distcache()
        .args(["serve", "--stop-on-stdin-close", "--config"])
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(File::create(&log).expect("create the log"))
        .spawn()
        .expect("start distcache serve");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut node = NodeProcess { name: name.to_owned(), child, log, ready: Value::Null };
    let (line_tx, line_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = line_tx.send(line);
        }
        lines.for_each(drop);
    });
    match line_rx.recv_timeout(Duration::from_secs(60)) {
        Ok(line) => {
            node.ready =
                serde_json::from_str(&line).map_err(|e| format!("bad ready line {line:?}: {e}"))?;
            Ok(node)
        }
        Err(_) => Err(node.log()),
    }
}

/// The ports of one node, free when picked.
#[derive(Debug, Clone, Copy)]
struct Ports {
    client: u16,
    admin: u16,
    peer: u16,
    gossip: u16,
}

/// Picks free ports for `nodes` nodes: binds port 0 (holding every socket until all are picked,
/// so no two are the same), then releases them for the nodes to bind.
fn free_ports(nodes: usize) -> Vec<Ports> {
    let localhost = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let mut tcp = Vec::new();
    let mut udp = Vec::new();
    let mut take_tcp = || {
        let listener = TcpListener::bind(localhost).expect("bind a free TCP port");
        let port = listener.local_addr().expect("local addr").port();
        tcp.push(listener);
        port
    };
    let ports: Vec<(u16, u16, u16)> =
        (0..nodes).map(|_| (take_tcp(), take_tcp(), take_tcp())).collect();
    ports
        .into_iter()
        .map(|(client, admin, peer)| {
            let socket = UdpSocket::bind(localhost).expect("bind a free UDP port");
            let gossip = socket.local_addr().expect("local addr").port();
            udp.push(socket);
            Ports { client, admin, peer, gossip }
        })
        .collect()
}

/// Starts `n` nodes whose configs `config(index, ports, seeds)` writes; retries on fresh ports
/// if another process took one in between.
fn start_cluster(
    dir: &Path,
    n: usize,
    config: impl Fn(usize, Ports, &str) -> String,
) -> Vec<NodeProcess> {
    for attempt in 1..=3 {
        let ports = free_ports(n);
        let seeds: Vec<String> =
            ports.iter().map(|p| format!("\"127.0.0.1:{}\"", p.gossip)).collect();
        let mut nodes = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            match spawn_node(dir, &format!("node-{}", i + 1), &config(i, *p, &seeds.join(", "))) {
                Ok(node) => nodes.push(node),
                Err(log) if log.contains("in use") && attempt < 3 => break,
                Err(log) => panic!("node-{} did not start:\n{log}", i + 1),
            }
        }
        if nodes.len() == n {
            return nodes;
        }
    }
    unreachable!("the last attempt panics or returns")
}

/// Polls `check` until it returns `Some`, for at most `within`.
async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The peers an admin API lists (a plain array or `{"peers": [...]}`).
fn peers_of(answer: &Value) -> Vec<Value> {
    answer.as_array().or_else(|| answer["peers"].as_array()).cloned().unwrap_or_default()
}

async fn ready_peers(admin: &NodeClient) -> Option<usize> {
    let answer = admin.get_json("/v1/peers").await.ok()?;
    Some(peers_of(&answer).iter().filter(|p| p["ready"] == true).count())
}

async fn wait_for_ring(admins: &[NodeClient], size: usize) {
    for admin in admins {
        eventually("every node to see the whole ring", Duration::from_secs(30), || async {
            (ready_peers(admin).await? == size).then_some(())
        })
        .await;
    }
}

fn client(url: &str, options: ClientOptions) -> NodeClient {
    NodeClient::new(url, options).expect("a client")
}

fn code(result: Result<impl std::fmt::Debug, ClientError>) -> String {
    match result {
        Err(ClientError::Api { error, .. }) => error.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Runs `distcache ctl` with `args` (blocking a worker thread, not the runtime).
fn ctl(args: &[&str]) -> Output {
    tokio::task::block_in_place(|| {
        distcache().arg("ctl").args(args).output().expect("run distcache ctl")
    })
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "ctl failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn quoted(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

// ---------------------------------------------------------------------------------------------
// An HTTP origin for the `http` data source.
// ---------------------------------------------------------------------------------------------

/// Serves `GET /items/{key}`: `missing` → 404, `broken` → 500, `slow` → 200 after 3 s, and
/// anything else `origin:<key>` if the request carries `x-api-key: k` (else 403). Returns its
/// address and the raw paths it was asked for.
async fn start_origin() -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::http::{HeaderMap, StatusCode, Uri};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/items/{key}",
        axum::routing::get(
            move |axum::extract::Path(key): axum::extract::Path<String>,
                  uri: Uri,
                  headers: HeaderMap| {
                let log = log.clone();
                async move {
                    log.lock().expect("origin log").push(uri.path().to_owned());
                    match key.as_str() {
                        "missing" => (StatusCode::NOT_FOUND, String::new()),
                        "broken" => (StatusCode::INTERNAL_SERVER_ERROR, "boom".to_owned()),
                        "slow" => {
                            tokio::time::sleep(Duration::from_secs(3)).await;
                            (StatusCode::OK, "late".to_owned())
                        }
                        _ if headers.get("x-api-key").is_none_or(|v| v != "k") => {
                            (StatusCode::FORBIDDEN, "no key".to_owned())
                        }
                        _ => (StatusCode::OK, format!("origin:{key}")),
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the origin");
    let addr = listener.local_addr().expect("origin addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

mod config;
mod plain;
mod tls;
