//! A keyspace at run time: its current definition and store, its flights and its counters.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use futures::FutureExt;
use tokio::time::Instant;

use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::flight::{Completion, Flights};
use crate::keyspace::KeySpace;
use crate::source::FetchError;
use crate::stats::{KeySpaceStats, Stats, bump};
use crate::store::{Lookup, Store, Stored};

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 16 * 1024;

/// Engine-wide defaults a keyspace falls back on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Defaults {
    pub(crate) read_timeout: Duration,
    pub(crate) write_timeout: Duration,
}

/// A definition together with the store built for it; replaced whole by `update_keyspace`.
#[derive(Debug)]
pub(crate) struct Generation {
    pub(crate) def: KeySpace,
    pub(crate) store: Store,
    pub(crate) read_timeout: Duration,
    pub(crate) write_timeout: Duration,
}

/// One live keyspace on this node.
#[derive(Debug)]
pub(crate) struct Space {
    current: ArcSwap<Generation>,
    pub(crate) flights: Flights,
    pub(crate) stats: Arc<Stats>,
}

impl Space {
    pub(crate) fn new(def: KeySpace, defaults: Defaults) -> Self {
        let stats = Arc::new(Stats::new());
        let generation = Generation::new(def, defaults, &stats);
        Space { current: ArcSwap::from_pointee(generation), flights: Flights::new(), stats }
    }

    pub(crate) fn current(&self) -> arc_swap::Guard<Arc<Generation>> {
        self.current.load()
    }

    pub(crate) fn name(&self) -> String {
        self.current.load().def.name().to_owned()
    }

    /// Counts a get and answers it from the store if possible.
    pub(crate) fn lookup(&self, key: &str) -> Lookup {
        let cells = self.stats.local();
        bump(&cells.gets);
        let found = self.current.load().store.lookup(key);
        match found {
            Lookup::Hit(_) => bump(&cells.hits),
            Lookup::NotFound => bump(&cells.negative_hits),
            Lookup::Miss => bump(&cells.misses),
        }
        found
    }

    /// The leader's load: re-checks the store, fetches from the data source, then lands the
    /// flight (storing the value unless a write fenced it).
    pub(crate) async fn fill(&self, key: String, completion: Completion) {
        let generation = self.current.load_full();
        let fetch = AssertUnwindSafe(self.fetch(&generation, &key)).catch_unwind();
        let (result, fill) = fetch.await.unwrap_or_else(|panic| {
            bump(&self.stats.local().fetch_errors);
            (Err(Error::data_source(panic_message(&*panic))), None)
        });
        let store_fill = || {
            if let Some(stored) = fill {
                self.current.load().store.insert(key.clone(), stored);
            }
        };
        self.flights.land(&key, completion, store_fill, result);
    }

    /// Fetches `key`, returning the caller's answer and what to store.
    async fn fetch(&self, generation: &Generation, key: &str) -> (Result<Bytes>, Option<Stored>) {
        match generation.store.lookup(key) {
            Lookup::Hit(value) => return (Ok(value), None),
            Lookup::NotFound => return (Err(Error::NotFound), None),
            Lookup::Miss => {}
        }
        let cells = self.stats.local();
        bump(&cells.fetches);
        let timeout = generation.read_timeout;
        let fetched = tokio::time::timeout(timeout, generation.def.source().fetch(key)).await;
        match fetched {
            Ok(Ok(value)) => {
                let stored = generation
                    .store
                    .fits(key.len(), value.len())
                    .then(|| generation.stored(key, Some(value.clone()), None));
                (Ok(value), stored)
            }
            Ok(Err(FetchError::NotFound)) => {
                let stored = generation.def.negative_ttl().map(|ttl| Stored {
                    value: None,
                    expires_at: Some(Instant::now() + ttl),
                    pinned: false,
                });
                (Err(Error::NotFound), stored)
            }
            Ok(Err(FetchError::Failed(err))) => {
                bump(&cells.fetch_errors);
                (Err(Error::DataSource(Arc::from(err))), None)
            }
            Err(_) => {
                bump(&cells.fetch_errors);
                (Err(Error::Timeout(timeout)), None)
            }
        }
    }

    /// Stores a value written by the application; it wins over any load in flight.
    pub(crate) fn put(&self, entry: Entry) -> Result<()> {
        check_key(&entry.key)?;
        let generation = self.current.load();
        if !generation.store.fits(entry.key.len(), entry.value.len()) {
            return Err(Error::invalid(format!(
                "a value of {} bytes under a key of {} bytes does not fit keyspace `{}` \
                 (max_bytes {}, including {} bytes of per-entry overhead): raise max_bytes or \
                 store smaller values",
                entry.value.len(),
                entry.key.len(),
                generation.def.name(),
                generation.def.max_bytes(),
                crate::store::ENTRY_OVERHEAD,
            )));
        }
        let stored = generation.stored(&entry.key, Some(entry.value), entry.expiration);
        bump(&self.stats.local().puts);
        let _fence = self.flights.fence(&entry.key);
        self.current.load().store.insert(entry.key, stored);
        Ok(())
    }

    /// Removes a key; it wins over any load in flight.
    pub(crate) fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        bump(&self.stats.local().deletes);
        let _fence = self.flights.fence(key);
        self.current.load().store.remove(key);
        Ok(())
    }

    /// Swaps in a new definition, keeping what the new budget and policy allow of the data.
    pub(crate) fn replace(&self, def: KeySpace, defaults: Defaults) {
        let next = Generation::new(def, defaults, &self.stats);
        let _frozen = self.flights.freeze();
        let previous = self.current.load_full();
        next.store.migrate_from(&previous.store, &next.def);
        self.current.store(Arc::new(next));
        previous.store.clear();
    }

    /// Empties the store (the keyspace is being deleted).
    pub(crate) fn clear(&self) {
        let _frozen = self.flights.freeze();
        self.current.load().store.clear();
    }

    pub(crate) fn stats(&self) -> KeySpaceStats {
        let store = &self.current.load().store;
        let (entries, bytes) = store.size();
        KeySpaceStats { entries, bytes, max_bytes: store.max_bytes(), ..self.stats.snapshot() }
    }
}

impl Generation {
    fn new(def: KeySpace, defaults: Defaults, stats: &Arc<Stats>) -> Self {
        Generation {
            store: Store::new(&def, stats.clone()),
            read_timeout: def.read_timeout().unwrap_or(defaults.read_timeout),
            write_timeout: def.write_timeout().unwrap_or(defaults.write_timeout),
            def,
        }
    }

    /// The stored form of a value, with the writer's expiry or else the keyspace policy.
    fn stored(
        &self,
        key: &str,
        value: Option<Bytes>,
        chosen: Option<crate::keyspace::Expiration>,
    ) -> Stored {
        let pinned = chosen.is_some();
        let expiration = match (&value, chosen) {
            (_, Some(chosen)) => chosen,
            (Some(value), None) => self.def.expiration_of(key, value),
            (None, None) => crate::keyspace::Expiration::Never,
        };
        Stored { value, expires_at: expiration.ttl().map(|ttl| Instant::now() + ttl), pinned }
    }
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

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned());
    format!("the data source panicked: {detail}")
}
