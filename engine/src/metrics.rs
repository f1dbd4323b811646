//! OpenTelemetry instruments of one engine.
//!
//! Counters and sizes are observed from the engine's own stats when a reader collects, so the
//! hit path pays nothing for them. Latencies are histograms recorded where data-source fetches
//! and peer calls happen. Instruments come from the [`Meter`] given in the config (by default
//! the global meter `distcache`, so install a meter provider before starting the engine).
//!
//! | instrument | kind | attributes |
//! | --- | --- | --- |
//! | `distcache.gets`, `.hits`, `.hot_hits`, `.misses`, `.negative_hits` | counter | `keyspace` |
//! | `distcache.fetches`, `.fetch_errors`, `.fetches_deduped` | counter | `keyspace` |
//! | `distcache.peer_loads`, `.peer_errors`, `.fallback_loads`, `.served_to_peers` | counter | `keyspace` |
//! | `distcache.evictions`, `.expirations`, `.puts`, `.deletes` | counter | `keyspace` |
//! | `distcache.rate_limited`, `.circuit_rejections`, `.stale_served` | counter | `keyspace` |
//! | `distcache.refreshes`, `.handoffs`, `.warmed` | counter | `keyspace` |
//! | `distcache.entries`, `distcache.bytes`, `distcache.max_bytes` | gauge | `keyspace` |
//! | `distcache.fetch.duration` | histogram (s) | `keyspace`, `outcome` (`ok`, `not_found`, `error`, `timeout`) |
//! | `distcache.peer.call.duration` | histogram (s) | `peer`, `outcome` (`ok`, `error`) |
//! | `distcache.breaker` | gauge (0 closed, 1 half-open, 2 open) | `keyspace` |
//! | `distcache.peer.breaker` | gauge (0 closed, 1 half-open, 2 open) | `peer` |

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter};

use crate::engine::{Engine, Inner};
use crate::protect::BreakerState;
use crate::stats::KeySpaceStats;

/// Latency buckets in seconds, from 50 µs to 10 s.
const BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];

/// The recorded (not observed) instruments.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    fetch_duration: Histogram<f64>,
    peer_call_duration: Histogram<f64>,
}

type Field = fn(&KeySpaceStats) -> u64;

const COUNTERS: [(&str, &str, Field); 25] = [
    ("distcache.gets", "gets", |s| s.gets),
    ("distcache.hits", "gets answered from this node's stores", |s| s.hits),
    ("distcache.hot_hits", "gets answered from the hot cache", |s| s.hot_hits),
    ("distcache.misses", "gets that had to load", |s| s.misses),
    ("distcache.negative_hits", "gets answered not-found from the negative cache", |s| {
        s.negative_hits
    }),
    ("distcache.fetches", "data-source fetches", |s| s.fetches),
    ("distcache.fetch_errors", "failed data-source fetches", |s| s.fetch_errors),
    ("distcache.fetches_deduped", "gets that joined a load in flight", |s| s.fetches_deduped),
    ("distcache.peer_loads", "values received from owning peers", |s| s.peer_loads),
    ("distcache.peer_errors", "calls to owning peers that failed", |s| s.peer_errors),
    ("distcache.fallback_loads", "loads made here because the owner was unreachable", |s| {
        s.fallback_loads
    }),
    ("distcache.served_to_peers", "gets served to peers", |s| s.served_to_peers),
    ("distcache.evictions", "entries evicted for space", |s| s.evictions),
    ("distcache.expirations", "entries expired", |s| s.expirations),
    ("distcache.puts", "values written", |s| s.puts),
    ("distcache.deletes", "keys deleted", |s| s.deletes),
    ("distcache.rate_limited", "fetches refused by the rate limit", |s| s.rate_limited),
    ("distcache.circuit_rejections", "fetches refused by an open breaker", |s| {
        s.circuit_rejections
    }),
    ("distcache.stale_served", "gets answered with a stale value", |s| s.stale_served),
    ("distcache.refreshes", "refresh-ahead reloads", |s| s.refreshes),
    ("distcache.handoffs", "loads answered by the previous owner", |s| s.handoffs),
    ("distcache.warmed", "keys loaded ahead of demand", |s| s.warmed),
    ("distcache.entries", "entries stored", |s| s.entries),
    ("distcache.bytes", "bytes accounted", |s| s.bytes),
    ("distcache.max_bytes", "byte budget", |s| s.max_bytes),
];

/// Every keyspace's stats, read once per collection and shared by all instruments: reading
/// stats runs the store's pending housekeeping, which should not happen once per instrument.
/// A collection asks each instrument once, so an instrument asking again means a new one.
type AllStats = Arc<Vec<(String, KeySpaceStats)>>;

struct Snapshot {
    engine: Weak<Inner>,
    /// The stats and which instruments (by bit) have read them.
    taken: Mutex<(u64, AllStats)>,
}

impl Snapshot {
    fn new(engine: Weak<Inner>) -> Self {
        Snapshot { engine, taken: Mutex::new((u64::MAX, Arc::default())) }
    }

    /// The stats for instrument number `reader` (below 64).
    fn read(&self, reader: usize) -> AllStats {
        let bit = 1u64 << (reader % 64);
        let mut taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
        if taken.0 & bit != 0 {
            let stats = match self.engine.upgrade() {
                Some(inner) => {
                    let engine = Engine { inner };
                    let names = engine.keyspaces();
                    names
                        .into_iter()
                        .filter_map(|k| engine.stats(&k).ok().map(|s| (k, s)))
                        .collect()
                }
                None => Vec::new(),
            };
            *taken = (0, Arc::new(stats));
        }
        taken.0 |= bit;
        taken.1.clone()
    }
}

fn breaker_level(state: BreakerState) -> u64 {
    match state {
        BreakerState::Closed => 0,
        BreakerState::HalfOpen => 1,
        BreakerState::Open => 2,
    }
}

impl Metrics {
    /// Creates the instruments of the engine behind `engine` on `meter`.
    pub(crate) fn register(meter: &Meter, engine: Weak<Inner>) -> Self {
        let snapshot = Arc::new(Snapshot::new(engine.clone()));
        for (index, (name, description, field)) in COUNTERS.into_iter().enumerate() {
            let snapshot = snapshot.clone();
            let observe = move |observer: &dyn opentelemetry::metrics::AsyncInstrument<u64>| {
                for (keyspace, stats) in snapshot.read(index).iter() {
                    observer.observe(field(stats), &[KeyValue::new("keyspace", keyspace.clone())]);
                }
            };
            // The last three are sizes, the rest only grow.
            if index >= COUNTERS.len() - 3 {
                meter
                    .u64_observable_gauge(name)
                    .with_description(description)
                    .with_callback(observe)
                    .build();
            } else {
                meter
                    .u64_observable_counter(name)
                    .with_description(description)
                    .with_callback(observe)
                    .build();
            }
        }
        meter
            .u64_observable_gauge("distcache.breaker")
            .with_description(
                "data-source breaker state per keyspace: 0 closed, 1 half-open, 2 open",
            )
            .with_callback(move |observer| {
                for (keyspace, stats) in snapshot.read(COUNTERS.len()).iter() {
                    if let Some(state) = stats.breaker {
                        let keyspace = KeyValue::new("keyspace", keyspace.clone());
                        observer.observe(breaker_level(state), &[keyspace]);
                    }
                }
            })
            .build();
        meter
            .u64_observable_gauge("distcache.peer.breaker")
            .with_description("breaker state of calls to each peer: 0 closed, 1 half-open, 2 open")
            .with_callback(move |observer| {
                let Some(inner) = engine.upgrade() else { return };
                for peer in (Engine { inner }).peers().into_iter().filter(|p| !p.is_self) {
                    let state = peer.breaker.map_or(0, breaker_level);
                    observer.observe(state, &[KeyValue::new("peer", peer.info.node_id)]);
                }
            })
            .build();
        let histogram = |name: &'static str, description: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(description)
                .with_boundaries(BUCKETS.to_vec())
                .build()
        };
        Metrics {
            fetch_duration: histogram("distcache.fetch.duration", "data-source fetch latency"),
            peer_call_duration: histogram("distcache.peer.call.duration", "peer call latency"),
        }
    }

    /// Records one data-source fetch.
    pub(crate) fn fetch(&self, keyspace: &str, elapsed: Duration, outcome: &'static str) {
        let attributes =
            [KeyValue::new("keyspace", keyspace.to_owned()), KeyValue::new("outcome", outcome)];
        self.fetch_duration.record(elapsed.as_secs_f64(), &attributes);
    }

    /// Records one call to a peer, with the peer's attributes built once (`PeerCallAttributes`):
    /// this runs on every peer get, from every worker thread.
    pub(crate) fn peer_call(&self, peer: &PeerCallAttributes, elapsed: Duration, ok: bool) {
        let attributes = if ok { &peer.ok } else { &peer.error };
        self.peer_call_duration.record(elapsed.as_secs_f64(), attributes);
    }
}

/// The attributes of one peer's call latencies, for each outcome.
#[derive(Debug)]
pub(crate) struct PeerCallAttributes {
    ok: [KeyValue; 2],
    error: [KeyValue; 2],
}

impl PeerCallAttributes {
    pub(crate) fn new(peer: &Arc<str>) -> Self {
        let with = |outcome: &'static str| {
            let peer = opentelemetry::StringValue::from(peer.clone());
            [KeyValue::new("peer", peer), KeyValue::new("outcome", outcome)]
        };
        PeerCallAttributes { ok: with("ok"), error: with("error") }
    }
}
