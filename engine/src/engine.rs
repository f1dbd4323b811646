//! The engine: the public entry point applications call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures::future::join_all;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::cluster::{Bound, Cluster, ClusterEvent, PeerStatus, Ring, Route};
use crate::config::Config;
use crate::deadline::Deadline;
use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::flight::Joined;
use crate::keyspace::KeySpace;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::space::{Space, Stores, check_key};
use crate::stats::{KeySpaceStats, bump};
use crate::store::{Kept, Lookup};

/// A read-through cache engine, standalone or one node of a cluster.
///
/// `get` answers from the local store when it can. On a miss exactly one load per key runs at
/// a time: on this node if it owns the key (or runs standalone), else on the owner, asked over
/// the peer protocol. Cloning is cheap and every clone drives the same engine.
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
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) registry: Registry,
    /// Loads run here, so that `stop` can end and await them.
    loads: TaskTracker,
    shutdown: CancellationToken,
    stopped: AtomicBool,
    pub(crate) cluster: OnceLock<Arc<Cluster>>,
    events: broadcast::Sender<ClusterEvent>,
    pub(crate) metrics: Metrics,
}

impl Engine {
    /// Validates `config` and starts the engine; in a cluster, binds its ports, starts serving
    /// peers, joins gossip and marks itself ready.
    ///
    /// Fails with [`Error::InvalidArgument`] naming the setting to fix (including an address
    /// that cannot be bound).
    pub async fn start(config: Config) -> Result<Engine> {
        config.validate()?;
        let (events, _) = broadcast::channel(256);
        let meter =
            config.meter().cloned().unwrap_or_else(|| opentelemetry::global::meter("distcache"));
        let inner = Arc::new_cyclic(|engine| {
            let metrics = Metrics::register(&meter, engine.clone());
            Inner {
                registry: Registry::new(config.keyspaces(), config.defaults(), metrics.clone()),
                loads: TaskTracker::new(),
                shutdown: CancellationToken::new(),
                stopped: AtomicBool::new(false),
                cluster: OnceLock::new(),
                events,
                metrics,
            }
        });
        let engine = Engine { inner };
        match config.cluster() {
            Some(cluster_config) => {
                engine.join(cluster_config.clone()).await?;
                let warmer = engine.clone();
                engine.spawn_load(warmer.warm_on_ring_changes());
            }
            None => {
                // Standalone, this node owns every key: load the warm keys now.
                let warmer = engine.clone();
                engine.spawn_load(async move { warmer.warm(&|_| true, 4, false).await });
            }
        }
        Ok(engine)
    }

    async fn join(&self, config: crate::cluster::ClusterConfig) -> Result<()> {
        let (listener, bound) = Bound::bind(&config).await?;
        let port = crate::cluster::peer::listener::PeerPort {
            engine: self.clone(),
            transport: config.pipe_transport()?,
            max_message_bytes: config.max_message_bytes,
            shutdown: self.inner.shutdown.clone(),
            pipe_threads: crate::cluster::peer::ThreadSlots::new(config.pipe_threads),
        };
        let hash = self.inner.registry.fingerprint();
        let events = self.inner.events.clone();
        let cluster =
            Cluster::join(config, bound, hash, events, self.inner.metrics.clone()).await?;
        let _ = self.inner.cluster.set(cluster.clone());
        self.inner.loads.spawn(async move {
            if let Err(err) = crate::cluster::peer::listener::serve(port, listener).await {
                tracing::error!(%err, "the peer server stopped");
            }
        });
        cluster.settle().await;
        cluster.set_ready(true).await;
        Ok(())
    }

    /// Stops the engine. In a cluster it first leaves: peers stop routing to it after a drain
    /// of two gossip rounds. Then loads in flight end with [`Error::Stopped`] and are awaited;
    /// later calls fail with [`Error::Stopped`]. Stopping twice is harmless.
    pub async fn stop(&self) {
        if let Some(cluster) = self.inner.cluster.get() {
            cluster.leave().await;
        }
        self.inner.stopped.store(true, Ordering::SeqCst);
        self.inner.shutdown.cancel();
        self.inner.loads.close();
        self.inner.loads.wait().await;
    }

    /// The value of `key` in `keyspace`: from the local store or hot cache, or loaded (by the
    /// key's owner in a cluster).
    ///
    /// Errors: [`Error::NotFound`] when the source has no value, [`Error::Timeout`] after the
    /// keyspace read timeout (the load itself is bounded by it too; a caller that gives up or is
    /// dropped early does not stop it for the others), [`Error::DataSource`] when
    /// the source fails, [`Error::KeySpaceNotFound`], [`Error::InvalidArgument`] for an empty
    /// or oversized key, [`Error::Unavailable`] when neither the owner nor this node can load.
    pub async fn get(&self, keyspace: &str, key: &str) -> Result<Bytes> {
        self.check_running()?;
        check_key(key)?;
        let span = tracing::debug_span!("distcache.get", keyspace, outcome = tracing::field::Empty);
        let stores = self.stores_for(key);
        // The hit path borrows the keyspace; only a miss takes a reference to carry on with.
        let space = self.inner.registry.with(keyspace, |space| {
            self.answer_locally(space, key, stores).ok_or_else(|| space.clone())
        })?;
        match space {
            Err(space) => self.load_missing(&space, key).instrument(span).await,
            Ok((outcome, answered)) => {
                span.record("outcome", outcome);
                answered
            }
        }
    }

    /// The values of many keys, in the order asked; one key's failure does not fail the rest.
    /// In a cluster, keys owned by one peer travel in one call to it.
    ///
    /// The outer error is for the whole call (unknown keyspace, stopped engine).
    #[tracing::instrument(name = "distcache.get_many", level = "debug", skip(self, keys), fields(keys = keys.len()))]
    pub async fn get_many<K: AsRef<str>>(
        &self,
        keyspace: &str,
        keys: &[K],
    ) -> Result<Vec<Result<Bytes>>> {
        let space = self.space(keyspace)?;
        let keys: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
        match self.cluster() {
            Some(cluster) => Ok(self.get_many_routed(&space, cluster, &keys).await),
            None => Ok(join_all(keys.iter().map(|key| self.get_in(&space, key))).await),
        }
    }

    /// Stores a value at the key's owner, replacing any other; it wins over a load of the key
    /// in flight, and every node's hot cache drops the key.
    ///
    /// Fails with [`Error::InvalidArgument`] for an empty key or a value that cannot fit the
    /// keyspace budget.
    pub async fn put(&self, keyspace: &str, entry: impl Into<Entry>) -> Result<()> {
        let mut results = self.put_many(keyspace, [entry]).await?;
        results.pop().unwrap_or(Ok(()))
    }

    /// Stores many values; one entry's failure does not fail the rest. In a cluster, entries
    /// owned by one peer travel in one call to it.
    #[tracing::instrument(name = "distcache.put_many", level = "debug", skip(self, entries))]
    pub async fn put_many<E: Into<Entry>>(
        &self,
        keyspace: &str,
        entries: impl IntoIterator<Item = E>,
    ) -> Result<Vec<Result<()>>> {
        let space = self.space(keyspace)?;
        let entries: Vec<Entry> = entries.into_iter().map(Into::into).collect();
        match self.cluster() {
            Some(cluster) => Ok(self.put_many_routed(&space, cluster, entries).await),
            None => Ok(entries.into_iter().map(|entry| space.put(entry)).collect()),
        }
    }

    /// Removes a key at its owner (absent keys are fine); a load of it in flight will not write
    /// it back, and every node's hot cache drops it.
    pub async fn delete(&self, keyspace: &str, key: &str) -> Result<()> {
        let mut results = self.delete_many(keyspace, &[key]).await?;
        results.pop().unwrap_or(Ok(()))
    }

    /// Removes many keys; one key's failure does not fail the rest.
    #[tracing::instrument(name = "distcache.delete_many", level = "debug", skip(self, keys), fields(keys = keys.len()))]
    pub async fn delete_many<K: AsRef<str>>(
        &self,
        keyspace: &str,
        keys: &[K],
    ) -> Result<Vec<Result<()>>> {
        let space = self.space(keyspace)?;
        let keys: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
        match self.cluster() {
            Some(cluster) => Ok(self.delete_many_routed(&space, cluster, &keys).await),
            None => Ok(keys.iter().map(|key| space.delete(key)).collect()),
        }
    }

    /// Removes a keyspace and everything stored in it, on every node.
    pub async fn delete_keyspace(&self, name: &str) -> Result<()> {
        self.delete_keyspaces(&[name]).await
    }

    /// Removes several keyspaces on every node; if one is unknown here, none is removed.
    #[tracing::instrument(name = "distcache.delete_keyspaces", level = "debug", skip(self))]
    pub async fn delete_keyspaces(&self, names: &[&str]) -> Result<()> {
        self.serve_delete_keyspaces(names).await?;
        self.broadcast_keyspace_deletion(names).await;
        Ok(())
    }

    /// Replaces a keyspace's definition at run time, or adds the keyspace if it is new.
    ///
    /// Stored values are kept as far as the new budget allows, each expiring no later than the
    /// new policy would let it (values put with their own expiry keep it). Counters carry on.
    /// In a cluster the settings (not the data source) reach every node that has the keyspace.
    #[tracing::instrument(name = "distcache.update_keyspace", level = "debug", skip_all, fields(keyspace = keyspace.name()))]
    pub async fn update_keyspace(&self, keyspace: KeySpace) -> Result<()> {
        self.check_running()?;
        let settings = crate::cluster::wire::settings(&keyspace);
        self.inner.registry.upsert(keyspace)?;
        self.publish_keyspaces().await;
        self.broadcast_keyspace_update(settings).await;
        Ok(())
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

    /// The hottest keys of a keyspace on this node (its callers' and its peers' requests), with
    /// their recent rates in requests per second, hottest first; at most 32.
    pub fn hot_keys(&self, keyspace: &str) -> Result<Vec<(String, f64)>> {
        Ok(self.inner.registry.get(keyspace)?.rates.hottest())
    }

    /// Peer joins and leaves, as they happen (lagging receivers miss the oldest events).
    pub fn events(&self) -> broadcast::Receiver<ClusterEvent> {
        self.inner.events.subscribe()
    }

    /// Whether the engine still serves: true from `start` until `stop` has drained it.
    pub fn is_running(&self) -> bool {
        !self.inner.stopped.load(Ordering::Relaxed)
    }

    /// This node's id in the cluster (`None` standalone).
    pub fn node_id(&self) -> Option<String> {
        self.cluster().map(|c| c.node_id().to_owned())
    }

    /// Where this node serves peers (`None` standalone).
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.cluster().map(|c| c.grpc_addr())
    }

    /// Where this node gossips (`None` standalone).
    pub fn gossip_addr(&self) -> Option<std::net::SocketAddr> {
        self.cluster().map(|c| c.gossip_addr())
    }

    /// The ring this node routes by (`None` standalone).
    pub fn ring(&self) -> Option<Arc<Ring>> {
        self.cluster().map(|c| c.ring())
    }

    /// Every live node gossip knows of, with ownership and breaker state (empty standalone).
    pub fn peers(&self) -> Vec<PeerStatus> {
        self.cluster().map(|c| c.peer_statuses()).unwrap_or_default()
    }

    pub(crate) fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.inner.cluster.get()
    }

    pub(crate) fn check_running(&self) -> Result<()> {
        if self.inner.stopped.load(Ordering::Relaxed) { Err(Error::Stopped) } else { Ok(()) }
    }

    pub(crate) fn space(&self, keyspace: &str) -> Result<Arc<Space>> {
        self.check_running()?;
        self.inner.registry.get(keyspace)
    }

    /// Publishes the keyspace fingerprint after a change of definitions.
    pub(crate) async fn publish_keyspaces(&self) {
        if let Some(cluster) = self.cluster() {
            cluster.set_keyspaces_hash(&self.inner.registry.fingerprint()).await;
        }
    }

    async fn get_in(&self, space: &Arc<Space>, key: &str) -> Result<Bytes> {
        check_key(key)?;
        match self.answer_locally(space, key, self.stores_for(key)) {
            Some((_, answered)) => answered,
            None => self.load_missing(space, key).await,
        }
    }

    /// The stores that may answer a get of `key` here: only the hot cache when a peer owns it
    /// (one store probe per get, and never a main-store copy the owner may have replaced).
    pub(crate) fn stores_for(&self, key: &str) -> Stores {
        match self.cluster() {
            Some(cluster) if cluster.is_peer_owned(key) => Stores::Hot,
            _ => Stores::MainAndHot,
        }
    }

    /// Answers a get from this node's `stores` when they can (the value, or a remembered
    /// not-found), starting a background refresh of a value close to expiry; `None` on a miss.
    /// The name says how it was answered, for spans.
    pub(crate) fn answer_locally(
        &self,
        space: &Arc<Space>,
        key: &str,
        stores: Stores,
    ) -> Option<(&'static str, Result<Bytes>)> {
        let (outcome, answered) = self.answer_kept(space, key, stores)?;
        Some((outcome, answered.map(|(value, _)| value)))
    }

    /// [`answer_locally`](Self::answer_locally), also saying how long this node keeps the
    /// value (what a peer is told), from the same lookup.
    pub(crate) fn answer_kept(
        &self,
        space: &Arc<Space>,
        key: &str,
        stores: Stores,
    ) -> Option<(&'static str, Result<(Bytes, Kept)>)> {
        match space.lookup(key, stores) {
            Lookup::Hit(value, at) => Some(("hit", Ok((value, Kept::Until(at))))),
            Lookup::Refresh(value, at) => {
                self.refresh(space, key);
                Some(("hit", Ok((value, Kept::Until(at)))))
            }
            Lookup::HotHit(value) => Some(("hot_hit", Ok((value, Kept::NotHere)))),
            Lookup::NotFound => Some(("negative_hit", Err(Error::NotFound))),
            Lookup::Miss => None,
        }
    }

    /// Loads a key the local stores do not have, within the keyspace read timeout.
    async fn load_missing(&self, space: &Arc<Space>, key: &str) -> Result<Bytes> {
        let deadline = Deadline::after(space.current().read_timeout);
        let result = match self.cluster().map(|c| c.route(key)) {
            Some(Route::Remote(peer)) => {
                tracing::Span::current().record("outcome", "peer");
                // Bounded by the deadline it carries, without a timer of its own.
                self.load_remote(space, key, peer, deadline).await
            }
            _ => {
                tracing::Span::current().record("outcome", "fetch");
                deadline.bound(self.load(space, key)).await
            }
        };
        if let Err(err) = &result
            && !matches!(err, Error::NotFound)
        {
            tracing::Span::current().record("outcome", "error");
        }
        result
    }

    /// Joins or starts the key's load on this node and waits for its result.
    pub(crate) async fn load(&self, space: &Arc<Space>, key: &str) -> Result<Bytes> {
        let flight = match space.flights.join(key) {
            Joined::Follower(flight) => {
                bump(&space.stats.local().fetches_deduped);
                flight
            }
            Joined::Leader(completion) => {
                let flight = completion.flight().clone();
                let previous_owner = self.cluster().and_then(|c| c.previous_owner(key));
                let (space, key) = (space.clone(), key.to_owned());
                self.spawn_load(async move { space.fill(key, completion, previous_owner).await });
                flight
            }
        };
        flight.wait().await
    }

    /// Reloads a value close to expiry in the background, unless a load of it is in flight.
    pub(crate) fn refresh(&self, space: &Arc<Space>, key: &str) {
        if let Joined::Leader(completion) = space.flights.join(key) {
            let (space, key) = (space.clone(), key.to_owned());
            self.spawn_load(async move { space.refresh(key, completion).await });
        }
    }

    /// Runs a leader's load in its own task, so no caller's cancellation stops it; `stop`
    /// ends it.
    pub(crate) fn spawn_load(&self, load: impl std::future::Future<Output = ()> + Send + 'static) {
        let shutdown = self.inner.shutdown.clone();
        self.inner.loads.spawn(async move {
            tokio::select! {
                () = load => {}
                () = shutdown.cancelled() => {}
            }
        });
    }
}
