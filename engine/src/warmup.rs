//! Warmup: load keys ahead of demand when this node becomes their owner.
//!
//! After every ring change (and at start), each keyspace's candidates, its configured warm keys
//! and the hottest keys this node has seen asked, are loaded if this node owns them now and did
//! not before. Loads go through the usual flights, so within the handoff window a new owner
//! takes the previous owner's copy instead of calling the data source.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::StreamExt;

use crate::cluster::Ring;
use crate::engine::Engine;
use crate::space::Space;
use crate::stats::bump;

impl Engine {
    /// Warms after every ring change until the engine stops.
    pub(crate) async fn warm_on_ring_changes(self) {
        let Some(cluster) = self.cluster().cloned() else { return };
        let mut changes = cluster.ring_changes();
        while changes.changed().await.is_ok() {
            let (before, after) = cluster.rings();
            let owned_now = |key: &str| -> bool {
                let is_mine =
                    |ring: &Ring| ring.owner(key).is_some_and(|m| cluster.is_me(&m.node_id));
                is_mine(&after) && !is_mine(&before)
            };
            self.warm(&owned_now, cluster.config.warmup_concurrency, true).await;
        }
    }

    /// Loads every keyspace's warm keys (and, with `hot`, its observed hot keys) that `take`
    /// selects, `concurrency` at a time.
    pub(crate) async fn warm(
        &self,
        take: &(dyn Fn(&str) -> bool + Sync),
        concurrency: usize,
        hot: bool,
    ) {
        for name in self.keyspaces() {
            let Ok(space) = self.space(&name) else { continue };
            let keys = candidates(&space, hot).into_iter().filter(|key| take(key));
            futures::stream::iter(keys)
                .for_each_concurrent(concurrency, |key| {
                    let space = space.clone();
                    async move {
                        let timeout = space.current().read_timeout;
                        if let Ok(Ok(_)) =
                            tokio::time::timeout(timeout, self.load(&space, &key)).await
                        {
                            bump(&space.stats.local().warmed);
                        }
                    }
                })
                .await;
        }
    }
}

/// Configured warm keys and (with `hot`) observed hot keys of a keyspace.
fn candidates(space: &Arc<Space>, hot: bool) -> BTreeSet<String> {
    let mut keys: BTreeSet<String> = space.current().def.warm_keys().iter().cloned().collect();
    if hot {
        keys.extend(space.rates.hottest().into_iter().map(|(key, _)| key));
    }
    keys
}
