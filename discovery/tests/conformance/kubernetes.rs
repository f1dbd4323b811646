//! Kubernetes: EndpointSlices served by a fake API server.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use distcache_discovery::testsuite::{
    FakeApiServer, Fixture, Hosted, Peer, endpoint_slice, until_discovered,
};
use distcache_discovery::{
    DiscoveryError, KubernetesConfig, KubernetesDiscovery, conformance_suite,
};
use futures::FutureExt;
use futures::future::BoxFuture;

const NAMESPACE: &str = "cache-ns";
const SERVICE: &str = "cache";
const PORT: (&str, u16) = ("gossip", 7946);

/// A provider watching [`SERVICE`] through the API server at `url`.
fn provider(url: String) -> BoxFuture<'static, Result<KubernetesDiscovery, DiscoveryError>> {
    async move {
        let url = url.parse().expect("a URL");
        let client = kube::Client::try_from(kube::Config::new(url)).expect("a client");
        let config = KubernetesConfig::new(SERVICE, PORT.0)
            .with_namespace(NAMESPACE)
            .with_sync_timeout(Duration::from_secs(5));
        KubernetesDiscovery::new(client, config).await
    }
    .boxed()
}

fn addr(peer: Peer) -> String {
    SocketAddr::new(peer.ip(), PORT.1).to_string()
}

/// One slice of the Service; a removed peer's endpoint stays in it, not ready.
struct Slices {
    api: FakeApiServer,
    endpoints: BTreeMap<Peer, bool>,
}

impl Slices {
    fn publish(&self) {
        let endpoints: Vec<(String, bool)> =
            self.endpoints.iter().map(|(p, ready)| (p.ip().to_string(), *ready)).collect();
        self.api.apply(endpoint_slice(NAMESPACE, "cache-x7k2p", SERVICE, PORT, &endpoints));
    }
}

impl Fixture for Slices {
    type Provider = KubernetesDiscovery;

    async fn start(peers: &[Peer]) -> Option<Self> {
        let fixture = Slices {
            api: FakeApiServer::start().await,
            endpoints: peers.iter().map(|p| (*p, true)).collect(),
        };
        fixture.publish();
        Some(fixture)
    }

    fn provider(&self) -> BoxFuture<'static, Result<KubernetesDiscovery, DiscoveryError>> {
        provider(self.api.url())
    }

    async fn add(&mut self, peer: Peer) {
        self.endpoints.insert(peer, true);
        self.publish();
    }

    async fn remove(&mut self, peer: Peer) {
        self.endpoints.insert(peer, false);
        self.publish();
    }

    fn expected(&self, peers: &[Peer]) -> Vec<String> {
        let mut addrs: Vec<String> = peers.iter().map(|p| addr(*p)).collect();
        addrs.sort();
        addrs
    }

    async fn break_backend(&mut self) -> bool {
        self.api.stop().await;
        true
    }

    fn misconfigured(
        &self,
    ) -> Option<BoxFuture<'static, Result<KubernetesDiscovery, DiscoveryError>>> {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr());
        Some(provider(format!("http://{}", closed.expect("a TCP port"))))
    }
}

conformance_suite!(kubernetes_endpoint_slices, Slices);

fn slice(name: &str, service: &str, peers: &[Peer]) -> serde_json::Value {
    let endpoints: Vec<(String, bool)> = peers.iter().map(|p| (p.ip().to_string(), true)).collect();
    endpoint_slice(NAMESPACE, name, service, PORT, &endpoints)
}

#[tokio::test]
async fn a_closed_watch_is_resumed_where_it_left_off() {
    let api = FakeApiServer::start().await;
    api.apply(slice("cache-a", SERVICE, &[Peer(1)]));
    let discovery = Hosted::start(provider(api.url())).await.unwrap();
    assert_eq!(discovery.discover().await.unwrap(), [addr(Peer(1))]);
    let watches = api.watches();

    api.close_watches();
    api.apply(slice("cache-a", SERVICE, &[Peer(1), Peer(2)]));
    until_discovered(&discovery, &[addr(Peer(1)), addr(Peer(2))]).await;
    assert!(api.watches() > watches, "the watch was not resumed");
    assert_eq!(api.lists(), 1, "the watcher listed again instead of resuming");
    discovery.shutdown().await;
}

#[tokio::test]
async fn peers_come_from_every_slice_of_the_service_and_go_with_a_deleted_slice() {
    let api = FakeApiServer::start().await;
    api.apply(slice("cache-a", SERVICE, &[Peer(1)]));
    api.apply(slice("cache-b", SERVICE, &[Peer(2)]));
    api.apply(slice("other-a", "other", &[Peer(3)]));
    let discovery = Hosted::start(provider(api.url())).await.unwrap();
    assert_eq!(discovery.discover().await.unwrap(), [addr(Peer(1)), addr(Peer(2))]);

    api.apply(slice("cache-c", SERVICE, &[Peer(4)]));
    until_discovered(&discovery, &[addr(Peer(1)), addr(Peer(2)), addr(Peer(4))]).await;
    api.delete(NAMESPACE, "cache-a");
    until_discovered(&discovery, &[addr(Peer(2)), addr(Peer(4))]).await;
    discovery.shutdown().await;
}

#[tokio::test]
async fn endpoints_on_another_port_name_are_not_peers() {
    let api = FakeApiServer::start().await;
    let endpoints = [(Peer(1).ip().to_string(), true)];
    api.apply(endpoint_slice(NAMESPACE, "cache-a", SERVICE, ("grpc", 9000), &endpoints));
    api.apply(slice("cache-b", SERVICE, &[Peer(2)]));
    let discovery = Hosted::start(provider(api.url())).await.unwrap();
    assert_eq!(discovery.discover().await.unwrap(), [addr(Peer(2))]);
    discovery.shutdown().await;
}
