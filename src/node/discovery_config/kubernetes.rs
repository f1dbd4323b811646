//! `kind = "kubernetes"`: peers from a watch on the EndpointSlices of a Service.

use std::time::Duration;

use distcache_discovery::{KubernetesConfig, KubernetesDiscovery};
use serde::Deserialize;

use super::positive;
use crate::node::error::NodeError;
use crate::node::units::duration;

/// `kind = "kubernetes"`: the ready endpoints of a Service, followed by a watch on its
/// EndpointSlices. The pod's service account needs `get`, `list` and `watch` on
/// `endpointslices` (group `discovery.k8s.io`); `deploy/kubernetes/` has the Role.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct KubernetesDiscoveryConfig {
    /// The Service whose endpoints are the nodes (required): a headless one, so that every
    /// pod is listed.
    pub service: String,
    /// The name of the Service port the nodes gossip on (default `gossip`).
    pub port_name: String,
    /// The Service's namespace (default: the pod's own, from its service account).
    pub namespace: Option<String>,
    /// How long the first discovery waits for the initial list (default `10s`).
    #[serde(with = "duration::option")]
    pub sync_timeout: Option<Duration>,
}

impl Default for KubernetesDiscoveryConfig {
    fn default() -> Self {
        KubernetesDiscoveryConfig {
            service: String::new(),
            port_name: "gossip".to_owned(),
            namespace: None,
            sync_timeout: None,
        }
    }
}

impl KubernetesDiscoveryConfig {
    pub(super) fn validate(&self) -> Result<(), NodeError> {
        if self.service.trim().is_empty() {
            return Err(NodeError::config(
                "discovery.service",
                "is required: the headless Service whose endpoints are the nodes",
            ));
        }
        if !is_dns_label(&self.service) {
            return Err(NodeError::config(
                "discovery.service",
                format!(
                    "{:?} is not a Service name (lowercase letters, digits, '-')",
                    self.service
                ),
            ));
        }
        if self.port_name.trim().is_empty() {
            return Err(NodeError::config(
                "discovery.port_name",
                "is empty: name the Service's gossip port (default \"gossip\")",
            ));
        }
        if let Some(namespace) = self.namespace.as_deref().filter(|n| !is_dns_label(n)) {
            return Err(NodeError::config(
                "discovery.namespace",
                format!(
                    "{namespace:?} is not a namespace name (lowercase letters, digits, '-'); \
                     leave it out for the pod's own"
                ),
            ));
        }
        positive("discovery.sync_timeout", self.sync_timeout)
    }

    /// Starts the watch through the pod's service account (or, outside a cluster, the
    /// kubeconfig).
    pub(super) async fn provider(&self) -> Result<KubernetesDiscovery, NodeError> {
        Ok(KubernetesDiscovery::from_env(self.to_config()).await?)
    }

    fn to_config(&self) -> KubernetesConfig {
        let mut config = KubernetesConfig::new(&self.service, &self.port_name);
        if let Some(namespace) = &self.namespace {
            config = config.with_namespace(namespace);
        }
        if let Some(timeout) = self.sync_timeout {
            config = config.with_sync_timeout(timeout);
        }
        config
    }
}

/// An RFC 1123 label, as Kubernetes names Services and namespaces.
fn is_dns_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::super::DiscoveryConfig;
    use super::super::tests::{config_with, error_of};

    #[test]
    fn the_port_name_defaults_to_gossip_and_the_namespace_to_the_pods() {
        let config = config_with("", "kind = \"kubernetes\"\nservice = \"distcache\"").unwrap();
        let DiscoveryConfig::Kubernetes(kube) = &config.discovery else { panic!("not kubernetes") };
        assert_eq!((kube.service.as_str(), kube.port_name.as_str()), ("distcache", "gossip"));
        assert_eq!(kube.namespace, None);
        let text = "kind = \"kubernetes\"\nservice = \"cache\"\nport_name = \"chitchat\"\n\
                    namespace = \"prod\"\nsync_timeout = \"30s\"";
        let config = config_with("", text).unwrap();
        let DiscoveryConfig::Kubernetes(kube) = &config.discovery else { panic!("not kubernetes") };
        let printed = format!("{:?}", kube.to_config());
        assert!(
            printed.contains("\"chitchat\"") && printed.contains("Some(\"prod\")"),
            "{printed}"
        );
        assert!(printed.contains("30s"), "{printed}");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("kind = \"kubernetes\"", "discovery.service"),
            ("kind = \"kubernetes\"\nservice = \"Cache_1\"", "discovery.service"),
            ("kind = \"kubernetes\"\nservice = \"c\"\nport_name = \"\"", "discovery.port_name"),
            ("kind = \"kubernetes\"\nservice = \"c\"\nnamespace = \"a.b\"", "discovery.namespace"),
            ("kind = \"kubernetes\"\nservice = \"c\"\nsync_timeout = \"0s\"", "sync_timeout"),
            ("kind = \"kubernetes\"\nservice = \"c\"\nselector = \"a=b\"", "unknown field"),
        ];
        for (discovery, field) in cases {
            let err = error_of("", discovery);
            assert!(err.contains(field), "{discovery:?}: {err}");
        }
    }
}
