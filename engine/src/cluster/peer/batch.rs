//! Coalesces concurrent single gets bound for one peer into batched calls.
//!
//! No timer: a batch leaves as soon as a call slot is free, carrying whatever queued up while
//! the previous calls were out. With [`IN_FLIGHT`] calls out at once, a lone get goes straight
//! out from its caller's task (no hop through the batching task) and a busy peer gets few large
//! calls instead of many small ones.

use std::sync::{Arc, Weak};
use std::time::Duration;

use distcache_proto::v1 as pb;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
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
    /// Call slots, shared by the batching loop and callers that go straight out.
    slots: Arc<Semaphore>,
    /// Gets queued and not yet taken into a batch.
    queued: Arc<AtomicUsize>,
}

impl GetBatcher {
    /// Starts the batching loop; it ends when the peer client is dropped.
    pub(crate) fn spawn(client: Weak<PeerClient>) -> Self {
        let (queue, pending) = mpsc::unbounded_channel();
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        let queued = Arc::new(AtomicUsize::new(0));
        tokio::spawn(run(client, pending, slots.clone(), queued.clone()));
        GetBatcher { queue, slots, queued }
    }

    /// A call slot for a get that may go straight out: nothing is queued and a slot is free.
    pub(crate) fn direct_slot(&self) -> Option<OwnedSemaphorePermit> {
        if self.queued.load(Ordering::Acquire) > 0 {
            return None;
        }
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Queues a get and waits for its outcome.
    pub(crate) async fn get(
        &self,
        key: pb::KeyRef,
        timeout: Duration,
    ) -> Result<Result<RemoteValue>, Unreachable> {
        let (reply, outcome) = oneshot::channel();
        let pending = Pending { key, deadline: Instant::now() + timeout, reply };
        self.queued.fetch_add(1, Ordering::AcqRel);
        if self.queue.send(pending).is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Unreachable("the peer client is closed".into()));
        }
        outcome.await.map_err(|_| Unreachable("the batched call was dropped".into()))?
    }
}

async fn run(
    client: Weak<PeerClient>,
    mut pending: mpsc::UnboundedReceiver<Pending>,
    slots: Arc<Semaphore>,
    queued: Arc<AtomicUsize>,
) {
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
        queued.fetch_sub(batch.len(), Ordering::AcqRel);
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
