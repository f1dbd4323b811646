//! Flags and `DISTCACHE_*` environment variables that replace single fields of the config
//! file, so one file can serve many nodes (each with its own id, ports or seeds).

use std::net::IpAddr;

use super::config::NodeConfig;
use super::discovery_config::DiscoveryConfig;

/// Fields a flag or a `DISTCACHE_*` environment variable replaces in the file.
#[derive(Debug, Clone, Default, clap::Args)]
#[non_exhaustive]
pub struct Overrides {
    /// Replaces `node.id`.
    #[arg(long, env = "DISTCACHE_NODE_ID")]
    pub node_id: Option<String>,
    /// Replaces `node.label`.
    #[arg(long, env = "DISTCACHE_LABEL")]
    pub label: Option<String>,
    /// Replaces `node.bind`.
    #[arg(long, env = "DISTCACHE_BIND")]
    pub bind: Option<IpAddr>,
    /// Replaces `node.advertise`.
    #[arg(long, env = "DISTCACHE_ADVERTISE")]
    pub advertise: Option<IpAddr>,
    /// Replaces `node.peer_port`.
    #[arg(long, env = "DISTCACHE_PEER_PORT")]
    pub peer_port: Option<u16>,
    /// Replaces `node.gossip_port`.
    #[arg(long, env = "DISTCACHE_GOSSIP_PORT")]
    pub gossip_port: Option<u16>,
    /// Replaces `admin.bind`.
    #[arg(long, env = "DISTCACHE_ADMIN_BIND")]
    pub admin_bind: Option<IpAddr>,
    /// Replaces `admin.port`.
    #[arg(long, env = "DISTCACHE_ADMIN_PORT")]
    pub admin_port: Option<u16>,
    /// Replaces `client_api.bind`.
    #[arg(long, env = "DISTCACHE_CLIENT_BIND")]
    pub client_bind: Option<IpAddr>,
    /// Replaces `client_api.port`.
    #[arg(long, env = "DISTCACHE_CLIENT_PORT")]
    pub client_port: Option<u16>,
    /// Replaces `[discovery]` with static discovery of these seeds (comma-separated
    /// `host:gossip_port`).
    #[arg(long, env = "DISTCACHE_SEEDS", value_delimiter = ',')]
    pub seeds: Vec<String>,
    /// Replaces `admin.token`.
    #[arg(long, env = "DISTCACHE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Replaces `client_api.token`.
    #[arg(long, env = "DISTCACHE_CLIENT_TOKEN", hide_env_values = true)]
    pub client_token: Option<String>,
    /// Replaces `node.log` (a filter such as `info` or `distcache=debug,info`).
    #[arg(long, env = "DISTCACHE_LOG")]
    pub log: Option<String>,
}

impl Overrides {
    /// Applies the overrides that are set over `config`.
    pub fn apply(&self, config: &mut NodeConfig) {
        replace(&mut config.node.id, self.node_id.clone().map(Some));
        replace(&mut config.node.label, self.label.clone());
        replace(&mut config.node.bind, self.bind);
        replace(&mut config.node.advertise, self.advertise.map(Some));
        replace(&mut config.node.peer_port, self.peer_port);
        replace(&mut config.node.gossip_port, self.gossip_port);
        replace(&mut config.node.log, self.log.clone());
        replace(&mut config.admin.bind, self.admin_bind);
        replace(&mut config.admin.port, self.admin_port);
        replace(&mut config.admin.token, self.admin_token.clone().map(Some));
        replace(&mut config.client_api.bind, self.client_bind);
        replace(&mut config.client_api.port, self.client_port);
        replace(&mut config.client_api.token, self.client_token.clone().map(Some));
        if !self.seeds.is_empty() {
            config.discovery = DiscoveryConfig::Static { seeds: self.seeds.clone() };
        }
    }
}

fn replace<T>(field: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *field = value;
    }
}
