//! The JSON documents of the admin API.
//!
//! Every view derives both `Serialize` and `Deserialize`, so a client (such as `distcache ctl`)
//! reads the answers back with the same types. Durations are whole milliseconds (`*_ms`),
//! addresses are `ip:port` strings, enums are `snake_case` strings.

use std::net::SocketAddr;
use std::time::Duration;

use distcache_engine::{
    BreakerState, CircuitBreaker, Eviction, KeySpace, KeySpaceStats, PeerStatus, RateLimit, Ring,
};
use serde::{Deserialize, Serialize};

/// One of a keyspace's hottest keys on this node (`GET /v1/keyspaces/{name}/hot-keys`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HotKeyView {
    /// The key.
    pub key: String,
    /// Its recent request rate on this node, in requests per second (a decaying estimate).
    pub rate: f64,
}

/// A keyspace: its settings on this node and its stats (`GET /v1/keyspaces[/{name}]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeySpaceView {
    /// The keyspace name.
    pub name: String,
    /// The byte budget on this node.
    pub max_bytes: u64,
    /// Default TTL, if any.
    pub default_ttl_ms: Option<u64>,
    /// Negative-cache TTL, if negative caching is on.
    pub negative_ttl_ms: Option<u64>,
    /// The keyspace's own read timeout, if it overrides the engine's.
    pub read_timeout_ms: Option<u64>,
    /// The keyspace's own write timeout, if it overrides the engine's.
    pub write_timeout_ms: Option<u64>,
    /// How long expired values are kept to be served stale when a reload fails, if at all.
    pub stale_for_ms: Option<u64>,
    /// The refresh-ahead window, if any.
    pub refresh_ahead_ms: Option<u64>,
    /// The eviction policy.
    pub eviction: EvictionView,
    /// The keyspace's own fetch rate limit (`null`: the engine default, if any, applies).
    pub rate_limit: Option<RateLimitView>,
    /// The keyspace's own circuit breaker (`null`: the engine default, if any, applies).
    pub circuit_breaker: Option<CircuitBreakerView>,
    /// How many keys are loaded ahead of demand when this node becomes their owner.
    pub warm_keys: usize,
    /// Counters and sizes on this node.
    pub stats: StatsView,
}

impl KeySpaceView {
    /// The view of `def` with its `stats`.
    pub fn new(def: &KeySpace, stats: &KeySpaceStats) -> Self {
        KeySpaceView {
            name: def.name().to_owned(),
            max_bytes: def.max_bytes(),
            default_ttl_ms: def.default_ttl().map(millis),
            negative_ttl_ms: def.negative_ttl().map(millis),
            read_timeout_ms: def.read_timeout().map(millis),
            write_timeout_ms: def.write_timeout().map(millis),
            stale_for_ms: def.stale_for().map(millis),
            refresh_ahead_ms: def.refresh_ahead().map(millis),
            eviction: def.eviction().into(),
            rate_limit: def.rate_limit().map(Into::into),
            circuit_breaker: def.circuit_breaker().map(Into::into),
            warm_keys: def.warm_keys().len(),
            stats: stats.into(),
        }
    }
}

/// A keyspace's eviction policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvictionView {
    /// TinyLFU admission with LRU eviction.
    TinyLfu,
    /// Plain least-recently-used.
    Lru,
}

impl From<Eviction> for EvictionView {
    fn from(eviction: Eviction) -> Self {
        match eviction {
            Eviction::TinyLfu => EvictionView::TinyLfu,
            Eviction::Lru => EvictionView::Lru,
        }
    }
}

/// A token bucket on data-source fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitView {
    /// Fetches per second on each node.
    pub per_second: u32,
    /// The largest burst.
    pub burst: u32,
    /// The longest wait for a token before a fetch fails (0: fail at once).
    pub max_wait_ms: u64,
}

impl From<RateLimit> for RateLimitView {
    fn from(limit: RateLimit) -> Self {
        RateLimitView {
            per_second: limit.rate(),
            burst: limit.burst(),
            max_wait_ms: millis(limit.max_wait()),
        }
    }
}

/// A circuit breaker in front of a data source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitBreakerView {
    /// Consecutive failed fetches that open it.
    pub failures: u32,
    /// How long it stays open before one probe fetch.
    pub cooldown_ms: u64,
}

impl From<CircuitBreaker> for CircuitBreakerView {
    fn from(breaker: CircuitBreaker) -> Self {
        CircuitBreakerView { failures: breaker.failures(), cooldown_ms: millis(breaker.cooldown()) }
    }
}

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerView {
    /// Calls flow.
    Closed,
    /// Calls are refused until the cooldown ends.
    Open,
    /// One probe call is allowed.
    HalfOpen,
}

impl From<BreakerState> for BreakerView {
    fn from(state: BreakerState) -> Self {
        match state {
            BreakerState::Closed => BreakerView::Closed,
            BreakerState::Open => BreakerView::Open,
            BreakerState::HalfOpen => BreakerView::HalfOpen,
        }
    }
}

/// One keyspace's counters and sizes on this node (every field of
/// [`KeySpaceStats`](distcache_engine::KeySpaceStats), flattened), plus `hit_ratio`.
///
/// Counters only grow until the engine restarts; rates come from the difference of two reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsView {
    /// The engine's counters and sizes, as its fields.
    #[serde(flatten)]
    pub stats: KeySpaceStats,
    /// `hits / gets` since start, `null` before the first get.
    pub hit_ratio: Option<f64>,
}

impl From<&KeySpaceStats> for StatsView {
    fn from(s: &KeySpaceStats) -> Self {
        StatsView {
            stats: s.clone(),
            hit_ratio: (s.gets > 0).then(|| s.hits as f64 / s.gets as f64),
        }
    }
}

/// A node gossip knows of, as this node sees it (`GET /v1/peers`, this node included).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerView {
    /// The node's id.
    pub node_id: String,
    /// Whether the node is this one.
    pub is_self: bool,
    /// Where it stands with this node's ring.
    pub state: PeerState,
    /// Whether the node says it takes traffic.
    pub ready: bool,
    /// Start time of this incarnation (UNIX nanoseconds); a restart changes it.
    pub generation: u64,
    /// Where it gossips.
    pub gossip_addr: SocketAddr,
    /// Where it serves peers (gRPC).
    pub grpc_addr: Option<SocketAddr>,
    /// Where it serves its admin API, if it published one.
    pub admin_addr: Option<String>,
    /// Its share of the keys in this node's ring, 0 to 1 (0 when not in the ring).
    pub ownership: f64,
    /// This node's breaker for calls to it (`null` for this node and nodes not in the ring).
    pub breaker: Option<BreakerView>,
    /// Hash of its keyspace definitions.
    pub keyspaces_hash: String,
    /// Whether its keyspace definitions hash the same as this node's; `false` means the
    /// nodes disagree on some keyspace's settings (drift).
    pub keyspaces_match: bool,
}

/// Where a node stands with this node's ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerState {
    /// In the ring: it owns keys.
    InRing,
    /// Ready, but not in this node's ring yet (the ring catches up within a gossip round).
    Ready,
    /// Joining or draining: it takes no traffic.
    NotReady,
}

impl PeerView {
    /// The views of `peers`, sorted by node id, with drift marked against this node's entry.
    pub fn list(peers: Vec<PeerStatus>) -> Vec<PeerView> {
        // Without an entry for this node (not joined yet) there is nothing to compare with.
        let own_hash = peers.iter().find(|p| p.is_self).map(|p| p.info.keyspaces_hash.clone());
        let mut views: Vec<PeerView> = peers
            .into_iter()
            .map(|peer| {
                let keyspaces_match =
                    own_hash.as_ref().is_none_or(|own| *own == peer.info.keyspaces_hash);
                let state = match (peer.ownership > 0.0, peer.info.ready) {
                    (true, _) => PeerState::InRing,
                    (false, true) => PeerState::Ready,
                    (false, false) => PeerState::NotReady,
                };
                PeerView {
                    node_id: peer.info.node_id,
                    is_self: peer.is_self,
                    state,
                    ready: peer.info.ready,
                    generation: peer.info.generation,
                    gossip_addr: peer.info.gossip_addr,
                    grpc_addr: peer.info.grpc_addr,
                    admin_addr: peer.info.admin_addr,
                    ownership: peer.ownership,
                    breaker: peer.breaker.map(Into::into),
                    keyspaces_hash: peer.info.keyspaces_hash,
                    keyspaces_match,
                }
            })
            .collect();
        views.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        views
    }
}

/// The ring this node routes by (`GET /v1/ring`; `null` for a standalone engine).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RingView {
    /// Increases each time this node rebuilds its ring.
    pub epoch: u64,
    /// The members, sorted by node id.
    pub members: Vec<RingMemberView>,
}

impl From<&Ring> for RingView {
    fn from(ring: &Ring) -> Self {
        let members = ring
            .members()
            .iter()
            .zip(ring.shares())
            .map(|(m, ownership)| RingMemberView {
                node_id: m.node_id.to_string(),
                grpc_addr: m.grpc_addr,
                ownership,
            })
            .collect();
        RingView { epoch: ring.epoch(), members }
    }
}

/// One ring member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RingMemberView {
    /// The node id.
    pub node_id: String,
    /// Where it serves peers.
    pub grpc_addr: SocketAddr,
    /// Its share of the keys, 0 to 1.
    pub ownership: f64,
}

/// Whether this node takes traffic (`GET /readyz`: 200 when ready, else 503).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessView {
    /// Whether the node is ready.
    pub ready: bool,
    /// Why not (absent when ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<NotReady>,
    /// The reason in words (absent when ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Why a node is not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotReady {
    /// The engine was stopped.
    Stopped,
    /// The node is a cluster member but not in its own ring: joining, or draining to leave.
    NotInRing,
}

/// An error answer: `{"code": ..., "message": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorView {
    /// A stable, machine-readable code (`keyspace_not_found`, `stopped`, `internal`, ...).
    pub code: String,
    /// What went wrong, in words.
    pub message: String,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
