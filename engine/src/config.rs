//! How an engine is set up.

use std::collections::HashSet;
use std::time::Duration;

use std::sync::Arc;

use distcache_discovery::Discovery;

use crate::cluster::ClusterConfig;
use crate::error::{Error, Result};
use crate::keyspace::KeySpace;
use crate::protect::{CircuitBreaker, RateLimit};
use crate::space::Defaults;

/// Everything an [`Engine`](crate::Engine) needs to start.
///
/// Start from [`Config::standalone`] and refine with the `with_*` methods. Keyspace settings
/// that are unset fall back on the engine-wide defaults here.
#[derive(Debug, Clone)]
pub struct Config {
    keyspaces: Vec<KeySpace>,
    read_timeout: Duration,
    write_timeout: Duration,
    cluster: Option<ClusterConfig>,
    meter: Option<opentelemetry::metrics::Meter>,
    rate_limit: Option<RateLimit>,
    circuit_breaker: Option<CircuitBreaker>,
}

impl Config {
    /// Default bound on a `get`, including its data-source fetch.
    pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default bound on a `put` or `delete`.
    pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

    /// A single-process engine serving `keyspaces`, with no peers.
    pub fn standalone(keyspaces: impl IntoIterator<Item = KeySpace>) -> Self {
        Config {
            keyspaces: keyspaces.into_iter().collect(),
            read_timeout: Self::DEFAULT_READ_TIMEOUT,
            write_timeout: Self::DEFAULT_WRITE_TIMEOUT,
            cluster: None,
            meter: None,
            rate_limit: None,
            circuit_breaker: None,
        }
    }

    /// A node of a cluster whose peers `discovery` finds, serving `keyspaces`, with default
    /// cluster settings (refine them with [`with_cluster`](Self::with_cluster)).
    pub fn new(
        discovery: Arc<dyn Discovery>,
        keyspaces: impl IntoIterator<Item = KeySpace>,
    ) -> Self {
        Config { cluster: Some(ClusterConfig::new(discovery)), ..Self::standalone(keyspaces) }
    }

    /// Makes the engine a cluster node with these settings.
    pub fn with_cluster(mut self, cluster: ClusterConfig) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// Records the engine's metrics on `meter` instead of the global meter `distcache`.
    pub fn with_meter(mut self, meter: opentelemetry::metrics::Meter) -> Self {
        self.meter = Some(meter);
        self
    }

    /// The meter given with [`with_meter`](Self::with_meter), if any.
    pub fn meter(&self) -> Option<&opentelemetry::metrics::Meter> {
        self.meter.as_ref()
    }

    /// The cluster settings, `None` for a standalone engine.
    pub fn cluster(&self) -> Option<&ClusterConfig> {
        self.cluster.as_ref()
    }

    /// Sets the default read timeout of keyspaces that do not set their own.
    pub fn with_read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// Sets the default write timeout of keyspaces that do not set their own.
    pub fn with_write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Limits data-source fetches of every keyspace that sets no limit of its own.
    pub fn with_rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limit = Some(limit);
        self
    }

    /// Puts a circuit breaker in front of every keyspace that sets none of its own.
    pub fn with_circuit_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.circuit_breaker = Some(breaker);
        self
    }

    /// Adds a keyspace.
    pub fn with_keyspace(mut self, keyspace: KeySpace) -> Self {
        self.keyspaces.push(keyspace);
        self
    }

    /// The declared keyspaces.
    pub fn keyspaces(&self) -> &[KeySpace] {
        &self.keyspaces
    }

    pub(crate) fn defaults(&self) -> Defaults {
        Defaults {
            read_timeout: self.read_timeout,
            write_timeout: self.write_timeout,
            hot_divisor: self.cluster.as_ref().map_or(0, |c| c.hot_cache_divisor),
            rate_limit: self.rate_limit,
            circuit_breaker: self.circuit_breaker,
        }
    }

    /// Checks the whole configuration, naming the setting to fix.
    pub(crate) fn validate(&self) -> Result<()> {
        for (field, value) in
            [("read_timeout", self.read_timeout), ("write_timeout", self.write_timeout)]
        {
            if value.is_zero() {
                return Err(Error::invalid(format!(
                    "the engine {field} is 0: use a positive duration"
                )));
            }
        }
        if let Some(limit) = &self.rate_limit {
            limit.validate("(engine default)")?;
        }
        if let Some(breaker) = &self.circuit_breaker {
            breaker.validate("(engine default)")?;
        }
        if let Some(cluster) = &self.cluster {
            cluster.validate()?;
        }
        let mut names = HashSet::new();
        for keyspace in &self.keyspaces {
            keyspace.validate()?;
            if !names.insert(keyspace.name()) {
                return Err(Error::invalid(format!(
                    "keyspace `{}` is declared twice: keyspace names must be unique",
                    keyspace.name()
                )));
            }
        }
        Ok(())
    }
}
