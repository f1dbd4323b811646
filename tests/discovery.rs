//! Clusters that form, shrink and heal through discovery providers: DNS records served by an
//! in-process DNS server, EndpointSlices served by a fake Kubernetes API, and announcements
//! through a real `nats-server`. Nodes get no static seeds: what they know of each other comes
//! from discovery, then gossip.
#![cfg(any(feature = "dns", feature = "kubernetes", feature = "nats"))]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{KEYSPACE, Options, TestCluster, value_of};

/// Re-discovery so rare that a cluster can only form through what providers push
/// ([`distcache::discovery::Discovery::changes`]) and what nodes learn when they start.
#[cfg(any(feature = "kubernetes", feature = "nats"))]
fn push_only() -> Options {
    Options {
        configure: |config| config.with_rediscover_interval(Duration::from_secs(600)),
        ..Options::default()
    }
}

/// Every node serves a key owned by another node, loaded once, by its owner.
async fn assert_routes_to_owners(cluster: &TestCluster) {
    let nodes = cluster.up();
    for (&asker, &owner) in nodes.iter().zip(nodes.iter().cycle().skip(1)) {
        let key = cluster.key_owned_by(owner, &format!("from-{asker}"));
        let before = cluster.fetches(owner);
        let value = cluster.engine(asker).get(KEYSPACE, &key).await.expect("a value");
        assert_eq!(value, value_of(&key));
        assert_eq!(cluster.fetches(owner), before + 1, "{key} was not loaded by its owner");
    }
}

#[cfg(feature = "dns")]
mod dns {
    use distcache::discovery::testsuite::DnsServer;
    use distcache::discovery::{DnsConfig, DnsDiscovery};

    use super::*;

    const ZONE: &str = "cache.test.";

    fn srv_name(group: &str) -> String {
        format!("_gossip._udp.{group}.{ZONE}")
    }

    /// SRV records for `group` whose targets are the gossip addresses of `nodes`.
    async fn publish(dns: &DnsServer, cluster: &TestCluster, group: &str, nodes: &[usize]) {
        let mut targets = Vec::new();
        for &i in nodes {
            let gossip = cluster.engine(i).gossip_addr().expect("a cluster node gossips");
            let target = format!("node-{i}.{ZONE}");
            dns.set_addresses(&target, &[gossip.ip()]).await;
            targets.push((target, gossip.port()));
        }
        let targets: Vec<(&str, u16)> = targets.iter().map(|(t, p)| (t.as_str(), *p)).collect();
        dns.set_srv(&srv_name(group), &targets).await;
    }

    /// Starts a node that discovers `group`, and lists it there with the nodes before it:
    /// its gossip port is only known once it runs.
    async fn add_node(
        dns: &DnsServer,
        cluster: &mut TestCluster,
        group: &str,
        listed: &mut Vec<usize>,
    ) {
        let config = DnsConfig::srv(srv_name(group))
            .with_name_servers([dns.addr()])
            .with_max_staleness(Duration::ZERO);
        let discovery = DnsDiscovery::new(config).expect("a DNS provider");
        listed.push(cluster.add_node_discovering(Arc::new(discovery)).await);
        publish(dns, cluster, group, listed).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_nodes_form_a_cluster_from_srv_records() {
        let dns = DnsServer::start(ZONE).await;
        let mut cluster = TestCluster::new(Options::default());
        let mut listed = Vec::new();
        for _ in 0..3 {
            add_node(&dns, &mut cluster, "all", &mut listed).await;
        }
        cluster.wait_converged().await;
        assert_routes_to_owners(&cluster).await;
        cluster.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_gone_from_discovery_and_gossip_leaves_the_ring() {
        let dns = DnsServer::start(ZONE).await;
        let mut cluster = TestCluster::new(Options::default());
        let mut listed = Vec::new();
        for _ in 0..3 {
            add_node(&dns, &mut cluster, "all", &mut listed).await;
        }
        cluster.wait_converged().await;

        publish(&dns, &cluster, "all", &[0, 1]).await;
        cluster.kill_node(2).await;
        cluster.wait_for_ring(&[0, 1]).await;
        assert_routes_to_owners(&cluster).await;
        cluster.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn split_groups_merge_once_discovery_lists_both() {
        let dns = DnsServer::start(ZONE).await;
        let mut cluster = TestCluster::new(Options::default());
        let (mut left, mut right) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            add_node(&dns, &mut cluster, "left", &mut left).await;
            add_node(&dns, &mut cluster, "right", &mut right).await;
        }
        // Two clusters, each whole, neither knowing the other.
        cluster.wait_for_ring(&left).await;
        cluster.wait_for_ring(&right).await;

        // The left group's records now list every node: its next re-discovery bridges the two.
        publish(&dns, &cluster, "left", &[0, 1, 2, 3]).await;
        cluster.wait_converged().await;
        assert_routes_to_owners(&cluster).await;
        cluster.stop().await;
    }
}

#[cfg(feature = "kubernetes")]
mod kubernetes {
    use std::net::SocketAddr;

    use distcache::discovery::testsuite::{FakeApiServer, endpoint_slice};
    use distcache::discovery::{KubernetesConfig, KubernetesDiscovery};

    use super::*;

    const NAMESPACE: &str = "cache-ns";
    const SERVICE: &str = "cache";

    /// Publishes node `i` as a ready (or not) endpoint: one slice per node, as Kubernetes
    /// groups endpoints by port and every test node gossips on its own port.
    fn publish(api: &FakeApiServer, gossip: SocketAddr, i: usize, ready: bool) {
        let endpoints = [(gossip.ip().to_string(), ready)];
        let name = format!("{SERVICE}-{i}");
        api.apply(endpoint_slice(NAMESPACE, &name, SERVICE, ("gossip", gossip.port()), &endpoints));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_nodes_form_a_cluster_from_a_watch_on_endpoint_slices() {
        let api = FakeApiServer::start().await;
        let mut cluster = TestCluster::new(push_only());
        for _ in 0..3 {
            let config = KubernetesConfig::new(SERVICE, "gossip").with_namespace(NAMESPACE);
            let discovery = KubernetesDiscovery::new(api.client(), config).await.expect("a watch");
            cluster.add_node_discovering(Arc::new(discovery)).await;
        }
        // Every node started seeing no endpoint; with re-discovery ten minutes away, only the
        // watch can tell them about each other.
        for i in 0..3 {
            let gossip = cluster.engine(i).gossip_addr().expect("a cluster node gossips");
            publish(&api, gossip, i, true);
        }
        cluster.wait_converged().await;
        assert_routes_to_owners(&cluster).await;
        cluster.stop().await;
    }
}

#[cfg(feature = "nats")]
mod nats {
    use std::net::SocketAddr;

    use distcache::discovery::testsuite::NatsServer;
    use distcache::discovery::{NatsConfig, NatsDiscovery};

    use super::*;
    use common::{NodeSetup, cluster_config_with};

    /// A free loopback UDP port for a node to gossip on: the node announces its gossip address
    /// on NATS before it starts, so the address is chosen up front.
    fn free_gossip_addr() -> SocketAddr {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("a UDP port");
        socket.local_addr().expect("a bound address")
    }

    async fn add_node(nats: &NatsServer, cluster: &mut TestCluster) -> usize {
        let node_id = format!("node-{}", cluster.nodes.len());
        let gossip = free_gossip_addr();
        let config = NatsConfig::new([nats.url()], "test-cluster")
            .with_heartbeat(Duration::from_millis(200))
            .with_gather_window(Duration::from_millis(200));
        let discovery = NatsDiscovery::connect(config, &node_id, gossip.to_string())
            .await
            .expect("the node joins NATS");
        let config = cluster_config_with(Arc::new(discovery), &cluster.options)
            .with_node_id(node_id)
            .with_gossip_addr(gossip);
        cluster.add_node_with(|setup| NodeSetup { cluster: config, ..setup }).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_nodes_form_a_cluster_from_announcements_and_a_leaver_says_goodbye() {
        let Some(nats) = NatsServer::start().await else { return };
        let mut cluster = TestCluster::new(push_only());
        for _ in 0..3 {
            add_node(&nats, &mut cluster).await;
        }
        cluster.wait_converged().await;
        assert_routes_to_owners(&cluster).await;

        cluster.stop_node(2).await;
        cluster.wait_for_ring(&[0, 1]).await;
        cluster.stop().await;
    }
}
