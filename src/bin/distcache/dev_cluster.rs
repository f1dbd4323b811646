//! `distcache dev-cluster`: a local cluster to try distcache with one command.
//!
//! Writes sample files and one config per node into a folder, starts each node as its own
//! `distcache serve` process on loopback (node i on ports `base + 10·i + 0..3`: client API,
//! admin, peer, gossip), prints how to query them, and stops them all on Ctrl-C. The nodes
//! watch their standard input, so they also stop if this process dies.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use distcache::node::shutdown_signal;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How the local cluster is laid out.
#[derive(Debug, Args)]
pub(crate) struct DevClusterArgs {
    /// How many nodes to start.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=9))]
    nodes: u16,
    /// Node i (from 0) serves the client API on base+10i, admin on base+10i+1, peers on
    /// base+10i+2 and gossips on base+10i+3.
    #[arg(long, default_value_t = 7300)]
    base_port: u16,
    /// Folder for the configs and sample data (default: a new temporary folder, removed at exit).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The nodes' log filter (their logs go to this terminal).
    #[arg(long, default_value = "warn")]
    log: String,
    /// Also stop when standard input closes (for a parent process that owns the cluster).
    #[arg(long, hide = true)]
    stop_on_stdin_close: bool,
}

const KEYSPACE: &str = "files";

pub(crate) async fn run(args: DevClusterArgs) -> anyhow::Result<ExitCode> {
    if u32::from(args.base_port) + 10 * u32::from(args.nodes) > u32::from(u16::MAX) {
        bail!("--base-port {} leaves no room for {} nodes", args.base_port, args.nodes);
    }
    let (dir, temporary) = match &args.dir {
        Some(dir) => (dir.clone(), false),
        None => (std::env::temp_dir().join(format!("distcache-dev-{}", std::process::id())), true),
    };
    write_sample_data(&dir.join("data"))?;
    let result = run_nodes(&args, &dir).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn run_nodes(args: &DevClusterArgs, dir: &Path) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("finding the distcache executable")?;
    let port = |node: u16, offset: u16| args.base_port + 10 * node + offset;
    let seeds: Vec<String> =
        (0..args.nodes).map(|i| format!("\"127.0.0.1:{}\"", port(i, 3))).collect();
    let mut children = Vec::new();
    for i in 0..args.nodes {
        let config = dir.join(format!("node-{}.toml", i + 1));
        std::fs::write(
            &config,
            node_config(
                i + 1,
                [port(i, 0), port(i, 1), port(i, 2), port(i, 3)],
                &seeds.join(", "),
                &args.log,
            ),
        )
        .with_context(|| format!("writing {}", config.display()))?;
        let child = Command::new(&exe)
            .args(["serve", "--stop-on-stdin-close", "--config"])
            .arg(&config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting node {}", i + 1))?;
        children.push(child);
    }
    for (i, child) in children.iter_mut().enumerate() {
        let ready =
            ready_line(child).await.with_context(|| format!("node {} did not start", i + 1))?;
        println!("node-{} ready: {ready}", i + 1);
    }
    print_usage(args, dir);
    let outcome = tokio::select! {
        () = shutdown_signal() => Ok(ExitCode::SUCCESS),
        () = crate::stdin_closed(args.stop_on_stdin_close) => Ok(ExitCode::SUCCESS),
        (exited, i) = first_exit(&mut children) => {
            Err(anyhow::anyhow!("node {} exited ({exited}); stopping the others", i + 1))
        }
    };
    eprintln!("stopping {} nodes...", children.len());
    for child in &mut children {
        drop(child.stdin.take());
    }
    for child in &mut children {
        if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
    }
    outcome
}

/// Reads the node's JSON "ready" line from its standard output.
async fn ready_line(child: &mut Child) -> anyhow::Result<String> {
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .context("no answer within 30s")??
        .context("it exited (see its log above)")?;
    // Keep draining its stdout so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(line)
}

/// Waits until one of the children exits; yields its status and index.
async fn first_exit(children: &mut [Child]) -> (String, usize) {
    loop {
        for (i, child) in children.iter_mut().enumerate() {
            if let Ok(Some(status)) = child.try_wait() {
                return (status.to_string(), i);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn node_config(
    node: u16,
    [client, admin, peer, gossip]: [u16; 4],
    seeds: &str,
    log: &str,
) -> String {
    format!(
        r#"# Written by `distcache dev-cluster`.
[node]
id = "node-{node}"
label = "distcache-dev"
bind = "127.0.0.1"
peer_port = {peer}
gossip_port = {gossip}
gossip_interval = "200ms"
log = "{log}"

[discovery]
kind = "static"
seeds = [{seeds}]

[admin]
bind = "127.0.0.1"
port = {admin}

[client_api]
bind = "127.0.0.1"
port = {client}

[[keyspaces]]
name = "{KEYSPACE}"
max_bytes = "32MiB"
default_ttl = "1m"
negative_ttl = "10s"
source = {{ kind = "files", dir = "data" }}
"#
    )
}

fn write_sample_data(data: &Path) -> anyhow::Result<()> {
    let files: [(&str, &str); 4] = [
        ("greeting.txt", "hello from the distcache dev cluster\n"),
        ("users/alice.json", "{\"name\": \"Alice\", \"plan\": \"pro\"}\n"),
        ("users/bob.json", "{\"name\": \"Bob\", \"plan\": \"free\"}\n"),
        ("prices/widget.csv", "sku,price\nwidget,4.20\n"),
    ];
    for (name, content) in files {
        let path = data.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn print_usage(args: &DevClusterArgs, dir: &Path) {
    let (client, admin) = (args.base_port, args.base_port + 1);
    let other = args.base_port + 10 * (args.nodes - 1);
    println!(
        r#"
{nodes} nodes are up, serving keyspace "{KEYSPACE}" from the files in {data}.
Try, from another terminal:

  distcache ctl --admin-url http://127.0.0.1:{admin} peers
  distcache ctl --client-url http://127.0.0.1:{client} get {KEYSPACE} greeting.txt
  distcache ctl --client-url http://127.0.0.1:{client} put {KEYSPACE} note "written on node 1"
  distcache ctl --client-url http://127.0.0.1:{other} get {KEYSPACE} note
  distcache ctl --admin-url http://127.0.0.1:{admin} stats

  curl http://127.0.0.1:{client}/v1/keyspaces/{KEYSPACE}/keys/users/alice.json
  curl http://127.0.0.1:{admin}/v1/peers

(`cargo run -- ctl ...` works as well as `distcache ctl ...`.)
Ctrl-C stops every node."#,
        nodes = args.nodes,
        data = dir.join("data").display(),
    );
}
