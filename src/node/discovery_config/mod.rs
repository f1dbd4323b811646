//! `[discovery]` of the node config: which provider finds the node's peers, chosen by `kind`,
//! and how each becomes a [`Discovery`].
//!
//! `standalone` and `static` are always there; `dns`, `kubernetes` and `nats` (one file each)
//! need the facade feature of the same name. A config naming a provider this build lacks
//! fails to parse with a message naming the feature, rather than as an unknown `kind`.

#[cfg(feature = "dns")]
mod dns;
#[cfg(feature = "kubernetes")]
mod kubernetes;
#[cfg(feature = "nats")]
mod nats;

use std::sync::Arc;
#[cfg(any(feature = "dns", feature = "kubernetes", feature = "nats"))]
use std::time::Duration;

use distcache_discovery::{Discovery, StaticDiscovery};
use serde::Deserialize;

use super::config::NodeSection;
use super::error::NodeError;

#[cfg(feature = "dns")]
pub use dns::{DnsDiscoveryConfig, DnsRecordKind};
#[cfg(feature = "kubernetes")]
pub use kubernetes::KubernetesDiscoveryConfig;
#[cfg(feature = "nats")]
pub use nats::NatsDiscoveryConfig;

/// `[discovery]`: how the node finds the gossip addresses of other nodes. Chosen by `kind`.
///
/// Each provider is one variant; adding a provider means adding a variant here and to the
/// parsed form below, with its checks and a match arm in [`DiscoveryConfig::provider`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(try_from = "DiscoveryToml")]
#[non_exhaustive]
pub enum DiscoveryConfig {
    /// `kind = "standalone"` (the default): no cluster. The node serves its keyspaces alone
    /// and opens neither the peer nor the gossip port.
    #[default]
    Standalone,
    /// `kind = "static"`: a fixed list of seeds, the gossip addresses (`host:port`) of some
    /// other nodes. Listing every node, this one included, is the simple way.
    Static {
        /// The seeds; at least one.
        seeds: Vec<String>,
    },
    /// `kind = "dns"` (feature `dns`): the A/AAAA or SRV records of a name.
    #[cfg(feature = "dns")]
    Dns(DnsDiscoveryConfig),
    /// `kind = "kubernetes"` (feature `kubernetes`): the ready endpoints of a Service.
    #[cfg(feature = "kubernetes")]
    Kubernetes(KubernetesDiscoveryConfig),
    /// `kind = "nats"` (feature `nats`): nodes announce themselves on NATS subjects.
    #[cfg(feature = "nats")]
    Nats(NatsDiscoveryConfig),
}

/// The `[discovery]` table as written: every kind, whatever the build, so that a kind whose
/// feature is off is named as such.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum DiscoveryToml {
    Standalone,
    Static {
        seeds: Vec<String>,
    },
    #[cfg(feature = "dns")]
    Dns(DnsDiscoveryConfig),
    #[cfg(not(feature = "dns"))]
    Dns(serde::de::IgnoredAny),
    #[cfg(feature = "kubernetes")]
    Kubernetes(KubernetesDiscoveryConfig),
    #[cfg(not(feature = "kubernetes"))]
    Kubernetes(serde::de::IgnoredAny),
    #[cfg(feature = "nats")]
    Nats(NatsDiscoveryConfig),
    #[cfg(not(feature = "nats"))]
    Nats(serde::de::IgnoredAny),
}

impl TryFrom<DiscoveryToml> for DiscoveryConfig {
    type Error = String;

    fn try_from(toml: DiscoveryToml) -> Result<Self, String> {
        match toml {
            DiscoveryToml::Standalone => Ok(DiscoveryConfig::Standalone),
            DiscoveryToml::Static { seeds } => Ok(DiscoveryConfig::Static { seeds }),
            #[cfg(feature = "dns")]
            DiscoveryToml::Dns(dns) => Ok(DiscoveryConfig::Dns(dns)),
            #[cfg(not(feature = "dns"))]
            DiscoveryToml::Dns(_) => Err(feature_missing("dns")),
            #[cfg(feature = "kubernetes")]
            DiscoveryToml::Kubernetes(kubernetes) => Ok(DiscoveryConfig::Kubernetes(kubernetes)),
            #[cfg(not(feature = "kubernetes"))]
            DiscoveryToml::Kubernetes(_) => Err(feature_missing("kubernetes")),
            #[cfg(feature = "nats")]
            DiscoveryToml::Nats(nats) => Ok(DiscoveryConfig::Nats(nats)),
            #[cfg(not(feature = "nats"))]
            DiscoveryToml::Nats(_) => Err(feature_missing("nats")),
        }
    }
}

/// Why a config naming `kind` cannot be used by this build.
#[cfg(not(all(feature = "dns", feature = "kubernetes", feature = "nats")))]
fn feature_missing(kind: &str) -> String {
    format!(
        "kind \"{kind}\" needs the `{kind}` feature, which this build of distcache lacks: \
         rebuild it with `cargo build --features {kind}`"
    )
}

impl DiscoveryConfig {
    /// The provider for a cluster node, `None` for a standalone node. `node` supplies what
    /// providers need to know of this node (DNS: the default gossip port; NATS: the node id
    /// and gossip address it announces).
    ///
    /// Kubernetes and NATS connect here: a missing service account or kubeconfig, or an
    /// unreachable NATS, fails with [`NodeError::Discovery`]. Call
    /// [`NodeConfig::validate`](super::NodeConfig::validate) first: a config it refuses may
    /// fail here too, with a less precise message.
    #[cfg_attr(not(any(feature = "dns", feature = "nats")), allow(unused_variables))]
    pub async fn provider(
        &self,
        node: &NodeSection,
    ) -> Result<Option<Arc<dyn Discovery>>, NodeError> {
        Ok(match self {
            DiscoveryConfig::Standalone => None,
            DiscoveryConfig::Static { seeds } => {
                Some(Arc::new(StaticDiscovery::new(seeds.clone())))
            }
            #[cfg(feature = "dns")]
            DiscoveryConfig::Dns(dns) => Some(Arc::new(dns.provider(node)?)),
            #[cfg(feature = "kubernetes")]
            DiscoveryConfig::Kubernetes(kubernetes) => Some(Arc::new(kubernetes.provider().await?)),
            #[cfg(feature = "nats")]
            DiscoveryConfig::Nats(nats) => Some(Arc::new(nats.provider(node).await?)),
        })
    }

    /// Checks the section against the `[node]` it serves; errors name the field to fix
    /// (`discovery.seeds`, `discovery.service`, `node.gossip_port`, ...).
    #[cfg_attr(not(any(feature = "dns", feature = "nats")), allow(unused_variables))]
    pub(super) fn validate(&self, node: &NodeSection) -> Result<(), NodeError> {
        match self {
            DiscoveryConfig::Standalone => Ok(()),
            DiscoveryConfig::Static { seeds } => validate_seeds(seeds),
            #[cfg(feature = "dns")]
            DiscoveryConfig::Dns(dns) => dns.validate(node),
            #[cfg(feature = "kubernetes")]
            DiscoveryConfig::Kubernetes(kubernetes) => kubernetes.validate(),
            #[cfg(feature = "nats")]
            DiscoveryConfig::Nats(nats) => nats.validate(node),
        }
    }
}

fn validate_seeds(seeds: &[String]) -> Result<(), NodeError> {
    if seeds.is_empty() {
        return Err(NodeError::config(
            "discovery.seeds",
            "static discovery needs at least one seed (\"host:gossip_port\")",
        ));
    }
    for seed in seeds {
        let valid = seed.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)
        });
        if !valid {
            return Err(NodeError::config(
                "discovery.seeds",
                format!("seed {seed:?} is not host:port with a non-zero port"),
            ));
        }
    }
    Ok(())
}

/// A duration that, when set, must be above zero.
#[cfg(any(feature = "dns", feature = "kubernetes", feature = "nats"))]
fn positive(field: &str, value: Option<Duration>) -> Result<(), NodeError> {
    match value {
        Some(value) if value.is_zero() => {
            Err(NodeError::config(field, "is 0: use a positive duration"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use crate::node::{NodeConfig, NodeError};

    /// A valid config around `discovery` (a `[discovery]` table's body, `kind` included) and
    /// the extra `[node]` lines `node`.
    pub(crate) fn config_with(node: &str, discovery: &str) -> Result<NodeConfig, NodeError> {
        let text = format!(
            "[node]\n{node}\n[discovery]\n{discovery}\n[[keyspaces]]\nname = \"k\"\n\
             source = {{ kind = \"files\", dir = \"data\" }}\n"
        );
        let config = NodeConfig::from_toml(&text)?;
        config.validate()?;
        Ok(config)
    }

    /// The message of a config that fails to parse or validate.
    pub(crate) fn error_of(node: &str, discovery: &str) -> String {
        match config_with(node, discovery) {
            Ok(config) => panic!("expected an error, got {:?}", config.discovery),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn static_seeds_are_host_port() {
        let config = config_with("", "kind = \"static\"\nseeds = [\"a:3322\"]").unwrap();
        assert!(
            matches!(&config.discovery, super::DiscoveryConfig::Static { seeds } if seeds == &["a:3322"])
        );
        assert!(error_of("", "kind = \"static\"\nseeds = [\"a\"]").contains("discovery.seeds"));
    }

    #[test]
    fn a_kind_this_build_lacks_names_its_feature() {
        let kinds = [
            ("dns", cfg!(feature = "dns"), "name = \"distcache.test\""),
            ("kubernetes", cfg!(feature = "kubernetes"), "service = \"distcache\""),
            ("nats", cfg!(feature = "nats"), "servers = [\"nats://127.0.0.1:4222\"]"),
        ];
        for (kind, enabled, fields) in kinds {
            let result = config_with("", &format!("kind = \"{kind}\"\n{fields}"));
            if enabled {
                result.unwrap();
            } else {
                let err = result.unwrap_err().to_string();
                assert!(err.contains(&format!("`{kind}` feature")), "{err}");
                assert!(err.contains(&format!("--features {kind}")), "{err}");
            }
        }
        let err = error_of("", "kind = \"carrier-pigeon\"");
        assert!(err.contains("discovery") && err.contains("carrier-pigeon"), "{err}");
    }
}
