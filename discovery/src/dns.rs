//! [`DnsDiscovery`]: peers from DNS records of one name, re-resolved on every call.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData};

use crate::{Discovery, DiscoveryError, normalized};

/// Which records of the configured name list the peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DnsRecords {
    /// A and AAAA records: every address is a peer gossiping on `port`.
    Address {
        /// The gossip port every node listens on.
        port: u16,
    },
    /// SRV records: every target (resolved to its addresses) is a peer gossiping on the
    /// record's port.
    Srv,
}

/// What [`DnsDiscovery`] looks up, and with which resolver.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    name: String,
    records: DnsRecords,
    name_servers: Vec<SocketAddr>,
    max_staleness: Duration,
    timeout: Duration,
}

impl DnsConfig {
    /// Peers are the A/AAAA records of `name` (such as a headless Service,
    /// `cache.default.svc.cluster.local`), each gossiping on `port`.
    pub fn address(name: impl Into<String>, port: u16) -> Self {
        Self::with_records(name.into(), DnsRecords::Address { port })
    }

    /// Peers are the SRV records of `name`, such as
    /// `_gossip._udp.cache.default.svc.cluster.local`.
    pub fn srv(name: impl Into<String>) -> Self {
        Self::with_records(name.into(), DnsRecords::Srv)
    }

    fn with_records(name: String, records: DnsRecords) -> Self {
        DnsConfig {
            name,
            records,
            name_servers: Vec::new(),
            max_staleness: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
        }
    }

    /// Asks these name servers (UDP, then TCP for truncated answers) instead of the system's
    /// (`/etc/resolv.conf`, the default).
    pub fn with_name_servers(mut self, servers: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.name_servers = servers.into_iter().collect();
        self
    }

    /// How long an answer (or a "no such name") may be reused before the name is asked again,
    /// whatever TTL the records carry; 5 s by default.
    pub fn with_max_staleness(mut self, max_staleness: Duration) -> Self {
        self.max_staleness = max_staleness;
        self
    }

    /// How long one query waits for a name server's answer; 2 s by default.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Finds peers in DNS; polled: the engine asks on an interval.
///
/// Two record kinds: A/AAAA records of a name (a Kubernetes headless Service lists one address
/// per ready pod) with a configured gossip port, or SRV records (`_gossip._udp.<service>`)
/// whose targets are resolved to addresses and whose ports are used as they are. Answers are
/// cached by the resolver for at most [`DnsConfig::with_max_staleness`], so a removed node
/// disappears from discovery within that bound.
pub struct DnsDiscovery {
    config: DnsConfig,
    name: Name,
    /// `None` after shutdown, so no connection to a name server outlives it.
    resolver: Mutex<Option<TokioResolver>>,
}

impl std::fmt::Debug for DnsDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsDiscovery").field("config", &self.config).finish_non_exhaustive()
    }
}

impl DnsDiscovery {
    /// A provider for `config`.
    ///
    /// Fails with [`DiscoveryError::Config`] when the name is not a domain name, the port is 0,
    /// or (without configured name servers) the system resolver configuration cannot be read.
    pub fn new(config: DnsConfig) -> Result<Self, DiscoveryError> {
        if config.name.is_empty() {
            return Err(DiscoveryError::Config("dns name is empty".into()));
        }
        let name = Name::from_str(&config.name).map_err(|err| {
            DiscoveryError::Config(format!(
                "dns name `{}` is not a domain name: {err}",
                config.name
            ))
        })?;
        if config.records == (DnsRecords::Address { port: 0 }) {
            return Err(DiscoveryError::Config(format!("dns port for `{}` is 0", config.name)));
        }
        let resolver = resolver(&config)?;
        Ok(DnsDiscovery { config, name, resolver: Mutex::new(Some(resolver)) })
    }

    /// The addresses of `name`; no such name (or no address records) is an empty list.
    async fn addresses(
        resolver: &TokioResolver,
        name: Name,
        port: u16,
    ) -> Result<Vec<String>, DiscoveryError> {
        match resolver.lookup_ip(name.clone()).await {
            Ok(found) => Ok(found.iter().map(|ip| SocketAddr::new(ip, port).to_string()).collect()),
            Err(err) if err.is_no_records_found() => Ok(Vec::new()),
            Err(err) => Err(lookup_failed(&name, &err)),
        }
    }

    /// The peers the SRV records of the configured name list.
    async fn srv_peers(&self, resolver: &TokioResolver) -> Result<Vec<String>, DiscoveryError> {
        let lookup = match resolver.srv_lookup(self.name.clone()).await {
            Ok(lookup) => lookup,
            Err(err) if err.is_no_records_found() => return Ok(Vec::new()),
            Err(err) => return Err(lookup_failed(&self.name, &err)),
        };
        let mut peers = Vec::new();
        for record in lookup.answers() {
            // A target of "." says the service is decidedly not available there (RFC 2782).
            if let RData::SRV(srv) = &record.data
                && !srv.target.is_root()
            {
                peers.extend(Self::addresses(resolver, srv.target.clone(), srv.port).await?);
            }
        }
        Ok(peers)
    }
}

/// A resolver that asks the configured name servers (or the system's) and caches no answer
/// longer than the configured staleness.
fn resolver(config: &DnsConfig) -> Result<TokioResolver, DiscoveryError> {
    let mut builder = if config.name_servers.is_empty() {
        TokioResolver::builder_tokio().map_err(|err| {
            DiscoveryError::Config(format!("cannot read the system resolver configuration: {err}"))
        })?
    } else {
        let servers = config.name_servers.iter().map(|addr| {
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
        });
        TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(servers.collect()),
            TokioRuntimeProvider::default(),
        )
    };
    let options = builder.options_mut();
    options.timeout = config.timeout;
    options.positive_max_ttl = Some(config.max_staleness);
    options.negative_max_ttl = Some(config.max_staleness);
    builder.build().map_err(|err| DiscoveryError::Config(format!("cannot build a resolver: {err}")))
}

fn lookup_failed(name: &Name, err: &NetError) -> DiscoveryError {
    DiscoveryError::Backend(format!("DNS lookup of `{name}` failed: {err}"))
}

#[async_trait]
impl Discovery for DnsDiscovery {
    async fn discover(&self) -> Result<Vec<String>, DiscoveryError> {
        let resolver = self.resolver.lock().ok().and_then(|r| r.clone());
        let Some(resolver) = resolver else { return Err(DiscoveryError::Shutdown) };
        let peers = match self.config.records {
            DnsRecords::Address { port } => {
                Self::addresses(&resolver, self.name.clone(), port).await?
            }
            DnsRecords::Srv => self.srv_peers(&resolver).await?,
        };
        Ok(normalized(peers))
    }

    async fn shutdown(&self) {
        if let Ok(mut resolver) = self.resolver.lock() {
            resolver.take();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_config() {
        let servers = [SocketAddr::from(([127, 0, 0, 1], 53))];
        for config in [DnsConfig::address("cache.test.", 0), DnsConfig::srv("")] {
            let err = DnsDiscovery::new(config.with_name_servers(servers)).unwrap_err();
            assert!(matches!(err, DiscoveryError::Config(_)), "{err}");
        }
        let bad_name = DnsConfig::address("a..b", 7946).with_name_servers(servers);
        assert!(matches!(DnsDiscovery::new(bad_name), Err(DiscoveryError::Config(_))));
    }
}
