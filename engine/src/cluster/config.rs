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
    pub(crate) handoff_window: Duration,
    pub(crate) warmup_concurrency: usize,
    pub(crate) max_message_bytes: usize,
    pub(crate) pipe_threads: usize,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<PeerTls>,
}

/// Mutual TLS settings of the peer protocol, as PEM.
#[cfg(feature = "tls")]
#[derive(Clone)]
pub(crate) struct PeerTls {
    pub(crate) cert_pem: Vec<u8>,
    pub(crate) key_pem: Vec<u8>,
    pub(crate) ca_pem: Vec<u8>,
    pub(crate) server_name: String,
}

#[cfg(feature = "tls")]
impl std::fmt::Debug for PeerTls {
    // The private key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTls").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

#[cfg(feature = "tls")]
impl PeerTls {
    /// The server side: this node's identity, and peers must present a certificate the CA signed.
    pub(crate) fn server(&self) -> tonic::transport::ServerTlsConfig {
        use tonic::transport::{Certificate, Identity, ServerTlsConfig};
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
    }

    /// The client side: trust only the CA, expect `server_name` in the peer's certificate and
    /// present this node's identity.
    pub(crate) fn client(&self) -> tonic::transport::ClientTlsConfig {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .domain_name(self.server_name.clone())
    }

    /// Parses the PEM now, so a bad certificate fails `Engine::start` rather than every call.
    fn validate(&self) -> Result<()> {
        let invalid = |side: &str, err: tonic::transport::Error| {
            let source =
                std::error::Error::source(&err).map(|s| format!(": {s}")).unwrap_or_default();
            Error::invalid(format!(
                "cluster TLS ({side}): {err}{source}: check the certificate, key and CA PEM"
            ))
        };
        tonic::transport::Server::builder()
            .tls_config(self.server())
            .map_err(|e| invalid("server", e))?;
        tonic::transport::Endpoint::from_static("https://peer.invalid")
            .tls_config(self.client())
            .map_err(|e| invalid("client", e))?;
        if self.server_name.is_empty() {
            return Err(Error::invalid(
                "cluster TLS server name is empty: name the peers' certificates",
            ));
        }
        Ok(())
    }
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
            handoff_window: Duration::from_secs(30),
            warmup_concurrency: 4,
            max_message_bytes: 64 << 20,
            pipe_threads: 128,
            #[cfg(feature = "tls")]
            tls: None,
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

    /// Whether concurrent gets to one owner share writes (default on): while other gets to
    /// that owner are out, a get's request waits for the connection's next write instead of
    /// making its own, as a Redis client pipelines. Off, every get writes its own request.
    pub fn with_batching(mut self, batching: bool) -> Self {
        self.batching = batching;
        self
    }

    /// For this long after the ring changes, a new owner asks the key's previous owner for its
    /// copy before loading from the data source (warm handoff; default 30 s, zero disables).
    pub fn with_handoff_window(mut self, window: Duration) -> Self {
        self.handoff_window = window;
        self
    }

    /// How many keys are warmed at once after this node becomes their owner (default 4).
    pub fn with_warmup_concurrency(mut self, concurrency: usize) -> Self {
        self.warmup_concurrency = concurrency.max(1);
        self
    }

    /// Largest peer message accepted or sent (default 64 MiB).
    pub fn with_max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// How many peers' plain pipe connections this node reads on threads of their own, woken
    /// straight by their sockets (lower latency than a runtime task; default 128, far more
    /// than a cluster has peers). Connections past it, and TLS ones, are served by the
    /// runtime; 0 serves every one there.
    pub fn with_pipe_threads(mut self, connections: usize) -> Self {
        self.pipe_threads = connections;
        self
    }

    /// Mutual TLS between peers: this node serves and calls the peer protocol over TLS with the
    /// certificate chain `cert_pem` and private key `key_pem`, and accepts only peers whose
    /// certificate `ca_pem` signed. Peers' certificates must name `server_name` (a DNS name
    /// in their subject alternative names), which this node checks when it calls them.
    ///
    /// Every node of the cluster needs TLS on: a node without it (or with a certificate from
    /// another CA) can neither call nor answer the others. The PEM is checked by
    /// [`Engine::start`](crate::Engine::start), which fails with
    /// [`Error::InvalidArgument`] if it does not parse.
    #[cfg(feature = "tls")]
    pub fn with_tls(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
        ca_pem: impl Into<Vec<u8>>,
        server_name: impl Into<String>,
    ) -> Self {
        self.tls = Some(PeerTls {
            cert_pem: cert_pem.into(),
            key_pem: key_pem.into(),
            ca_pem: ca_pem.into(),
            server_name: server_name.into(),
        });
        self
    }

    /// How pipe connections are secured: plain, or mutual TLS with this node's certificates.
    pub(crate) fn pipe_transport(&self) -> Result<crate::cluster::peer::Transport> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            let configs = crate::cluster::peer::TlsConfigs::new(tls).map_err(Error::invalid)?;
            return Ok(crate::cluster::peer::Transport::Tls(Arc::new(configs)));
        }
        Ok(crate::cluster::peer::Transport::Plain)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            tls.validate()?;
        }
        self.pipe_transport()?;
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
