//! The engine: the public entry point applications call.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures::future::join_all;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::flight::Joined;
use crate::keyspace::KeySpace;
use crate::space::{Space, check_key};
use crate::stats::{KeySpaceStats, bump};
use crate::store::Lookup;
use crate::registry::Registry;

/// A read-through cache engine.
///
/// `get` answers from the local store when it can; on a miss exactly one load per key runs at a
/// time (singleflight) and its value is stored with the keyspace's expiry. Cloning is cheap and
/// every clone drives the same engine.
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use distcache_engine::{source_fn, Config, Engine, Error, FetchError, KeySpace};
///
/// # #[tokio::main] async fn main() -> Result<(), Error> {
/// let users = KeySpace::new("users", 16 << 20, source_fn(|key: String| async move {
///     match key.as_str() {
///         "alice" => Ok(Bytes::from_static(b"Alice Liddell")),
///         _ => Err(FetchError::NotFound),
///     }
/// }))
/// .with_default_ttl(Duration::from_secs(60));
///
/// let engine = Engine::start(Config::standalone([users])).await?;
/// assert_eq!(engine.get("users", "alice").await?, "Alice Liddell");
/// assert!(matches!(engine.get("users", "bob").await, Err(Error::NotFound)));
///
/// engine.put("users", ("bob", "Bob")).await?;
/// assert_eq!(engine.get("users", "bob").await?, "Bob");
/// engine.stop().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    /// Loads run here, so that `stop` can end and await them.
    loads: TaskTracker,
    shutdown: CancellationToken,
    stopped: AtomicBool,
}

impl Engine {
    /// Validates `config` and starts an engine serving its keyspaces.
    ///
    /// Fails with [`Error::InvalidArgument`] naming the setting to fix.
    pub async fn start(config: Config) -> Result<Engine> {
        config.validate()?;
        let inner = Inner {
            registry: Registry::new(config.keyspaces(), config.defaults()),
            loads: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            stopped: AtomicBool::new(false),
        };
        Ok(Engine { inner: Arc::new(inner) })
    }

    /// Stops the engine: loads in flight end with [`Error::Stopped`] and are awaited; later
    /// calls fail with [`Error::Stopped`]. Stopping twice is harmless.
    pub async fn stop(&self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        self.inner.shutdown.cancel();
        self.inner.loads.close();
        self.inner.loads.wait().await;
    }

    /// The value of `key` in `keyspace`: from the local store, or loaded from the data source.
    ///
    /// Errors: [`Error::NotFound`] when the source has no value, [`Error::Timeout`] after the
    /// keyspace read timeout (the load goes on for other callers), [`Error::DataSource`] when
    /// the source fails, [`Error::KeySpaceNotFound`], [`Error::InvalidArgument`] for an empty
    /// or oversized key.
    pub async fn get(&self, keyspace: &str, key: &str) -> Result<Bytes> {
        let space = self.space(keyspace)?;
        self.get_in(&space, key).await
    }

    /// The values of many keys, in the order asked; one key's failure does not fail the rest.
    ///
    /// The outer error is for the whole call (unknown keyspace, stopped engine).
    pub async fn get_many<K: AsRef<str>>(
        &self,
        keyspace: &str,
        keys: &[K],
    ) -> Result<Vec<Result<Bytes>>> {
        let space = self.space(keyspace)?;
        Ok(join_all(keys.iter().map(|key| self.get_in(&space, key.as_ref()))).await)
    }

    /// Stores a value, replacing any other; it wins over a load of the same key in flight.
    ///
    /// Fails with [`Error::InvalidArgument`] for an empty key or a value that cannot fit the
    /// keyspace budget.
    pub async fn put(&self, keyspace: &str, entry: impl Into<Entry>) -> Result<()> {
        self.space(keyspace)?.put(entry.into())
    }

    /// Stores many values; one entry's failure does not fail the rest.
    pub async fn put_many<E: Into<Entry>>(
        &self,
        keyspace: &str,
        entries: impl IntoIterator<Item = E>,
    ) -> Result<Vec<Result<()>>> {
        let space = self.space(keyspace)?;
        Ok(entries.into_iter().map(|entry| space.put(entry.into())).collect())
    }

    /// Removes a key (absent keys are fine); a load of it in flight will not write it back.
    pub async fn delete(&self, keyspace: &str, key: &str) -> Result<()> {
        self.space(keyspace)?.delete(key)
    }

    /// Removes many keys; one key's failure does not fail the rest.
    pub async fn delete_many<K: AsRef<str>>(
        &self,
        keyspace: &str,
        keys: &[K],
    ) -> Result<Vec<Result<()>>> {
        let space = self.space(keyspace)?;
        Ok(keys.iter().map(|key| space.delete(key.as_ref())).collect())
    }

    /// Removes a keyspace and everything stored in it.
    pub async fn delete_keyspace(&self, name: &str) -> Result<()> {
        self.delete_keyspaces(&[name]).await
    }

    /// Removes several keyspaces; if one is unknown, none is removed.
    pub async fn delete_keyspaces(&self, names: &[&str]) -> Result<()> {
        self.check_running()?;
        self.inner.registry.remove(names)
    }

    /// Replaces a keyspace's definition at run time, or adds the keyspace if it is new.
    ///
    /// Stored values are kept as far as the new budget allows, each expiring no later than the
    /// new policy would let it (values put with their own expiry keep it). Counters carry on.
    pub async fn update_keyspace(&self, keyspace: KeySpace) -> Result<()> {
        self.check_running()?;
        self.inner.registry.upsert(keyspace)
    }

    /// The names of the keyspaces, sorted.
    pub fn keyspaces(&self) -> Vec<String> {
        self.inner.registry.names()
    }

    /// The current definition of a keyspace.
    pub fn keyspace(&self, name: &str) -> Result<KeySpace> {
        Ok(self.inner.registry.get(name)?.current().def.clone())
    }

    /// The counters and size of a keyspace on this node.
    pub fn stats(&self, keyspace: &str) -> Result<KeySpaceStats> {
        Ok(self.inner.registry.get(keyspace)?.stats())
    }

    fn check_running(&self) -> Result<()> {
        if self.inner.stopped.load(Ordering::Relaxed) { Err(Error::Stopped) } else { Ok(()) }
    }

    fn space(&self, keyspace: &str) -> Result<Arc<Space>> {
        self.check_running()?;
        self.inner.registry.get(keyspace)
    }

    async fn get_in(&self, space: &Arc<Space>, key: &str) -> Result<Bytes> {
        check_key(key)?;
        match space.lookup(key) {
            Lookup::Hit(value) => return Ok(value),
            Lookup::NotFound => return Err(Error::NotFound),
            Lookup::Miss => {}
        }
        let timeout = space.current().read_timeout;
        match tokio::time::timeout(timeout, self.load(space, key)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(timeout)),
        }
    }

    /// Joins or starts the key's flight and waits for its result.
    async fn load(&self, space: &Arc<Space>, key: &str) -> Result<Bytes> {
        let flight = match space.flights.join(key) {
            Joined::Follower(flight) => {
                bump(&space.stats.local().fetches_deduped);
                flight
            }
            Joined::Leader(completion) => {
                let flight = completion.flight().clone();
                let (space, key) = (space.clone(), key.to_owned());
                let shutdown = self.inner.shutdown.clone();
                self.inner.loads.spawn(async move {
                    tokio::select! {
                        () = space.fill(key.clone(), completion) => {}
                        () = shutdown.cancelled() => {}
                    }
                });
                flight
            }
        };
        flight.wait().await
    }
}
