//! `distcache ctl`: ask a running node. Cluster and keyspace views come from the admin API,
//! values from the client API. Tables for people, `--json` for scripts.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use clap::{Args, Subcommand};
use distcache::node::{ClientOptions, NodeClient, parse_duration};
use serde_json::{Value, json};

/// Where the node is and how to reach it.
#[derive(Debug, Args)]
pub(crate) struct CtlArgs {
    /// Base URL of the node's client API.
    #[arg(
        long,
        env = "DISTCACHE_CLIENT_URL",
        default_value = "http://127.0.0.1:3390",
        global = true
    )]
    client_url: String,
    /// Base URL of the node's admin API.
    #[arg(
        long,
        env = "DISTCACHE_ADMIN_URL",
        default_value = "http://127.0.0.1:3380",
        global = true
    )]
    admin_url: String,
    /// Bearer token of the client API.
    #[arg(long, env = "DISTCACHE_CLIENT_TOKEN", hide_env_values = true, global = true)]
    client_token: Option<String>,
    /// Bearer token of the admin API.
    #[arg(long, env = "DISTCACHE_ADMIN_TOKEN", hide_env_values = true, global = true)]
    admin_token: Option<String>,
    /// CA certificate (PEM) to trust for https URLs, besides the system's.
    #[arg(long, env = "DISTCACHE_CA", global = true)]
    ca: Option<PathBuf>,
    /// Client certificate (PEM), for APIs that require one (with --client-key).
    #[arg(long, env = "DISTCACHE_CLIENT_CERT", requires = "client_key", global = true)]
    client_cert: Option<PathBuf>,
    /// Client private key (PEM), with --client-cert.
    #[arg(long, env = "DISTCACHE_CLIENT_KEY", requires = "client_cert", global = true)]
    client_key: Option<PathBuf>,
    /// Name expected in the node's certificate, when it differs from the URL's host.
    #[arg(long, env = "DISTCACHE_SERVER_NAME", global = true)]
    server_name: Option<String>,
    /// Bound on each request.
    #[arg(long, default_value = "10s", value_parser = parse_duration, global = true)]
    timeout: Duration,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// Every node this node's gossip knows, with ownership and breaker state (admin API).
    Peers,
    /// The keyspaces with their settings and sizes (admin API).
    Keyspaces,
    /// Counters of every keyspace, or all counters of one (admin API).
    Stats {
        /// Only this keyspace.
        keyspace: Option<String>,
    },
    /// Prints a value (client API).
    Get {
        /// The keyspace.
        keyspace: String,
        /// The key.
        key: String,
    },
    /// Stores a value (client API): the argument, or standard input when it is absent or `-`.
    Put {
        /// The keyspace.
        keyspace: String,
        /// The key.
        key: String,
        /// The value.
        value: Option<String>,
        /// The value's own TTL, such as `30s`.
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
    },
    /// Removes a key (client API).
    Delete {
        /// The keyspace.
        keyspace: String,
        /// The key.
        key: String,
    },
}

pub(crate) async fn run(args: CtlArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        CtlCommand::Peers => {
            let peers = list(args.admin()?.get_json("/v1/peers").await?, "peers");
            print(&args, &peers, || peers_table(&peers))
        }
        CtlCommand::Keyspaces => {
            let keyspaces = list(args.admin()?.get_json("/v1/keyspaces").await?, "keyspaces");
            print(&args, &keyspaces, || keyspaces_table(&keyspaces))
        }
        CtlCommand::Stats { keyspace: Some(name) } => {
            let path = format!("/v1/keyspaces/{}", percent(name));
            let keyspace = args.admin()?.get_json(&path).await?;
            let stats = keyspace.get("stats").cloned().unwrap_or(keyspace);
            print(&args, &stats, || stats_table(&stats))
        }
        CtlCommand::Stats { keyspace: None } => {
            let keyspaces = list(args.admin()?.get_json("/v1/keyspaces").await?, "keyspaces");
            print(&args, &keyspaces, || all_stats_table(&keyspaces))
        }
        CtlCommand::Get { keyspace, key } => {
            let value = args.client()?.get(keyspace, key).await?;
            if args.json {
                let b64 = base64::engine::general_purpose::STANDARD.encode(&value);
                let text = std::str::from_utf8(&value).ok();
                println!(
                    "{}",
                    json!({"keyspace": keyspace, "key": key, "value": text, "value_base64": b64})
                );
            } else {
                let mut out = std::io::stdout().lock();
                out.write_all(&value)?;
                if !value.ends_with(b"\n") && std::io::IsTerminal::is_terminal(&out) {
                    writeln!(out)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        CtlCommand::Put { keyspace, key, value, ttl } => {
            let value = match value.as_deref() {
                None | Some("-") => {
                    let mut buf = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut buf)
                        .context("reading the value from stdin")?;
                    buf
                }
                Some(text) => text.as_bytes().to_vec(),
            };
            let bytes = value.len();
            args.client()?.put(keyspace, key, value, *ttl).await?;
            let done = json!({"keyspace": keyspace, "key": key, "stored_bytes": bytes});
            print(&args, &done, || format!("stored {bytes} bytes at {keyspace}/{key}"))
        }
        CtlCommand::Delete { keyspace, key } => {
            args.client()?.delete(keyspace, key).await?;
            let done = json!({"keyspace": keyspace, "key": key, "deleted": true});
            print(&args, &done, || format!("deleted {keyspace}/{key}"))
        }
    }
}

impl CtlArgs {
    fn options(&self, token: &Option<String>) -> anyhow::Result<ClientOptions> {
        let mut options = ClientOptions::default().with_timeout(self.timeout);
        if let Some(token) = token {
            options = options.with_token(token.clone());
        }
        if let Some(ca) = &self.ca {
            let pem = std::fs::read(ca).with_context(|| format!("--ca {}", ca.display()))?;
            options = options.with_ca_pem(pem);
        }
        if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
            let cert =
                std::fs::read(cert).with_context(|| format!("--client-cert {}", cert.display()))?;
            let key =
                std::fs::read(key).with_context(|| format!("--client-key {}", key.display()))?;
            options = options.with_identity_pem(cert, key);
        }
        if let Some(name) = &self.server_name {
            options = options.with_server_name(name.clone());
        }
        Ok(options)
    }

    fn admin(&self) -> anyhow::Result<NodeClient> {
        Ok(NodeClient::new(&self.admin_url, self.options(&self.admin_token)?)?)
    }

    fn client(&self) -> anyhow::Result<NodeClient> {
        Ok(NodeClient::new(&self.client_url, self.options(&self.client_token)?)?)
    }
}

fn print(args: &CtlArgs, json: &Value, table: impl FnOnce() -> String) -> anyhow::Result<ExitCode> {
    if args.json {
        println!("{}", serde_json::to_string_pretty(json)?);
    } else {
        println!("{}", table().trim_end());
    }
    Ok(ExitCode::SUCCESS)
}

/// The list in an answer that is either the list itself or an object holding it at `field`.
fn list(answer: Value, field: &str) -> Value {
    match answer {
        Value::Object(mut object) if object.get(field).is_some_and(Value::is_array) => {
            object.remove(field).unwrap_or_default()
        }
        other => other,
    }
}

fn items(list: &Value) -> &[Value] {
    list.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn peers_table(peers: &Value) -> String {
    let rows = items(peers)
        .iter()
        .map(|p| {
            let node = format!(
                "{}{}",
                text(&p["node_id"]),
                if p["is_self"] == true { " (self)" } else { "" }
            );
            vec![
                node,
                if p["ready"] == true { "ready" } else { "not ready" }.to_owned(),
                text(&p["grpc_addr"]),
                text(&p["gossip_addr"]),
                text(&p["admin_addr"]),
                p["ownership"].as_f64().map_or("-".to_owned(), |o| format!("{:.1}%", o * 100.0)),
                text(&p["breaker"]),
            ]
        })
        .collect();
    table(&["NODE", "STATE", "PEER ADDR", "GOSSIP ADDR", "ADMIN ADDR", "OWNS", "BREAKER"], rows)
}

fn keyspaces_table(keyspaces: &Value) -> String {
    let rows = items(keyspaces)
        .iter()
        .map(|k| {
            let s = &k["stats"];
            vec![
                text(&k["name"]),
                text(&s["entries"]),
                bytes(&s["bytes"]),
                bytes(&k["max_bytes"]),
                hit_rate(s),
                millis(&k["default_ttl_ms"]),
                text(&k["eviction"]),
            ]
        })
        .collect();
    table(&["KEYSPACE", "ENTRIES", "BYTES", "MAX", "HIT RATE", "TTL", "EVICTION"], rows)
}

const COUNTERS: [&str; 8] =
    ["gets", "hits", "misses", "fetches", "fetch_errors", "evictions", "puts", "deletes"];

fn all_stats_table(keyspaces: &Value) -> String {
    let rows = items(keyspaces)
        .iter()
        .map(|k| {
            let mut row = vec![text(&k["name"])];
            row.extend(COUNTERS.iter().map(|c| text(&k["stats"][*c])));
            row.push(hit_rate(&k["stats"]));
            row
        })
        .collect();
    let mut headers = vec!["KEYSPACE".to_owned()];
    headers.extend(COUNTERS.iter().map(|c| c.to_uppercase().replace('_', " ")));
    headers.push("HIT RATE".to_owned());
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    table(&headers, rows)
}

fn stats_table(stats: &Value) -> String {
    let rows = stats
        .as_object()
        .map(|o| o.iter().map(|(name, value)| vec![name.clone(), text(value)]).collect())
        .unwrap_or_default();
    table(&["COUNTER", "VALUE"], rows)
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> =
            cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        out += &line(row);
    }
    out
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn bytes(value: &Value) -> String {
    match value.as_u64() {
        Some(n) if n >= 1 << 30 => format!("{:.1}GiB", n as f64 / (1u64 << 30) as f64),
        Some(n) if n >= 1 << 20 => format!("{:.1}MiB", n as f64 / (1u64 << 20) as f64),
        Some(n) if n >= 1 << 10 => format!("{:.1}KiB", n as f64 / 1024.0),
        Some(n) => format!("{n}B"),
        None => text(value),
    }
}

fn millis(value: &Value) -> String {
    value.as_u64().map_or("-".to_owned(), |ms| {
        humantime::format_duration(Duration::from_millis(ms)).to_string()
    })
}

fn hit_rate(stats: &Value) -> String {
    match (stats["hits"].as_u64(), stats["gets"].as_u64()) {
        (Some(hits), Some(gets)) if gets > 0 => {
            format!("{:.1}%", hits as f64 * 100.0 / gets as f64)
        }
        _ => "-".to_owned(),
    }
}

fn percent(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}
