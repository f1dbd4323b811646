//! `distcache`: run a cache node, ask one, or start a local cluster to try it.
//!
//! - `distcache serve --config node.toml`: one node (see `examples/node.toml`); flags and
//!   `DISTCACHE_*` variables override the file. Prints one JSON line with its addresses once
//!   it serves; Ctrl-C or SIGTERM stops it gracefully.
//! - `distcache ctl ...`: peers, keyspaces, stats, get, put, delete against a node.
//! - `distcache dev-cluster`: three nodes on loopback with sample data.

mod ctl;
mod dev_cluster;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use distcache::node::{Node, NodeConfig, Overrides, install_crypto_provider, shutdown_signal};

/// A clustered read-through cache: run a node, ask one, or try a local cluster.
#[derive(Debug, Parser)]
#[command(name = "distcache", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs one node from a TOML config file.
    Serve(ServeArgs),
    /// Asks a running node: peers, keyspaces, stats; gets, puts and deletes values.
    Ctl(ctl::CtlArgs),
    /// Starts a local cluster on loopback with sample data; Ctrl-C stops every node.
    DevCluster(dev_cluster::DevClusterArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// The node's config file (TOML).
    #[arg(long, short, env = "DISTCACHE_CONFIG")]
    config: PathBuf,
    /// Only check the config (files included) and exit.
    #[arg(long)]
    check: bool,
    /// Stop when standard input closes (for a parent process that owns this node).
    #[arg(long, hide = true)]
    stop_on_stdin_close: bool,
    #[command(flatten)]
    overrides: Overrides,
}

#[tokio::main]
async fn main() -> ExitCode {
    install_crypto_provider();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Ctl(args) => ctl::run(args).await,
        Command::DevCluster(args) => dev_cluster::run(args).await,
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let path = args.config.display().to_string();
    let mut config = NodeConfig::load(&args.config).with_context(|| path.clone())?;
    args.overrides.apply(&mut config);
    config.validate().with_context(|| path.clone())?;
    let logging = init_logging(&config.node.log)?;
    if args.check {
        Node::check(&config).with_context(|| path.clone())?;
        println!("{path}: config ok");
        return Ok(ExitCode::SUCCESS);
    }
    let node = Node::start(config).await.with_context(|| path.clone())?;
    let mut ready = serde_json::to_value(node.addresses())?;
    ready["event"] = "ready".into();
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{ready}")?;
    stdout.flush()?;
    drop(stdout);
    let stdin_closed = stdin_closed(args.stop_on_stdin_close);
    node.run_until(async {
        tokio::select! {
            () = shutdown_signal() => {}
            () = stdin_closed => {}
        }
    })
    .await;
    logging.flush().await;
    Ok(ExitCode::SUCCESS)
}

/// Resolves when standard input reaches its end, if asked to watch it; else never.
pub(crate) async fn stdin_closed(watch: bool) {
    if !watch {
        return std::future::pending().await;
    }
    let (closed, on_close) = tokio::sync::oneshot::channel::<()>();
    // A plain thread: a blocking read cannot be cancelled, and must not hold up the exit.
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        let _ = closed.send(());
    });
    let _ = on_close.await;
}

/// What logging holds on to: with the `otlp` feature and `OTEL_EXPORTER_OTLP_ENDPOINT` set,
/// the trace exporter, flushed at exit.
struct Logging {
    #[cfg(feature = "otlp")]
    traces: Option<distcache::admin::Traces>,
}

impl Logging {
    async fn flush(self) {
        #[cfg(feature = "otlp")]
        if let Some(traces) = self.traces {
            let _ = tokio::task::spawn_blocking(move || traces.shutdown()).await;
        }
    }
}

/// Logs to stderr through `filter`; spans also go over OTLP when configured.
fn init_logging(filter: &str) -> anyhow::Result<Logging> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr));
    #[cfg(feature = "otlp")]
    {
        let traces = distcache::admin::Traces::from_env()?;
        registry.with(traces.as_ref().map(|t| t.layer())).try_init()?;
        Ok(Logging { traces })
    }
    #[cfg(not(feature = "otlp"))]
    {
        registry.try_init()?;
        Ok(Logging {})
    }
}
