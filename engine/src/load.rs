//! Loads on a miss: from the data source on this node, or the value a peer (the owner) sent.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;

use crate::cluster::peer::PeerClient;
use crate::error::{Error, Result};
use crate::flight::Completion;
use crate::source::FetchError;
use crate::space::{Generation, Space, deadline};
use crate::stats::bump;
use crate::store::{Lookup, Stored};

/// How long a new owner waits for the previous owner's copy before loading from the source.
const HANDOFF_TIMEOUT: Duration = Duration::from_millis(250);

impl Space {
    /// The leader's load on this node: re-checks the store, fetches from the data source, then
    /// lands the flight (storing the value unless a write fenced it).
    /// `previous_owner`, when set, is asked for its copy first (warm handoff after a ring
    /// change).
    pub(crate) async fn fill(
        &self,
        key: String,
        completion: Completion,
        previous_owner: Option<Arc<PeerClient>>,
    ) {
        if let Some(peer) = previous_owner
            && let Some((value, stored)) = self.handoff(&key, &peer).await
        {
            let keep = || self.current().store.insert(key.as_str(), stored);
            // Its waiters (the leader among them) get the value from the flight.
            let _ = self.flights.land(&key, completion, keep, Ok(value));
            return;
        }
        self.fill_with(key, completion, true).await;
    }

    /// The previous owner's copy of `key`, if it still has one; a miss or failure is not an
    /// error, the load goes on to the data source.
    async fn handoff(&self, key: &str, peer: &PeerClient) -> Option<(Bytes, Stored)> {
        let generation = self.current_full();
        if let Lookup::Hit(..) | Lookup::Refresh(..) | Lookup::NotFound =
            generation.store.lookup(key)
        {
            return None;
        }
        let key_ref = distcache_proto::v1::KeyRef {
            keyspace: generation.def.name().to_owned(),
            key: key.to_owned(),
        };
        let remote = peer.peek(key_ref, HANDOFF_TIMEOUT).await.ok()?.ok()?;
        if !generation.store.fits(key.len(), remote.value.len()) {
            return None;
        }
        bump(&self.stats.local().handoffs);
        let stored = Stored {
            // Its own allocation, not a slice of the connection's read buffer.
            value: Some(Bytes::copy_from_slice(&remote.value)),
            expires_at: deadline(remote.ttl),
            pinned: false,
        };
        Some((remote.value, stored))
    }

    /// A refresh-ahead reload: like [`fill`](Self::fill) but without re-checking the store,
    /// which still holds the value being refreshed.
    pub(crate) async fn refresh(&self, key: String, completion: Completion) {
        bump(&self.stats.local().refreshes);
        self.fill_with(key, completion, false).await;
    }

    async fn fill_with(&self, key: String, completion: Completion, recheck: bool) {
        let (result, stored) = self.load_with(&key, recheck).await;
        let keep = || {
            if let Some(stored) = stored {
                self.current().store.insert(key.as_str(), stored);
            }
        };
        let _ = self.flights.land(&key, completion, keep, result);
    }

    /// Fetches `key` from the data source, catching panics; returns the caller's answer and
    /// what to keep in the main store.
    pub(crate) async fn load_from_source(&self, key: &str) -> (Result<Bytes>, Option<Stored>) {
        self.load_with(key, true).await
    }

    async fn load_with(&self, key: &str, recheck: bool) -> (Result<Bytes>, Option<Stored>) {
        let generation = self.current_full();
        let fetch = AssertUnwindSafe(self.fetch(&generation, key, recheck)).catch_unwind();
        fetch.await.unwrap_or_else(|panic| {
            bump(&self.stats.local().fetch_errors);
            (Err(Error::data_source(panic_message(&*panic))), None)
        })
    }

    /// Loads `key` here because its owner is unreachable; keeps it only briefly, in the hot
    /// cache, so the main store holds no copy of a key this node does not own.
    pub(crate) async fn load_fallback(
        &self,
        key: &str,
        keep_for: Duration,
    ) -> (Result<Bytes>, Option<Stored>) {
        bump(&self.stats.local().fallback_loads);
        let (result, stored) = self.load_from_source(key).await;
        let stored = stored.filter(|s| s.value.is_some()).map(|mut s| {
            let cap = deadline(Some(keep_for));
            s.expires_at = match (s.expires_at, cap) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            s
        });
        (result, stored)
    }

    async fn fetch(
        &self,
        generation: &Generation,
        key: &str,
        recheck: bool,
    ) -> (Result<Bytes>, Option<Stored>) {
        if recheck {
            match generation.store.lookup(key) {
                Lookup::Hit(value, _) | Lookup::HotHit(value) | Lookup::Refresh(value, _) => {
                    return (Ok(value), None);
                }
                Lookup::NotFound => return (Err(Error::NotFound), None),
                Lookup::Miss => {}
            }
        }
        let probe = match generation.protection.admit().await {
            Ok(probe) => probe,
            Err(refused) => {
                let counter = match refused {
                    Error::CircuitOpen => &self.stats.local().circuit_rejections,
                    _ => &self.stats.local().rate_limited,
                };
                bump(counter);
                return self.stale_or(generation, key, refused);
            }
        };
        // Not-found is an answer, not a failure of the source.
        let report = |success: bool| {
            if let Some(probe) = probe {
                probe.record(success);
            }
        };
        let cells = self.stats.local();
        bump(&cells.fetches);
        let timeout = generation.read_timeout;
        let started = tokio::time::Instant::now();
        let fetched = tokio::time::timeout(timeout, generation.def.source().fetch(key)).await;
        let outcome = match &fetched {
            Ok(Ok(_)) => "ok",
            Ok(Err(FetchError::NotFound)) => "not_found",
            Ok(Err(FetchError::Failed(_))) => "error",
            Err(_) => "timeout",
        };
        self.metrics.fetch(generation.def.name(), started.elapsed(), outcome);
        match fetched {
            Ok(Ok(value)) => {
                report(true);
                let stored = generation
                    .store
                    .fits(key.len(), value.len())
                    .then(|| generation.stored(key, Some(value.clone()), None));
                (Ok(value), stored)
            }
            Ok(Err(FetchError::NotFound)) => {
                report(true);
                let stored = generation.def.negative_ttl().map(|ttl| Stored {
                    value: None,
                    expires_at: deadline(Some(ttl)),
                    pinned: false,
                });
                (Err(Error::NotFound), stored)
            }
            Ok(Err(FetchError::Failed(err))) => {
                report(false);
                bump(&cells.fetch_errors);
                self.stale_or(generation, key, Error::DataSource(Arc::from(err)))
            }
            Err(_) => {
                report(false);
                bump(&cells.fetch_errors);
                self.stale_or(generation, key, Error::Timeout(timeout))
            }
        }
    }

    /// The value kept past its expiry (serve-stale), or the error that stopped the reload.
    fn stale_or(
        &self,
        generation: &Generation,
        key: &str,
        err: Error,
    ) -> (Result<Bytes>, Option<Stored>) {
        match generation.store.stale(key) {
            Some(value) if generation.def.stale_for().is_some() => {
                bump(&self.stats.local().stale_served);
                (Ok(value), None)
            }
            _ => (Err(err), None),
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned());
    format!("the data source panicked: {detail}")
}
