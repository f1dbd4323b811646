//! The distcache node: what the `distcache` binary runs (feature `node`).
//!
//! A [`NodeConfig`] (TOML, see `examples/node.toml`) declares the node, its cluster and its
//! keyspaces. [`Node::start`] turns it into a running node:
//! - the engine, with each keyspace backed by a data source from [`sources`] (an HTTP origin
//!   or a folder of files) and, in a cluster, gossip membership and the peer protocol (mutual
//!   TLS with `[tls]`);
//! - the admin API ([`distcache_admin::Admin`], with Prometheus `/metrics`) and the client API (`client_api`: get, put,
//!   delete and batch get over HTTP for applications in any language), each on its own port,
//!   optionally over HTTPS (`listener`, `tls`) and behind a bearer token (`auth`), with errors
//!   as [`ApiError`] JSON.
//!
//! [`NodeClient`] is the other end: a typed client of both APIs, used by `distcache ctl`.

#![warn(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod api_error;
mod auth;
mod client;
mod client_api;
mod config;
mod discovery_config;
mod error;
mod http_client;
mod keyspace_config;
mod listener;
mod overrides;
mod server;
pub mod sources;
mod tls;
mod units;

pub use api_error::{ApiError, error_code};
pub use client::{ClientError, ClientOptions, NodeClient, RawResponse};
pub use client_api::TTL_HEADER;
pub use config::{AdminConfig, ClientApiConfig, NodeConfig, NodeSection, TlsConfig};
pub use discovery_config::DiscoveryConfig;
#[cfg(feature = "kubernetes")]
pub use discovery_config::KubernetesDiscoveryConfig;
#[cfg(feature = "nats")]
pub use discovery_config::NatsDiscoveryConfig;
#[cfg(feature = "dns")]
pub use discovery_config::{DnsDiscoveryConfig, DnsRecordKind};
pub use error::NodeError;
pub use keyspace_config::{
    CircuitBreakerConfig, EvictionConfig, FilesSourceConfig, HttpSourceConfig, KeySpaceConfig,
    RateLimitConfig, SourceConfig,
};
pub use overrides::Overrides;
pub use server::{Node, NodeAddresses, shutdown_signal};
pub use tls::install_crypto_provider;
pub use units::{ByteSize, parse_duration};
