//! Coalesces concurrent single gets bound for one peer into batched calls.
//!
//! No timer: a batch leaves as soon as a call slot is free, carrying whatever queued up while
//! the previous calls were out. With [`IN_FLIGHT`] calls out at once, a lone get goes straight
//! out and a busy peer gets few large calls instead of many small ones.

use std::sync::{Arc, Weak};
use std::time::Duration;

use distcache_proto::v1 as pb;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use super::client::{PeerClient, RemoteValue, Unreachable};
use crate::error::Result;

/// Batched calls out to one peer at a time.
const IN_FLIGHT: usize = 2;
/// Most keys in one batched call.
const MAX_BATCH: usize = 512;

type Reply = oneshot::Sender<Result<Result<RemoteValue>, Unreachable>>;

struct Pending {
    key: pb::KeyRef,
    deadline: Instant,
    reply: Reply,
}

/// The queue of one peer's pending single gets.
#[derive(Debug)]
pub(crate) struct GetBatcher {
    queue: mpsc::UnboundedSender<Pending>,
}

impl GetBatcher {
    /// Starts the batching loop; it ends when the peer client is dropped.
    pub(crate) fn spawn(client: Weak<PeerClient>) -> Self {
        let (queue, pending) = mpsc::unbounded_channel();
        tokio::spawn(run(client, pending));
        GetBatcher { queue }
    }

    /// Queues a get and waits for its outcome.
    pub(crate) async fn get(
        &self,
        key: pb::KeyRef,
        timeout: Duration,
    ) -> Result<Result<RemoteValue>, Unreachable> {
        let (reply, outcome) = oneshot::channel();
        let pending = Pending { key, deadline: Instant::now() + timeout, reply };
        self.queue.send(pending).map_err(|_| Unreachable("the peer client is closed".into()))?;
        outcome.await.map_err(|_| Unreachable("the batched call was dropped".into()))?
    }
}

async fn run(client: Weak<PeerClient>, mut pending: mpsc::UnboundedReceiver<Pending>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let Some(first) = pending.recv().await else { return };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match pending.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let Some(client) = client.upgrade() else { return };
        tokio::spawn(async move {
            send(&client, batch).await;
            drop(slot);
        });
    }
}

async fn send(client: &PeerClient, batch: Vec<Pending>) {
    let now = Instant::now();
    // Callers that gave up are left out; the call lasts as long as the most patient caller.
    let batch: Vec<Pending> =
        batch.into_iter().filter(|p| !p.reply.is_closed() && p.deadline > now).collect();
    let Some(deadline) = batch.iter().map(|p| p.deadline).max() else { return };
    let (keys, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.key, p.reply)).unzip();
    match client.get_many(keys, deadline - now).await {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(unreachable) => {
            for reply in replies {
                let _ = reply.send(Err(unreachable.clone()));
            }
        }
    }
}
