//! The distcache engine: keyspaces, their byte-bounded stores, and read-through loads.
//!
//! A `get` flows through these modules:
//! - [`Engine`] (`engine`) finds the keyspace in the `registry` and asks its live state
//!   (`space`) to look the key up in its `store` (a moka cache weighted in bytes, with
//!   per-entry expiry).
//! - On a miss it joins the key's flight (`flight`): the first caller starts a load in its own
//!   task, every later caller waits on the same result under its own timeout.
//! - The load re-checks the store, calls the keyspace's [`DataSource`] (`source`) and stores
//!   the value with its expiry ([`Expiration`], `keyspace`), unless a `put` or `delete` fenced
//!   the flight meanwhile.
//! - Every step is counted in per-keyspace, per-thread-striped counters (`stats`).
//!
//! In a cluster (`cluster`), the ring names each key's owner: a miss on another node asks the
//! owner over the peer protocol (`remote`, gets pipelined on one connection per peer; the owner
//! answers in `serve`; while an unreachable owner is still in the ring, the key's next owner
//! answers instead), values from peers may be kept in a small hot cache, and writes go through
//! the owner, which invalidates every other node's hot copy. Membership is gossip; peers are
//! found by a [`Discovery`](distcache_discovery::Discovery) provider.
//!
//! Errors are one cloneable [`Error`]; configuration is [`Config`] with [`KeySpace`] definitions.
#![warn(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod cluster;
mod config;
mod deadline;
mod engine;
mod entry;
mod error;
mod flight;
mod keyspace;
mod load;
mod metrics;
mod protect;
mod rate;
mod registry;
mod remote;
mod serve;
mod source;
mod space;
mod stats;
mod store;
mod warmup;

pub use async_trait::async_trait;
pub use bytes::Bytes;
pub use cluster::{ClusterConfig, ClusterEvent, Member, PeerInfo, PeerStatus, Ring};
pub use config::Config;
pub use engine::Engine;
pub use entry::Entry;
pub use error::{Error, Result};
pub use keyspace::{Eviction, Expiration, ExpiryFn, KeySpace};
pub use protect::{BreakerState, CircuitBreaker, RateLimit};
pub use source::{DataSource, FetchError, FnSource, source_fn};
pub use space::MAX_KEY_BYTES;
pub use stats::KeySpaceStats;
pub use store::ENTRY_OVERHEAD;
