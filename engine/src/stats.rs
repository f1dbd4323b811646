//! Per-keyspace counters, striped so the hit path of concurrent callers does not contend.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// A point-in-time view of one keyspace's counters on this node.
///
/// Counters only grow (they reset when the engine restarts); `entries` and `bytes` are the
/// store's current size. `gets = hits + negative_hits + misses`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct KeySpaceStats {
    /// Calls to `get` (each key of a `get_many` counts once).
    pub gets: u64,
    /// Gets answered from the local store with a value.
    pub hits: u64,
    /// Gets that found nothing stored and went on to load.
    pub misses: u64,
    /// Gets answered "not found" from a negatively cached entry.
    pub negative_hits: u64,
    /// Calls made to the data source.
    pub fetches: u64,
    /// Gets that joined a load already in flight instead of starting their own.
    pub fetches_deduped: u64,
    /// Fetches that failed (not counting "not found"): errors, panics and timeouts.
    pub fetch_errors: u64,
    /// Entries removed to keep the keyspace within its byte budget.
    pub evictions: u64,
    /// Entries removed because their TTL ran out.
    pub expirations: u64,
    /// Values written with `put`.
    pub puts: u64,
    /// Keys removed with `delete`.
    pub deletes: u64,
    /// Gets answered from the hot cache (values owned by peers); included in `hits`.
    pub hot_hits: u64,
    /// Values received from the owning peer.
    pub peer_loads: u64,
    /// Calls to an owning peer that failed to reach it.
    pub peer_errors: u64,
    /// Loads made here because the owner was unreachable (kept only briefly, in the hot cache).
    pub fallback_loads: u64,
    /// Gets served to peers that asked this node as the owner.
    pub served_to_peers: u64,
    /// Fetches refused by the rate limit.
    pub rate_limited: u64,
    /// Fetches refused because the circuit breaker was open.
    pub circuit_rejections: u64,
    /// Gets answered with an expired value because reloading failed.
    pub stale_served: u64,
    /// Background reloads of values close to expiry (refresh-ahead).
    pub refreshes: u64,
    /// Loads answered by the previous owner's copy after a membership change.
    pub handoffs: u64,
    /// Keys loaded ahead of demand (warm keys and hot keys) after becoming their owner.
    pub warmed: u64,
    /// Entries stored now.
    pub entries: u64,
    /// Bytes accounted now: keys, values and the per-entry overhead.
    pub bytes: u64,
    /// The byte budget.
    pub max_bytes: u64,
    /// Entries in the hot cache now.
    pub hot_entries: u64,
    /// Bytes in the hot cache now.
    pub hot_bytes: u64,
    /// The state of the data source's circuit breaker, if the keyspace has one.
    pub breaker: Option<crate::protect::BreakerState>,
}

const STRIPES: usize = 8;

/// One stripe of counters, alone on its cache lines.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct Cells {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) negative_hits: AtomicU64,
    pub(crate) fetches: AtomicU64,
    pub(crate) fetches_deduped: AtomicU64,
    pub(crate) fetch_errors: AtomicU64,
    pub(crate) evictions: AtomicU64,
    pub(crate) expirations: AtomicU64,
    pub(crate) puts: AtomicU64,
    pub(crate) deletes: AtomicU64,
    pub(crate) hot_hits: AtomicU64,
    pub(crate) peer_loads: AtomicU64,
    pub(crate) peer_errors: AtomicU64,
    pub(crate) fallback_loads: AtomicU64,
    pub(crate) served_to_peers: AtomicU64,
    pub(crate) rate_limited: AtomicU64,
    pub(crate) circuit_rejections: AtomicU64,
    pub(crate) stale_served: AtomicU64,
    pub(crate) refreshes: AtomicU64,
    pub(crate) handoffs: AtomicU64,
    pub(crate) warmed: AtomicU64,
}

/// The live counters of one keyspace.
#[derive(Debug)]
pub(crate) struct Stats {
    stripes: Box<[Cells]>,
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

impl Stats {
    pub(crate) fn new() -> Self {
        Stats { stripes: (0..STRIPES).map(|_| Cells::default()).collect() }
    }

    /// The stripe of the calling thread.
    pub(crate) fn local(&self) -> &Cells {
        &self.stripes[stripe()]
    }

    /// Sums the stripes; the caller fills in the store's size.
    pub(crate) fn snapshot(&self) -> KeySpaceStats {
        let sum = |field: fn(&Cells) -> &AtomicU64| -> u64 {
            self.stripes.iter().map(|cells| field(cells).load(Relaxed)).sum()
        };
        KeySpaceStats {
            // Every get ends in exactly one of these, so `gets` costs the hit path nothing.
            gets: sum(|c| &c.hits) + sum(|c| &c.misses) + sum(|c| &c.negative_hits),
            hits: sum(|c| &c.hits),
            misses: sum(|c| &c.misses),
            negative_hits: sum(|c| &c.negative_hits),
            fetches: sum(|c| &c.fetches),
            fetches_deduped: sum(|c| &c.fetches_deduped),
            fetch_errors: sum(|c| &c.fetch_errors),
            evictions: sum(|c| &c.evictions),
            expirations: sum(|c| &c.expirations),
            puts: sum(|c| &c.puts),
            deletes: sum(|c| &c.deletes),
            hot_hits: sum(|c| &c.hot_hits),
            peer_loads: sum(|c| &c.peer_loads),
            peer_errors: sum(|c| &c.peer_errors),
            fallback_loads: sum(|c| &c.fallback_loads),
            served_to_peers: sum(|c| &c.served_to_peers),
            rate_limited: sum(|c| &c.rate_limited),
            circuit_rejections: sum(|c| &c.circuit_rejections),
            stale_served: sum(|c| &c.stale_served),
            refreshes: sum(|c| &c.refreshes),
            handoffs: sum(|c| &c.handoffs),
            warmed: sum(|c| &c.warmed),
            ..KeySpaceStats::default()
        }
    }
}

fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: Cell<usize> = Cell::new(NEXT.fetch_add(1, Relaxed) % STRIPES);
    }
    STRIPE.with(Cell::get)
}
