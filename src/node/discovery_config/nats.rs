//! `kind = "nats"`: nodes announce their gossip addresses on NATS subjects.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use distcache_discovery::{NatsConfig, NatsDiscovery};
use serde::Deserialize;

use super::positive;
use crate::node::config::NodeSection;
use crate::node::error::NodeError;
use crate::node::units::duration;

/// `kind = "nats"`: every node announces its id and gossip address on the subjects
/// `distcache.<cluster>.*` and hears the others'; a peer that misses `missed_heartbeats`
/// heartbeats in a row, or says goodbye, is dropped.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct NatsDiscoveryConfig {
    /// The NATS servers, such as `nats://nats:4222` (required, at least one).
    pub servers: Vec<String>,
    /// The subject token that keeps clusters sharing a NATS apart: no `.`, `*`, `>` or
    /// whitespace (default: `node.label`).
    pub cluster: Option<String>,
    /// How often a node announces itself (default `1s`).
    #[serde(with = "duration::option")]
    pub heartbeat: Option<Duration>,
    /// Heartbeats a peer may miss in a row before it is dropped (default 3): a silent peer
    /// expires after `heartbeat × missed_heartbeats`.
    pub missed_heartbeats: Option<u32>,
    /// How long a joining node gathers answers to "who is there?" (default `500ms`).
    #[serde(with = "duration::option")]
    pub gather_window: Option<Duration>,
    /// How long connecting to NATS may take (default `5s`).
    #[serde(with = "duration::option")]
    pub connect_timeout: Option<Duration>,
}

impl NatsDiscoveryConfig {
    /// The subject token: `cluster`, else the node's label.
    fn cluster<'a>(&'a self, node: &'a NodeSection) -> &'a str {
        self.cluster.as_deref().unwrap_or(&node.label)
    }

    pub(super) fn validate(&self, node: &NodeSection) -> Result<(), NodeError> {
        if self.servers.is_empty() || self.servers.iter().any(|s| s.trim().is_empty()) {
            return Err(NodeError::config(
                "discovery.servers",
                "needs at least one NATS server, such as \"nats://nats:4222\"",
            ));
        }
        let cluster = self.cluster(node);
        if cluster.is_empty()
            || cluster.chars().any(|c| matches!(c, '.' | '*' | '>') || c.is_whitespace())
        {
            return Err(NodeError::config(
                "discovery.cluster",
                format!(
                    "{cluster:?} (default: node.label) is not a NATS subject token: \
                     no '.', '*', '>' or spaces"
                ),
            ));
        }
        positive("discovery.heartbeat", self.heartbeat)?;
        if self.missed_heartbeats == Some(0) {
            return Err(NodeError::config("discovery.missed_heartbeats", "is 0: use 1 or more"));
        }
        positive("discovery.gather_window", self.gather_window)?;
        positive("discovery.connect_timeout", self.connect_timeout)?;
        // The announcement goes out before the engine binds, so no port may be left to chance.
        if node.gossip_port == 0 {
            return Err(NodeError::config(
                "node.gossip_port",
                "is 0 (a free port), but NATS discovery announces it: set a fixed port",
            ));
        }
        if node.id.is_none() && node.peer_port == 0 {
            return Err(NodeError::config(
                "node.peer_port",
                "is 0 (a free port), but NATS discovery announces the node id, by default the \
                 peer address: set a fixed port or node.id",
            ));
        }
        Ok(())
    }

    /// Connects to NATS and joins: announces this node and gathers who is there.
    pub(super) async fn provider(&self, node: &NodeSection) -> Result<NatsDiscovery, NodeError> {
        let (id, gossip) = identity(node);
        Ok(NatsDiscovery::connect(self.to_config(node), id, gossip).await?)
    }

    fn to_config(&self, node: &NodeSection) -> NatsConfig {
        let mut config = NatsConfig::new(self.servers.iter().cloned(), self.cluster(node));
        if let Some(heartbeat) = self.heartbeat {
            config = config.with_heartbeat(heartbeat);
        }
        if let Some(missed) = self.missed_heartbeats {
            config = config.with_missed_heartbeats(missed);
        }
        if let Some(window) = self.gather_window {
            config = config.with_gather_window(window);
        }
        if let Some(timeout) = self.connect_timeout {
            config = config.with_connect_timeout(timeout);
        }
        config
    }
}

/// The node id and gossip address this node announces, as the engine will pick them: the id
/// is `node.id`, else the advertised peer address.
fn identity(node: &NodeSection) -> (String, String) {
    let ip = advertised_ip(node);
    let id = node.id.clone().unwrap_or_else(|| SocketAddr::new(ip, node.peer_port).to_string());
    (id, SocketAddr::new(ip, node.gossip_port).to_string())
}

/// `node.advertise`, else `node.bind`, else (bound to every interface) the IP of this host's
/// default route, as the engine advertises.
fn advertised_ip(node: &NodeSection) -> IpAddr {
    if let Some(ip) = node.advertise {
        return ip;
    }
    if !node.bind.is_unspecified() {
        return node.bind;
    }
    // Connecting a UDP socket sends nothing; it only asks the routing table for a source IP.
    std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| s.connect((Ipv4Addr::new(10, 254, 254, 254), 9)).map(|()| s))
        .and_then(|s| s.local_addr())
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::super::DiscoveryConfig;
    use super::super::tests::{config_with, error_of};
    use super::*;

    const SERVERS: &str = "kind = \"nats\"\nservers = [\"nats://127.0.0.1:4222\"]";

    #[test]
    fn the_cluster_defaults_to_the_label_and_the_id_to_the_peer_address() {
        let node = "label = \"shop\"\nadvertise = \"10.1.2.3\"";
        let config = config_with(node, &format!("{SERVERS}\nheartbeat = \"250ms\"")).unwrap();
        let DiscoveryConfig::Nats(nats) = &config.discovery else { panic!("not nats") };
        let printed = format!("{:?}", nats.to_config(&config.node));
        assert!(printed.contains("cluster: \"shop\"") && printed.contains("250ms"), "{printed}");
        let identity = identity(&config.node);
        assert_eq!(identity, ("10.1.2.3:3320".to_owned(), "10.1.2.3:3322".to_owned()));
        let config = config_with("id = \"a\"\nbind = \"10.0.0.7\"", SERVERS).unwrap();
        assert_eq!(super::identity(&config.node), ("a".to_owned(), "10.0.0.7:3322".to_owned()));
    }

    #[test]
    fn errors_name_the_field() {
        let with = |extra: &str| format!("{SERVERS}\n{extra}");
        let cases = [
            ("", "kind = \"nats\"".to_owned(), "discovery.servers"),
            ("label = \"a.b\"", with(""), "discovery.cluster"),
            ("", with("cluster = \"a b\""), "discovery.cluster"),
            ("", with("heartbeat = \"0s\""), "discovery.heartbeat"),
            ("", with("missed_heartbeats = 0"), "discovery.missed_heartbeats"),
            ("gossip_port = 0", with(""), "node.gossip_port"),
            ("peer_port = 0", with(""), "node.peer_port"),
            ("", with("prefix = \"x\""), "unknown field `prefix`"),
        ];
        for (node, discovery, field) in cases {
            let err = error_of(node, &discovery);
            assert!(err.contains(field), "{discovery:?}: {err}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_nats_fails_the_provider() {
        // Port 9 (discard) has no NATS: connecting fails within the connect timeout.
        let text =
            "kind = \"nats\"\nservers = [\"nats://127.0.0.1:9\"]\nconnect_timeout = \"500ms\"";
        let config = config_with("", text).unwrap();
        let err = config.discovery.provider(&config.node).await.unwrap_err();
        assert!(matches!(err, NodeError::Discovery(_)), "{err}");
    }
}
