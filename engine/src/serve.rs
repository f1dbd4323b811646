//! What the engine does when a peer asks: serve from this node, never forward.

use std::time::Duration;

use bytes::Bytes;
use distcache_proto::v1 as pb;

use crate::cluster::wire::{self, KeyName};
use crate::deadline::Deadline;
use crate::engine::Engine;
use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::space::{Space, Stores, check_key};
use crate::stats::bump;
use crate::store::Kept;

/// A value as this node serves it to a peer.
#[derive(Debug, Clone)]
pub(crate) struct Served {
    pub(crate) value: Bytes,
    /// Remaining lifetime; zero when this node did not keep the value, so the peer does not
    /// keep it either.
    pub(crate) ttl: Option<Duration>,
    /// The key's recent request rate here, in requests per second.
    pub(crate) rate: f64,
}

fn served(space: &Space, key: &str, value: Bytes, kept: Kept) -> Served {
    Served { value, ttl: kept.remaining(), rate: space.rates.estimate(key) }
}

impl Engine {
    /// A get from a peer, answered from this node's stores if they can: the value, its
    /// remaining lifetime and the key's recent request rate. `None` when the key must be
    /// loaded: then [`serve_get_loaded`](Self::serve_get_loaded) finishes it.
    pub(crate) fn serve_get_now(&self, keyspace: &str, key: &str) -> Option<Result<Served>> {
        let space = match self.space(keyspace).and_then(|space| check_key(key).map(|()| space)) {
            Ok(space) => space,
            Err(err) => return Some(Err(err)),
        };
        bump(&space.stats.local().served_to_peers);
        // Asked as the owner: never forwarded, so both stores may answer.
        let (_, answered) = self.answer_kept(&space, key, Stores::MainAndHot)?;
        Some(answered.map(|(value, kept)| served(&space, key, value, kept)))
    }

    /// The rest of a peer's get that [`serve_get_now`](Self::serve_get_now) could not answer:
    /// loads the key here, within the keyspace read timeout.
    pub(crate) async fn serve_get_loaded(&self, keyspace: &str, key: &str) -> Result<Served> {
        let space = self.space(keyspace)?;
        let deadline = Deadline::after(space.current().read_timeout);
        let value = deadline.bound(self.load(&space, key)).await?;
        // The load kept it (or not): read back for how long.
        let kept =
            space.current().store.entry(key).map_or(Kept::NotHere, |s| Kept::Until(s.expires_at));
        Ok(served(&space, key, value, kept))
    }

    /// Answers a peer's get request: each key from the stores where possible; `Err` with the
    /// outcomes so far when some must be loaded ([`finish_gets`](Self::finish_gets)).
    pub(crate) fn serve_gets_now(
        &self,
        keys: &[impl KeyName],
    ) -> std::result::Result<Vec<pb::GetOutcome>, Vec<Option<pb::GetOutcome>>> {
        let outcomes: Vec<Option<pb::GetOutcome>> = keys
            .iter()
            .map(|k| self.serve_get_now(k.keyspace(), k.key()).map(wire::get_outcome))
            .collect();
        if outcomes.iter().all(Option::is_some) {
            return Ok(outcomes.into_iter().flatten().collect());
        }
        Err(outcomes)
    }

    /// Loads the keys [`serve_gets_now`](Self::serve_gets_now) left open, concurrently.
    pub(crate) async fn finish_gets(
        &self,
        keys: &[impl KeyName],
        outcomes: Vec<Option<pb::GetOutcome>>,
    ) -> Vec<pb::GetOutcome> {
        let finish = keys.iter().zip(outcomes).map(|(k, outcome)| async move {
            match outcome {
                Some(outcome) => outcome,
                None => wire::get_outcome(self.serve_get_loaded(k.keyspace(), k.key()).await),
            }
        });
        futures::future::join_all(finish).await
    }

    /// Answers a peer's get request, loading what the stores lack.
    pub(crate) async fn serve_gets(&self, keys: &[impl KeyName]) -> Vec<pb::GetOutcome> {
        match self.serve_gets_now(keys) {
            Ok(outcomes) => outcomes,
            Err(partial) => self.finish_gets(keys, partial).await,
        }
    }

    /// Answers a peer's peek request from the main store.
    pub(crate) fn serve_peeks(&self, keys: &[pb::KeyRef]) -> Vec<pb::GetOutcome> {
        keys.iter()
            .map(|k| {
                let answered = self.serve_peek(&k.keyspace, &k.key);
                wire::get_outcome(answered.map(|(value, ttl)| Served { value, ttl, rate: 0.0 }))
            })
            .collect()
    }

    /// A peek from a peer: the stored value only, never loaded.
    pub(crate) fn serve_peek(
        &self,
        keyspace: &str,
        key: &str,
    ) -> Result<(Bytes, Option<Duration>)> {
        let space = self.space(keyspace)?;
        check_key(key)?;
        match space.current().store.entry(key) {
            Some(stored) => {
                let ttl = stored.remaining();
                stored.value.map(|value| (value, ttl)).ok_or(Error::NotFound)
            }
            None => Err(Error::NotFound),
        }
    }

    /// Puts from a peer (this node owns the keys); then every other node's hot cache drops them.
    pub(crate) async fn serve_put(&self, entries: Vec<(String, Entry)>) -> Vec<Result<()>> {
        let mut written = Vec::new();
        let mut timeout = Duration::ZERO;
        let results = entries
            .into_iter()
            .map(|(keyspace, entry)| {
                let space = self.space(&keyspace)?;
                let key = entry.key.clone();
                space.put(entry)?;
                timeout = timeout.max(space.current().write_timeout);
                written.push(pb::KeyRef { keyspace, key });
                Ok(())
            })
            .collect();
        self.invalidate_everywhere(written, timeout).await;
        results
    }

    /// Deletes from a peer (this node owns the keys); then every other node's hot cache drops them.
    pub(crate) async fn serve_delete(&self, keys: Vec<(String, String)>) -> Vec<Result<()>> {
        let mut removed = Vec::new();
        let mut timeout = Duration::ZERO;
        let results = keys
            .into_iter()
            .map(|(keyspace, key)| {
                let space = self.space(&keyspace)?;
                space.delete(&key)?;
                timeout = timeout.max(space.current().write_timeout);
                removed.push(pb::KeyRef { keyspace, key });
                Ok(())
            })
            .collect();
        self.invalidate_everywhere(removed, timeout).await;
        results
    }

    async fn invalidate_everywhere(&self, keys: Vec<pb::KeyRef>, timeout: Duration) {
        if let Some(cluster) = self.cluster() {
            cluster.broadcast_invalidate(keys, timeout).await;
        }
    }

    /// A hot-cache invalidation from a peer; unknown keyspaces are ignored.
    pub(crate) fn serve_invalidate(&self, keyspace: &str, key: &str) {
        if let Ok(space) = self.inner.registry.get(keyspace) {
            space.invalidate(key);
        }
    }

    /// Removes keyspaces on this node only.
    pub(crate) async fn serve_delete_keyspaces(&self, names: &[&str]) -> Result<()> {
        self.check_running()?;
        self.inner.registry.remove(names)?;
        self.publish_keyspaces().await;
        Ok(())
    }

    /// Applies keyspace settings from a peer to this node's keyspace (its data source stays).
    pub(crate) async fn serve_update_keyspace(&self, settings: pb::KeySpaceSettings) -> Result<()> {
        self.check_running()?;
        let current = self.inner.registry.get(&settings.name)?.current().def.clone();
        self.inner.registry.upsert(wire::apply_settings(current, &settings))?;
        self.publish_keyspaces().await;
        Ok(())
    }
}
