//! A keyspace at run time: its current definition and stores, its flights and its counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::time::Instant;

use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::flight::Flights;
use crate::keyspace::{Expiration, KeySpace};
use crate::metrics::Metrics;
use crate::protect::{CircuitBreaker, Protection, RateLimit};
use crate::rate::RateSketch;
use crate::stats::{KeySpaceStats, Stats, bump};
use crate::store::{Lookup, Store, Stored};

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 16 * 1024;

/// Engine-wide defaults a keyspace falls back on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Defaults {
    pub(crate) read_timeout: Duration,
    pub(crate) write_timeout: Duration,
    /// The hot cache gets `max_bytes / hot_divisor`; 0 means no hot cache.
    pub(crate) hot_divisor: u64,
    pub(crate) rate_limit: Option<RateLimit>,
    pub(crate) circuit_breaker: Option<CircuitBreaker>,
}

/// Which of a keyspace's stores may answer a get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stores {
    /// The main store, then the hot cache: a key this node owns, or serves to a peer.
    MainAndHot,
    /// Only the hot cache: a key a peer owns. The main store keeps this node's keys; a copy
    /// left there from before a ring change is not served, as the owner may have replaced it.
    Hot,
}

/// A definition together with the stores built for it; replaced whole by `update_keyspace`.
#[derive(Debug)]
pub(crate) struct Generation {
    pub(crate) def: KeySpace,
    /// Values this node loaded or was given as the owner.
    pub(crate) store: Store,
    /// Popular values owned by peers, kept here so they stop crossing the network.
    pub(crate) hot: Option<Store>,
    pub(crate) read_timeout: Duration,
    pub(crate) write_timeout: Duration,
    /// Rate limit and breaker in front of the data source.
    pub(crate) protection: Protection,
}

/// One live keyspace on this node.
#[derive(Debug)]
pub(crate) struct Space {
    current: ArcSwap<Generation>,
    /// Data-source loads on this node.
    pub(crate) flights: Flights,
    /// Gets waiting on a peer (the key's owner); separate from `flights` so that a node serving
    /// a peer never waits on its own call to that peer when rings disagree.
    pub(crate) routes: Flights,
    pub(crate) stats: Arc<Stats>,
    /// Recent request rates of the keys asked of this node (its callers' and its peers'), and
    /// the hottest of them.
    pub(crate) rates: RateSketch,
    pub(crate) metrics: Metrics,
    /// Bumped by every write or invalidation; a hot-cache fill that saw it change stays out.
    invalidations: AtomicU64,
    /// The keyspace's name, which an update never changes (read on every remote get).
    name: Arc<str>,
}

impl Space {
    pub(crate) fn new(def: KeySpace, defaults: Defaults, metrics: Metrics) -> Self {
        let stats = Arc::new(Stats::new());
        let name = Arc::from(def.name());
        let generation = Generation::new(def, defaults, &stats);
        Space {
            name,
            current: ArcSwap::from_pointee(generation),
            flights: Flights::new(),
            routes: Flights::new(),
            stats,
            rates: RateSketch::new(Duration::from_secs(10)),
            invalidations: AtomicU64::new(0),
            metrics,
        }
    }

    pub(crate) fn current(&self) -> arc_swap::Guard<Arc<Generation>> {
        self.current.load()
    }

    pub(crate) fn current_full(&self) -> Arc<Generation> {
        self.current.load_full()
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Counts a get and answers it from the stores that may hold the key, if they can.
    pub(crate) fn lookup(&self, key: &str, stores: Stores) -> Lookup {
        let cells = self.stats.local();
        let generation = self.current.load();
        let mut found = match stores {
            Stores::MainAndHot => generation.store.lookup(key),
            Stores::Hot => Lookup::Miss,
        };
        if let (Lookup::Miss, Some(hot)) = (&found, &generation.hot) {
            found = match hot.lookup(key) {
                Lookup::Hit(value, _) => Lookup::HotHit(value),
                other => other,
            };
        }
        match found {
            Lookup::Hit(..) | Lookup::Refresh(..) => bump(&cells.hits),
            Lookup::HotHit(_) => {
                bump(&cells.hits);
                bump(&cells.hot_hits);
            }
            Lookup::NotFound => bump(&cells.negative_hits),
            Lookup::Miss => bump(&cells.misses),
        }
        match (&found, stores) {
            // A miss this node loads is worth counting exactly; everything else is sampled,
            // which keeps hot keys visible at a fraction of the cost.
            (Lookup::Miss, Stores::MainAndHot) => {
                self.rates.record(key);
            }
            _ => self.rates.record_sampled(key),
        }
        found
    }

    /// Checks that an entry can be stored here, naming what to change if not.
    pub(crate) fn check_entry(&self, entry: &Entry) -> Result<()> {
        check_key(&entry.key)?;
        let generation = self.current.load();
        if generation.store.fits(entry.key.len(), entry.value.len()) {
            return Ok(());
        }
        Err(Error::invalid(format!(
            "a value of {} bytes under a key of {} bytes does not fit keyspace `{}` \
             (max_bytes {}, including {} bytes of per-entry overhead): raise max_bytes or \
             store smaller values",
            entry.value.len(),
            entry.key.len(),
            generation.def.name(),
            generation.def.max_bytes(),
            crate::store::ENTRY_OVERHEAD,
        )))
    }

    /// Stores a value written by the application; it wins over any load in flight.
    pub(crate) fn put(&self, entry: Entry) -> Result<()> {
        self.check_entry(&entry)?;
        let stored = self.current.load().stored(&entry.key, Some(entry.value), entry.expiration);
        bump(&self.stats.local().puts);
        let _fences = self.fence(&entry.key);
        let generation = self.current.load();
        if let Some(hot) = &generation.hot {
            hot.remove(&entry.key);
        }
        generation.store.insert(entry.key, stored);
        Ok(())
    }

    /// Removes a key; it wins over any load in flight.
    pub(crate) fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        bump(&self.stats.local().deletes);
        let _fences = self.fence(key);
        let generation = self.current.load();
        generation.store.remove(key);
        if let Some(hot) = &generation.hot {
            hot.remove(key);
        }
        Ok(())
    }

    /// Drops this node's copies of a key written at another node (its owner); fences gets in
    /// flight for it. That is the hot copy, and any main-store copy left from when this node
    /// owned the key (before a join moved it) or served it while rings disagreed: the write
    /// made it stale, and lookups check the main store first.
    pub(crate) fn invalidate(&self, key: &str) {
        let _fences = self.fence(key);
        let generation = self.current.load();
        generation.store.remove(key);
        if let Some(hot) = &generation.hot {
            hot.remove(key);
        }
    }

    /// Fences loads and peer gets of `key` until the guards drop, and marks a write.
    fn fence(&self, key: &str) -> impl Sized + '_ {
        let fences = (self.routes.fence(key), self.flights.fence(key));
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        fences
    }

    /// A mark to pass to [`admit_hot`](Self::admit_hot) later.
    pub(crate) fn invalidation_mark(&self) -> u64 {
        self.invalidations.load(Ordering::SeqCst)
    }

    /// Stores a value from a peer in the hot cache unless a write came after `mark`.
    pub(crate) fn admit_hot(&self, key: &str, stored: Stored, mark: u64) {
        let _fence = self.routes.fence(key);
        self.admit_hot_fenced(key, stored, mark);
    }

    /// [`admit_hot`](Self::admit_hot) for a caller that already holds the key's route shard
    /// (a landing flight), so no invalidation can slip between the check and the insert.
    pub(crate) fn admit_hot_fenced(&self, key: &str, stored: Stored, mark: u64) {
        let generation = self.current.load();
        if let Some(hot) = &generation.hot
            && self.invalidations.load(Ordering::SeqCst) == mark
        {
            hot.insert(key, stored);
        }
    }

    /// Swaps in a new definition, keeping what the new budget and policy allow of the data.
    pub(crate) fn replace(&self, def: KeySpace, defaults: Defaults) {
        let next = Generation::new(def, defaults, &self.stats);
        let _frozen = (self.routes.freeze(), self.flights.freeze());
        let previous = self.current.load_full();
        next.store.migrate_from(&previous.store, &next.def);
        self.current.store(Arc::new(next));
        previous.store.clear();
    }

    /// Empties the stores (the keyspace is being deleted).
    pub(crate) fn clear(&self) {
        let _frozen = (self.routes.freeze(), self.flights.freeze());
        let generation = self.current.load();
        generation.store.clear();
        if let Some(hot) = &generation.hot {
            hot.clear();
        }
    }

    pub(crate) fn stats(&self) -> KeySpaceStats {
        let generation = self.current.load();
        let (entries, bytes) = generation.store.size();
        let (hot_entries, hot_bytes) = generation.hot.as_ref().map_or((0, 0), Store::size);
        KeySpaceStats {
            entries,
            bytes,
            max_bytes: generation.store.max_bytes(),
            hot_entries,
            hot_bytes,
            breaker: generation.protection.breaker_state(),
            ..self.stats.snapshot()
        }
    }
}

impl Generation {
    fn new(def: KeySpace, defaults: Defaults, stats: &Arc<Stats>) -> Self {
        let hot_bytes = def.max_bytes().checked_div(defaults.hot_divisor).unwrap_or(0);
        Generation {
            store: Store::main(&def, stats.clone()),
            hot: (hot_bytes > 0).then(|| Store::hot(&def, hot_bytes)),
            read_timeout: def.read_timeout().unwrap_or(defaults.read_timeout),
            write_timeout: def.write_timeout().unwrap_or(defaults.write_timeout),
            protection: Protection::new(
                def.rate_limit().or(defaults.rate_limit),
                def.circuit_breaker().or(defaults.circuit_breaker),
            ),
            def,
        }
    }

    /// The stored form of a value, with the writer's expiry or else the keyspace policy.
    pub(crate) fn stored(
        &self,
        key: &str,
        value: Option<Bytes>,
        chosen: Option<Expiration>,
    ) -> Stored {
        let pinned = chosen.is_some();
        let expiration = match (&value, chosen) {
            (_, Some(chosen)) => chosen,
            (Some(value), None) => self.def.expiration_of(key, value),
            (None, None) => Expiration::Never,
        };
        Stored { value, expires_at: deadline(expiration.ttl()), pinned }
    }
}

/// The instant a TTL ends; a TTL past the clock's range (say `Duration::MAX`) never ends.
pub(crate) fn deadline(ttl: Option<Duration>) -> Option<Instant> {
    ttl.and_then(|ttl| Instant::now().checked_add(ttl))
}

/// Rejects keys the engine cannot store or send.
pub(crate) fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid("the key is empty: keys must have at least one byte"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::invalid(format!(
            "the key has {} bytes, more than the {MAX_KEY_BYTES}-byte limit: hash or shorten it",
            key.len()
        )));
    }
    Ok(())
}
