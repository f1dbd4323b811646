//! How a node joins and serves a cluster.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use distcache_discovery::Discovery;

use crate::error::{Error, Result};

/// Cluster settings of a node: where it serves, how it finds and watches its peers, and how it
/// treats them. Every setting has a default suited to production; tests shorten the timings.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub(crate) discovery: Arc<dyn Discovery>,
    pub(crate) node_id: Option<String>,
    pub(crate) label: String,
    pub(crate) grpc_bind: SocketAddr,
    pub(crate) grpc_advertise: Option<SocketAddr>,
    pub(crate) gossip_bind: SocketAddr,
    pub(crate) gossip_advertise: Option<SocketAddr>,
    pub(crate) admin_addr: Option<String>,
    pub(crate) gossip_interval: Duration,
    pub(crate) phi_threshold: f64,
    pub(crate) dead_node_grace: Duration,
    pub(crate) rediscover_interval: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) breaker_threshold: u32,
    pub(crate) breaker_cooldown: Duration,
    pub(crate) hot_cache_divisor: u64,
    pub(crate) hot_min_rate: f64,
    pub(crate) hot_max_ttl: Duration,
    pub(crate) batching: bool,
    pub(crate) max_message_bytes: usize,
}

impl ClusterConfig {
    /// Default port of the peer protocol (gRPC).
    pub const DEFAULT_GRPC_PORT: u16 = 3320;
    /// Default port of gossip (UDP).
    pub const DEFAULT_GOSSIP_PORT: u16 = 3322;

    /// Settings that find peers with `discovery`, serving on all interfaces on the default ports.
    pub fn new(discovery: Arc<dyn Discovery>) -> Self {
        ClusterConfig {
            discovery,
            node_id: None,
            label: "distcache".to_owned(),
            grpc_bind: SocketAddr::from(([0, 0, 0, 0], Self::DEFAULT_GRPC_PORT)),
            grpc_advertise: None,
            gossip_bind: SocketAddr::from(([0, 0, 0, 0], Self::DEFAULT_GOSSIP_PORT)),
            gossip_advertise: None,
            admin_addr: None,
            gossip_interval: Duration::from_millis(500),
            phi_threshold: 8.0,
            dead_node_grace: Duration::from_secs(15 * 60),
            rediscover_interval: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(1),
            breaker_threshold: 3,
            breaker_cooldown: Duration::from_secs(2),
            hot_cache_divisor: 8,
            hot_min_rate: 1.0,
            hot_max_ttl: Duration::from_secs(60),
            batching: true,
            max_message_bytes: 64 << 20,
        }
    }

    /// The node's unique id; defaults to its advertised peer address.
    pub fn with_node_id(mut self, node_id: impl Into<String>) -> Self {
        self.node_id = Some(node_id.into());
        self
    }

    /// The cluster's label: nodes only gossip with nodes of the same label.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Where to serve the peer protocol (port 0 picks a free port).
    pub fn with_grpc_addr(mut self, bind: SocketAddr) -> Self {
        self.grpc_bind = bind;
        self
    }

    /// The peer-protocol address other nodes should use, when it differs from the bound one
    /// (NAT, containers, or binding 0.0.0.0).
    pub fn with_grpc_advertise(mut self, addr: SocketAddr) -> Self {
        self.grpc_advertise = Some(addr);
        self
    }

    /// Where to gossip (UDP; port 0 picks a free port).
    pub fn with_gossip_addr(mut self, bind: SocketAddr) -> Self {
        self.gossip_bind = bind;
        self
    }

    /// The gossip address other nodes should use, when it differs from the bound one.
    pub fn with_gossip_advertise(mut self, addr: SocketAddr) -> Self {
        self.gossip_advertise = Some(addr);
        self
    }

    /// The admin address to publish in gossip, so peers and tools can find it.
    pub fn with_admin_addr(mut self, addr: impl Into<String>) -> Self {
        self.admin_addr = Some(addr.into());
        self
    }

    /// How often gossip runs; failure detection scales with it.
    pub fn with_gossip_interval(mut self, interval: Duration) -> Self {
        self.gossip_interval = interval;
        self
    }

    /// Phi-accrual threshold above which a silent node is declared dead (default 8).
    pub fn with_phi_threshold(mut self, phi: f64) -> Self {
        self.phi_threshold = phi;
        self
    }

    /// How often discovery is asked again for seeds (so split clusters find each other).
    pub fn with_rediscover_interval(mut self, interval: Duration) -> Self {
        self.rediscover_interval = interval;
        self
    }

    /// Bound on connecting to a peer.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// After this many consecutive failed calls a peer's breaker opens, for `cooldown`.
    pub fn with_peer_breaker(mut self, threshold: u32, cooldown: Duration) -> Self {
        self.breaker_threshold = threshold;
        self.breaker_cooldown = cooldown;
        self
    }

    /// Hot-cache admission: a value from a peer is kept locally when the owner reports at least
    /// `min_rate` requests per second for it, for at most `max_ttl`. The hot cache holds at most
    /// 1/8 of the keyspace budget.
    pub fn with_hot_cache(mut self, min_rate: f64, max_ttl: Duration) -> Self {
        self.hot_min_rate = min_rate;
        self.hot_max_ttl = max_ttl;
        self
    }

    /// Turns the hot cache off.
    pub fn without_hot_cache(mut self) -> Self {
        self.hot_cache_divisor = 0;
        self
    }

    /// Whether concurrent single gets to one owner share batched calls (default on).
    pub fn with_batching(mut self, batching: bool) -> Self {
        self.batching = batching;
        self
    }

    /// Largest peer message accepted or sent (default 64 MiB).
    pub fn with_max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let positive = [
            ("gossip_interval", self.gossip_interval),
            ("rediscover_interval", self.rediscover_interval),
            ("connect_timeout", self.connect_timeout),
            ("peer breaker cooldown", self.breaker_cooldown),
            ("hot cache max_ttl", self.hot_max_ttl),
        ];
        for (field, value) in positive {
            if value.is_zero() {
                return Err(Error::invalid(format!(
                    "cluster {field} is 0: use a positive duration"
                )));
            }
        }
        if self.label.is_empty() {
            return Err(Error::invalid("the cluster label is empty: name the cluster"));
        }
        if self.node_id.as_deref() == Some("") {
            return Err(Error::invalid("the node id is empty: leave it unset or name the node"));
        }
        if self.phi_threshold.is_nan() || self.phi_threshold <= 0.0 {
            return Err(Error::invalid("cluster phi_threshold must be above 0 (default 8)"));
        }
        if self.max_message_bytes < 1024 {
            return Err(Error::invalid("max_message_bytes below 1 KiB cannot carry a request"));
        }
        Ok(())
    }
}
