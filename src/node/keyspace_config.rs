//! `[[keyspaces]]` of the node config: each keyspace's settings and the data source (HTTP
//! origin or folder of files) its misses load from, and how they become an engine
//! [`KeySpace`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use distcache_engine::{CircuitBreaker, Eviction, KeySpace, RateLimit};
use serde::Deserialize;

use super::error::NodeError;
use super::units::{ByteSize, duration};

/// `[[keyspaces]]`: one keyspace and the data source its misses load from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct KeySpaceConfig {
    /// The keyspace's name (required, unique).
    pub name: String,
    /// Byte budget on each node: a number of bytes or a size such as `"64MiB"` (default 64 MiB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// How long values live (default: until evicted).
    #[serde(default, with = "duration::option")]
    pub default_ttl: Option<Duration>,
    /// How long "not found" is remembered (default: not at all).
    #[serde(default, with = "duration::option")]
    pub negative_ttl: Option<Duration>,
    /// Bound on a get, including the fetch (default: `node.read_timeout`).
    #[serde(default, with = "duration::option")]
    pub read_timeout: Option<Duration>,
    /// Bound on a put or delete (default: `node.write_timeout`).
    #[serde(default, with = "duration::option")]
    pub write_timeout: Option<Duration>,
    /// `tiny_lfu` (default: resists scans) or `lru`.
    #[serde(default)]
    pub eviction: EvictionConfig,
    /// Keep expired values this long and serve them when a reload fails (default: off).
    #[serde(default, with = "duration::option")]
    pub stale_for: Option<Duration>,
    /// Reload a value in the background when a get finds less than this much of its lifetime
    /// left (default: off).
    #[serde(default, with = "duration::option")]
    pub refresh_ahead: Option<Duration>,
    /// Keys to load ahead of demand when this node becomes their owner (default: none).
    #[serde(default)]
    pub warm_keys: Vec<String>,
    /// A token bucket in front of the data source (default: unlimited).
    pub rate_limit: Option<RateLimitConfig>,
    /// A circuit breaker in front of the data source (default: none).
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// Where misses are loaded from (required).
    pub source: SourceConfig,
}

/// `rate_limit = { per_second = 100, burst = 200, max_wait = "50ms" }`: data-source fetches
/// (not hits) allowed on each node.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RateLimitConfig {
    /// Fetches per second (required, above 0).
    pub per_second: u32,
    /// Largest burst (default: `per_second`).
    pub burst: Option<u32>,
    /// How long a fetch over the limit may wait for a token before failing (default: `0s`,
    /// fail at once with `rate_limited`).
    #[serde(default, with = "duration::option")]
    pub max_wait: Option<Duration>,
}

/// `circuit_breaker = { failures = 5, cooldown = "10s" }`: stop calling a failing source.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CircuitBreakerConfig {
    /// Consecutive failed fetches that open the breaker (required, above 0).
    pub failures: u32,
    /// How long it stays open before one probe fetch (required).
    #[serde(with = "duration")]
    pub cooldown: Duration,
}

fn default_max_bytes() -> ByteSize {
    ByteSize(64 << 20)
}

/// The eviction policy of a keyspace, as the config writes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EvictionConfig {
    /// TinyLFU admission with LRU eviction.
    #[default]
    TinyLfu,
    /// Plain least-recently-used.
    Lru,
}

impl From<EvictionConfig> for Eviction {
    fn from(eviction: EvictionConfig) -> Self {
        match eviction {
            EvictionConfig::TinyLfu => Eviction::TinyLfu,
            EvictionConfig::Lru => Eviction::Lru,
        }
    }
}

/// A keyspace's data source, chosen by `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SourceConfig {
    /// `kind = "http"`: GET a URL built from the key.
    Http(HttpSourceConfig),
    /// `kind = "files"`: read the file the key names under a folder.
    Files(FilesSourceConfig),
}

/// An HTTP origin: `GET url` with the key in place of `{key}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HttpSourceConfig {
    /// URL template, `http` or `https`, with `{key}` where the (percent-encoded) key goes.
    pub url: String,
    /// Bound on one request, body included (default `5s`).
    #[serde(default = "default_http_timeout", with = "duration")]
    pub timeout: Duration,
    /// Bound on connecting to the origin (default `2s`).
    #[serde(default = "default_connect_timeout", with = "duration")]
    pub connect_timeout: Duration,
    /// Headers sent with every request, e.g. `{ Authorization = "Bearer ..." }`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Extra CA certificate(s) to trust for an `https` origin (PEM), besides the system's.
    pub ca: Option<PathBuf>,
}

impl HttpSourceConfig {
    /// An origin at `url` (with `{key}`) and default timeouts, no headers.
    pub fn new(url: impl Into<String>) -> Self {
        HttpSourceConfig {
            url: url.into(),
            timeout: default_http_timeout(),
            connect_timeout: default_connect_timeout(),
            headers: BTreeMap::new(),
            ca: None,
        }
    }

    /// Sets the bound on one request.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Adds a header sent with every request.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }
}

fn default_http_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}

/// A folder of files: the key is a relative path under `dir`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct FilesSourceConfig {
    /// The folder (must exist).
    pub dir: PathBuf,
}

/// A `KeySpace::with_*` setter of a duration.
type WithDuration = fn(KeySpace, Duration) -> KeySpace;

impl KeySpaceConfig {
    /// Checks the keyspace, naming the field (`keyspaces[index].…`).
    pub(crate) fn validate(&self, index: usize) -> Result<(), NodeError> {
        let field = |name: &str| format!("keyspaces[{index}].{name}");
        if self.name.trim().is_empty() {
            return Err(NodeError::config(field("name"), "is empty: name the keyspace"));
        }
        if self.max_bytes.0 == 0 {
            return Err(NodeError::config(
                field("max_bytes"),
                "is 0: give a budget such as \"64MiB\"",
            ));
        }
        let durations = [
            ("default_ttl", self.default_ttl),
            ("negative_ttl", self.negative_ttl),
            ("read_timeout", self.read_timeout),
            ("write_timeout", self.write_timeout),
            ("stale_for", self.stale_for),
            ("refresh_ahead", self.refresh_ahead),
            ("circuit_breaker.cooldown", self.circuit_breaker.map(|b| b.cooldown)),
        ];
        for (name, value) in durations {
            if value.is_some_and(|d| d.is_zero()) {
                return Err(NodeError::config(
                    field(name),
                    "is 0: use a positive duration or leave it out",
                ));
            }
        }
        if self.rate_limit.is_some_and(|r| r.per_second == 0 || r.burst == Some(0)) {
            return Err(NodeError::config(
                field("rate_limit"),
                "per_second and burst must be above 0",
            ));
        }
        if self.circuit_breaker.is_some_and(|b| b.failures == 0) {
            return Err(NodeError::config(field("circuit_breaker.failures"), "must be above 0"));
        }
        match &self.source {
            SourceConfig::Http(http) => {
                super::sources::http::validate(http).map_err(|(name, message)| {
                    NodeError::config(field(&format!("source.{name}")), message)
                })
            }
            SourceConfig::Files(files) => {
                if files.dir.as_os_str().is_empty() {
                    return Err(NodeError::config(field("source.dir"), "is empty: name a folder"));
                }
                Ok(())
            }
        }
    }

    /// The engine's keyspace, with its data source built (`index` names it in errors).
    pub(crate) fn build(&self, index: usize) -> Result<KeySpace, NodeError> {
        let field = format!("keyspaces[{index}].source");
        let source = super::sources::build(&self.source, &field, self.max_bytes.0)?;
        let mut keyspace = KeySpace::new(self.name.clone(), self.max_bytes.0, source)
            .with_eviction(self.eviction.into())
            .with_warm_keys(self.warm_keys.iter().cloned());
        let durations: [(Option<Duration>, WithDuration); 6] = [
            (self.default_ttl, KeySpace::with_default_ttl),
            (self.negative_ttl, KeySpace::with_negative_ttl),
            (self.read_timeout, KeySpace::with_read_timeout),
            (self.write_timeout, KeySpace::with_write_timeout),
            (self.stale_for, KeySpace::with_stale_for),
            (self.refresh_ahead, KeySpace::with_refresh_ahead),
        ];
        for (value, set) in durations {
            if let Some(value) = value {
                keyspace = set(keyspace, value);
            }
        }
        if let Some(limit) = self.rate_limit {
            let mut rate = RateLimit::per_second(limit.per_second);
            if let Some(burst) = limit.burst {
                rate = rate.with_burst(burst);
            }
            if let Some(wait) = limit.max_wait {
                rate = rate.with_max_wait(wait);
            }
            keyspace = keyspace.with_rate_limit(rate);
        }
        if let Some(breaker) = self.circuit_breaker {
            keyspace = keyspace
                .with_circuit_breaker(CircuitBreaker::new(breaker.failures, breaker.cooldown));
        }
        Ok(keyspace)
    }
}
