//! How distcache nodes find each other.
//!
//! A [`Discovery`] provider only finds seed addresses (the gossip addresses of other nodes);
//! membership and failure detection are the engine's gossip layer's job. The engine asks the
//! provider again on an interval, so a provider that learns of new nodes later (or a split
//! cluster whose halves reappear) is picked up without a restart.
//!
//! Providers: [`StaticDiscovery`] (a fixed list) and [`Standalone`] (no peers).

use std::fmt::Debug;

use async_trait::async_trait;

/// Why discovery failed; the engine logs it and asks again on the next interval.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The provider is misconfigured; the message names the setting.
    #[error("invalid discovery config: {0}")]
    Config(String),
    /// The provider's backend (DNS, Kubernetes API, NATS, ...) could not be reached or answered
    /// with an error.
    #[error("discovery backend failed: {0}")]
    Backend(String),
}

/// Finds the gossip addresses of other nodes in the cluster.
#[async_trait]
pub trait Discovery: Send + Sync + Debug + 'static {
    /// The current seed addresses, as `host:port` (hostnames are resolved by the gossip layer).
    ///
    /// Returning this node's own address is allowed; the engine skips it.
    async fn discover(&self) -> Result<Vec<String>, DiscoveryError>;

    /// A signal that the peer set may have changed, for providers that learn of changes as they
    /// happen (watches, subscriptions): the engine calls [`discover`](Self::discover) at once
    /// when the value changes, instead of waiting for its re-discovery interval. The default,
    /// `None`, means the provider is only polled.
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// Releases what the provider holds (connections, watches). Called once when the engine
    /// stops; the default does nothing.
    async fn shutdown(&self) {}
}

/// A fixed list of seed addresses.
#[derive(Debug, Clone)]
pub struct StaticDiscovery {
    seeds: Vec<String>,
}

impl StaticDiscovery {
    /// Seeds from `host:port` strings; they are checked when discovery runs.
    pub fn new<S: Into<String>>(seeds: impl IntoIterator<Item = S>) -> Self {
        StaticDiscovery { seeds: seeds.into_iter().map(Into::into).collect() }
    }
}

#[async_trait]
impl Discovery for StaticDiscovery {
    async fn discover(&self) -> Result<Vec<String>, DiscoveryError> {
        for seed in &self.seeds {
            let valid = seed.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)
            });
            if !valid {
                return Err(DiscoveryError::Config(format!(
                    "static seed `{seed}` is not host:port with a non-zero port"
                )));
            }
        }
        Ok(self.seeds.clone())
    }
}

/// No peers: the node is a cluster of one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Standalone;

#[async_trait]
impl Discovery for Standalone {
    async fn discover(&self) -> Result<Vec<String>, DiscoveryError> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_returns_its_seeds_and_rejects_bad_ones() {
        let seeds = StaticDiscovery::new(["10.0.0.1:7946", "node-2.cache:7946"]);
        assert_eq!(seeds.discover().await.unwrap(), ["10.0.0.1:7946", "node-2.cache:7946"]);
        for bad in ["10.0.0.1", ":7946", "host:0", "host:port"] {
            let err = StaticDiscovery::new([bad]).discover().await.unwrap_err();
            assert!(matches!(err, DiscoveryError::Config(msg) if msg.contains(bad)));
        }
    }

    #[tokio::test]
    async fn standalone_finds_nobody() {
        assert!(Standalone.discover().await.unwrap().is_empty());
    }
}
