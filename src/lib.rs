//! distcache: a clustered read-through cache engine.
//!
//! Declare [`KeySpace`]s backed by your [`DataSource`], start an [`Engine`] and call
//! [`Engine::get`]. This crate is the facade: it re-exports the engine
//! ([`distcache_engine`]), peer discovery ([`discovery`]) and the admin server ([`admin`]),
//! and holds the node the `distcache` binary runs ([`node`], feature `node`, on by default).
//!
//! ```
//! use bytes::Bytes;
//! use distcache::{source_fn, Config, Engine, KeySpace};
//!
//! # #[tokio::main] async fn main() -> distcache::Result<()> {
//! let pages = KeySpace::new("pages", 1 << 20, source_fn(|key: String| async move {
//!     Ok(Bytes::from(format!("<h1>{key}</h1>")))
//! }));
//! let engine = Engine::start(Config::standalone([pages])).await?;
//! assert_eq!(engine.get("pages", "home").await?, "<h1>home</h1>");
//! # engine.stop().await; Ok(()) }
//! ```

pub use distcache_engine::*;

/// Peer discovery: the [`Discovery`](distcache_discovery::Discovery) trait and its providers.
pub use distcache_discovery as discovery;

/// The admin HTTP server.
pub use distcache_admin as admin;

#[cfg(feature = "node")]
pub mod node;

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;
