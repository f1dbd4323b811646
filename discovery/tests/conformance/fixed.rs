//! Providers with a fixed peer list: static seeds and standalone.

use distcache_discovery::testsuite::{Fixture, Peer};
use distcache_discovery::{DiscoveryError, Standalone, StaticDiscovery, conformance_suite};
use futures::FutureExt;
use futures::future::BoxFuture;

/// Static seeds: the backend is the list the provider was made with.
struct StaticSeeds {
    seeds: Vec<String>,
}

impl Fixture for StaticSeeds {
    type Provider = StaticDiscovery;
    const LIVE: bool = false;

    async fn start(peers: &[Peer]) -> Option<Self> {
        Some(StaticSeeds { seeds: peers.iter().map(|p| p.addr()).collect() })
    }

    fn provider(&self) -> BoxFuture<'static, Result<StaticDiscovery, DiscoveryError>> {
        let seeds = self.seeds.clone();
        async move { Ok(StaticDiscovery::new(seeds)) }.boxed()
    }

    async fn break_backend(&mut self) -> bool {
        false
    }

    fn misconfigured(&self) -> Option<BoxFuture<'static, Result<StaticDiscovery, DiscoveryError>>> {
        Some(async { Ok(StaticDiscovery::new(["10.0.0.1:7946", "no-port"])) }.boxed())
    }
}

/// Standalone: whatever is listed, nobody is found.
struct Alone;

impl Fixture for Alone {
    type Provider = Standalone;
    const LIVE: bool = false;

    async fn start(_peers: &[Peer]) -> Option<Self> {
        Some(Alone)
    }

    fn provider(&self) -> BoxFuture<'static, Result<Standalone, DiscoveryError>> {
        async { Ok(Standalone::new()) }.boxed()
    }

    fn expected(&self, _peers: &[Peer]) -> Vec<String> {
        Vec::new()
    }

    async fn break_backend(&mut self) -> bool {
        false
    }

    fn misconfigured(&self) -> Option<BoxFuture<'static, Result<Standalone, DiscoveryError>>> {
        None
    }
}

conformance_suite!(static_seeds, StaticSeeds);
conformance_suite!(standalone, Alone);
