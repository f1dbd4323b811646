//! What the engine does when a peer asks: serve from this node, never forward.

use std::time::Duration;

use bytes::Bytes;
use distcache_proto::v1 as pb;

use crate::cluster::wire;
use crate::engine::Engine;
use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::space::check_key;
use crate::stats::bump;

impl Engine {
    /// A get from a peer: from the store, or loaded here. Returns the value, its remaining
    /// lifetime (zero when it was not kept, so the peer does not keep it either) and the key's
    /// recent request rate.
    pub(crate) async fn serve_get(
        &self,
        keyspace: &str,
        key: &str,
    ) -> Result<(Bytes, Option<Duration>, f64)> {
        let space = self.space(keyspace)?;
        check_key(key)?;
        bump(&space.stats.local().served_to_peers);
        let rate = space.rates.estimate(key);
        let value = match self.answer_locally(&space, key) {
            Some((_, answered)) => answered?,
            None => {
                let timeout = space.current().read_timeout;
                tokio::time::timeout(timeout, self.load(&space, key))
                    .await
                    .unwrap_or(Err(Error::Timeout(timeout)))?
            }
        };
        let ttl = space.current().store.entry(key).map_or(Some(Duration::ZERO), |s| s.remaining());
        Ok((value, ttl, rate))
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
