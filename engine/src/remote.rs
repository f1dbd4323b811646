//! The cluster paths of the engine's operations: asking owners, writing through them, and
//! falling back when they cannot be reached.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use distcache_proto::v1 as pb;
use futures::future::join_all;

use crate::cluster::peer::{PeerClient, RemoteValue, Unreachable};
use crate::cluster::{Cluster, Route, wire};
use crate::deadline::Deadline;
use crate::engine::Engine;
use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::flight::Joined;
use crate::space::{Space, check_key, deadline};
use crate::stats::bump;
use crate::store::Stored;

/// Items tagged with their position in the caller's list.
type Indexed<T> = Vec<(usize, T)>;

/// Keys (by position in the caller's list) grouped by the peer that owns them.
struct ByOwner<T> {
    local: Indexed<T>,
    remote: HashMap<Arc<str>, (Arc<PeerClient>, Indexed<T>)>,
}

impl<T> ByOwner<T> {
    fn group(
        cluster: &Cluster,
        items: impl IntoIterator<Item = (usize, T)>,
        key: impl Fn(&T) -> &str,
    ) -> Self {
        let mut grouped = ByOwner { local: Vec::new(), remote: HashMap::new() };
        for (index, item) in items {
            match cluster.route(key(&item)) {
                Route::Local => grouped.local.push((index, item)),
                Route::Remote(peer) => {
                    let node = peer.member().node_id.clone();
                    grouped
                        .remote
                        .entry(node)
                        .or_insert_with(|| (peer, Vec::new()))
                        .1
                        .push((index, item));
                }
            }
        }
        grouped
    }
}

fn key_ref(space: &Space, key: &str) -> pb::KeyRef {
    pb::KeyRef { keyspace: space.name().to_owned(), key: key.to_owned() }
}

impl Engine {
    /// A get whose owner is a peer: one call per key per node at a time (flights on `routes`),
    /// answered by `deadline`.
    ///
    /// The leader makes the call itself, with no task in between: a peer get is the hot path of
    /// a cluster. If the leader is dropped before the answer lands, its waiters join again and
    /// one of them asks anew. A follower waits without a timer: the leader's deadline, set no
    /// later than its own, ends the flight.
    pub(crate) async fn load_remote(
        &self,
        space: &Arc<Space>,
        key: &str,
        peer: Arc<PeerClient>,
        deadline: Deadline,
    ) -> Result<Bytes> {
        loop {
            match space.routes.join(key) {
                Joined::Follower(flight) => {
                    bump(&space.stats.local().fetches_deduped);
                    if let Some(result) = flight.outcome().await {
                        return result;
                    }
                    if deadline.has_passed() {
                        return Err(deadline.error());
                    }
                }
                Joined::Leader(completion) => {
                    let mark = space.invalidation_mark();
                    let (result, hot) = self.ask_owner(space, key, &peer, deadline).await;
                    // `land` holds the key's route shard while it keeps the value.
                    let keep = || {
                        if let Some(stored) = hot {
                            space.admit_hot_fenced(key, stored, mark);
                        }
                    };
                    return space.routes.land(key, completion, keep, result);
                }
            }
        }
    }

    /// Asks the owner; if it cannot be reached, asks the key's next owner, or else loads here
    /// without keeping the value in the main store. Errors the owner reports (not found, data
    /// source failures) are final.
    async fn ask_owner(
        &self,
        space: &Space,
        key: &str,
        peer: &PeerClient,
        deadline: Deadline,
    ) -> (Result<Bytes>, Option<Stored>) {
        let outcome = peer.get(space.name(), key, deadline).await;
        self.settle(space, key, peer, outcome, deadline).await
    }

    /// Turns an owner's answer into the caller's result and what to keep in the hot cache.
    async fn settle(
        &self,
        space: &Space,
        key: &str,
        owner: &PeerClient,
        outcome: Result<Result<RemoteValue>, Unreachable>,
        deadline: Deadline,
    ) -> (Result<Bytes>, Option<Stored>) {
        match outcome {
            Ok(Ok(remote)) => self.accept(space, key, remote),
            // Out of time: nothing is left to fall back with.
            Err(_) if deadline.has_passed() => (Err(deadline.error()), None),
            // A stopping owner cannot serve; treat it as unreachable.
            Ok(Err(Error::Unavailable(reason))) | Err(Unreachable(reason)) => {
                bump(&space.stats.local().peer_errors);
                // A failure path, off the hot one: boxed, so a get's future stays small.
                Box::pin(self.fall_back(space, key, owner, &reason, deadline)).await
            }
            Ok(Err(err)) => (Err(err), None),
        }
    }

    /// The owner cannot be reached: its successor answers, or else this node loads the key
    /// without keeping it in the main store; all by `deadline`.
    async fn fall_back(
        &self,
        space: &Space,
        key: &str,
        owner: &PeerClient,
        reason: &str,
        deadline: Deadline,
    ) -> (Result<Bytes>, Option<Stored>) {
        if let Some(answer) = self.ask_successor(space, key, owner, deadline).await {
            return answer;
        }
        tracing::debug!(%reason, key, "owner unreachable; loading here");
        let keep_for = self.cluster().map_or(std::time::Duration::ZERO, |c| c.config.hot_max_ttl);
        let load = async { Ok(space.load_fallback(key, keep_for).await) };
        deadline.bound(load).await.unwrap_or_else(|timeout| (Err(timeout), None))
    }

    /// While an unreachable owner is still in the ring, the key's next owner (its owner once
    /// the failure is detected) loads it and keeps it: the value is fetched once, not here now
    /// and there again later. `None` when this node is the next owner or it cannot answer.
    async fn ask_successor(
        &self,
        space: &Space,
        key: &str,
        failed: &PeerClient,
        deadline: Deadline,
    ) -> Option<(Result<Bytes>, Option<Stored>)> {
        let next = self.cluster()?.successor(key, &failed.member().node_id)?;
        let answer = next.get(space.name(), key, deadline).await;
        match answer {
            Ok(Ok(remote)) => Some(self.accept(space, key, remote)),
            Ok(Err(Error::Unavailable(_))) | Err(_) => None,
            Ok(Err(err)) => Some((Err(err), None)),
        }
    }

    /// A value a peer sent: counted, and what to keep of it in the hot cache.
    fn accept(
        &self,
        space: &Space,
        key: &str,
        remote: RemoteValue,
    ) -> (Result<Bytes>, Option<Stored>) {
        bump(&space.stats.local().peer_loads);
        let hot = self.hot_entry(space, key, &remote);
        (Ok(remote.value), hot)
    }

    /// The hot-cache entry for a value from its owner, if the owner says it is popular enough.
    fn hot_entry(&self, space: &Space, key: &str, remote: &RemoteValue) -> Option<Stored> {
        let config = &self.cluster()?.config;
        let generation = space.current();
        let hot = generation.hot.as_ref()?;
        if remote.rate < config.hot_min_rate || !hot.fits(key.len(), remote.value.len()) {
            return None;
        }
        let ttl = remote.ttl.map_or(config.hot_max_ttl, |ttl| ttl.min(config.hot_max_ttl));
        Some(Stored {
            // Its own allocation: the answer is a slice of a connection's read buffer, which
            // a long-lived entry would pin (and the budget would not count).
            value: Some(Bytes::copy_from_slice(&remote.value)),
            expires_at: deadline(Some(ttl)),
            pinned: false,
        })
    }

    /// `get_many` in a cluster: hits answered here, local misses loaded here, and one call per
    /// owning peer for the rest.
    pub(crate) async fn get_many_routed(
        &self,
        space: &Arc<Space>,
        cluster: &Cluster,
        keys: &[&str],
    ) -> Vec<Result<Bytes>> {
        let mut results: Vec<Option<Result<Bytes>>> = vec![None; keys.len()];
        let mut misses = Vec::new();
        for (index, key) in keys.iter().enumerate() {
            if let Err(err) = check_key(key) {
                results[index] = Some(Err(err));
                continue;
            }
            match self.answer_locally(space, key, self.stores_for(key)) {
                Some((_, answered)) => results[index] = Some(answered),
                None => misses.push((index, *key)),
            }
        }
        let grouped = ByOwner::group(cluster, misses, |key| key);
        let deadline = Deadline::after(space.current().read_timeout);
        let local = grouped.local.into_iter().map(|(index, key)| async move {
            vec![(index, deadline.bound(self.load(space, key)).await)]
        });
        let remote = grouped.remote.into_values().map(|(peer, items)| async move {
            self.get_from_owner(space, &peer, items, deadline).await
        });
        let local: Vec<_> = join_all(local).await;
        let remote: Vec<_> = join_all(remote).await;
        for (index, result) in local.into_iter().chain(remote).flatten() {
            results[index] = Some(result);
        }
        finish(results)
    }

    /// One call to a peer for several keys it owns.
    async fn get_from_owner(
        &self,
        space: &Space,
        peer: &PeerClient,
        items: Vec<(usize, &str)>,
        deadline: Deadline,
    ) -> Vec<(usize, Result<Bytes>)> {
        let mark = space.invalidation_mark();
        let refs = items.iter().map(|(_, key)| key_ref(space, key)).collect();
        let outcomes: Vec<Result<Result<RemoteValue>, Unreachable>> =
            match peer.get_many(refs, deadline).await {
                Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
                Err(unreachable) => items.iter().map(|_| Err(unreachable.clone())).collect(),
            };
        let settled = items.into_iter().zip(outcomes).map(|((index, key), outcome)| async move {
            let (result, hot) = self.settle(space, key, peer, outcome, deadline).await;
            if let Some(stored) = hot {
                space.admit_hot(key, stored, mark);
            }
            (index, result)
        });
        join_all(settled).await
    }

    /// `put_many` in a cluster: local entries stored here, one call per owning peer for the
    /// rest, then one invalidation per peer for the keys stored here.
    pub(crate) async fn put_many_routed(
        &self,
        space: &Arc<Space>,
        cluster: &Cluster,
        entries: Vec<Entry>,
    ) -> Vec<Result<()>> {
        let mut results: Vec<Option<Result<()>>> = vec![None; entries.len()];
        let mut valid = Vec::new();
        for (index, entry) in entries.into_iter().enumerate() {
            match space.check_entry(&entry) {
                Ok(()) => valid.push((index, entry)),
                Err(err) => results[index] = Some(Err(err)),
            }
        }
        let grouped = ByOwner::group(cluster, valid, |entry| &entry.key);
        let timeout = space.current().write_timeout;
        let mut stored_here = Vec::new();
        for (index, entry) in grouped.local {
            let key = entry.key.clone();
            let result = space.put(entry);
            if result.is_ok() {
                stored_here.push(key_ref(space, &key));
            }
            results[index] = Some(result);
        }
        let name = space.name().to_owned();
        let remote = grouped.remote.into_values().map(|(peer, items)| {
            let name = name.clone();
            async move {
                let count = items.len();
                let (indexes, wire_entries): (Vec<usize>, Vec<pb::Entry>) = items
                    .into_iter()
                    .map(|(index, entry)| {
                        // Read-your-writes here: drop any hot copy before the owner answers.
                        space.invalidate(&entry.key);
                        let expiry = wire::expiry(entry.expiration);
                        let wire = pb::Entry {
                            keyspace: name.clone(),
                            key: entry.key,
                            value: entry.value,
                            expiry,
                        };
                        (index, wire)
                    })
                    .unzip();
                let outcomes = per_key(count, peer.put(wire_entries, timeout).await);
                indexes.into_iter().zip(outcomes).collect::<Vec<_>>()
            }
        });
        for (index, result) in join_all(remote).await.into_iter().flatten() {
            results[index] = Some(result);
        }
        cluster.broadcast_invalidate(stored_here, timeout).await;
        finish(results)
    }

    /// `delete_many` in a cluster, grouped by owner like `put_many_routed`.
    pub(crate) async fn delete_many_routed(
        &self,
        space: &Arc<Space>,
        cluster: &Cluster,
        keys: &[&str],
    ) -> Vec<Result<()>> {
        let mut results: Vec<Option<Result<()>>> = vec![None; keys.len()];
        let mut valid = Vec::new();
        for (index, key) in keys.iter().enumerate() {
            match check_key(key) {
                Ok(()) => valid.push((index, *key)),
                Err(err) => results[index] = Some(Err(err)),
            }
        }
        let grouped = ByOwner::group(cluster, valid, |key| key);
        let timeout = space.current().write_timeout;
        let mut deleted_here = Vec::new();
        for (index, key) in grouped.local {
            let result = space.delete(key);
            if result.is_ok() {
                deleted_here.push(key_ref(space, key));
            }
            results[index] = Some(result);
        }
        let remote = grouped.remote.into_values().map(|(peer, items)| async move {
            let count = items.len();
            let (indexes, refs): (Vec<usize>, Vec<pb::KeyRef>) = items
                .into_iter()
                .map(|(index, key)| {
                    space.invalidate(key);
                    (index, key_ref(space, key))
                })
                .unzip();
            let outcomes = per_key(count, peer.delete(refs, timeout).await);
            indexes.into_iter().zip(outcomes).collect::<Vec<_>>()
        });
        for (index, result) in join_all(remote).await.into_iter().flatten() {
            results[index] = Some(result);
        }
        cluster.broadcast_invalidate(deleted_here, timeout).await;
        finish(results)
    }

    /// Tells every peer to remove keyspaces (errors are logged: they may not have them).
    pub(crate) async fn broadcast_keyspace_deletion(&self, names: &[&str]) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        self.broadcast("delete keyspaces", |peer, timeout| {
            let names = names.clone();
            async move { peer.delete_keyspaces(names, timeout).await }
        })
        .await;
    }

    /// Sends new keyspace settings to every peer.
    pub(crate) async fn broadcast_keyspace_update(&self, settings: pb::KeySpaceSettings) {
        self.broadcast("update keyspace", |peer, timeout| {
            let settings = settings.clone();
            async move { peer.update_keyspace(settings, timeout).await }
        })
        .await;
    }

    /// Makes `call` to every peer at once, logging what failed (a peer that lacks the keyspace,
    /// or one that cannot be reached, must not fail the change here).
    async fn broadcast<F, Fut>(&self, what: &'static str, call: F)
    where
        F: Fn(Arc<PeerClient>, std::time::Duration) -> Fut,
        Fut: std::future::Future<Output = Result<Result<()>, Unreachable>>,
    {
        let Some(cluster) = self.cluster() else { return };
        let timeout = crate::config::Config::DEFAULT_WRITE_TIMEOUT;
        let calls = cluster.peers().into_iter().map(|peer| {
            let node = peer.member().node_id.clone();
            let call = call(peer, timeout);
            async move {
                match call.await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => tracing::warn!(peer = %node, %err, "peer refused to {what}"),
                    Err(err) => {
                        tracing::warn!(peer = %node, err = %err.0, "could not {what} on peer")
                    }
                }
            }
        });
        join_all(calls).await;
    }
}

/// Exactly `count` per-key outcomes from a peer's answer; a short or failed answer fails them all.
fn per_key(count: usize, answer: Result<Vec<Result<()>>, Unreachable>) -> Vec<Result<()>> {
    match answer {
        Ok(outcomes) if outcomes.len() == count => outcomes,
        Ok(outcomes) => {
            let reason = format!("the owner answered {} outcomes for {count} keys", outcomes.len());
            vec![Err(Error::Unavailable(reason)); count]
        }
        Err(unreachable) => vec![Err(unreachable.into()); count],
    }
}

fn finish<T>(results: Vec<Option<Result<T>>>) -> Vec<Result<T>> {
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(Error::Unavailable("no outcome".into()))))
        .collect()
}
