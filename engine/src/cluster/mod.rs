//! The cluster side of an engine: membership, the ring, and clients for the peers in it.
//!
//! - `membership`: chitchat gossip over UDP (`transport`) says who is live and ready.
//! - `ring`: the ready members become an ownership table with an epoch; `routing` pairs it
//!   with the members' clients for the gets.
//! - `peer`: one [`PeerClient`](peer::PeerClient) per peer (gets and peeks pipelined on one
//!   connection, everything else over gRPC, behind a breaker), and the peer port
//!   (`peer::listener`) where the pipe and the gRPC service (`peer::server`) answer peers;
//!   `wire` converts messages.
//! - [`Cluster`] ties them: it routes keys, watches membership, re-asks discovery on an
//!   interval and publishes [`ClusterEvent`]s.

pub(crate) mod config;
pub(crate) mod membership;
pub(crate) mod peer;
pub(crate) mod ring;
pub(crate) mod routing;
pub(crate) mod wire;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use distcache_proto::v1 as pb;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::ClusterConfig;
pub use membership::PeerInfo;
pub use ring::{Member, Ring};
pub(crate) use routing::Route;

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::protect::BreakerState;
use membership::{GossipSettings, Membership, SelfInfo, SelfState};
use peer::PeerClient;
use routing::Routing;

/// A change in the set of nodes that take traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterEvent {
    /// A node became ready and joined the ring.
    PeerJoined(PeerInfo),
    /// A node left the ring (stopped, not ready, or declared dead).
    PeerLeft(PeerInfo),
}

/// A peer as diagnostics show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerStatus {
    /// What gossip says about the node.
    #[serde(flatten)]
    pub info: PeerInfo,
    /// Whether the node is this one.
    pub is_self: bool,
    /// Its share of the keys in this node's ring (0 when not in the ring).
    pub ownership: f64,
    /// The state of this node's breaker for calls to it (`None` for self).
    pub breaker: Option<BreakerState>,
}

/// The clients of the other members, by node id.
type Peers = HashMap<Arc<str>, Arc<PeerClient>, foldhash::fast::RandomState>;

/// This node's view of, and place in, the cluster.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub(crate) config: ClusterConfig,
    me: SelfInfo,
    gossip_addr: SocketAddr,
    /// The current ring and its members' clients.
    routing: ArcSwap<Routing>,
    /// The ring before the last change, and until when new owners may ask its owners first.
    handoff: ArcSwap<Handoff>,
    /// The epoch of the current ring, for the warmup that follows each change.
    ring_changes: tokio::sync::watch::Sender<u64>,
    /// The hash of this node's keyspace definitions, as last published.
    keyspaces_hash: ArcSwap<String>,
    peers: ArcSwap<Peers>,
    known: ArcSwap<Vec<PeerInfo>>,
    events: broadcast::Sender<ClusterEvent>,
    membership: Mutex<Option<Membership>>,
    self_state: SelfState,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    metrics: Metrics,
}

/// How many gossip intervals a joining node waits at most for its view of the cluster to
/// settle before it goes ready (chitchat needs two heartbeats of a node to count it live).
const SETTLE_ROUNDS: u32 = 6;

/// The ring before the last change, consulted by new owners for a while (warm handoff).
#[derive(Debug)]
pub(crate) struct Handoff {
    ring: Arc<Ring>,
    /// The current members but this node: who owned its keys before it joined.
    without_me: Option<Ring>,
    until: tokio::time::Instant,
}

/// Addresses a node bound, before it starts gossiping.
#[derive(Debug)]
pub(crate) struct Bound {
    pub(crate) grpc_advertise: SocketAddr,
    gossip_listen: SocketAddr,
    gossip_advertise: SocketAddr,
}

impl Bound {
    /// Binds the peer-protocol listener (returned apart, for the server) and the gossip socket.
    pub(crate) async fn bind(config: &ClusterConfig) -> Result<(tokio::net::TcpListener, Self)> {
        let bind_err = |what: &str, addr: SocketAddr, err: std::io::Error| {
            Error::invalid(format!("cannot bind the {what} address {addr}: {err}"))
        };
        let local =
            |addr: std::io::Result<SocketAddr>| addr.map_err(|e| Error::Unavailable(e.to_string()));
        let grpc = tokio::net::TcpListener::bind(config.grpc_bind)
            .await
            .map_err(|e| bind_err("peer (gRPC)", config.grpc_bind, e))?;
        // Chitchat binds its own socket: learn a free port (when asked for port 0) and release it.
        let gossip = tokio::net::UdpSocket::bind(config.gossip_bind)
            .await
            .map_err(|e| bind_err("gossip", config.gossip_bind, e))?;
        let gossip_listen = local(gossip.local_addr())?;
        drop(gossip);
        let grpc_advertise =
            config.grpc_advertise.unwrap_or(advertisable(local(grpc.local_addr())?));
        let gossip_advertise = config.gossip_advertise.unwrap_or(advertisable(gossip_listen));
        Ok((grpc, Bound { grpc_advertise, gossip_listen, gossip_advertise }))
    }
}

impl Cluster {
    /// Joins the cluster: starts gossip (not ready yet), the ring watcher and re-discovery.
    pub(crate) async fn join(
        config: ClusterConfig,
        bound: Bound,
        keyspaces_hash: String,
        events: broadcast::Sender<ClusterEvent>,
        metrics: Metrics,
    ) -> Result<Arc<Self>> {
        let node_id = config.node_id.clone().unwrap_or_else(|| bound.grpc_advertise.to_string());
        let generation =
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let me = SelfInfo {
            node_id,
            generation,
            grpc_addr: bound.grpc_advertise,
            admin_addr: config.admin_addr.clone(),
            keyspaces_hash,
        };
        let gossip = GossipSettings {
            cluster_id: config.label.clone(),
            interval: config.gossip_interval,
            phi_threshold: config.phi_threshold,
            dead_node_grace: config.dead_node_grace,
        };
        let seeds = match config.discovery.discover().await {
            Ok(seeds) => seeds,
            Err(err) => {
                tracing::warn!(%err, "initial discovery failed; will retry");
                Vec::new()
            }
        };
        let membership =
            Membership::start(bound.gossip_listen, bound.gossip_advertise, &me, &gossip, seeds)
                .await?;
        let watcher = membership.watch().await;
        let self_state = membership.self_state();
        let empty = Arc::new(Ring::new(0, Vec::new()));
        let cluster = Arc::new(Cluster {
            gossip_addr: membership.gossip_addr(),
            routing: ArcSwap::from_pointee(Routing::new(empty.clone(), |_| None)),
            handoff: ArcSwap::from_pointee(Handoff {
                ring: empty,
                without_me: None,
                until: tokio::time::Instant::now(),
            }),
            ring_changes: tokio::sync::watch::channel(0).0,
            keyspaces_hash: ArcSwap::from_pointee(me.keyspaces_hash.clone()),
            peers: ArcSwap::default(),
            known: ArcSwap::default(),
            events,
            membership: Mutex::new(Some(membership)),
            self_state,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            config,
            me,
            metrics,
        });
        cluster.tasks.spawn(cluster.clone().watch_members(watcher));
        cluster.tasks.spawn(cluster.clone().rediscover());
        Ok(cluster)
    }

    /// This node's id.
    pub(crate) fn node_id(&self) -> &str {
        &self.me.node_id
    }

    /// Where this node serves the peer protocol.
    pub(crate) fn grpc_addr(&self) -> SocketAddr {
        self.me.grpc_addr
    }

    /// Where this node gossips.
    pub(crate) fn gossip_addr(&self) -> SocketAddr {
        self.gossip_addr
    }

    /// The current ring.
    pub(crate) fn ring(&self) -> Arc<Ring> {
        self.routing.load().ring.clone()
    }

    /// Who serves `key`.
    pub(crate) fn route(&self, key: &str) -> Route {
        self.owning_peer(key, Arc::clone).map_or(Route::Local, Route::Remote)
    }

    /// Whether [`route`](Self::route) would send `key` to a peer, without taking a reference
    /// to it (the check is on every get; the reference only on a miss).
    pub(crate) fn is_peer_owned(&self, key: &str) -> bool {
        self.owning_peer(key, |_| ()).is_some()
    }

    /// `then` applied to the client of the peer that owns `key`; `None` when this node owns it,
    /// nobody does, or the owner has no client here yet.
    fn owning_peer<T>(&self, key: &str, then: impl FnOnce(&Arc<PeerClient>) -> T) -> Option<T> {
        self.routing.load().owning_peer(key, then)
    }

    /// The peer that will own `key` once the unreachable `gone` leaves the ring; `None` when
    /// that is this node (or nobody).
    pub(crate) fn successor(&self, key: &str, gone: &str) -> Option<Arc<PeerClient>> {
        let routing = self.routing.load();
        let next = routing.ring.successor(key, gone)?;
        if *next.node_id == *self.me.node_id {
            return None;
        }
        self.peers.load().get(&next.node_id).cloned()
    }

    /// The previous owner of `key`, while a recent ring change lets new owners ask it first:
    /// its owner in the ring before the change, or, if that was this node (it just joined),
    /// its owner among the other members. A node not yet in its own ring (peers route to it
    /// as soon as they see it ready; its own view of itself can lag a gossip round) asks the
    /// key's owner in that ring, which still holds it.
    pub(crate) fn previous_owner(&self, key: &str) -> Option<Arc<PeerClient>> {
        let handoff = self.handoff.load();
        if tokio::time::Instant::now() >= handoff.until {
            return None;
        }
        let routing = self.routing.load();
        if !routing.ring.contains(&self.me.node_id) {
            return routing.owning_peer(key, Arc::clone);
        }
        let mut owner = handoff.ring.owner(key);
        if owner.is_none_or(|o| *o.node_id == *self.me.node_id) {
            owner = handoff.without_me.as_ref()?.owner(key);
        }
        self.peers.load().get(&owner?.node_id).cloned()
    }

    /// The ring before the last change and the current one.
    pub(crate) fn rings(&self) -> (Arc<Ring>, Arc<Ring>) {
        (self.handoff.load().ring.clone(), self.ring())
    }

    /// Changes with every new ring (its epoch).
    pub(crate) fn ring_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.ring_changes.subscribe()
    }

    /// Whether `node_id` is this node.
    pub(crate) fn is_me(&self, node_id: &str) -> bool {
        node_id == self.me.node_id
    }

    /// Clients for every other member of the ring.
    pub(crate) fn peers(&self) -> Vec<Arc<PeerClient>> {
        self.peers.load().values().cloned().collect()
    }

    /// Every live node gossip knows of (ready or not), with ownership and breaker state.
    pub(crate) fn peer_statuses(&self) -> Vec<PeerStatus> {
        let (ring, peers) = (self.ring(), self.peers.load());
        self.known
            .load()
            .iter()
            .map(|info| PeerStatus {
                is_self: info.node_id == self.me.node_id,
                ownership: ring.share_of(&info.node_id),
                breaker: peers.get(info.node_id.as_str()).map(|p| p.breaker_state()),
                info: info.clone(),
            })
            .collect()
    }

    /// Sends `keys` to every other member's hot-cache invalidation, waiting up to `timeout`.
    pub(crate) async fn broadcast_invalidate(&self, keys: Vec<pb::KeyRef>, timeout: Duration) {
        if keys.is_empty() {
            return;
        }
        let calls = self.peers().into_iter().map(|peer| {
            let keys = keys.clone();
            async move {
                if let Err(err) = peer.invalidate(keys, timeout).await {
                    tracing::warn!(peer = %peer.member().node_id, err = %err.0, "hot-cache invalidation not delivered");
                }
            }
        });
        futures::future::join_all(calls).await;
    }

    /// Waits until this node's view of the cluster has settled, at most [`SETTLE_ROUNDS`]
    /// gossip intervals. A node ready before it sees every member is routed to while its own
    /// ring still lacks some: it names wrong previous owners for keys it takes over (a source
    /// fetch instead of a handoff), and sends its callers' gets to wrong owners.
    pub(crate) async fn settle(&self) {
        let interval = self.config.gossip_interval;
        let until = tokio::time::Instant::now() + interval * SETTLE_ROUNDS;
        while !self.self_state.has_settled().await && tokio::time::Instant::now() < until {
            tokio::time::sleep(interval / 4).await;
        }
    }

    /// Marks this node ready (or not) for traffic.
    pub(crate) async fn set_ready(&self, ready: bool) {
        self.self_state.set_ready(ready).await;
    }

    /// Publishes a new keyspace-definition hash.
    pub(crate) async fn set_keyspaces_hash(&self, hash: &str) {
        self.keyspaces_hash.store(Arc::new(hash.to_owned()));
        self.self_state.set_keyspaces_hash(hash).await;
    }

    /// Leaves the cluster: not ready, a drain of two gossip rounds so peers route elsewhere,
    /// then gossip stops.
    pub(crate) async fn leave(&self) {
        self.set_ready(false).await;
        tokio::time::sleep(self.config.gossip_interval * 2).await;
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        let membership = self.membership.lock().ok().and_then(|mut m| m.take());
        if let Some(membership) = membership {
            membership.shutdown().await;
        }
        self.config.discovery.shutdown().await;
    }

    async fn watch_members(
        self: Arc<Self>,
        mut watcher: tokio::sync::watch::Receiver<
            std::collections::BTreeMap<chitchat::ChitchatId, chitchat::NodeState>,
        >,
    ) {
        loop {
            let live = watcher.borrow_and_update().clone();
            self.apply(membership::peers(&live));
            tokio::select! {
                changed = watcher.changed() => if changed.is_err() { return },
                () = self.shutdown.cancelled() => return,
            }
        }
    }

    /// Rebuilds the ring and the peer clients from what gossip says.
    fn apply(&self, known: Vec<PeerInfo>) {
        self.warn_of_drift(&known);
        // Before the ring: whoever sees a member in the ring sees its state too.
        let known = Arc::new(known);
        self.known.store(known.clone());
        let members: Vec<Member> = known.iter().filter_map(PeerInfo::member).collect();
        let ring = self.ring();
        let mut sorted = members.clone();
        sorted.sort();
        if sorted.as_slice() != ring.members() {
            let next = Arc::new(Ring::new(ring.epoch() + 1, members));
            let peers = self.update_peers(&next);
            self.publish_changes(&ring, &next, &known);
            tracing::info!(epoch = next.epoch(), members = next.members().len(), "ring changed");
            let until = tokio::time::Instant::now() + self.config.handoff_window;
            let others: Vec<Member> =
                next.members().iter().filter(|m| *m.node_id != *self.me.node_id).cloned().collect();
            let without_me = (!others.is_empty()).then(|| Ring::new(next.epoch(), others));
            self.handoff.store(Arc::new(Handoff { ring, without_me, until }));
            let epoch = next.epoch();
            let client_of = |m: &Member| peers.get(&m.node_id).cloned();
            self.routing.store(Arc::new(Routing::new(next, client_of)));
            self.ring_changes.send_replace(epoch);
        }
    }

    /// Logs peers whose keyspace definitions differ from this node's, when that set changes.
    fn warn_of_drift(&self, known: &[PeerInfo]) {
        let ours = self.keyspaces_hash.load();
        let differs = |peers: &[PeerInfo]| -> Vec<String> {
            peers
                .iter()
                .filter(|p| p.node_id != self.me.node_id && p.keyspaces_hash != **ours)
                .map(|p| p.node_id.clone())
                .collect()
        };
        let now = differs(known);
        if !now.is_empty() && now != differs(&self.known.load()) {
            tracing::warn!(peers = ?now, "peers have keyspace definitions that differ from this node's");
        }
    }

    /// Makes (or keeps) a client for every other member of `ring`; returns them by node id.
    fn update_peers(&self, ring: &Ring) -> Arc<Peers> {
        let current = self.peers.load();
        let mut next = Peers::default();
        for member in ring.members().iter().filter(|m| *m.node_id != *self.me.node_id) {
            let reuse =
                current.get(&member.node_id).filter(|p| p.member().grpc_addr == member.grpc_addr);
            let client = match reuse {
                Some(client) => client.clone(),
                None => match PeerClient::new(member.clone(), &self.config, self.metrics.clone()) {
                    Ok(client) => client,
                    Err(err) => {
                        tracing::warn!(peer = %member.node_id, %err, "cannot make a client for peer");
                        continue;
                    }
                },
            };
            next.insert(member.node_id.clone(), client);
        }
        let next = Arc::new(next);
        self.peers.store(next.clone());
        next
    }

    fn publish_changes(&self, before: &Ring, after: &Ring, known: &[PeerInfo]) {
        let info = |member: &Member, ready: bool| {
            known.iter().find(|p| *p.node_id == *member.node_id).cloned().unwrap_or_else(|| {
                PeerInfo {
                    node_id: member.node_id.to_string(),
                    generation: 0,
                    gossip_addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                    grpc_addr: Some(member.grpc_addr),
                    admin_addr: None,
                    ready,
                    keyspaces_hash: String::new(),
                }
            })
        };
        for member in after.members().iter().filter(|m| !before.contains(&m.node_id)) {
            let _ = self.events.send(ClusterEvent::PeerJoined(info(member, true)));
        }
        for member in before.members().iter().filter(|m| !after.contains(&m.node_id)) {
            let _ = self.events.send(ClusterEvent::PeerLeft(info(member, false)));
        }
    }

    /// Asks discovery for seeds on an interval and gossips with new ones, so nodes that
    /// appear later (or the other half of a split cluster) are found.
    async fn rediscover(self: Arc<Self>) {
        let mut interval = tokio::time::interval(self.config.rediscover_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        let mut changes = self.config.discovery.changes();
        loop {
            let changed = async {
                match changes.as_mut() {
                    Some(changes) => changes.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = interval.tick() => {}
                open = changed => if !open { changes = None },
                () = self.shutdown.cancelled() => return,
            }
            let seeds = match self.config.discovery.discover().await {
                Ok(seeds) => seeds,
                Err(err) => {
                    tracing::warn!(%err, "discovery failed; will retry");
                    continue;
                }
            };
            let mut addrs = Vec::new();
            for seed in seeds {
                match tokio::net::lookup_host(seed.as_str()).await {
                    Ok(resolved) => addrs.extend(resolved),
                    Err(err) => tracing::warn!(%seed, %err, "cannot resolve a discovered seed"),
                }
            }
            if let Ok(Some(membership)) = self.membership.lock().as_deref() {
                membership.gossip_with(addrs);
            }
        }
    }
}

/// The address to advertise for a bound one: an unspecified IP becomes this host's outward IP.
fn advertisable(bound: SocketAddr) -> SocketAddr {
    if !bound.ip().is_unspecified() {
        return bound;
    }
    // Connecting a UDP socket sends nothing; it only asks the routing table for a source IP.
    let outward = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| s.connect((Ipv4Addr::new(10, 254, 254, 254), 9)).map(|()| s))
        .and_then(|s| s.local_addr())
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |a| a.ip());
    SocketAddr::new(outward, bound.port())
}
