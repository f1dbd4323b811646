//! [`NatsDiscovery`]: nodes announce themselves on a NATS subject.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::connection::State;
use async_nats::{Client, ConnectOptions, Subscriber};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{Discovery, DiscoveryError, is_host_port, normalized};

/// Where the NATS servers are and how the nodes of one cluster talk there.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    servers: Vec<String>,
    cluster: String,
    prefix: String,
    heartbeat: Duration,
    missed_heartbeats: u32,
    gather_window: Duration,
    connect_timeout: Duration,
}

impl NatsConfig {
    /// Talks to the NATS `servers` (`nats://host:port`) on the subjects of `cluster`, a subject
    /// token (no `.`, `*`, `>` or whitespace) that keeps clusters sharing a NATS apart.
    pub fn new<S: Into<String>>(
        servers: impl IntoIterator<Item = S>,
        cluster: impl Into<String>,
    ) -> Self {
        NatsConfig {
            servers: servers.into_iter().map(Into::into).collect(),
            cluster: cluster.into(),
            prefix: "distcache".into(),
            heartbeat: Duration::from_secs(1),
            missed_heartbeats: 3,
            gather_window: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// How often a node announces itself; 1 s by default.
    pub fn with_heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = interval;
        self
    }

    /// How many heartbeats in a row a peer may miss before it is dropped; 3 by default.
    pub fn with_missed_heartbeats(mut self, missed: u32) -> Self {
        self.missed_heartbeats = missed;
        self
    }

    /// How long a joining node gathers answers to its query; 500 ms by default.
    pub fn with_gather_window(mut self, window: Duration) -> Self {
        self.gather_window = window;
        self
    }

    /// How long connecting to NATS may take; 5 s by default.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    fn subject(&self, kind: &str) -> String {
        format!("{}.{}.{kind}", self.prefix, self.cluster)
    }

    fn validate(&self) -> Result<(), DiscoveryError> {
        let bad_token = |token: &str| {
            token.is_empty()
                || token.chars().any(|c| matches!(c, '.' | '*' | '>') || c.is_whitespace())
        };
        if self.servers.is_empty() {
            return Err(DiscoveryError::Config("nats servers: none given".into()));
        }
        if bad_token(&self.cluster) {
            return Err(DiscoveryError::Config(format!(
                "nats cluster `{}` is not a subject token (non-empty, no `.`, `*`, `>` or spaces)",
                self.cluster
            )));
        }
        if self.heartbeat.is_zero() || self.missed_heartbeats == 0 {
            return Err(DiscoveryError::Config(
                "nats heartbeat interval and missed heartbeats must be above zero".into(),
            ));
        }
        Ok(())
    }
}

/// What nodes say on the subjects: who they are, and whether they are here, leaving or asking.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Announcement {
    kind: Kind,
    node_id: String,
    generation: u64,
    gossip_addr: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    /// "I am here" (also the answer to a query).
    Heartbeat,
    /// "I am leaving."
    Goodbye,
    /// "Who is here?"
    Query,
}

impl Announcement {
    fn as_kind(&self, kind: Kind) -> Bytes {
        let message = Announcement { kind, ..self.clone() };
        // Serializing a struct of strings and integers cannot fail.
        Bytes::from(serde_json::to_vec(&message).unwrap_or_default())
    }
}

/// The peers heard from, by node id.
#[derive(Debug, Default)]
struct PeerTable {
    peers: HashMap<String, Peer>,
}

#[derive(Debug)]
struct Peer {
    generation: u64,
    gossip_addr: String,
    last_seen: Instant,
}

impl PeerTable {
    /// Records a heartbeat; true if the peer set changed. An older generation of a node
    /// (a message from before its restart) is ignored.
    fn heard(&mut self, from: &Announcement, now: Instant) -> bool {
        match self.peers.get_mut(&from.node_id) {
            Some(peer) if peer.generation > from.generation => false,
            Some(peer) => {
                let changed = peer.gossip_addr != from.gossip_addr;
                peer.generation = from.generation;
                peer.gossip_addr.clone_from(&from.gossip_addr);
                peer.last_seen = now;
                changed
            }
            None => {
                let peer = Peer {
                    generation: from.generation,
                    gossip_addr: from.gossip_addr.clone(),
                    last_seen: now,
                };
                self.peers.insert(from.node_id.clone(), peer);
                true
            }
        }
    }

    /// Records a goodbye; true if the peer was known (in this or an older generation).
    fn left(&mut self, from: &Announcement) -> bool {
        let leaves = self.peers.get(&from.node_id).is_some_and(|p| p.generation <= from.generation);
        if leaves {
            self.peers.remove(&from.node_id);
        }
        leaves
    }

    /// Drops peers not heard from since `deadline`; true if any was dropped.
    fn expire(&mut self, deadline: Instant) -> bool {
        let before = self.peers.len();
        self.peers.retain(|_, peer| peer.last_seen >= deadline);
        self.peers.len() != before
    }

    fn addresses(&self) -> Vec<String> {
        normalized(self.peers.values().map(|p| p.gossip_addr.clone()).collect())
    }
}

/// The background task and how to stop it.
#[derive(Debug)]
struct Worker {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Finds peers through NATS.
///
/// Every node publishes its announcement (node id, generation, gossip address) on
/// `<prefix>.<cluster>.announce` every heartbeat interval, answers queries on
/// `<prefix>.<cluster>.discover` with it, and publishes a goodbye on shutdown. A joining node
/// scatters one query and gathers the answers for a short window, so it knows the cluster
/// before its first [`discover`](Discovery::discover). A peer is dropped when it says goodbye
/// or misses [`NatsConfig::with_missed_heartbeats`] heartbeats; every join or leave bumps
/// [`Discovery::changes`].
#[derive(Debug)]
pub struct NatsDiscovery {
    config: NatsConfig,
    me: Announcement,
    /// `None` after shutdown, so the connection does not outlive the provider.
    client: Mutex<Option<Client>>,
    peers: Arc<Mutex<PeerTable>>,
    changes: watch::Receiver<u64>,
    worker: tokio::sync::Mutex<Option<Worker>>,
    stopped: AtomicBool,
}

impl NatsDiscovery {
    /// Connects to NATS and joins as node `node_id` gossiping on `gossip_addr` (`host:port`):
    /// announces itself, asks who is there and gathers the answers, then keeps announcing in
    /// the background.
    ///
    /// Fails with [`DiscoveryError::Config`] for a bad configuration, node id or address, and
    /// with [`DiscoveryError::Backend`] when NATS cannot be reached.
    pub async fn connect(
        config: NatsConfig,
        node_id: impl Into<String>,
        gossip_addr: impl Into<String>,
    ) -> Result<Self, DiscoveryError> {
        config.validate()?;
        let me = Announcement {
            kind: Kind::Heartbeat,
            node_id: node_id.into(),
            generation: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            gossip_addr: gossip_addr.into(),
        };
        if me.node_id.is_empty() {
            return Err(DiscoveryError::Config("nats node id is empty".into()));
        }
        if !is_host_port(&me.gossip_addr) {
            return Err(DiscoveryError::Config(format!(
                "nats gossip address `{}` is not host:port with a non-zero port",
                me.gossip_addr
            )));
        }
        let client = ConnectOptions::new()
            .name(format!("distcache {}", me.node_id))
            .connection_timeout(config.connect_timeout)
            .connect(config.servers.as_slice())
            .await
            .map_err(|err| {
                backend(format!("cannot connect to NATS at {}", config.servers.join(",")), err)
            })?;
        let announcements = subscribe(&client, config.subject("announce")).await?;
        let queries = subscribe(&client, config.subject("discover")).await?;
        let mut table = PeerTable::default();
        gather(&client, &config, &me, &mut table).await?;
        let peers = Arc::new(Mutex::new(table));
        let (changes_tx, changes) = watch::channel(0);
        let stop = CancellationToken::new();
        let node = Node {
            client: client.clone(),
            config: config.clone(),
            me: me.clone(),
            peers: peers.clone(),
            changes: changes_tx,
        };
        let task = tokio::spawn(node.run(announcements, queries, stop.clone()));
        Ok(NatsDiscovery {
            config,
            me,
            client: Mutex::new(Some(client)),
            peers,
            changes,
            worker: tokio::sync::Mutex::new(Some(Worker { stop, task })),
            stopped: AtomicBool::new(false),
        })
    }
}

fn backend(context: String, err: impl std::fmt::Display) -> DiscoveryError {
    DiscoveryError::Backend(format!("{context}: {err}"))
}

async fn subscribe(client: &Client, subject: String) -> Result<Subscriber, DiscoveryError> {
    client
        .subscribe(subject.clone())
        .await
        .map_err(|err| backend(format!("cannot subscribe to `{subject}`"), err))
}

/// Announces `me`, asks who is there and records the answers that arrive within the window.
async fn gather(
    client: &Client,
    config: &NatsConfig,
    me: &Announcement,
    table: &mut PeerTable,
) -> Result<(), DiscoveryError> {
    let failed = |err: &dyn std::fmt::Display| backend("cannot ask NATS who is there".into(), err);
    let inbox = client.new_inbox();
    let mut answers = subscribe(client, inbox.clone()).await?;
    client
        .publish(config.subject("announce"), me.as_kind(Kind::Heartbeat))
        .await
        .map_err(|e| failed(&e))?;
    client
        .publish_with_reply(config.subject("discover"), inbox, me.as_kind(Kind::Query))
        .await
        .map_err(|e| failed(&e))?;
    client.flush().await.map_err(|e| failed(&e))?;
    let deadline = Instant::now() + config.gather_window;
    while let Ok(Some(answer)) = tokio::time::timeout_at(deadline, answers.next()).await {
        match serde_json::from_slice::<Announcement>(&answer.payload) {
            Ok(peer) if peer.node_id != me.node_id && peer.kind == Kind::Heartbeat => {
                table.heard(&peer, Instant::now());
            }
            Ok(_) => {}
            Err(err) => tracing::debug!(%err, "ignoring an answer that is not an announcement"),
        }
    }
    Ok(())
}

/// What the background task works with.
struct Node {
    client: Client,
    config: NatsConfig,
    me: Announcement,
    peers: Arc<Mutex<PeerTable>>,
    changes: watch::Sender<u64>,
}

impl Node {
    /// Heartbeats, answers queries, follows announcements and expires silent peers until `stop`.
    async fn run(
        self,
        mut announcements: Subscriber,
        mut queries: Subscriber,
        stop: CancellationToken,
    ) {
        let mut heartbeat = tokio::time::interval(self.config.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let silence = self.config.heartbeat * self.config.missed_heartbeats;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                message = announcements.next() => match message {
                    Some(message) => self.on_announcement(&message.payload),
                    None => return,
                },
                message = queries.next() => match message {
                    Some(message) => self.answer(message).await,
                    None => return,
                },
                _ = heartbeat.tick() => self.beat(silence).await,
            }
        }
    }

    /// Announces this node and drops the peers silent for longer than `silence`.
    async fn beat(&self, silence: Duration) {
        let announce = self.me.as_kind(Kind::Heartbeat);
        if let Err(err) = self.client.publish(self.config.subject("announce"), announce).await {
            tracing::warn!(%err, "cannot publish a NATS heartbeat");
        }
        let deadline = Instant::now().checked_sub(silence);
        self.update(|table| deadline.is_some_and(|deadline| table.expire(deadline)));
    }

    fn on_announcement(&self, payload: &[u8]) {
        let from = match serde_json::from_slice::<Announcement>(payload) {
            Ok(from) if from.node_id != self.me.node_id => from,
            Ok(_) => return,
            Err(err) => {
                tracing::debug!(%err, "ignoring a message that is not an announcement");
                return;
            }
        };
        match from.kind {
            Kind::Heartbeat => self.update(|table| table.heard(&from, Instant::now())),
            Kind::Goodbye => self.update(|table| table.left(&from)),
            Kind::Query => {}
        }
    }

    /// Answers a query with this node's announcement. The flush sends it at once, so it
    /// lands within the querier's gather window.
    async fn answer(&self, query: async_nats::Message) {
        let Some(reply) = query.reply else { return };
        if let Ok(from) = serde_json::from_slice::<Announcement>(&query.payload)
            && from.node_id == self.me.node_id
        {
            return;
        }
        let sent = self.client.publish(reply, self.me.as_kind(Kind::Heartbeat)).await;
        if let Err(err) = sent {
            tracing::warn!(%err, "cannot answer a NATS discovery query");
        } else if let Err(err) = self.client.flush().await {
            tracing::warn!(%err, "cannot flush an answer to a NATS discovery query");
        }
    }

    /// Applies `change` to the peer table and signals if it says the set changed.
    fn update(&self, change: impl FnOnce(&mut PeerTable) -> bool) {
        let changed = self.peers.lock().map(|mut table| change(&mut table)).unwrap_or(false);
        if changed {
            self.changes.send_modify(|n| *n += 1);
        }
    }
}

#[async_trait]
impl Discovery for NatsDiscovery {
    async fn discover(&self) -> Result<Vec<String>, DiscoveryError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(DiscoveryError::Shutdown);
        }
        let state = self.client.lock().ok().and_then(|c| c.as_ref().map(Client::connection_state));
        match state {
            None => Err(DiscoveryError::Shutdown),
            Some(State::Connected) => {
                let table =
                    self.peers.lock().map_err(|_| backend("peer table".into(), "poisoned"))?;
                Ok(table.addresses())
            }
            Some(state) => Err(DiscoveryError::Backend(format!(
                "not connected to NATS at {} ({state})",
                self.config.servers.join(",")
            ))),
        }
    }

    fn changes(&self) -> Option<watch::Receiver<u64>> {
        Some(self.changes.clone())
    }

    async fn shutdown(&self) {
        self.stopped.store(true, Ordering::Release);
        if let Some(worker) = self.worker.lock().await.take() {
            worker.stop.cancel();
            if let Err(err) = worker.task.await {
                tracing::warn!(%err, "the NATS discovery task failed");
            }
        }
        let client = self.client.lock().ok().and_then(|mut c| c.take());
        let Some(client) = client else { return };
        let goodbye = self.me.as_kind(Kind::Goodbye);
        let said = async {
            client.publish(self.config.subject("announce"), goodbye).await.ok()?;
            client.flush().await.ok()
        };
        if tokio::time::timeout(self.config.connect_timeout, said).await.ok().flatten().is_none() {
            tracing::warn!(node = %self.me.node_id, "could not say goodbye on NATS");
        }
        if let Err(err) = client.drain().await {
            tracing::debug!(%err, "NATS connection already closed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announcement(node: &str, generation: u64, addr: &str) -> Announcement {
        Announcement {
            kind: Kind::Heartbeat,
            node_id: node.into(),
            generation,
            gossip_addr: addr.into(),
        }
    }

    #[test]
    fn a_restarted_node_replaces_its_old_generation_and_old_goodbyes_are_ignored() {
        let now = Instant::now();
        let mut table = PeerTable::default();
        assert!(table.heard(&announcement("a", 1, "10.0.0.1:7946"), now));
        assert!(!table.heard(&announcement("a", 1, "10.0.0.1:7946"), now));
        assert!(table.heard(&announcement("a", 2, "10.0.0.9:7946"), now));
        assert!(!table.heard(&announcement("a", 1, "10.0.0.1:7946"), now));
        assert_eq!(table.addresses(), ["10.0.0.9:7946"]);
        assert!(!table.left(&announcement("a", 1, "10.0.0.1:7946")));
        assert!(table.left(&announcement("a", 2, "10.0.0.9:7946")));
        assert!(table.addresses().is_empty());
    }

    #[test]
    fn silent_peers_expire() {
        let start = Instant::now();
        let mut table = PeerTable::default();
        table.heard(&announcement("a", 1, "10.0.0.1:7946"), start);
        table.heard(&announcement("b", 1, "10.0.0.2:7946"), start + Duration::from_secs(2));
        assert!(table.expire(start + Duration::from_secs(1)));
        assert_eq!(table.addresses(), ["10.0.0.2:7946"]);
        assert!(!table.expire(start + Duration::from_secs(1)));
    }

    #[test]
    fn rejects_bad_config() {
        assert!(NatsConfig::new(["nats://127.0.0.1:4222"], "a.b").validate().is_err());
        assert!(NatsConfig::new(Vec::<String>::new(), "cache").validate().is_err());
        let zero = NatsConfig::new(["nats://127.0.0.1:4222"], "cache").with_missed_heartbeats(0);
        assert!(zero.validate().is_err());
        assert!(NatsConfig::new(["nats://127.0.0.1:4222"], "cache").validate().is_ok());
    }
}
