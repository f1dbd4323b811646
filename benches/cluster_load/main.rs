//! Cluster load generator for W2-W5 (see WORKLOADS.md): distcache nodes as separate processes
//! on loopback, driven by this program.
//!
//! Run with `cargo run --release -p cluster-load -- all` (or `w2`, `w3`, `w4`, `w5`, several
//! at once). It is a package of its own rather than a `cargo bench` target so that the node
//! processes run without the workspace's dev-dependency features (tokio's `test-util` puts a
//! mutex on every clock read). `--secs N` sets the measured windows for a smoke run: each W2 run and the W3 window
//! (defaults 3 s and 10 s) and W5's three phases (N/2 each, default 5 s); W4 has no window.
//! `--rounds N` sets how many interleaved rounds W2 runs (default 3).
//!
//! How it works:
//! - The same binary has two roles. Without `node` it is the orchestrator; it re-executes
//!   itself (`current_exe`) as `cluster_load node --index I --seed ADDR ...` once per node
//!   (`node`), each process running one engine with keyspace `bench` and a counting data
//!   source (a static 1 KiB value, optionally after a delay).
//! - Each node serves a line-based control protocol on a loopback TCP port (`control`). The
//!   orchestrator uses it to read addresses and rings, warm keys, and run load phases on the
//!   node itself (`load`): N tokio tasks calling `get` on keys drawn from a distribution,
//!   every get timed into an HDR histogram. The Redis baseline runs through the same loop.
//! - The orchestrator (`cluster`) kills every process it started when it is done, fails or
//!   panics; nodes also exit when their stdin (a pipe from the orchestrator) closes.

mod cluster;
mod control;
mod load;
mod node;
mod stats;
mod w2;
mod w3;
mod w4;
mod w5;

use anyhow::{Context, bail, ensure};

/// The keyspace every node serves.
pub(crate) const KEYSPACE: &str = "bench";
/// Size of every value.
pub(crate) const VALUE_BYTES: usize = 1024;
/// The value the data source (and the Redis fill) returns for every key.
pub(crate) static VALUE: [u8; VALUE_BYTES] = [b'v'; VALUE_BYTES];

/// The orchestrator's command line.
#[derive(Debug)]
pub(crate) struct Settings {
    workloads: Vec<String>,
    /// Overrides the measured window of every workload.
    pub(crate) secs: Option<f64>,
    /// Overrides how many rounds W2 runs.
    pub(crate) rounds: Option<usize>,
}

impl Settings {
    /// The measured window: `--secs` if given, else the workload's own default.
    pub(crate) fn secs(&self, default: f64) -> f64 {
        self.secs.unwrap_or(default)
    }

    /// How many rounds: `--rounds` if given, else the workload's own default.
    pub(crate) fn rounds(&self, default: usize) -> usize {
        self.rounds.unwrap_or(default)
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("node") {
        return node::run(node::NodeArgs::parse(&args[1..])?);
    }
    let settings = parse_settings(&args)?;
    if settings.workloads.is_empty() {
        println!(
            "cluster_load: nothing to run; name workloads: all, or w2 w3 w4 w5 [--secs N] [--rounds N]"
        );
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("cluster_load: {} on {cores} cores; workloads {:?}", today(), settings.workloads);
    for workload in &settings.workloads {
        println!();
        let run = match workload.as_str() {
            "w2" => runtime.block_on(w2::run(&settings)),
            "w3" => runtime.block_on(w3::run(&settings)),
            "w4" => runtime.block_on(w4::run(&settings)),
            "w5" => runtime.block_on(w5::run(&settings)),
            _ => unreachable!("checked when parsing"),
        };
        run.with_context(|| format!("workload {workload}"))?;
    }
    Ok(())
}

/// `[w2|w3|w4|w5|all]... [--secs N] [--rounds N]`.
fn parse_settings(args: &[String]) -> anyhow::Result<Settings> {
    let mut settings = Settings { workloads: Vec::new(), secs: None, rounds: None };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "all" => settings.workloads.extend(["w2", "w3", "w4", "w5"].map(String::from)),
            "w2" | "w3" | "w4" | "w5" => settings.workloads.push(arg.clone()),
            "--secs" => {
                let text = args.next().context("--secs needs a number of seconds")?;
                let secs: f64 = text.parse().with_context(|| format!("--secs `{text}`"))?;
                ensure!(secs > 0.0 && secs.is_finite(), "--secs must be positive");
                settings.secs = Some(secs);
            }
            "--rounds" => {
                let text = args.next().context("--rounds needs a count")?;
                let rounds: usize = text.parse().with_context(|| format!("--rounds `{text}`"))?;
                ensure!(rounds > 0, "--rounds must be at least 1");
                settings.rounds = Some(rounds);
            }
            flag if flag.starts_with("--") => bail!("unknown flag `{flag}`: --secs or --rounds"),
            other => bail!("unknown workload `{other}`: use w2, w3, w4, w5 or all"),
        }
    }
    settings.workloads.dedup();
    Ok(settings)
}

/// UTC date and time, for the record.
fn today() -> String {
    let secs = stats::unix_ms() / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rest / 3600, rest % 3600 / 60, rest % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year}-{month:02}-{day:02} {h:02}:{m:02}:{s:02} UTC")
}
