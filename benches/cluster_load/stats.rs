//! What a load phase measures, how it travels over the control protocol, and how it prints.

use hdrhistogram::Histogram;

use crate::control::{Fields, join_list};

/// Failed gets whose start time is kept (for W5's "after detection"); more are only counted.
pub(crate) const MAX_ERROR_TIMES: usize = 10_000;

/// Nanoseconds from 1 ns to 60 s at 3 significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// The result of one load phase on one node.
#[derive(Debug, Clone, Default)]
pub(crate) struct LoadReport {
    pub(crate) ops: u64,
    pub(crate) secs: f64,
    pub(crate) errors: u64,
    pub(crate) p50_ns: u64,
    pub(crate) p99_ns: u64,
    pub(crate) p999_ns: u64,
    pub(crate) max_ns: u64,
    /// Data-source fetches on the node during the phase.
    pub(crate) fetches: u64,
    /// Start times (Unix ms) of failed gets, at most [`MAX_ERROR_TIMES`].
    pub(crate) error_times_ms: Vec<u64>,
}

impl LoadReport {
    pub(crate) fn new(ops: u64, secs: f64, errors: u64, latency: &Histogram<u64>) -> Self {
        LoadReport {
            ops,
            secs,
            errors,
            p50_ns: latency.value_at_quantile(0.5),
            p99_ns: latency.value_at_quantile(0.99),
            p999_ns: latency.value_at_quantile(0.999),
            max_ns: latency.max(),
            ..LoadReport::default()
        }
    }

    pub(crate) fn ops_per_sec(&self) -> f64 {
        if self.secs > 0.0 { self.ops as f64 / self.secs } else { 0.0 }
    }

    pub(crate) fn to_fields(&self) -> Fields {
        Fields::new()
            .with("ops", self.ops)
            .with("secs", format!("{:.4}", self.secs))
            .with("errors", self.errors)
            .with("p50", self.p50_ns)
            .with("p99", self.p99_ns)
            .with("p999", self.p999_ns)
            .with("max", self.max_ns)
            .with("fetches", self.fetches)
            .with("error_times", join_list(self.error_times_ms.iter().copied()))
    }

    pub(crate) fn from_fields(fields: &Fields) -> anyhow::Result<Self> {
        Ok(LoadReport {
            ops: fields.get("ops")?,
            secs: fields.get("secs")?,
            errors: fields.get("errors")?,
            p50_ns: fields.get("p50")?,
            p99_ns: fields.get("p99")?,
            p999_ns: fields.get("p999")?,
            max_ns: fields.get("max")?,
            fetches: fields.get("fetches")?,
            error_times_ms: fields.list("error_times")?,
        })
    }
}

/// Microseconds with one decimal, from nanoseconds.
pub(crate) fn micros(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1000.0)
}

/// The header of a latency table; rows come from [`row`].
pub(crate) fn header(first: &str) -> String {
    format!(
        "{first:<34} {:>11} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "ops/s", "p50 µs", "p99 µs", "p999 µs", "max µs", "errors"
    )
}

pub(crate) fn row(first: &str, report: &LoadReport) -> String {
    format!(
        "{first:<34} {:>11.0} {:>9} {:>9} {:>9} {:>9} {:>7}",
        report.ops_per_sec(),
        micros(report.p50_ns),
        micros(report.p99_ns),
        micros(report.p999_ns),
        micros(report.max_ns),
        report.errors
    )
}

/// Unix time in milliseconds.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The median of `values` (the mean of the middle two for an even count); `None` if empty.
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[mid]),
        _ => Some((sorted[mid - 1] + sorted[mid]) / 2.0),
    }
}

/// CPU time (user + system) process `pid` has used, from `/proc/<pid>/stat` (10 ms ticks).
pub(crate) fn process_cpu(pid: u32) -> anyhow::Result<std::time::Duration> {
    use anyhow::Context;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading the CPU time of process {pid}"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        let field = fields.get(i).context("a short /proc stat line")?;
        field.parse::<u64>().with_context(|| format!("the /proc stat field `{field}`"))
    };
    // utime and stime, fields 14 and 15 of the line (11 and 12 counting from 0 after the
    // name), in USER_HZ = 100 ticks per second.
    Ok(std::time::Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}
