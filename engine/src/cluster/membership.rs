//! Gossip membership with chitchat: who is in the cluster, where they serve, whether they are
//! ready.
//!
//! Each node publishes its peer-protocol address, admin address, generation, a hash of its
//! keyspace definitions and a readiness flag. A node joins not ready and flips to ready once it
//! serves; it flips back before it leaves, so peers route around it while it drains. Chitchat's
//! failure detector removes nodes that stop gossiping.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chitchat::transport::UdpTransport;
use chitchat::{
    ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, NodeState, spawn_chitchat,
};
use tokio::sync::watch;

use super::ring::Member;
use crate::error::{Error, Result};

const KEY_GRPC: &str = "grpc_addr";
const KEY_ADMIN: &str = "admin_addr";
const KEY_READY: &str = "ready";
const KEY_KEYSPACES: &str = "keyspaces";

/// A node as gossip describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeerInfo {
    /// Unique id of the node.
    pub node_id: String,
    /// Start time of this incarnation of the node (UNIX nanoseconds); a restart changes it.
    pub generation: u64,
    /// Where the node gossips.
    pub gossip_addr: SocketAddr,
    /// Where the node serves the peer protocol.
    pub grpc_addr: Option<SocketAddr>,
    /// Where the node serves its admin API, if it does.
    pub admin_addr: Option<String>,
    /// Whether the node takes traffic (it is in the ring).
    pub ready: bool,
    /// Hash of the node's keyspace definitions; differing hashes mean differing settings.
    pub keyspaces_hash: String,
}

impl PeerInfo {
    fn from_state(id: &ChitchatId, state: &NodeState) -> Self {
        PeerInfo {
            node_id: id.node_id.to_string(),
            generation: id.generation_id,
            gossip_addr: id.gossip_advertise_addr,
            grpc_addr: state.get(KEY_GRPC).and_then(|addr| addr.parse().ok()),
            admin_addr: state.get(KEY_ADMIN).filter(|a| !a.is_empty()).map(str::to_owned),
            ready: state.get(KEY_READY) == Some("true"),
            keyspaces_hash: state.get(KEY_KEYSPACES).unwrap_or_default().to_owned(),
        }
    }

    /// The node as a ring member, if it is ready and routable.
    pub(crate) fn member(&self) -> Option<Member> {
        let grpc_addr = self.grpc_addr.filter(|_| self.ready)?;
        Some(Member { node_id: self.node_id.as_str().into(), grpc_addr })
    }
}

/// What this node tells the cluster about itself.
#[derive(Debug, Clone)]
pub(crate) struct SelfInfo {
    pub(crate) node_id: String,
    pub(crate) generation: u64,
    pub(crate) grpc_addr: SocketAddr,
    pub(crate) admin_addr: Option<String>,
    pub(crate) keyspaces_hash: String,
}

/// Gossip settings.
#[derive(Debug, Clone)]
pub(crate) struct GossipSettings {
    pub(crate) cluster_id: String,
    pub(crate) interval: Duration,
    pub(crate) phi_threshold: f64,
    pub(crate) dead_node_grace: Duration,
}

/// This node's membership in the cluster.
pub(crate) struct Membership {
    handle: ChitchatHandle,
    gossip_addr: SocketAddr,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership").field("gossip_addr", &self.gossip_addr).finish()
    }
}

impl Membership {
    /// Starts gossiping on `listen_addr`, advertising `advertise` and `me`.
    pub(crate) async fn start(
        listen_addr: SocketAddr,
        advertise: SocketAddr,
        me: &SelfInfo,
        gossip: &GossipSettings,
        seeds: Vec<String>,
    ) -> Result<Self> {
        let config = ChitchatConfig {
            chitchat_id: ChitchatId::new(me.node_id.as_str(), me.generation, advertise),
            cluster_id: gossip.cluster_id.clone(),
            gossip_interval: gossip.interval,
            listen_addr,
            seed_nodes: seeds,
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: gossip.phi_threshold,
                initial_interval: gossip.interval,
                dead_node_grace_period: gossip.dead_node_grace,
                ..FailureDetectorConfig::default()
            },
            marked_for_deletion_grace_period: gossip.dead_node_grace,
            catchup_callback: None,
            // Half-initialised nodes (no peer address yet) are never live.
            extra_liveness_predicate: Some(Box::new(|state: &NodeState| {
                state.get(KEY_GRPC).is_some_and(|a| a.parse::<SocketAddr>().is_ok())
            })),
            protocol_version: chitchat::ProtocolVersion::V0,
        };
        let initial = vec![
            (KEY_GRPC.to_owned(), me.grpc_addr.to_string()),
            (KEY_ADMIN.to_owned(), me.admin_addr.clone().unwrap_or_default()),
            (KEY_READY.to_owned(), "false".to_owned()),
            (KEY_KEYSPACES.to_owned(), me.keyspaces_hash.clone()),
        ];
        let handle = spawn_chitchat(config, initial, &UdpTransport)
            .await
            .map_err(|e| Error::Unavailable(format!("gossip failed to start: {e}")))?;
        Ok(Membership { handle, gossip_addr: advertise })
    }

    /// The address this node gossips on.
    pub(crate) fn gossip_addr(&self) -> SocketAddr {
        self.gossip_addr
    }

    /// A handle to change what this node publishes.
    pub(crate) fn self_state(&self) -> SelfState {
        SelfState(self.handle.chitchat())
    }

    /// Live nodes (including this one), updated on join, leave and state change.
    pub(crate) async fn watch(&self) -> watch::Receiver<BTreeMap<ChitchatId, NodeState>> {
        self.handle.chitchat().lock().await.live_nodes_watcher()
    }

    /// Gossips once with each address (newly discovered seeds).
    pub(crate) fn gossip_with(&self, addrs: impl IntoIterator<Item = SocketAddr>) {
        for addr in addrs {
            if addr != self.gossip_addr
                && let Err(err) = self.handle.gossip(addr)
            {
                tracing::warn!(%addr, %err, "could not gossip with a discovered seed");
            }
        }
    }

    /// Stops gossiping; peers will declare this node dead.
    pub(crate) async fn shutdown(self) {
        if let Err(err) = self.handle.shutdown().await {
            tracing::warn!(%err, "gossip did not shut down cleanly");
        }
    }
}

/// Changes what this node publishes in gossip, and tells whether its view has settled.
#[derive(Clone)]
pub(crate) struct SelfState(Arc<tokio::sync::Mutex<chitchat::Chitchat>>);

impl std::fmt::Debug for SelfState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SelfState")
    }
}

impl SelfState {
    /// Flips the readiness flag peers route by.
    pub(crate) async fn set_ready(&self, ready: bool) {
        self.0.lock().await.self_node_state().set(KEY_READY, ready);
    }

    /// Publishes a new hash of the keyspace definitions.
    pub(crate) async fn set_keyspaces_hash(&self, hash: &str) {
        self.0.lock().await.self_node_state().set(KEY_KEYSPACES, hash);
    }

    /// Whether this node's view of the cluster has settled: it knows another node if it was
    /// given seeds other than itself, and every node gossip told it of is live here (chitchat
    /// counts a node live once it has heard its heartbeat advance twice).
    pub(crate) async fn has_settled(&self) -> bool {
        let chitchat = self.0.lock().await;
        let me = chitchat.self_chitchat_id();
        let live: std::collections::HashSet<&ChitchatId> = chitchat.live_nodes().collect();
        let mut others = chitchat.node_states().keys().filter(|id| *id != me).peekable();
        let knows_another = others.peek().is_some();
        let all_live = others.all(|id| live.contains(id));
        let other_seeds = chitchat.seed_nodes().iter().any(|s| *s != me.gossip_advertise_addr);
        all_live && (knows_another || !other_seeds)
    }
}

/// The peers described by a live-node map, newest generation per node id.
pub(crate) fn peers(live: &BTreeMap<ChitchatId, NodeState>) -> Vec<PeerInfo> {
    let mut by_id: BTreeMap<Arc<str>, PeerInfo> = BTreeMap::new();
    for (id, state) in live {
        let info = PeerInfo::from_state(id, state);
        match by_id.get(&id.node_id) {
            Some(known) if known.generation >= info.generation => {}
            _ => {
                by_id.insert(id.node_id.clone(), info);
            }
        }
    }
    by_id.into_values().collect()
}
