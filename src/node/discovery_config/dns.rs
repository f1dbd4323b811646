//! `kind = "dns"`: peers from the DNS records of one name, such as a headless Service.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use distcache_discovery::{DnsConfig, DnsDiscovery};
use serde::Deserialize;

use super::positive;
use crate::node::config::NodeSection;
use crate::node::error::NodeError;
use crate::node::units::duration;

/// `kind = "dns"`: peers from the DNS records of one name, asked again on every
/// re-discovery (`node.rediscover_interval`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct DnsDiscoveryConfig {
    /// The name to look up (required): a headless Service such as
    /// `distcache.default.svc.cluster.local`, or with `records = "srv"` an SRV name such as
    /// `_gossip._udp.distcache.default.svc.cluster.local`.
    pub name: String,
    /// Which records list the peers (default `address`).
    pub records: DnsRecordKind,
    /// The peers' gossip port, for `address` records (default: `node.gossip_port`). SRV
    /// records carry their own ports, so it must be left out with `records = "srv"`.
    pub port: Option<u16>,
    /// Name servers to ask, as `ip` (port 53) or `ip:port` (default: the system's, from
    /// `/etc/resolv.conf`).
    pub name_servers: Vec<String>,
    /// How long an answer may be reused before the name is asked again, whatever the
    /// records' TTL (default `5s`): a removed node leaves discovery within this bound.
    #[serde(with = "duration::option")]
    pub max_staleness: Option<Duration>,
    /// How long one query waits for an answer (default `2s`).
    #[serde(with = "duration::option")]
    pub timeout: Option<Duration>,
}

/// `records` of `kind = "dns"`: which records of the name list the peers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DnsRecordKind {
    /// A and AAAA records: each address is a peer gossiping on `port`.
    #[default]
    Address,
    /// SRV records: each target is a peer gossiping on the record's port.
    Srv,
}

impl DnsDiscoveryConfig {
    pub(super) fn validate(&self, node: &NodeSection) -> Result<(), NodeError> {
        if self.name.trim().is_empty() {
            return Err(NodeError::config(
                "discovery.name",
                "is required: the DNS name to look up (such as a headless Service's)",
            ));
        }
        let port_problem = match (self.records, self.port) {
            (DnsRecordKind::Srv, Some(_)) => Some(
                "SRV records carry their own ports: leave it out, or set records = \"address\"",
            ),
            (DnsRecordKind::Address, Some(0)) => Some("is 0: give the peers' gossip port"),
            (DnsRecordKind::Address, None) if node.gossip_port == 0 => {
                Some("defaults to node.gossip_port, which is 0 (a free port): set either")
            }
            _ => None,
        };
        if let Some(problem) = port_problem {
            return Err(NodeError::config("discovery.port", problem));
        }
        if let Some(bad) = self.name_servers.iter().find(|s| name_server(s).is_none()) {
            return Err(NodeError::config(
                "discovery.name_servers",
                format!("{bad:?} is not an IP or ip:port"),
            ));
        }
        positive("discovery.max_staleness", self.max_staleness)?;
        positive("discovery.timeout", self.timeout)
    }

    /// The provider; reads the system's resolver configuration unless name servers are set.
    pub(super) fn provider(&self, node: &NodeSection) -> Result<DnsDiscovery, NodeError> {
        Ok(DnsDiscovery::new(self.to_config(node))?)
    }

    fn to_config(&self, node: &NodeSection) -> DnsConfig {
        let mut config = match self.records {
            DnsRecordKind::Address => {
                DnsConfig::address(&self.name, self.port.unwrap_or(node.gossip_port))
            }
            DnsRecordKind::Srv => DnsConfig::srv(&self.name),
        };
        if !self.name_servers.is_empty() {
            config =
                config.with_name_servers(self.name_servers.iter().filter_map(|s| name_server(s)));
        }
        if let Some(staleness) = self.max_staleness {
            config = config.with_max_staleness(staleness);
        }
        if let Some(timeout) = self.timeout {
            config = config.with_timeout(timeout);
        }
        config
    }
}

/// A name server written as `ip` (port 53) or `ip:port`.
fn name_server(text: &str) -> Option<SocketAddr> {
    let text = text.trim();
    text.parse::<SocketAddr>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
}

#[cfg(test)]
mod tests {
    use super::super::DiscoveryConfig;
    use super::super::tests::{config_with, error_of};
    use super::*;

    #[test]
    fn address_records_default_to_the_nodes_gossip_port() {
        let text = "kind = \"dns\"\nname = \"distcache.default.svc.cluster.local\"\n\
                    name_servers = [\"10.96.0.10\", \"127.0.0.1:5353\"]\nmax_staleness = \"1s\"";
        let config = config_with("gossip_port = 4000", text).unwrap();
        let DiscoveryConfig::Dns(dns) = &config.discovery else { panic!("not dns") };
        assert_eq!(dns.records, DnsRecordKind::Address);
        assert_eq!(dns.max_staleness, Some(Duration::from_secs(1)));
        let printed = format!("{:?}", dns.to_config(&config.node));
        assert!(printed.contains("Address { port: 4000 }"), "{printed}");
        assert!(printed.contains("10.96.0.10:53") && printed.contains("127.0.0.1:5353"));
    }

    #[test]
    fn srv_records_carry_their_ports() {
        let text = "kind = \"dns\"\nrecords = \"srv\"\nname = \"_gossip._udp.distcache.test\"";
        let config = config_with("", text).unwrap();
        let DiscoveryConfig::Dns(dns) = &config.discovery else { panic!("not dns") };
        assert!(format!("{:?}", dns.to_config(&config.node)).contains("Srv"));
        let err = error_of("", &format!("{text}\nport = 3322"));
        assert!(err.contains("discovery.port") && err.contains("SRV"), "{err}");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("", "kind = \"dns\"", "discovery.name"),
            ("", "kind = \"dns\"\nname = \"a.test\"\nport = 0", "discovery.port"),
            ("gossip_port = 0", "kind = \"dns\"\nname = \"a.test\"", "discovery.port"),
            ("", "kind = \"dns\"\nname = \"a.test\"\nname_servers = [\"dns\"]", "name_servers"),
            ("", "kind = \"dns\"\nname = \"a.test\"\ntimeout = \"0s\"", "discovery.timeout"),
            ("", "kind = \"dns\"\nname = \"a.test\"\nrecords = \"mx\"", "mx"),
            ("", "kind = \"dns\"\nname = \"a.test\"\nttl = \"1s\"", "unknown field `ttl`"),
        ];
        for (node, discovery, field) in cases {
            let err = error_of(node, discovery);
            assert!(err.contains(field), "{discovery:?}: {err}");
        }
    }

    #[tokio::test]
    async fn the_provider_asks_the_configured_name_server() {
        let text = "kind = \"dns\"\nname = \"distcache.test\"\nname_servers = [\"127.0.0.1:9\"]\n\
                    timeout = \"100ms\"";
        let config = config_with("", text).unwrap();
        let provider = config.discovery.provider(&config.node).await.unwrap().unwrap();
        // Nothing answers on the discard port: the lookup fails rather than finding nobody.
        assert!(provider.discover().await.is_err());
        provider.shutdown().await;
    }
}
