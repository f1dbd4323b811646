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

// ---------------------------------------------------------------------------------------------
// A plain cluster: client API, admin API, tokens, ctl, both data sources.
// ---------------------------------------------------------------------------------------------

fn plain_config(i: usize, p: Ports, seeds: &str, data: &Path, origin: SocketAddr) -> String {
    format!(
        r#"
[node]
id = "node-{n}"
label = "node-test"
bind = "127.0.0.1"
peer_port = {peer}
gossip_port = {gossip}
gossip_interval = "100ms"

[discovery]
kind = "static"
seeds = [{seeds}]

[admin]
port = {admin}
token = "admin-secret"

[client_api]
bind = "127.0.0.1"
port = {client}
token = "client-secret"

[[keyspaces]]
name = "files"
max_bytes = "16MiB"
default_ttl = "1m"
source = {{ kind = "files", dir = {data} }}

[[keyspaces]]
name = "origin"
max_bytes = 1048576
read_timeout = "500ms"
[keyspaces.source]
kind = "http"
url = "http://{origin}/items/{{key}}"
timeout = "5s"
headers = {{ x-api-key = "k" }}
"#,
        n = i + 1,
        peer = p.peer,
        gossip = p.gossip,
        admin = p.admin,
        client = p.client,
        data = quoted(data),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_serve_the_client_api_admin_api_and_ctl() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("users")).expect("data dir");
    std::fs::write(data.join("greeting.txt"), "hello from a file").expect("write");
    std::fs::write(data.join("users/alice.json"), "{\"name\":\"Alice\"}").expect("write");
    std::fs::write(dir.path().join("secret.txt"), "not for you").expect("write");
    let (origin, origin_paths) = start_origin().await;
    let nodes = tokio::task::block_in_place(|| {
        start_cluster(dir.path(), 3, |i, p, seeds| plain_config(i, p, seeds, &data, origin))
    });
    let with_token = |token: &str| ClientOptions::default().with_token(token);
    let admins: Vec<NodeClient> =
        nodes.iter().map(|n| client(&n.admin_url(), with_token("admin-secret"))).collect();
    let clients: Vec<NodeClient> =
        nodes.iter().map(|n| client(&n.client_url(), with_token("client-secret"))).collect();
    wait_for_ring(&admins, 3).await;

    // A put on one node is read on the others (through the key's owner).
    clients[0].put("files", "note", "written on node 1", None).await.expect("put");
    for c in &clients[1..] {
        assert_eq!(c.get("files", "note").await.expect("get"), "written on node 1");
    }
    // Misses load from the files source, keys may hold slashes.
    assert_eq!(clients[2].get("files", "greeting.txt").await.expect("file"), "hello from a file");
    assert_eq!(
        clients[1].get("files", "users/alice.json").await.expect("file"),
        "{\"name\":\"Alice\"}"
    );
    assert_eq!(code(clients[1].get("files", "missing.txt").await), "not_found");
    assert_eq!(code(clients[1].get("nope", "x").await), "keyspace_not_found");
    // The files source refuses keys that leave its folder.
    match clients[0].get("files", "../secret.txt").await {
        Err(ClientError::Api { status: 502, error }) => {
            assert_eq!(error.code, "data_source");
            assert!(error.message.contains("refused"), "{}", error.message);
        }
        other => panic!("a traversal must be refused, got {other:?}"),
    }
    // Batch get: per-key results.
    let batch = clients[2]
        .batch_get("files", &["greeting.txt", "missing.txt", "note"])
        .await
        .expect("batch");
    assert_eq!(batch[0].as_ref().expect("greeting"), "hello from a file");
    assert_eq!(batch[1].as_ref().expect_err("missing").code, "not_found");
    assert_eq!(batch[2].as_ref().expect("note"), "written on node 1");
    // Delete on another node: the next get falls through to the (empty) source.
    clients[1].delete("files", "note").await.expect("delete");
    assert_eq!(code(clients[0].get("files", "note").await), "not_found");
    // A bad TTL header is the caller's error.
    let raw = clients[0]
        .request(
            axum::http::Method::PUT,
            "/v1/keyspaces/files/keys/t",
            Some(("x-distcache-ttl", "soon".into())),
            Bytes::from("v"),
        )
        .await
        .expect("request");
    assert_eq!(raw.status, 400);
    assert!(String::from_utf8_lossy(&raw.body).contains("invalid_argument"));

    // The HTTP origin: value, not found, timeout; the key arrives percent-encoded.
    assert_eq!(clients[0].get("origin", "a b/c").await.expect("origin"), "origin:a b/c");
    assert!(origin_paths.lock().expect("paths").contains(&"/items/a%20b%2Fc".to_owned()));
    assert_eq!(code(clients[1].get("origin", "missing").await), "not_found");
    assert_eq!(code(clients[2].get("origin", "slow").await), "timeout");
    assert_eq!(code(clients[2].get("origin", "broken").await), "data_source");

    // The admin API serves the engine's metrics.
    let metrics = admins[0]
        .request(axum::http::Method::GET, "/metrics", None, Bytes::new())
        .await
        .expect("metrics");
    assert_eq!(metrics.status, 200);
    assert!(String::from_utf8_lossy(&metrics.body).contains("distcache_gets_total"));

    check_tokens(&nodes[0]).await;
    check_ctl(&nodes).await;
}

/// Wrong or missing tokens get 401 with a JSON error; health checks stay open.
async fn check_tokens(node: &NodeProcess) {
    for options in [ClientOptions::default(), ClientOptions::default().with_token("wrong")] {
        let client_api = client(&node.client_url(), options.clone());
        match client_api.get("files", "greeting.txt").await {
            Err(ClientError::Api { status: 401, error }) => assert_eq!(error.code, "unauthorized"),
            other => panic!("the client API must refuse a missing or wrong token, got {other:?}"),
        }
        let admin = client(&node.admin_url(), options);
        assert_eq!(code(admin.get_json("/v1/peers").await), "unauthorized");
        let health = admin
            .request(axum::http::Method::GET, "/healthz", None, Bytes::new())
            .await
            .expect("healthz");
        assert_eq!(health.status, 200);
        let health = client_api
            .request(axum::http::Method::GET, "/healthz", None, Bytes::new())
            .await
            .expect("healthz");
        assert_eq!(health.status, 200);
    }
}

/// `ctl` against the cluster: tables, `--json`, get/put/delete, errors.
async fn check_ctl(nodes: &[NodeProcess]) {
    let (admin, client1, client3) =
        (nodes[0].admin_url(), nodes[0].client_url(), nodes[2].client_url());
    let at_admin = ["--admin-url", admin.as_str(), "--admin-token", "admin-secret"];

    let peers = stdout(&ctl(&[&at_admin[..], &["peers", "--json"]].concat()));
    let peers: Value = serde_json::from_str(&peers).expect("peers --json is JSON");
    assert_eq!(peers_of(&peers).iter().filter(|p| p["ready"] == true).count(), 3);
    let table = stdout(&ctl(&[&at_admin[..], &["peers"]].concat()));
    for node in ["node-1", "node-2", "node-3", "NODE"] {
        assert!(table.contains(node), "peers table lacks {node}:\n{table}");
    }
    let keyspaces = stdout(&ctl(&[&at_admin[..], &["keyspaces"]].concat()));
    assert!(keyspaces.contains("files") && keyspaces.contains("origin"), "{keyspaces}");
    let stats: Value =
        serde_json::from_str(&stdout(&ctl(
            &[&at_admin[..], &["stats", "files", "--json"]].concat()
        )))
        .expect("stats --json is JSON");
    assert!(stats["gets"].as_u64().is_some(), "{stats}");

    let on = |url: &str| {
        vec![
            "--client-url".to_owned(),
            url.to_owned(),
            "--client-token".to_owned(),
            "client-secret".to_owned(),
        ]
    };
    let run = |base: Vec<String>, more: &[&str]| {
        let mut args: Vec<&str> = base.iter().map(String::as_str).collect();
        args.extend_from_slice(more);
        ctl(&args)
    };
    stdout(&run(on(&client1), &["put", "files", "from-ctl", "ctl value", "--ttl", "1m"]));
    assert_eq!(stdout(&run(on(&client3), &["get", "files", "from-ctl"])), "ctl value");
    let got: Value =
        serde_json::from_str(&stdout(&run(on(&client3), &["get", "files", "from-ctl", "--json"])))
            .expect("get --json is JSON");
    assert_eq!(got["value"], "ctl value");
    stdout(&run(on(&client3), &["delete", "files", "from-ctl"]));
    let missing = run(on(&client1), &["get", "files", "from-ctl"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not_found"));
    let refused = ctl(&["--client-url", &client1, "get", "files", "greeting.txt"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unauthorized"));
}

// ---------------------------------------------------------------------------------------------
// TLS: mutual TLS between peers, HTTPS APIs, certificates from another CA refused.
// ---------------------------------------------------------------------------------------------

/// A CA and certificates it signs, written as PEM files.
struct Pki {
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    dir: PathBuf,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("{name} CA"));
        let key = rcgen::KeyPair::generate().expect("CA key");
        let ca = rcgen::CertifiedIssuer::self_signed(params, key).expect("CA cert");
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).expect("pki dir");
        std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write CA");
        Pki { ca, dir }
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A certificate for `distcache`, `localhost` and 127.0.0.1 (server and client use);
    /// returns (cert, key) paths.
    fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
        let mut params =
            rcgen::CertificateParams::new(vec!["distcache".to_owned(), "localhost".to_owned()])
                .expect("params");
        params.subject_alt_names.push(rcgen::SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = rcgen::KeyPair::generate().expect("key");
        let issuer: &rcgen::Issuer<'_, rcgen::KeyPair> = &self.ca;
        let cert = params.signed_by(&key, issuer).expect("sign");
        let (cert_path, key_path) =
            (self.dir.join(format!("{name}.pem")), self.dir.join(format!("{name}-key.pem")));
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    }

    fn options(&self, identity: Option<&(PathBuf, PathBuf)>) -> ClientOptions {
        let mut options =
            ClientOptions::default().with_ca_pem(std::fs::read(self.ca()).expect("CA"));
        if let Some((cert, key)) = identity {
            options = options.with_identity_pem(
                std::fs::read(cert).expect("cert"),
                std::fs::read(key).expect("key"),
            );
        }
        options
    }
}

fn tls_config(i: usize, p: Ports, seeds: &str, pki: &Pki, data: &Path) -> String {
    let (cert, key) = pki.issue(&format!("node-{}", i + 1));
    format!(
        r#"
[node]
id = "{name}-{n}"
label = "tls-test"
bind = "127.0.0.1"
peer_port = {peer}
gossip_port = {gossip}
gossip_interval = "100ms"

[discovery]
kind = "static"
seeds = [{seeds}]

[tls]
cert = {cert}
key = {key}
ca = {ca}

[admin]
port = {admin}

[client_api]
bind = "127.0.0.1"
port = {client}
require_client_cert = true

[[keyspaces]]
name = "files"
source = {{ kind = "files", dir = {data} }}
"#,
        name = pki.dir.file_name().and_then(|n| n.to_str()).unwrap_or("node"),
        n = i + 1,
        peer = p.peer,
        gossip = p.gossip,
        admin = p.admin,
        client = p.client,
        cert = quoted(&cert),
        key = quoted(&key),
        ca = quoted(&pki.ca()),
        data = quoted(data),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cluster_admits_only_certificates_of_its_ca() {
    distcache::node::install_crypto_provider();
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let (good, rogue) = (Pki::new(dir.path(), "good"), Pki::new(dir.path(), "rogue"));
    let nodes = tokio::task::block_in_place(|| {
        start_cluster(dir.path(), 2, |i, p, seeds| tls_config(i, p, seeds, &good, &data))
    });
    assert!(nodes[0].admin_url().starts_with("https://"));
    let admins: Vec<NodeClient> =
        nodes.iter().map(|n| client(&n.admin_url(), good.options(None))).collect();
    wait_for_ring(&admins, 2).await;

    // Values cross between the nodes over mutual TLS.
    let app = good.issue("app");
    let clients: Vec<NodeClient> =
        nodes.iter().map(|n| client(&n.client_url(), good.options(Some(&app)))).collect();
    for i in 0..8 {
        clients[0]
            .put("files", &format!("k{i}"), format!("v{i}"), None)
            .await
            .expect("put over TLS");
    }
    for i in 0..8 {
        assert_eq!(
            clients[1].get("files", &format!("k{i}")).await.expect("get over TLS"),
            format!("v{i}")
        );
    }

    // API clients: no client certificate, one from another CA, or not trusting the node's CA.
    let intruder = rogue.issue("intruder");
    let mut refused = vec![
        client(&nodes[0].client_url(), good.options(None)),
        client(&nodes[0].client_url(), good.options(Some(&intruder))),
        client(&nodes[0].client_url(), rogue.options(Some(&app))),
    ];
    refused.push(client(
        &nodes[0].client_url().replace("https://", "http://"),
        ClientOptions::default(),
    ));
    for c in &refused {
        assert!(
            matches!(c.get("files", "k1").await, Err(ClientError::Transport(_))),
            "{c:?} must be refused"
        );
    }

    // The peer protocol refuses a caller with a certificate from another CA.
    let peer = nodes[0].ready["peer"].as_str().expect("peer addr").to_owned();
    assert!(
        peer_get(&peer, &good, &app, "k1").await.is_ok(),
        "a caller with the right certificate is served"
    );
    assert!(
        peer_get(&peer, &good, &intruder, "k1").await.is_err(),
        "a caller from another CA must be refused"
    );

    // A node with another CA's certificate seeded with the cluster never joins its ring, and
    // reads only what its own source has.
    let gossip = nodes[0].ready["gossip"].as_str().expect("gossip addr").to_owned();
    let rogue_node = tokio::task::block_in_place(|| {
        let p = free_ports(1)[0];
        spawn_node(dir.path(), "rogue", &tls_config(0, p, &format!("\"{gossip}\""), &rogue, &data))
            .unwrap_or_else(|log| panic!("the rogue node did not start:\n{log}"))
    });
    let rogue_admin = client(&rogue_node.admin_url(), rogue.options(None));
    let rogue_client = client(&rogue_node.client_url(), rogue.options(Some(&intruder)));
    eventually("the rogue node to be ready", Duration::from_secs(20), || async {
        (ready_peers(&rogue_admin).await? == 1).then_some(())
    })
    .await;
    let watch_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watch_until {
        for admin in &admins {
            assert_eq!(
                ready_peers(admin).await,
                Some(2),
                "the rogue node must stay out of the ring"
            );
        }
        assert_eq!(ready_peers(&rogue_admin).await, Some(1), "the rogue node must see nobody");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(code(rogue_client.get("files", "k1").await), "not_found");
}

/// One get over the peer protocol, with `identity`, trusting `ca`'s CA.
async fn peer_get(
    peer: &str,
    ca: &Pki,
    identity: &(PathBuf, PathBuf),
    key: &str,
) -> Result<(), String> {
    use distcache_proto::v1 as pb;
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let read = |path: &Path| std::fs::read(path).expect("read PEM");
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&ca.ca())))
        .identity(Identity::from_pem(read(&identity.0), read(&identity.1)))
        .domain_name("distcache");
    let endpoint = Endpoint::from_shared(format!("https://{peer}"))
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .timeout(Duration::from_secs(5));
    let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
    let request = pb::GetRequest {
        keys: vec![pb::KeyRef { keyspace: "files".to_owned(), key: key.to_owned() }],
        forwarded: true,
    };
    pb::peer_client::PeerClient::new(channel).get(request).await.map_err(|e| e.to_string())?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Config errors, the HTTP source in process, dev-cluster.
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_configs_fail_at_startup_naming_the_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = quoted(dir.path());
    let keyspace =
        format!("[[keyspaces]]\nname = \"files\"\nsource = {{ kind = \"files\", dir = {data} }}\n");
    let ports = "[admin]\nport = 0\n[client_api]\nport = 0\n";
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "size",
            format!(
                "{ports}[[keyspaces]]\nname = \"a\"\nmax_bytes = \"64 parsecs\"\nsource = {{ kind = \"files\", dir = {data} }}\n"
            ),
            vec!["keyspaces[0].max_bytes", "parsecs"],
        ),
        (
            "duration",
            format!(
                "{ports}[[keyspaces]]\nname = \"a\"\ndefault_ttl = \"soon\"\nsource = {{ kind = \"files\", dir = {data} }}\n"
            ),
            vec!["keyspaces[0].default_ttl", "soon"],
        ),
        (
            "unknown field",
            format!("[node]\nprot = 1\n{ports}{keyspace}"),
            vec!["node", "unknown field `prot`"],
        ),
        (
            "port type",
            format!("[node]\npeer_port = \"abc\"\n{ports}{keyspace}"),
            vec!["node.peer_port"],
        ),
        (
            "no seeds",
            format!("[discovery]\nkind = \"static\"\nseeds = []\n{ports}{keyspace}"),
            vec!["discovery.seeds"],
        ),
        (
            "bad discovery",
            format!("[discovery]\nkind = \"carrier-pigeon\"\n{ports}{keyspace}"),
            vec!["discovery", "carrier-pigeon"],
        ),
        (
            "url",
            format!(
                "{ports}[[keyspaces]]\nname = \"a\"\nsource = {{ kind = \"http\", url = \"http://origin/items\" }}\n"
            ),
            vec!["keyspaces[0].source.url", "{key}"],
        ),
        ("duplicate", format!("{ports}{keyspace}{keyspace}"), vec!["keyspaces[1].name", "twice"]),
        (
            "eviction",
            format!(
                "{ports}[[keyspaces]]\nname = \"a\"\neviction = \"fifo\"\nsource = {{ kind = \"files\", dir = {data} }}\n"
            ),
            vec!["keyspaces[0].eviction", "fifo"],
        ),
        (
            "missing dir",
            format!(
                "{ports}[[keyspaces]]\nname = \"a\"\nsource = {{ kind = \"files\", dir = \"/no/such/dir\" }}\n"
            ),
            vec!["keyspaces[0].source.dir", "/no/such/dir"],
        ),
        (
            "cert",
            format!("[tls]\ncert = \"/no/cert.pem\"\nkey = \"/no/key.pem\"\n{ports}{keyspace}"),
            vec!["tls.cert", "/no/cert.pem"],
        ),
        (
            "ports",
            format!("[admin]\nport = 4000\n[client_api]\nport = 4000\n{keyspace}"),
            vec!["client_api.port", "admin.port"],
        ),
        ("no keyspaces", ports.to_owned(), vec!["keyspaces", "at least one"]),
        (
            "zero",
            format!("[node]\ngossip_interval = \"0s\"\n{ports}{keyspace}"),
            vec!["node.gossip_interval"],
        ),
    ];
    for (name, config, needles) in cases {
        let path = dir.path().join(format!("{}.toml", name.replace(' ', "-")));
        std::fs::write(&path, &config).expect("write config");
        let mut child = distcache()
            .args(["serve", "--config"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start distcache");
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().expect("poll").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("case {name}: the node started with a bad config:\n{config}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output().expect("output");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "case {name} must fail");
        for needle in needles {
            assert!(stderr.contains(needle), "case {name}: {needle:?} not in:\n{stderr}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_source_maps_origin_answers() {
    let (origin, seen) = start_origin().await;
    let url = format!("http://{origin}/items/{{key}}");
    let config = HttpSourceConfig::new(&url)
        .with_timeout(Duration::from_millis(300))
        .with_header("x-api-key", "k");
    let source = HttpSource::new(&config, 1 << 20).expect("source");

    assert_eq!(source.fetch("a b/c").await.expect("value"), "origin:a b/c");
    assert!(seen.lock().expect("paths").contains(&"/items/a%20b%2Fc".to_owned()));
    assert!(matches!(source.fetch("missing").await, Err(FetchError::NotFound)));
    let failed = |result: Result<Bytes, FetchError>| match result {
        Err(FetchError::Failed(err)) => err.to_string(),
        other => panic!("expected a failed fetch, got {other:?}"),
    };
    assert!(failed(source.fetch("broken").await).contains("500"));
    let started = Instant::now();
    assert!(failed(source.fetch("slow").await).contains("no answer within"));
    assert!(started.elapsed() < Duration::from_secs(2), "the timeout must cut the slow request");
    let without_key = HttpSource::new(&HttpSourceConfig::new(&url), 1 << 20).expect("source");
    assert!(failed(without_key.fetch("x").await).contains("403"));
    let tiny = HttpSource::new(&config, 4).expect("source");
    assert!(failed(tiny.fetch("larger-than-four-bytes").await).contains("larger than"));
    match HttpSource::new(&HttpSourceConfig::new("http://origin/no-key"), 1) {
        Err(err) => assert!(err.to_string().contains("`url`"), "{err}"),
        Ok(_) => panic!("a URL without {{key}} must be refused"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_cluster_starts_three_nodes_and_stops_them() {
    for attempt in 1..=3 {
        // Ten consecutive ports per node below the ephemeral range; if one is taken,
        // dev-cluster exits and the next attempt moves on.
        let base = 20_000 + (std::process::id() % 1100) as u16 * 10 + attempt * 37;
        let dir = tempfile::tempdir().expect("temp dir");
        let child = distcache()
            .args([
                "dev-cluster",
                "--stop-on-stdin-close",
                "--base-port",
                &base.to_string(),
                "--dir",
            ])
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dev-cluster");
        let mut cluster = KillOnDrop(child);
        let stdout = cluster.0.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut ready = 0;
        let started = tokio::task::block_in_place(|| {
            loop {
                match rx.recv_timeout(Duration::from_secs(60)) {
                    Ok(line) if line.contains("ready:") => ready += 1,
                    Ok(line) if line.contains("Ctrl-C stops every node") => break true,
                    Ok(_) => {}
                    Err(_) => break false,
                }
            }
        });
        if !started {
            continue; // a port was taken: try another base (the guard kills this one)
        }
        assert_eq!(ready, 3);
        let node3 = client(&format!("http://127.0.0.1:{}", base + 20), ClientOptions::default());
        let admin = client(&format!("http://127.0.0.1:{}", base + 1), ClientOptions::default());
        wait_for_ring(std::slice::from_ref(&admin), 3).await;
        assert_eq!(
            node3.get("files", "greeting.txt").await.expect("sample data"),
            "hello from the distcache dev cluster\n"
        );
        // Its owner going away (as on Ctrl-C): every node stops, then dev-cluster exits.
        drop(cluster.0.stdin.take());
        let status = tokio::task::block_in_place(|| cluster.0.wait()).expect("wait");
        assert!(status.success(), "dev-cluster exit: {status}");
        assert!(node3.get("files", "greeting.txt").await.is_err(), "the nodes must be gone");
        return;
    }
    panic!("dev-cluster did not start in three attempts");
}

/// Kills the process when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
