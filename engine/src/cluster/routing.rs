//! The ring together with a client per member: what every get consults to find its owner.

use std::sync::Arc;

use super::peer::PeerClient;
use super::ring::{Member, Ring};

/// Where a key's value comes from.
#[derive(Debug)]
pub(crate) enum Route {
    /// This node owns the key (or knows no owner).
    Local,
    /// Ask this peer.
    Remote(Arc<PeerClient>),
}

/// A ring and the clients of its members, swapped as one: a get finds its owner's client by
/// the owner's index in the ring (no hashing or comparing of node ids on the hot path).
#[derive(Debug)]
pub(crate) struct Routing {
    pub(crate) ring: Arc<Ring>,
    /// Per member of `ring`, in member order: its client; `None` for this node, or for a peer
    /// no client could be made for.
    clients: Vec<Option<Arc<PeerClient>>>,
}

impl Routing {
    /// `ring` with each member's client as `client_of` gives it (`None` for this node).
    pub(crate) fn new(
        ring: Arc<Ring>,
        client_of: impl Fn(&Member) -> Option<Arc<PeerClient>>,
    ) -> Self {
        let clients = ring.members().iter().map(client_of).collect();
        Routing { ring, clients }
    }

    /// `then` applied to the client of the peer that owns `key`; `None` when this node owns
    /// it, nobody does, or the owner has no client.
    pub(crate) fn owning_peer<T>(
        &self,
        key: &str,
        then: impl FnOnce(&Arc<PeerClient>) -> T,
    ) -> Option<T> {
        let owner = self.ring.owner_index(key)?;
        self.clients.get(owner)?.as_ref().map(then)
    }
}
