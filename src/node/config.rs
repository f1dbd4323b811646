//! The node's TOML config: what `distcache serve --config node.toml` reads.
//!
//! Every section and field has a default where a sane one exists (see `examples/node.toml`
//! for the annotated whole). [`NodeConfig::load`] parses a file and resolves relative paths
//! against the file's folder; [`Overrides`](super::Overrides) (flags and `DISTCACHE_*` variables) then replace
//! single fields; [`NodeConfig::validate`] checks the result and names the field to fix.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::discovery_config::DiscoveryConfig;
use super::error::NodeError;
use super::keyspace_config::{KeySpaceConfig, SourceConfig};
use super::units::{ByteSize, duration};

/// The whole node config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct NodeConfig {
    /// Identity, addresses and timings of the node (`[node]`).
    pub node: NodeSection,
    /// How the node finds its peers (`[discovery]`); standalone when absent.
    pub discovery: DiscoveryConfig,
    /// Certificates for mutual TLS between peers and TLS on the APIs (`[tls]`).
    pub tls: Option<TlsConfig>,
    /// The admin API (`[admin]`).
    pub admin: AdminConfig,
    /// The client API applications call (`[client_api]`).
    pub client_api: ClientApiConfig,
    /// The keyspaces the node serves (`[[keyspaces]]`), each backed by a data source.
    pub keyspaces: Vec<KeySpaceConfig>,
}

/// `[node]`: who the node is, where it serves the peer protocol and gossips, and its timings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct NodeSection {
    /// Unique id in the cluster; defaults to the advertised peer address.
    pub id: Option<String>,
    /// Cluster label: nodes gossip only with nodes of the same label.
    pub label: String,
    /// The IP the peer protocol and gossip bind (default `0.0.0.0`).
    pub bind: IpAddr,
    /// The IP other nodes should use to reach this one, when it differs from `bind` (NAT,
    /// containers); default: `bind`, or this host's outward IP when `bind` is `0.0.0.0`.
    pub advertise: Option<IpAddr>,
    /// Peer protocol (gRPC over TCP) port (default 3320; 0 picks a free port).
    pub peer_port: u16,
    /// Gossip (UDP) port (default 3322; 0 picks a free port).
    pub gossip_port: u16,
    /// How often gossip runs (default `500ms`); failure detection scales with it.
    #[serde(with = "duration")]
    pub gossip_interval: Duration,
    /// How often discovery is asked again for seeds (default `10s`).
    #[serde(with = "duration")]
    pub rediscover_interval: Duration,
    /// Default bound on a get, for keyspaces that set none (default `5s`).
    #[serde(with = "duration")]
    pub read_timeout: Duration,
    /// Default bound on a put or delete, for keyspaces that set none (default `5s`).
    #[serde(with = "duration")]
    pub write_timeout: Duration,
    /// Whether values owned by peers may be kept in a local hot cache (default `true`).
    pub hot_cache: bool,
    /// Log filter, as `RUST_LOG` writes it (default `info`).
    pub log: String,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            id: None,
            label: "distcache".to_owned(),
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            advertise: None,
            peer_port: 3320,
            gossip_port: 3322,
            gossip_interval: Duration::from_millis(500),
            rediscover_interval: Duration::from_secs(10),
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            hot_cache: true,
            log: "info".to_owned(),
        }
    }
}

/// `[tls]`: PEM files of this node. With it, peers talk mutual TLS and the admin and client
/// APIs serve HTTPS (each API can opt out with `tls = false`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsConfig {
    /// This node's certificate chain (PEM).
    pub cert: PathBuf,
    /// This node's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA certificate(s) peers' certificates must chain to (PEM); required for the peer
    /// protocol and for `require_client_cert`.
    pub ca: Option<PathBuf>,
    /// The DNS name peers' certificates carry and that nodes check when calling each other
    /// (default `distcache`).
    #[serde(default = "default_server_name")]
    pub server_name: String,
    /// Whether the peer protocol uses mutual TLS (default `true`).
    #[serde(default = "yes")]
    pub peer: bool,
}

fn default_server_name() -> String {
    "distcache".to_owned()
}

fn yes() -> bool {
    true
}

/// `[admin]`: the admin API (diagnostics, health, metrics).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AdminConfig {
    /// Whether to serve it (default `true`).
    pub enabled: bool,
    /// The IP it binds (default `127.0.0.1`: reachable from this host only).
    pub bind: IpAddr,
    /// Its port (default 3380; 0 picks a free port).
    pub port: u16,
    /// A bearer token every request but `/healthz` and `/readyz` must carry.
    pub token: Option<String>,
    /// HTTPS with the `[tls]` certificate (default: on when `[tls]` is present).
    pub tls: Option<bool>,
    /// Only clients with a certificate the `[tls]` CA signed may connect (default `false`).
    pub require_client_cert: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 3380,
            token: None,
            tls: None,
            require_client_cert: false,
        }
    }
}

/// `[client_api]`: the HTTP API applications use to get, put and delete values.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ClientApiConfig {
    /// Whether to serve it (default `true`).
    pub enabled: bool,
    /// The IP it binds (default `0.0.0.0`).
    pub bind: IpAddr,
    /// Its port (default 3390; 0 picks a free port).
    pub port: u16,
    /// A bearer token every request but `/healthz` must carry.
    pub token: Option<String>,
    /// HTTPS with the `[tls]` certificate (default: on when `[tls]` is present).
    pub tls: Option<bool>,
    /// Only clients with a certificate the `[tls]` CA signed may connect (default `false`).
    pub require_client_cert: bool,
    /// Largest value a put may send (default `64MiB`).
    pub max_value_bytes: ByteSize,
    /// Most keys one batch get may ask for (default 1000).
    pub max_batch_keys: usize,
}

impl Default for ClientApiConfig {
    fn default() -> Self {
        ClientApiConfig {
            enabled: true,
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 3390,
            token: None,
            tls: None,
            require_client_cert: false,
            max_value_bytes: ByteSize(64 << 20),
            max_batch_keys: 1000,
        }
    }
}

impl NodeConfig {
    /// Parses a config file's text. Errors name the field (`keyspaces[0].max_bytes: ...`)
    /// and, when the parser knows it, the line.
    pub fn from_toml(text: &str) -> Result<Self, NodeError> {
        let deserializer = toml::Deserializer::parse(text)
            .map_err(|err| NodeError::Config(err.to_string().trim_end().to_owned()))?;
        serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let path = err.path().to_string();
            let inner = err.into_inner();
            let message = inner.message().to_owned();
            let line = inner.span().map(|span| line_of(text, span.start));
            let at = line.map(|l| format!(" (line {l})")).unwrap_or_default();
            if path == "." {
                NodeError::Config(format!("{message}{at}"))
            } else {
                NodeError::Config(format!("`{path}`{at}: {message}"))
            }
        })
    }

    /// Reads and parses a config file; relative paths in it are taken from the file's folder.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, NodeError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|err| {
            NodeError::Config(format!("cannot read the config file {}: {err}", path.display()))
        })?;
        let mut config = Self::from_toml(&text)?;
        if let Some(base) = path.parent() {
            config.resolve_paths(base);
        }
        Ok(config)
    }

    /// Makes every relative path in the config relative to `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let resolve = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        };
        if let Some(tls) = &mut self.tls {
            resolve(&mut tls.cert);
            resolve(&mut tls.key);
            if let Some(ca) = &mut tls.ca {
                resolve(ca);
            }
        }
        for keyspace in &mut self.keyspaces {
            match &mut keyspace.source {
                SourceConfig::Files(files) => resolve(&mut files.dir),
                SourceConfig::Http(http) => {
                    if let Some(ca) = &mut http.ca {
                        resolve(ca);
                    }
                }
            }
        }
    }

    /// Whether the admin API serves HTTPS.
    pub fn admin_tls(&self) -> bool {
        self.admin.tls.unwrap_or(self.tls.is_some())
    }

    /// Whether the client API serves HTTPS.
    pub fn client_api_tls(&self) -> bool {
        self.client_api.tls.unwrap_or(self.tls.is_some())
    }

    /// Checks the config, naming the field to fix. Files (certificates, source folders) are
    /// checked when the node starts.
    pub fn validate(&self) -> Result<(), NodeError> {
        self.validate_node()?;
        self.discovery.validate(&self.node)?;
        self.validate_tls()?;
        self.validate_ports()?;
        if self.keyspaces.is_empty() {
            return Err(NodeError::config(
                "keyspaces",
                "declare at least one keyspace ([[keyspaces]] with a name and a source)",
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (index, keyspace) in self.keyspaces.iter().enumerate() {
            keyspace.validate(index)?;
            if !names.insert(keyspace.name.as_str()) {
                return Err(NodeError::config(
                    format!("keyspaces[{index}].name"),
                    format!("keyspace {:?} is declared twice: names must be unique", keyspace.name),
                ));
            }
        }
        if self.client_api.max_value_bytes.0 == 0 {
            return Err(NodeError::config("client_api.max_value_bytes", "must be above 0"));
        }
        if self.client_api.max_batch_keys == 0 {
            return Err(NodeError::config("client_api.max_batch_keys", "must be above 0"));
        }
        Ok(())
    }

    fn validate_node(&self) -> Result<(), NodeError> {
        let node = &self.node;
        if node.id.as_deref().is_some_and(|id| id.trim().is_empty()) {
            return Err(NodeError::config("node.id", "is empty: name the node or leave it out"));
        }
        if node.label.trim().is_empty() {
            return Err(NodeError::config("node.label", "is empty: name the cluster"));
        }
        let durations = [
            ("node.gossip_interval", node.gossip_interval),
            ("node.rediscover_interval", node.rediscover_interval),
            ("node.read_timeout", node.read_timeout),
            ("node.write_timeout", node.write_timeout),
        ];
        for (field, value) in durations {
            if value.is_zero() {
                return Err(NodeError::config(field, "is 0: use a positive duration"));
            }
        }
        if let Err(err) = tracing_subscriber::EnvFilter::try_new(&node.log) {
            return Err(NodeError::config(
                "node.log",
                format!("{:?} is not a log filter: {err}", node.log),
            ));
        }
        if node.advertise.is_some() && (node.peer_port == 0 || node.gossip_port == 0) {
            return Err(NodeError::config(
                "node.advertise",
                "needs fixed ports: set node.peer_port and node.gossip_port above 0",
            ));
        }
        Ok(())
    }

    fn validate_tls(&self) -> Result<(), NodeError> {
        let tls = self.tls.as_ref();
        for (section, on, require) in [
            ("admin", self.admin_tls(), self.admin.require_client_cert),
            ("client_api", self.client_api_tls(), self.client_api.require_client_cert),
        ] {
            if on && tls.is_none() {
                return Err(NodeError::config(
                    format!("{section}.tls"),
                    "is true but there is no [tls] section with cert and key",
                ));
            }
            if require && !(on && tls.is_some_and(|t| t.ca.is_some())) {
                return Err(NodeError::config(
                    format!("{section}.require_client_cert"),
                    "needs HTTPS and a CA: add [tls] with cert, key and ca",
                ));
            }
        }
        if let Some(tls) = tls {
            if tls.peer
                && tls.ca.is_none()
                && !matches!(self.discovery, DiscoveryConfig::Standalone)
            {
                return Err(NodeError::config(
                    "tls.ca",
                    "is required for mutual TLS between peers (or set tls.peer = false)",
                ));
            }
            if tls.server_name.trim().is_empty() {
                return Err(NodeError::config("tls.server_name", "is empty"));
            }
        }
        Ok(())
    }

    fn validate_ports(&self) -> Result<(), NodeError> {
        let mut tcp: Vec<(&str, u16)> = Vec::new();
        if !matches!(self.discovery, DiscoveryConfig::Standalone) {
            tcp.push(("node.peer_port", self.node.peer_port));
        }
        if self.admin.enabled {
            tcp.push(("admin.port", self.admin.port));
        }
        if self.client_api.enabled {
            tcp.push(("client_api.port", self.client_api.port));
        }
        for (i, (field, port)) in tcp.iter().enumerate() {
            if let Some((other, _)) = tcp[..i].iter().find(|(_, p)| *p == *port && *port != 0) {
                return Err(NodeError::config(
                    *field,
                    format!("port {port} is also {other}: give each listener its own port"),
                ));
            }
        }
        Ok(())
    }
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(0, |before| before.matches('\n').count()) + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Overrides;

    #[test]
    fn the_annotated_example_is_a_valid_config() {
        let config = NodeConfig::from_toml(include_str!("../../examples/node.toml")).unwrap();
        config.validate().unwrap();
        assert_eq!(config.node.id.as_deref(), Some("cache-1"));
        assert!(matches!(&config.discovery, DiscoveryConfig::Static { seeds } if seeds.len() == 3));
        assert_eq!(config.keyspaces[0].max_bytes, ByteSize(256 << 20));
        assert_eq!(config.keyspaces[0].default_ttl, Some(Duration::from_secs(300)));
        assert!(
            matches!(&config.keyspaces[0].source, SourceConfig::Http(h) if h.headers.len() == 1)
        );
        assert!(matches!(&config.keyspaces[1].source, SourceConfig::Files(_)));
        let users = config.keyspaces[0].build(0).unwrap();
        assert_eq!(users.rate_limit().map(|r| (r.rate(), r.burst())), Some((200, 400)));
        assert_eq!(users.circuit_breaker().map(|b| b.failures()), Some(5));
        assert_eq!(users.stale_for(), Some(Duration::from_secs(60)));
        assert_eq!(users.warm_keys(), ["user-1"]);
    }

    #[test]
    fn a_minimal_config_gets_the_defaults() {
        let text = "[[keyspaces]]\nname = \"k\"\nsource = { kind = \"files\", dir = \"data\" }\n";
        let mut config = NodeConfig::from_toml(text).unwrap();
        config.validate().unwrap();
        assert!(matches!(config.discovery, DiscoveryConfig::Standalone));
        assert_eq!((config.node.peer_port, config.node.gossip_port), (3320, 3322));
        assert_eq!((config.admin.port, config.client_api.port), (3380, 3390));
        assert_eq!(config.admin.bind, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(config.keyspaces[0].max_bytes, ByteSize(64 << 20));
        assert!(!config.admin_tls() && !config.client_api_tls());
        config.resolve_paths(Path::new("/etc/distcache"));
        assert!(
            matches!(&config.keyspaces[0].source, SourceConfig::Files(f) if f.dir == Path::new("/etc/distcache/data"))
        );
    }

    #[test]
    fn overrides_replace_single_fields() {
        let text = "[node]\nid = \"a\"\n[[keyspaces]]\nname = \"k\"\nsource = { kind = \"files\", dir = \"d\" }\n";
        let mut config = NodeConfig::from_toml(text).unwrap();
        let overrides = Overrides {
            node_id: Some("b".into()),
            peer_port: Some(4000),
            seeds: vec!["10.0.0.1:3322".into()],
            client_token: Some("t".into()),
            ..Overrides::default()
        };
        overrides.apply(&mut config);
        assert_eq!(config.node.id.as_deref(), Some("b"));
        assert_eq!(config.node.peer_port, 4000);
        assert_eq!(config.node.gossip_port, 3322);
        assert!(
            matches!(&config.discovery, DiscoveryConfig::Static { seeds } if seeds == &["10.0.0.1:3322"])
        );
        assert_eq!(config.client_api.token.as_deref(), Some("t"));
        assert_eq!(config.admin.token, None);
    }
}
