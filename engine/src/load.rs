//! Loads on a miss: from the data source on this node, or the value a peer (the owner) sent.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;

use crate::error::{Error, Result};
use crate::flight::Completion;
use crate::source::FetchError;
use crate::space::{Generation, Space, deadline};
use crate::stats::bump;
use crate::store::{Lookup, Stored};

impl Space {
    /// The leader's load on this node: re-checks the store, fetches from the data source, then
    /// lands the flight (storing the value unless a write fenced it).
    pub(crate) async fn fill(&self, key: String, completion: Completion) {
        let (result, stored) = self.load_from_source(&key).await;
        let keep = || {
            if let Some(stored) = stored {
                self.current().store.insert(key.clone(), stored);
            }
        };
        self.flights.land(&key, completion, keep, result);
    }

    /// Fetches `key` from the data source, catching panics; returns the caller's answer and
    /// what to keep in the main store.
    pub(crate) async fn load_from_source(&self, key: &str) -> (Result<Bytes>, Option<Stored>) {
        let generation = self.current_full();
        let fetch = AssertUnwindSafe(self.fetch(&generation, key)).catch_unwind();
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

    async fn fetch(&self, generation: &Generation, key: &str) -> (Result<Bytes>, Option<Stored>) {
        match generation.store.lookup(key) {
            Lookup::Hit(value) | Lookup::HotHit(value) => return (Ok(value), None),
            Lookup::NotFound => return (Err(Error::NotFound), None),
            Lookup::Miss => {}
        }
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
                let stored = generation
                    .store
                    .fits(key.len(), value.len())
                    .then(|| generation.stored(key, Some(value.clone()), None));
                (Ok(value), stored)
            }
            Ok(Err(FetchError::NotFound)) => {
                let stored = generation.def.negative_ttl().map(|ttl| Stored {
                    value: None,
                    expires_at: deadline(Some(ttl)),
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
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned());
    format!("the data source panicked: {detail}")
}
