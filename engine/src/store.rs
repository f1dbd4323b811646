//! A keyspace's local store: a moka cache weighted in bytes, with per-entry expiry.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use compact_str::CompactString;
use moka::notification::RemovalCause;
use moka::policy::{EvictionPolicy, Expiry};
use moka::sync::Cache;
use tokio::time::Instant;

use crate::keyspace::{Eviction, KeySpace};
use crate::stats::{Stats, bump};

/// Bytes charged per entry on top of its key and value: the store's own bookkeeping (hash
/// table slot, LRU and timer nodes, entry header, key and value handles), measured on moka
/// 0.12, so that the budget bounds real memory.
pub const ENTRY_OVERHEAD: u64 = 320;

/// A stored value, or a remembered "not found".
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    /// `None` records that the data source had no value (negative caching).
    pub(crate) value: Option<Bytes>,
    pub(crate) expires_at: Option<Instant>,
    /// The expiry came from the writer, not from the keyspace policy, so a policy change
    /// leaves it alone.
    pub(crate) pinned: bool,
}

impl Stored {
    /// Time left before expiry; `None` for no expiry.
    pub(crate) fn remaining(&self) -> Option<Duration> {
        self.expires_at.map(|at| at.saturating_duration_since(Instant::now()))
    }

    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

/// What a lookup found.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// A stored value and when it expires.
    Hit(Bytes, Option<Instant>),
    /// A hit in the hot cache (values owned by peers).
    HotHit(Bytes),
    /// A hit whose value is close to expiry: serve it, and reload it in the background.
    Refresh(Bytes, Option<Instant>),
    NotFound,
    Miss,
}

/// How long this node keeps a value it answered with, as a peer is told.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kept {
    /// In the main store, until the given expiry (`None`: no expiry).
    Until(Option<Instant>),
    /// Not in the main store (a hot-cache copy, or a value loaded without keeping it).
    NotHere,
}

impl Kept {
    /// Remaining lifetime: `None` for no expiry, zero when this node does not keep it.
    pub(crate) fn remaining(self) -> Option<Duration> {
        match self {
            Kept::Until(at) => at.map(|at| at.saturating_duration_since(Instant::now())),
            Kept::NotHere => Some(Duration::ZERO),
        }
    }
}

/// A stored key: keys up to 24 bytes sit inline, so a lookup compares a probed entry's key
/// without following one more pointer (moka keeps keys behind an `Arc`; with `String`, that
/// was a third dependent memory read per probe on the hottest path of an owner).
type StoreKey = CompactString;

/// The stores' key hasher: foldhash, much cheaper than SipHash on short keys, seeded per
/// store so that keys cannot be chosen to collide.
fn hasher() -> foldhash::fast::RandomState {
    foldhash::fast::RandomState::default()
}

/// Charged weight of an entry, saturating at what moka can count.
pub(crate) fn weight(key_len: usize, value_len: usize) -> u64 {
    key_len as u64 + value_len as u64 + ENTRY_OVERHEAD
}

/// Moka's expiry of an entry: its lifetime, plus the grace for serving it stale.
struct EntryExpiry {
    grace: Duration,
}

impl EntryExpiry {
    fn lifetime(&self, value: &Stored) -> Option<Duration> {
        let grace = if value.value.is_some() { self.grace } else { Duration::ZERO };
        value.remaining().map(|left| left.saturating_add(grace))
    }
}

impl Expiry<StoreKey, Stored> for EntryExpiry {
    fn expire_after_create(
        &self,
        _key: &StoreKey,
        value: &Stored,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        self.lifetime(value)
    }

    fn expire_after_update(
        &self,
        _key: &StoreKey,
        value: &Stored,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        self.lifetime(value)
    }
}

/// The byte-bounded store of one keyspace on this node.
#[derive(Debug)]
pub(crate) struct Store {
    cache: Cache<StoreKey, Stored, foldhash::fast::RandomState>,
    max_bytes: u64,
    /// Reload values with less than this left (refresh-ahead).
    refresh: Option<Duration>,
    /// How long past expiry a value may still be served stale.
    grace: Duration,
}

impl Store {
    /// The main store of a keyspace: its whole budget, its eviction policy, counted in `stats`.
    pub(crate) fn main(def: &KeySpace, stats: Arc<Stats>) -> Self {
        let grace = def.stale_for().unwrap_or_default();
        let mut store =
            Self::build(def.name(), def.max_bytes(), def.eviction(), grace, Some(stats));
        store.refresh = def.refresh_ahead();
        store.grace = grace;
        store
    }

    /// The hot cache of a keyspace: `max_bytes` of values owned by peers, admitted by TinyLFU.
    pub(crate) fn hot(def: &KeySpace, max_bytes: u64) -> Self {
        Self::build(def.name(), max_bytes, Eviction::TinyLfu, Duration::ZERO, None)
    }

    fn build(
        name: &str,
        max_bytes: u64,
        eviction: Eviction,
        grace: Duration,
        stats: Option<Arc<Stats>>,
    ) -> Self {
        let policy = match eviction {
            Eviction::TinyLfu => EvictionPolicy::tiny_lfu(),
            Eviction::Lru => EvictionPolicy::lru(),
        };
        let builder = Cache::builder()
            .name(name)
            .max_capacity(max_bytes)
            .weigher(|key: &StoreKey, stored: &Stored| {
                let value_len = stored.value.as_ref().map_or(0, Bytes::len);
                u32::try_from(weight(key.len(), value_len)).unwrap_or(u32::MAX)
            })
            .expire_after(EntryExpiry { grace })
            .eviction_policy(policy);
        let cache = match stats {
            Some(stats) => builder
                .eviction_listener(move |_key, _value, cause| match cause {
                    RemovalCause::Size => bump(&stats.local().evictions),
                    RemovalCause::Expired => bump(&stats.local().expirations),
                    RemovalCause::Explicit | RemovalCause::Replaced => {}
                })
                .build_with_hasher(hasher()),
            None => builder.build_with_hasher(hasher()),
        };
        Store { cache, max_bytes, refresh: None, grace }
    }

    pub(crate) fn lookup(&self, key: &str) -> Lookup {
        let Some(stored) = self.cache.get(key) else { return Lookup::Miss };
        // Only entries with an expiry pay for reading the clock.
        let Some(at) = stored.expires_at else {
            return stored.value.map_or(Lookup::NotFound, |value| Lookup::Hit(value, None));
        };
        let now = Instant::now();
        match stored.value {
            _ if now >= at => Lookup::Miss,
            None => Lookup::NotFound,
            Some(value) if self.refresh.is_some_and(|window| at - now <= window) => {
                Lookup::Refresh(value, Some(at))
            }
            Some(value) => Lookup::Hit(value, Some(at)),
        }
    }

    /// An expired value still within its grace period, to serve when a reload fails.
    pub(crate) fn stale(&self, key: &str) -> Option<Bytes> {
        let stored = self.cache.get(key)?;
        let within_grace = stored
            .expires_at
            .is_none_or(|at| at.checked_add(self.grace).is_none_or(|end| Instant::now() < end));
        stored.value.filter(|_| within_grace)
    }

    /// The live entry of `key`, with its expiry.
    pub(crate) fn entry(&self, key: &str) -> Option<Stored> {
        self.cache.get(key).filter(|stored| stored.is_live(Instant::now()))
    }

    /// Whether an entry of this size can be stored at all.
    pub(crate) fn fits(&self, key_len: usize, value_len: usize) -> bool {
        let weight = weight(key_len, value_len);
        weight <= self.max_bytes && weight <= u64::from(u32::MAX)
    }

    pub(crate) fn insert(&self, key: impl Into<StoreKey> + AsRef<str>, stored: Stored) {
        if stored.remaining() == Some(Duration::ZERO) {
            self.cache.invalidate(key.as_ref());
        } else {
            self.cache.insert(key.into(), stored);
        }
    }

    pub(crate) fn remove(&self, key: &str) {
        self.cache.invalidate(key);
    }

    pub(crate) fn clear(&self) {
        self.cache.invalidate_all();
    }

    /// Copies live entries from `old`, giving each at most the lifetime `def`'s policy would
    /// give it if stored now (expiries chosen by a put are kept).
    pub(crate) fn migrate_from(&self, old: &Store, def: &KeySpace) {
        let now = Instant::now();
        for (key, mut stored) in old.cache.iter() {
            if !stored.is_live(now) {
                continue;
            }
            if !stored.pinned {
                let policy = match &stored.value {
                    Some(value) => def.expiration_of(&key, value).ttl(),
                    None => def.negative_ttl(),
                };
                // No negative TTL any more means "not found" must not be remembered.
                if stored.value.is_none() && policy.is_none() {
                    continue;
                }
                // A TTL past the clock's range caps nothing.
                let capped = policy.and_then(|ttl| now.checked_add(ttl));
                stored.expires_at = match (stored.expires_at, capped) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            self.insert(key.as_str(), stored);
        }
    }

    /// Entries and accounted bytes, after applying pending evictions.
    pub(crate) fn size(&self) -> (u64, u64) {
        self.cache.run_pending_tasks();
        (self.cache.entry_count(), self.cache.weighted_size())
    }

    pub(crate) fn max_bytes(&self) -> u64 {
        self.max_bytes
    }
}
