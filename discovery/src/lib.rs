//! How distcache nodes find each other.
//!
//! A [`Discovery`] provider only finds seed addresses (the gossip addresses of other nodes);
//! membership and failure detection are the engine's gossip layer's job. The engine asks the
//! provider again on an interval, and at once when a provider that learns of changes as they
//! happen signals [`Discovery::changes`], so nodes that appear later (or the other half of a
//! split cluster) are picked up without a restart.
//!
//! Providers, one module each:
//! - `static`: [`StaticDiscovery`], a fixed list of seeds;
//! - `standalone`: [`Standalone`], no peers at all;
//! - `dns` (feature `dns`): [`DnsDiscovery`], A/AAAA or SRV records of a name, such as a
//!   Kubernetes headless Service;
//! - `kubernetes` (feature `kubernetes`): [`KubernetesDiscovery`], a watch on the
//!   EndpointSlices of a Service;
//! - `nats` (feature `nats`): [`NatsDiscovery`], nodes announce themselves on a NATS subject.
//!
//! Every provider keeps the same contract (see [`Discovery`]), checked by one conformance
//! suite that runs against all of them: `testsuite` (feature `testsuite`), which also holds the
//! in-process backends the tests run against.

#[cfg(feature = "dns")]
mod dns;
#[cfg(feature = "kubernetes")]
mod kubernetes;
#[cfg(feature = "nats")]
mod nats;
mod standalone;
mod r#static;
#[cfg(feature = "testsuite")]
pub mod testsuite;

use std::fmt::Debug;

use async_trait::async_trait;

#[cfg(feature = "dns")]
pub use dns::{DnsConfig, DnsDiscovery, DnsRecords};
#[cfg(feature = "kubernetes")]
pub use kubernetes::{KubernetesConfig, KubernetesDiscovery};
#[cfg(feature = "nats")]
pub use nats::{NatsConfig, NatsDiscovery};
pub use standalone::Standalone;
pub use r#static::StaticDiscovery;

/// Why discovery failed; the engine logs it and asks again on the next interval.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The provider is misconfigured; the message names the setting.
    #[error("invalid discovery config: {0}")]
    Config(String),
    /// The provider's backend (DNS, Kubernetes API, NATS, ...) could not be reached or answered
    /// with an error.
    #[error("discovery backend failed: {0}")]
    Backend(String),
    /// [`Discovery::shutdown`] was called: the provider finds nobody any more.
    #[error("discovery was shut down")]
    Shutdown,
}

/// Finds the gossip addresses of other nodes in the cluster.
///
/// The contract every provider keeps (and the conformance suite checks):
/// - [`discover`](Self::discover) answers the peers the backend lists now, sorted and without
///   duplicates; `Ok` with an empty list means the backend answered and lists nobody.
/// - A backend that cannot be reached, answers with an error, or is misconfigured is an `Err`,
///   never an empty `Ok`: the engine then keeps gossiping with the peers it has.
/// - Peers added to or removed from the backend show up in later answers; a provider that
///   learns of changes as they happen also signals [`changes`](Self::changes).
/// - After [`shutdown`](Self::shutdown) no background task of the provider is left,
///   [`discover`](Self::discover) returns [`DiscoveryError::Shutdown`] and the
///   [`changes`](Self::changes) channel is closed.
#[async_trait]
pub trait Discovery: Send + Sync + Debug + 'static {
    /// The current seed addresses, as `host:port` (hostnames are resolved by the gossip layer).
    ///
    /// Returning this node's own address is allowed; the engine skips it.
    async fn discover(&self) -> Result<Vec<String>, DiscoveryError>;

    /// A signal that the peer set may have changed, for providers that learn of changes as they
    /// happen (watches, subscriptions): the engine calls [`discover`](Self::discover) at once
    /// when the value changes, instead of waiting for its re-discovery interval. The value only
    /// changes after the new peer set is what [`discover`](Self::discover) answers. The default,
    /// `None`, means the provider is only polled.
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// Releases what the provider holds (connections, watches, background tasks) and waits
    /// until they are gone. Called once when the engine stops; calling it again does nothing.
    /// The default does nothing.
    async fn shutdown(&self) {}
}

/// Whether `seed` is `host:port` with a non-empty host and a non-zero port.
fn is_host_port(seed: &str) -> bool {
    seed.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0))
}

/// Sorts and deduplicates discovered addresses, as [`Discovery::discover`] promises.
fn normalized(mut peers: Vec<String>) -> Vec<String> {
    peers.sort();
    peers.dedup();
    peers
}
