//! NATS: nodes announcing themselves through a real `nats-server`.

use std::collections::BTreeMap;
use std::time::Duration;

use distcache_discovery::testsuite::{Fixture, Hosted, NatsServer, Peer, until_discovered};
use distcache_discovery::{
    Discovery, DiscoveryError, NatsConfig, NatsDiscovery, conformance_suite,
};
use futures::FutureExt;
use futures::future::BoxFuture;

const CLUSTER: &str = "conformance";

/// Quick heartbeats, so silent peers expire within a second.
fn config(url: &str) -> NatsConfig {
    NatsConfig::new([url], CLUSTER)
        .with_heartbeat(Duration::from_millis(100))
        .with_gather_window(Duration::from_millis(200))
        .with_connect_timeout(Duration::from_secs(2))
}

/// The node under test: its own address is never among the peers it finds.
fn node(config: NatsConfig) -> BoxFuture<'static, Result<NatsDiscovery, DiscoveryError>> {
    async move { NatsDiscovery::connect(config, "node-under-test", "127.0.0.1:7999").await }.boxed()
}

async fn peer(config: NatsConfig, peer: Peer) -> NatsDiscovery {
    NatsDiscovery::connect(config, format!("peer-{}", peer.0), peer.addr())
        .await
        .expect("a peer joins")
}

/// Peers are other nodes on the same NATS; a removed one shuts down (and says goodbye).
struct Nodes {
    server: NatsServer,
    peers: BTreeMap<Peer, NatsDiscovery>,
}

impl Fixture for Nodes {
    type Provider = NatsDiscovery;

    async fn start(peers: &[Peer]) -> Option<Self> {
        let mut fixture = Nodes { server: NatsServer::start().await?, peers: BTreeMap::new() };
        for p in peers {
            fixture.add(*p).await;
        }
        Some(fixture)
    }

    fn provider(&self) -> BoxFuture<'static, Result<NatsDiscovery, DiscoveryError>> {
        node(config(self.server.url()))
    }

    async fn add(&mut self, p: Peer) {
        let joined = peer(config(self.server.url()), p).await;
        self.peers.insert(p, joined);
    }

    async fn remove(&mut self, p: Peer) {
        if let Some(left) = self.peers.remove(&p) {
            left.shutdown().await;
        }
    }

    async fn break_backend(&mut self) -> bool {
        self.server.stop().await;
        true
    }

    fn misconfigured(&self) -> Option<BoxFuture<'static, Result<NatsDiscovery, DiscoveryError>>> {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr());
        Some(node(config(&format!("nats://{}", closed.expect("a TCP port")))))
    }
}

conformance_suite!(nats_announcements, Nodes);

/// Heartbeats so rare that only a query answer or a goodbye can explain what a node knows.
fn quiet(url: &str) -> NatsConfig {
    config(url).with_heartbeat(Duration::from_secs(30))
}

#[tokio::test]
async fn a_joining_node_learns_the_cluster_from_answers_to_its_query() {
    let Some(server) = NatsServer::start().await else { return };
    let first = peer(quiet(server.url()), Peer(1)).await;
    let second = peer(quiet(server.url()), Peer(2)).await;
    // The second node joined after the first one's only heartbeat so far: it knows the first
    // from the answer to its query, and the first knows it from its announcement.
    assert_eq!(second.discover().await.unwrap(), [Peer(1).addr()]);
    let joined = tokio::time::timeout(Duration::from_secs(5), async {
        while first.discover().await.unwrap() != [Peer(2).addr()] {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(joined.is_ok(), "the first node never heard of the second");
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test]
async fn a_leaving_node_says_goodbye() {
    let Some(server) = NatsServer::start().await else { return };
    let leaving = peer(quiet(server.url()), Peer(1)).await;
    let staying = Hosted::start(node(quiet(server.url()))).await.unwrap();
    assert_eq!(staying.discover().await.unwrap(), [Peer(1).addr()]);
    leaving.shutdown().await;
    // Long before a missed heartbeat could explain it.
    tokio::time::timeout(Duration::from_secs(5), until_discovered(&staying, &[]))
        .await
        .expect("the goodbye was heard");
    staying.shutdown().await;
}

#[tokio::test]
async fn a_node_that_falls_silent_expires_after_missed_heartbeats() {
    let Some(server) = NatsServer::start().await else { return };
    let discovery = Hosted::start(node(config(server.url()))).await.unwrap();
    // A node that announces itself once and then crashes, saying nothing more.
    let ghost = async_nats::connect(server.url()).await.unwrap();
    let hello =
        r#"{"kind":"heartbeat","node_id":"ghost","generation":1,"gossip_addr":"127.0.0.1:7777"}"#;
    ghost.publish(format!("distcache.{CLUSTER}.announce"), hello.into()).await.unwrap();
    ghost.flush().await.unwrap();
    until_discovered(&discovery, &["127.0.0.1:7777".to_owned()]).await;
    let heard = tokio::time::Instant::now();
    until_discovered(&discovery, &[]).await;
    // Three missed 100 ms heartbeats, checked on the next heartbeat.
    assert!(heard.elapsed() >= Duration::from_millis(200), "expired too early");
    discovery.shutdown().await;
}

#[test]
fn bad_node_addresses_are_refused_before_connecting() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = NatsConfig::new(["nats://127.0.0.1:1"], CLUSTER);
    for addr in ["", "no-port", "host:0"] {
        let made = runtime.block_on(NatsDiscovery::connect(config.clone(), "n", addr));
        assert!(matches!(made, Err(DiscoveryError::Config(_))), "{addr}: {made:?}");
    }
}
