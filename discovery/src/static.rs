//! [`StaticDiscovery`]: a fixed list of seed addresses.

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use crate::{Discovery, DiscoveryError, is_host_port, normalized};

/// A fixed list of seed addresses, for clusters whose nodes have known names or addresses
/// (and for tests). It never changes, so it is only polled.
#[derive(Debug)]
pub struct StaticDiscovery {
    seeds: Vec<String>,
    stopped: AtomicBool,
}

impl StaticDiscovery {
    /// Seeds from `host:port` strings; they are checked when discovery runs, so a bad seed is
    /// an error from every [`discover`](Discovery::discover).
    pub fn new<S: Into<String>>(seeds: impl IntoIterator<Item = S>) -> Self {
        StaticDiscovery {
            seeds: seeds.into_iter().map(Into::into).collect(),
            stopped: AtomicBool::new(false),
        }
    }
}

#[async_trait]
impl Discovery for StaticDiscovery {
    async fn discover(&self) -> Result<Vec<String>, DiscoveryError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(DiscoveryError::Shutdown);
        }
        if let Some(seed) = self.seeds.iter().find(|seed| !is_host_port(seed)) {
            return Err(DiscoveryError::Config(format!(
                "static seed `{seed}` is not host:port with a non-zero port"
            )));
        }
        Ok(normalized(self.seeds.clone()))
    }

    async fn shutdown(&self) {
        self.stopped.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_its_seeds_and_rejects_bad_ones() {
        let seeds = StaticDiscovery::new(["node-2.cache:7946", "10.0.0.1:7946", "10.0.0.1:7946"]);
        assert_eq!(seeds.discover().await.unwrap(), ["10.0.0.1:7946", "node-2.cache:7946"]);
        for bad in ["10.0.0.1", ":7946", "host:0", "host:port"] {
            let err = StaticDiscovery::new([bad]).discover().await.unwrap_err();
            assert!(matches!(err, DiscoveryError::Config(msg) if msg.contains(bad)));
        }
    }
}
