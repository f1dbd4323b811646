//! DNS: A/AAAA and SRV records served by an in-process authoritative server.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use distcache_discovery::testsuite::{DnsServer, Fixture, Hosted, Peer, until_discovered};
use distcache_discovery::{Discovery, DiscoveryError, DnsConfig, DnsDiscovery, conformance_suite};
use futures::FutureExt;
use futures::future::BoxFuture;

const ZONE: &str = "cache.test.";
const NAME: &str = "peers.cache.test.";
const SRV_NAME: &str = "_gossip._udp.peers.cache.test.";
const GOSSIP_PORT: u16 = 7946;

/// A DNS provider for `config`, asking `server`, that caches nothing.
fn provider(
    config: DnsConfig,
    server: SocketAddr,
) -> BoxFuture<'static, Result<DnsDiscovery, DiscoveryError>> {
    let config = config
        .with_name_servers([server])
        .with_max_staleness(Duration::ZERO)
        .with_timeout(Duration::from_millis(300));
    async move { DnsDiscovery::new(config) }.boxed()
}

/// A UDP port nothing listens on.
fn closed_port() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("a UDP port");
    socket.local_addr().expect("a bound address")
}

/// A/AAAA records of one name, every peer on the same gossip port.
struct AddressRecords {
    server: DnsServer,
    listed: BTreeSet<Peer>,
}

impl AddressRecords {
    /// Every peer's address with the one gossip port, as discovery answers them.
    fn expected_for(peers: &[Peer]) -> Vec<String> {
        let mut addrs: Vec<String> =
            peers.iter().map(|p| SocketAddr::new(p.ip(), GOSSIP_PORT).to_string()).collect();
        addrs.sort();
        addrs
    }

    async fn publish(&self) {
        let ips: Vec<_> = self.listed.iter().map(|p| p.ip()).collect();
        self.server.set_addresses(NAME, &ips).await;
    }
}

impl Fixture for AddressRecords {
    type Provider = DnsDiscovery;

    async fn start(peers: &[Peer]) -> Option<Self> {
        let fixture = AddressRecords {
            server: DnsServer::start(ZONE).await,
            listed: peers.iter().copied().collect(),
        };
        fixture.publish().await;
        Some(fixture)
    }

    fn provider(&self) -> BoxFuture<'static, Result<DnsDiscovery, DiscoveryError>> {
        provider(DnsConfig::address(NAME, GOSSIP_PORT), self.server.addr())
    }

    async fn add(&mut self, peer: Peer) {
        self.listed.insert(peer);
        self.publish().await;
    }

    async fn remove(&mut self, peer: Peer) {
        self.listed.remove(&peer);
        self.publish().await;
    }

    fn expected(&self, peers: &[Peer]) -> Vec<String> {
        Self::expected_for(peers)
    }

    async fn break_backend(&mut self) -> bool {
        self.server.stop().await;
        true
    }

    fn misconfigured(&self) -> Option<BoxFuture<'static, Result<DnsDiscovery, DiscoveryError>>> {
        Some(provider(DnsConfig::address(NAME, GOSSIP_PORT), closed_port()))
    }
}

/// SRV records whose targets have A records; each peer on its own port.
struct SrvRecords {
    server: DnsServer,
    listed: BTreeSet<Peer>,
}

fn target(peer: Peer) -> String {
    format!("peer-{}.{ZONE}", peer.0)
}

impl SrvRecords {
    async fn publish(&self) {
        for peer in &self.listed {
            self.server.set_addresses(&target(*peer), &[peer.ip()]).await;
        }
        let targets: Vec<(String, u16)> =
            self.listed.iter().map(|p| (target(*p), p.port())).collect();
        let targets: Vec<(&str, u16)> = targets.iter().map(|(t, p)| (t.as_str(), *p)).collect();
        self.server.set_srv(SRV_NAME, &targets).await;
    }
}

impl Fixture for SrvRecords {
    type Provider = DnsDiscovery;

    async fn start(peers: &[Peer]) -> Option<Self> {
        let fixture = SrvRecords {
            server: DnsServer::start(ZONE).await,
            listed: peers.iter().copied().collect(),
        };
        fixture.publish().await;
        Some(fixture)
    }

    fn provider(&self) -> BoxFuture<'static, Result<DnsDiscovery, DiscoveryError>> {
        provider(DnsConfig::srv(SRV_NAME), self.server.addr())
    }

    async fn add(&mut self, peer: Peer) {
        self.listed.insert(peer);
        self.publish().await;
    }

    async fn remove(&mut self, peer: Peer) {
        self.listed.remove(&peer);
        self.publish().await;
    }

    async fn break_backend(&mut self) -> bool {
        self.server.stop().await;
        true
    }

    fn misconfigured(&self) -> Option<BoxFuture<'static, Result<DnsDiscovery, DiscoveryError>>> {
        Some(provider(DnsConfig::srv(SRV_NAME), closed_port()))
    }
}

conformance_suite!(dns_address_records, AddressRecords);
conformance_suite!(dns_srv_records, SrvRecords);

#[tokio::test]
async fn an_srv_target_with_several_addresses_gives_a_peer_per_address() {
    let server = DnsServer::start(ZONE).await;
    let peers = [Peer(1), Peer(2)];
    server.set_addresses("pod.cache.test.", &peers.map(Peer::ip)).await;
    server.set_srv(SRV_NAME, &[("pod.cache.test.", 7101), (".", 7102)]).await;
    let dns = DnsDiscovery::new(
        DnsConfig::srv(SRV_NAME)
            .with_name_servers([server.addr()])
            .with_max_staleness(Duration::ZERO),
    )
    .unwrap();
    let expected = peers.map(|p| SocketAddr::new(p.ip(), 7101).to_string());
    assert_eq!(dns.discover().await.unwrap(), expected);
}

#[tokio::test]
async fn answers_are_reused_for_at_most_the_staleness_bound() {
    let server = DnsServer::start(ZONE).await;
    server.set_addresses(NAME, &[Peer(1).ip(), Peer(2).ip()]).await;
    let staleness = Duration::from_secs(2);
    let config = DnsConfig::address(NAME, GOSSIP_PORT)
        .with_name_servers([server.addr()])
        .with_max_staleness(staleness);
    let dns = Hosted::start(async move { DnsDiscovery::new(config) }.boxed()).await.unwrap();
    let both = AddressRecords::expected_for(&[Peer(1), Peer(2)]);
    assert_eq!(dns.discover().await.unwrap(), both);

    server.set_addresses(NAME, &[Peer(1).ip()]).await;
    let changed_at = tokio::time::Instant::now();
    // The records carry an hour-long TTL, and the cached answer is still fresh ...
    assert_eq!(dns.discover().await.unwrap(), both);
    // ... but not for longer than the bound.
    until_discovered(&dns, &AddressRecords::expected_for(&[Peer(1)])).await;
    assert!(changed_at.elapsed() < staleness + Duration::from_secs(2));
}
