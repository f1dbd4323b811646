//! Singleflight loads with fencing: one load per key at a time, and writes that win over it.
//!
//! A load joins (or starts) the key's [`Flight`]. The leader [`Flights::land`]s its result: under the key's shard lock it leaves the map and stores the
//! value, unless a `put` or `delete` fenced it meanwhile ([`Flights::fence`] takes the
//! same lock). A fenced flight still answers its waiters but never writes back over the newer
//! write, as memcache leases do. A leader that is dropped without landing abandons its flight:
//! waiters learn it from [`Flight::outcome`] and the next caller to join starts a new one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::watch;
use xxhash_rust::xxh3::xxh3_64;

use crate::error::{Error, Result};

const SHARDS: usize = 64;

type Outcome = Option<Result<Bytes>>;

/// One shard of a keyspace's flights, by key.
type Shard = HashMap<String, Arc<Flight>>;

/// One load in progress, shared by every caller that wants the same key.
#[derive(Debug)]
pub(crate) struct Flight {
    fenced: AtomicBool,
    done: watch::Receiver<Outcome>,
}

/// The leader's end of a flight: the one place its result is sent from.
#[derive(Debug)]
pub(crate) struct Completion {
    flight: Arc<Flight>,
    tx: watch::Sender<Outcome>,
}

/// Holds a key's shard while a write lands; see [`Flights::fence`].
#[derive(Debug)]
pub(crate) struct Fence<'a>(#[allow(dead_code)] MutexGuard<'a, Shard>);

/// How a caller joined a flight.
#[derive(Debug)]
pub(crate) enum Joined {
    /// The caller started the flight and must run the load.
    Leader(Completion),
    /// A load was already in flight; wait for it.
    Follower(Arc<Flight>),
}

impl Flight {
    /// Waits for the load's result; every waiter gets the same value or error.
    pub(crate) async fn wait(&self) -> Result<Bytes> {
        // Loads run in their own tasks: one vanishes unanswered only when its runtime stops.
        self.outcome().await.unwrap_or(Err(Error::Stopped))
    }

    /// Waits for the load's result; `None` if the leader was dropped before it landed.
    pub(crate) async fn outcome(&self) -> Option<Result<Bytes>> {
        let mut done = self.done.clone();
        let outcome = done.wait_for(Option::is_some).await;
        outcome.ok().and_then(|outcome| outcome.clone())
    }

    /// Whether the leader was dropped without landing.
    fn is_abandoned(&self) -> bool {
        self.done.has_changed().is_err() && self.done.borrow().is_none()
    }
}

impl Completion {
    /// The flight this completion answers.
    pub(crate) fn flight(&self) -> &Arc<Flight> {
        &self.flight
    }

    fn send(self, result: Result<Bytes>) {
        self.tx.send_replace(Some(result));
    }
}

/// The flights of one keyspace, sharded by key.
#[derive(Debug)]
pub(crate) struct Flights {
    shards: Box<[Mutex<Shard>]>,
}

impl Flights {
    pub(crate) fn new() -> Self {
        Flights { shards: (0..SHARDS).map(|_| Mutex::default()).collect() }
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        let index = (xxh3_64(key.as_bytes()) % SHARDS as u64) as usize;
        // A poisoned shard only means a panic elsewhere while it was held; its map is intact.
        self.shards[index].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Joins the key's flight, starting one if none is in progress.
    pub(crate) fn join(&self, key: &str) -> Joined {
        let mut shard = self.shard(key);
        if let Some(flight) = shard.get(key).filter(|f| !f.is_abandoned()) {
            return Joined::Follower(flight.clone());
        }
        let (tx, done) = watch::channel(None);
        let flight = Arc::new(Flight { fenced: AtomicBool::new(false), done });
        shard.insert(key.to_owned(), flight.clone());
        Joined::Leader(Completion { flight, tx })
    }

    /// Fences any load in flight for `key` and holds the key's shard until the returned guard
    /// drops: a write made under it cannot be overwritten by that load. The fenced load also
    /// leaves the map, so a get issued after the write starts a fresh load instead of taking
    /// the value the fenced one read before the write.
    pub(crate) fn fence(&self, key: &str) -> Fence<'_> {
        let mut shard = self.shard(key);
        if let Some(flight) = shard.remove(key) {
            flight.fenced.store(true, Ordering::Relaxed);
        }
        Fence(shard)
    }

    /// Ends a flight: under the key's lock, removes it and runs `fill` unless a write fenced
    /// it; then hands `result` to every waiter.
    pub(crate) fn land(
        &self,
        key: &str,
        completion: Completion,
        fill: impl FnOnce(),
        result: Result<Bytes>,
    ) {
        let mut shard = self.shard(key);
        if shard.get(key).is_some_and(|f| Arc::ptr_eq(f, &completion.flight)) {
            shard.remove(key);
        }
        if !completion.flight.fenced.load(Ordering::Relaxed) {
            fill();
        }
        drop(shard);
        completion.send(result);
    }

    /// Holds every shard, so no write or fill lands while the keyspace's store is swapped.
    pub(crate) fn freeze(&self) -> Vec<MutexGuard<'_, Shard>> {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(PoisonError::into_inner)).collect()
    }
}
