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
//! Errors are one cloneable [`Error`]; configuration is [`Config`] with [`KeySpace`] definitions.
#![warn(clippy::unwrap_used, clippy::expect_used)]

mod config;
mod engine;
mod entry;
mod error;
mod flight;
mod keyspace;
mod registry;
mod source;
mod space;
mod stats;
mod store;

pub use async_trait::async_trait;
pub use bytes::Bytes;
pub use config::Config;
pub use engine::Engine;
pub use entry::Entry;
pub use error::{Error, Result};
pub use keyspace::{Eviction, Expiration, ExpiryFn, KeySpace};
pub use source::{DataSource, FetchError, FnSource, source_fn};
pub use space::MAX_KEY_BYTES;
pub use stats::KeySpaceStats;
pub use store::ENTRY_OVERHEAD;
