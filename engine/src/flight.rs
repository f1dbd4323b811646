//! Singleflight loads with fencing: one load per key at a time, and writes that win over it.
//!
//! A load joins (or starts) the key's [`Flight`]. The leader [`Flights::land`]s its result: under the key's shard lock it leaves the map and stores the
//! value, unless a `put` or `delete` fenced it meanwhile ([`Flights::fence`] takes the
//! same lock). A fenced flight still answers its waiters but never writes back over the newer
//! write, as memcache leases do. A leader that is dropped without landing abandons its flight:
//! waiters learn it from [`Flight::outcome`] and the next caller to join starts a new one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use bytes::Bytes;
use compact_str::CompactString;
use tokio::sync::Notify;
use xxhash_rust::xxh3::xxh3_64;

use crate::error::{Error, Result};

const SHARDS: usize = 64;

/// One shard of a keyspace's flights, by key (inline up to 24 bytes: joining a flight
/// allocates no copy of a short key).
type Shard = HashMap<CompactString, Arc<Flight>, foldhash::fast::RandomState>;

/// One load in progress, shared by every caller that wants the same key.
#[derive(Debug, Default)]
pub(crate) struct Flight {
    fenced: AtomicBool,
    /// Set once: the result, or `None` if the leader was dropped before it landed.
    outcome: OnceLock<Option<Result<Bytes>>>,
    /// Whether anyone joined as a follower (set under the shard lock), so that a flight
    /// nobody else waits for lands without waking anyone.
    followed: AtomicBool,
    landed: Notify,
}

/// The leader's end of a flight: the one place its result is sent from. Dropped before
/// sending, it abandons the flight.
#[derive(Debug)]
pub(crate) struct Completion {
    flight: Arc<Flight>,
    /// The key's shard, so that landing does not hash the key again.
    shard: usize,
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
        loop {
            let landed = self.landed.notified();
            tokio::pin!(landed);
            // Registered before checking, so a landing in between still wakes this waiter.
            landed.as_mut().enable();
            // Pairs with the fence in `finish`: this waiter sees the outcome, or the leader
            // sees `followed` and wakes it.
            fence(Ordering::SeqCst);
            if let Some(outcome) = self.outcome.get() {
                return outcome.clone();
            }
            landed.await;
        }
    }

    fn is_abandoned(&self) -> bool {
        matches!(self.outcome.get(), Some(None))
    }

    fn finish(&self, outcome: Option<Result<Bytes>>) {
        if self.outcome.set(outcome).is_err() {
            return;
        }
        fence(Ordering::SeqCst);
        if self.followed.load(Ordering::SeqCst) {
            self.landed.notify_waiters();
        }
    }
}

impl Completion {
    /// The flight this completion answers, for a leader that waits on it apart from the
    /// load (which then runs in its own task).
    pub(crate) fn flight(&self) -> &Arc<Flight> {
        self.flight.followed.store(true, Ordering::SeqCst);
        &self.flight
    }

    fn send(self, result: Result<Bytes>) {
        self.flight.finish(Some(result));
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        // A no-op after `send`; otherwise the leader gave up and its followers must retry.
        self.flight.finish(None);
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

    fn shard_of(key: &str) -> usize {
        (xxh3_64(key.as_bytes()) % SHARDS as u64) as usize
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        // A poisoned shard only means a panic elsewhere while it was held; its map is intact.
        self.shards[shard].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Joins the key's flight, starting one if none is in progress.
    pub(crate) fn join(&self, key: &str) -> Joined {
        let index = Self::shard_of(key);
        let mut shard = self.lock(index);
        if let Some(flight) = shard.get(key).filter(|f| !f.is_abandoned()) {
            flight.followed.store(true, Ordering::SeqCst);
            return Joined::Follower(flight.clone());
        }
        let flight = Arc::new(Flight::default());
        shard.insert(key.into(), flight.clone());
        Joined::Leader(Completion { flight, shard: index })
    }

    /// Fences any load in flight for `key` and holds the key's shard until the returned guard
    /// drops: a write made under it cannot be overwritten by that load. The fenced load also
    /// leaves the map, so a get issued after the write starts a fresh load instead of taking
    /// the value the fenced one read before the write.
    pub(crate) fn fence(&self, key: &str) -> Fence<'_> {
        let mut shard = self.lock(Self::shard_of(key));
        if let Some(flight) = shard.remove(key) {
            flight.fenced.store(true, Ordering::Relaxed);
        }
        Fence(shard)
    }

    /// Ends a flight: under the key's lock, removes it and runs `fill` unless a write fenced
    /// it; then hands `result` to every waiter, and back to the leader.
    pub(crate) fn land(
        &self,
        key: &str,
        completion: Completion,
        fill: impl FnOnce(),
        result: Result<Bytes>,
    ) -> Result<Bytes> {
        let mut shard = self.lock(completion.shard);
        // One lookup in the common case; the key's flight is another only when a write fenced
        // this one and a later get started anew, and that one stays.
        if let Some(flight) = shard.remove(key)
            && !Arc::ptr_eq(&flight, &completion.flight)
        {
            shard.insert(key.into(), flight);
        }
        if !completion.flight.fenced.load(Ordering::Relaxed) {
            fill();
        }
        // Out of the map, under its lock: nobody can follow any more, so this is final.
        let followed = completion.flight.followed.load(Ordering::Relaxed);
        drop(shard);
        // A lone leader (the usual case) keeps its result to itself: no clone of it.
        if followed {
            completion.send(result.clone());
        }
        result
    }

    /// Holds every shard, so no write or fill lands while the keyspace's store is swapped.
    pub(crate) fn freeze(&self) -> Vec<MutexGuard<'_, Shard>> {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(PoisonError::into_inner)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_landed_flight_answers_every_follower() {
        let flights = Flights::new();
        let Joined::Leader(completion) = flights.join("k") else { panic!("first joins lead") };
        let followers: Vec<_> = (0..3)
            .map(|_| match flights.join("k") {
                Joined::Follower(flight) => tokio::spawn(async move { flight.wait().await }),
                Joined::Leader(_) => panic!("later joins follow"),
            })
            .collect();
        let landed = flights.land("k", completion, || {}, Ok(Bytes::from_static(b"v")));
        assert_eq!(landed.unwrap(), "v", "the leader gets its result back");
        for follower in followers {
            assert_eq!(follower.await.unwrap().unwrap(), "v");
        }
        assert!(matches!(flights.join("k"), Joined::Leader(_)), "a landed flight left the map");
    }

    #[tokio::test]
    async fn followers_of_an_abandoned_flight_learn_it_and_the_next_join_leads() {
        let flights = Flights::new();
        let Joined::Leader(completion) = flights.join("k") else { panic!("first joins lead") };
        let Joined::Follower(flight) = flights.join("k") else { panic!("later joins follow") };
        let follower = tokio::spawn(async move { flight.outcome().await });
        drop(completion);
        assert!(follower.await.unwrap().is_none(), "no outcome: the leader gave up");
        assert!(matches!(flights.join("k"), Joined::Leader(_)), "a new leader asks anew");
    }
}
