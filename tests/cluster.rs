//! Multi-node behaviour: real nodes on loopback, each with its own counting data source.
//!
//! Every test starts its own cluster (see `common`), so tests run in parallel. Conditions that
//! take gossip time are awaited with `eventually` under a timeout, never with a bare sleep.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use bytes::{Buf, BufMut};
use common::{KEYSPACE, Options, TestCluster, value_of};
use distcache::{BreakerState, ClusterEvent, Engine, Error, KeySpace};
use distcache_proto::v1::{self as pb, Code, get_outcome::Outcome, peer_client::PeerClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;
use tokio::time::timeout;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

/// Bound on anything that should happen promptly.
const WITHIN: Duration = Duration::from_secs(10);

// ---- helpers ----

/// A raw peer-protocol client for node `index`, as another node (or an attacker) would use.
async fn peer_client(cluster: &TestCluster, index: usize) -> PeerClient<Channel> {
    PeerClient::new(channel(cluster, index).await)
}

async fn channel(cluster: &TestCluster, index: usize) -> Channel {
    let addr = cluster.engine(index).peer_addr().expect("a cluster node serves peers");
    Channel::from_shared(format!("http://{addr}"))
        .expect("a valid uri")
        .connect()
        .await
        .expect("the node accepts connections")
}

fn key_ref(keyspace: &str, key: &str) -> pb::KeyRef {
    pb::KeyRef { keyspace: keyspace.to_owned(), key: key.to_owned() }
}

/// A Get sent like a peer sends it (`forwarded`), answered within [`WITHIN`].
async fn raw_get(
    client: &mut PeerClient<Channel>,
    keys: Vec<pb::KeyRef>,
) -> Result<Vec<Outcome>, tonic::Status> {
    let request = pb::GetRequest { keys, forwarded: true };
    let response = timeout(WITHIN, client.get(request)).await.expect("the node answers");
    let outcomes = response?.into_inner().outcomes;
    Ok(outcomes.into_iter().map(|o| o.outcome.expect("every outcome is set")).collect())
}

/// The failure code of an outcome (`None` for a value).
fn code(outcome: &Outcome) -> Option<Code> {
    match outcome {
        Outcome::Value(_) => None,
        Outcome::Failure(failure) => Some(Code::try_from(failure.code).expect("a known code")),
    }
}

/// Sends `body` as the message of a unary call, bypassing protobuf encoding.
async fn send_raw(channel: Channel, method: &'static str, body: Vec<u8>) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("the channel is ready");
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(method);
    let call = grpc.unary(tonic::Request::new(body), path, RawCodec);
    let answer = timeout(WITHIN, call).await.expect("the node answers");
    answer.expect_err("garbage is refused")
}

/// A gRPC codec for raw message bytes.
#[derive(Debug, Clone, Copy)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let mut bytes = vec![0; src.remaining()];
        src.copy_to_slice(&mut bytes);
        Ok(Some(bytes))
    }
}

/// A loopback address nothing listens on.
fn dead_addr() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("a bound address")
}

/// Waits for the first event `wanted` accepts, skipping others.
async fn next_event(
    events: &mut broadcast::Receiver<ClusterEvent>,
    wanted: impl Fn(&ClusterEvent) -> bool,
) -> ClusterEvent {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(event) if wanted(&event) => return event,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("the event stream closed"),
            }
        }
    };
    timeout(Duration::from_secs(20), wait).await.expect("the event arrives")
}

fn joined(node_id: &str) -> impl Fn(&ClusterEvent) -> bool + '_ {
    move |event| matches!(event, ClusterEvent::PeerJoined(p) if p.node_id == node_id)
}

fn left(node_id: &str) -> impl Fn(&ClusterEvent) -> bool + '_ {
    move |event| matches!(event, ClusterEvent::PeerLeft(p) if p.node_id == node_id)
}

/// Gets every key from `engine`, returning the keys that failed or came back wrong.
async fn failed_gets(engine: &Engine, keys: &[String]) -> Vec<String> {
    let mut failed = Vec::new();
    for key in keys {
        match engine.get(KEYSPACE, key).await {
            Ok(value) if value == value_of(key) => {}
            other => failed.push(format!("{key}: {other:?}")),
        }
    }
    failed
}

/// Per node: where its loads went and its ring epoch, to explain an unexpected fetch count
/// (fallbacks after failed peer calls, or a ring that changed mid-test).
fn load_report(cluster: &TestCluster) -> Vec<String> {
    (0..cluster.nodes.len())
        .map(|n| {
            let s = cluster.stats(n);
            let epoch = cluster.engine(n).ring().map(|r| r.epoch());
            format!(
                "node {n}: {} fetches, {} fallback loads, {} peer errors, ring epoch {epoch:?}",
                s.fetches, s.fallback_loads, s.peer_errors
            )
        })
        .collect()
}

/// Whether node `viewer` still routes by a ring naming node `member`.
fn ring_has(cluster: &TestCluster, viewer: usize, member: usize) -> bool {
    let ring = cluster.engine(viewer).ring().expect("a ring");
    ring.members().iter().any(|m| *m.node_id == *format!("node-{member}"))
}

// ---- reads and writes across nodes ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_fetched_once_and_served_by_every_node() {
    let cluster = TestCluster::start(3).await;
    for node in 0..3 {
        let value = cluster.engine(node).get(KEYSPACE, "shared").await.unwrap();
        assert_eq!(value, value_of("shared"));
    }
    assert_eq!(cluster.total_fetches(), 1);
    assert_eq!(cluster.fetches(cluster.owner_of("shared")), 1);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_on_one_node_is_read_on_every_node() {
    let cluster = TestCluster::start(3).await;
    // Keys owned by the writer and by each of the other nodes.
    for owner in 0..3 {
        let key = cluster.key_owned_by(owner, "put");
        let value = format!("put-for-{owner}");
        cluster.engine(0).put(KEYSPACE, (key.as_str(), value.clone())).await.unwrap();
        for reader in [1, 2, 0] {
            let read = cluster.engine(reader).get(KEYSPACE, &key).await.unwrap();
            assert_eq!(read, value, "{key} (owned by {owner}) read on node {reader}");
        }
    }
    assert_eq!(cluster.total_fetches(), 0);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_gets_fetch_each_key_once_in_the_whole_cluster() {
    const KEYS: usize = 1_000;
    const CALLERS: usize = 200;
    const GETS_PER_CALLER: usize = 100;
    let cluster = TestCluster::start(3).await;
    let keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(|i| format!("cold-{i}")).collect());
    let mut callers = Vec::new();
    for node in 0..3 {
        for caller in 0..CALLERS {
            let (engine, keys) = (cluster.engine(node).clone(), keys.clone());
            // Caller c on every node walks the same window at once, so the nodes race for
            // each key; the windows together cover every key.
            let window: Vec<String> =
                (0..GETS_PER_CALLER).map(|i| keys[(caller * 5 + i) % KEYS].clone()).collect();
            callers.push(tokio::spawn(async move { failed_gets(&engine, &window).await }));
        }
    }
    for caller in callers {
        assert_eq!(caller.await.unwrap(), Vec::<String>::new());
    }
    assert_eq!(cluster.total_fetches(), KEYS, "{:?}", load_report(&cluster));
    for node in 0..3 {
        let owned = keys.iter().filter(|k| cluster.owner_of(k) == node).count();
        assert_eq!(cluster.fetches(node), owned, "node {node} fetched exactly the keys it owns");
        assert_eq!(cluster.stats(node).fetches, owned as u64);
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_or_put_elsewhere_drops_the_value_from_every_hot_cache() {
    let cluster = TestCluster::start(3).await;
    let (a, b, c) = (0, 1, 2);
    let key = cluster.key_owned_by(c, "hot");

    assert_eq!(cluster.engine(a).get(KEYSPACE, &key).await.unwrap(), value_of(&key));
    assert_eq!(cluster.stats(a).hot_entries, 1, "A keeps C's value (hot min rate 0)");
    let (hot_hits, served) = (cluster.stats(a).hot_hits, cluster.stats(c).served_to_peers);
    assert_eq!(cluster.engine(a).get(KEYSPACE, &key).await.unwrap(), value_of(&key));
    assert_eq!(cluster.stats(a).hot_hits, hot_hits + 1, "the second get is a hot hit");
    assert_eq!(cluster.stats(c).served_to_peers, served, "without asking the owner");

    cluster.engine(b).delete(KEYSPACE, &key).await.unwrap();
    assert_eq!(cluster.stats(a).hot_entries, 0, "the delete reached A's hot cache");
    assert_eq!(cluster.engine(a).get(KEYSPACE, &key).await.unwrap(), value_of(&key));
    assert_eq!(cluster.fetches(c), 2, "A's get after the delete made the owner refetch");
    assert_eq!(cluster.stats(a).hot_hits, hot_hits + 1);

    // A holds it hot again; a put through B replaces it everywhere.
    cluster.engine(b).put(KEYSPACE, (key.as_str(), "rewritten")).await.unwrap();
    for node in [a, b, c] {
        assert_eq!(cluster.engine(node).get(KEYSPACE, &key).await.unwrap(), "rewritten");
    }
    assert_eq!(cluster.fetches(c), 2);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_racing_a_write_does_not_resurrect_the_old_value() {
    let cluster = TestCluster::start(3).await;
    let (a, b, c) = (0, 1, 2);
    let deleted = cluster.key_owned_by(c, "gated-deleted");
    let overwritten = cluster.key_owned_by(c, "gated-overwritten");

    // A's gets reach the owner's source and wait at its gate.
    let in_flight: Vec<_> = [&deleted, &overwritten]
        .into_iter()
        .map(|key| {
            let (engine, key) = (cluster.engine(a).clone(), key.clone());
            tokio::spawn(async move { engine.get(KEYSPACE, &key).await })
        })
        .collect();
    common::eventually(WITHIN, || cluster.fetches(c) == 2).await;

    cluster.engine(b).delete(KEYSPACE, &deleted).await.unwrap();
    cluster.engine(b).put(KEYSPACE, (overwritten.as_str(), "new")).await.unwrap();
    cluster.source(c).release(2);
    for get in in_flight {
        // Gets that began before the writes may see the old value; nothing may keep it.
        assert!(get.await.unwrap().is_ok());
    }
    assert_eq!(cluster.stats(c).entries, 1, "only the put value is stored at the owner");
    assert_eq!(cluster.stats(a).hot_entries, 0, "the requester kept nothing");

    cluster.source(c).release(1);
    assert_eq!(cluster.engine(a).get(KEYSPACE, &deleted).await.unwrap(), value_of(&deleted));
    assert_eq!(cluster.fetches(c), 3, "the get after the delete fetched again");
    for node in [a, b, c] {
        assert_eq!(cluster.engine(node).get(KEYSPACE, &overwritten).await.unwrap(), "new");
    }
    assert_eq!(cluster.fetches(c), 3);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_many_put_many_and_delete_many_answer_per_key_in_order() {
    let cluster = TestCluster::start(3).await;
    let owned: Vec<String> = (0..3).map(|n| cluster.key_owned_by(n, "batch")).collect();
    let missing = cluster.key_owned_by(1, "missing");
    let keys = [owned[0].as_str(), "", owned[1].as_str(), missing.as_str(), owned[2].as_str()];

    let results = cluster.engine(0).get_many(KEYSPACE, &keys).await.unwrap();
    assert_eq!(results.len(), keys.len());
    assert_eq!(*results[0].as_ref().unwrap(), value_of(&owned[0]));
    assert!(matches!(results[1], Err(Error::InvalidArgument(_))));
    assert_eq!(*results[2].as_ref().unwrap(), value_of(&owned[1]));
    assert!(matches!(results[3], Err(Error::NotFound)));
    assert_eq!(*results[4].as_ref().unwrap(), value_of(&owned[2]));
    for node in 0..3 {
        let expected = if node == 1 { 2 } else { 1 };
        assert_eq!(cluster.fetches(node), expected, "each owner fetched its own keys");
    }

    let entries: Vec<(&str, String)> = keys.iter().map(|k| (*k, format!("put-{k}"))).collect();
    let puts = cluster.engine(1).put_many(KEYSPACE, entries).await.unwrap();
    let put_failed: Vec<bool> = puts.iter().map(Result::is_err).collect();
    assert_eq!(put_failed, [false, true, false, false, false]);
    assert!(matches!(puts[1], Err(Error::InvalidArgument(_))));
    for node in 0..3 {
        let results = cluster.engine(node).get_many(KEYSPACE, &keys).await.unwrap();
        for (key, result) in keys.iter().zip(&results) {
            match result {
                Ok(value) => assert_eq!(*value, format!("put-{key}")),
                Err(err) => assert!(key.is_empty() && matches!(err, Error::InvalidArgument(_))),
            }
        }
    }

    let fetched = cluster.total_fetches();
    let deletes = cluster.engine(2).delete_many(KEYSPACE, &keys).await.unwrap();
    let delete_failed: Vec<bool> = deletes.iter().map(Result::is_err).collect();
    assert_eq!(delete_failed, [false, true, false, false, false]);
    for node in 0..3 {
        let results = cluster.engine(node).get_many(KEYSPACE, &keys).await.unwrap();
        assert_eq!(*results[0].as_ref().unwrap(), value_of(&owned[0]), "deleted: loaded again");
        assert!(matches!(results[3], Err(Error::NotFound)));
    }
    assert_eq!(cluster.total_fetches(), fetched + 4, "each deleted key was fetched once more");
    cluster.stop().await;
}

// ---- errors ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_variants_survive_the_wire() {
    let owner_timeout = Duration::from_millis(400);
    let mut cluster =
        TestCluster::new(Options { read_timeout: owner_timeout, ..Options::default() });
    // The caller waits longer than the owner, so the owner's timeout is what crosses the wire;
    // and it has a keyspace its peers lack.
    cluster
        .add_node_with(|mut node| {
            node.keyspaces[0] = node.keyspaces[0].clone().with_read_timeout(owner_timeout * 4);
            node.keyspaces.push(KeySpace::new("only-on-0", 1 << 20, node.source.clone()));
            node
        })
        .await;
    cluster.add_node().await;
    cluster.wait_converged().await;
    let (caller, owner) = (0, 1);
    let remote = |prefix: &str| cluster.key_owned_by(owner, prefix);

    // Each error as the owner gives it locally, and as the caller gets it over the wire.
    let local = cluster.engine(owner).get(KEYSPACE, &remote("missing-local")).await;
    let wire = cluster.engine(caller).get(KEYSPACE, &remote("missing")).await;
    assert!(matches!(local, Err(Error::NotFound)), "{local:?}");
    assert!(matches!(wire, Err(Error::NotFound)), "{wire:?}");

    let local = cluster.engine(owner).get(KEYSPACE, &remote("failing-local")).await;
    let wire = cluster.engine(caller).get(KEYSPACE, &remote("failing")).await;
    assert!(
        matches!(&local, Err(Error::DataSource(e)) if e.to_string().contains("the database is down"))
    );
    assert!(
        matches!(&wire, Err(Error::DataSource(e)) if e.to_string().contains("the database is down")),
        "{wire:?}"
    );

    let key = cluster.key_owned_by(owner, "elsewhere");
    let local = cluster.engine(owner).get("only-on-0", &key).await;
    let wire = cluster.engine(caller).get("only-on-0", &key).await;
    assert!(matches!(&local, Err(Error::KeySpaceNotFound(name)) if name == "only-on-0"));
    assert!(matches!(&wire, Err(Error::KeySpaceNotFound(name)) if name == "only-on-0"), "{wire:?}");
    assert_eq!(cluster.stats(caller).fallback_loads, 0, "a refusal is final, not retried here");

    let local = cluster.engine(owner).get(KEYSPACE, &remote("slow-local")).await;
    let wire = cluster.engine(caller).get(KEYSPACE, &remote("slow")).await;
    assert!(matches!(local, Err(Error::Timeout(after)) if after == owner_timeout), "{local:?}");
    assert!(matches!(wire, Err(Error::Timeout(after)) if after == owner_timeout), "{wire:?}");

    assert_eq!(cluster.fetches(caller), 0, "the caller never loaded an owner's key itself");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_or_oversized_peer_messages_get_an_error_not_a_panic() {
    let options =
        Options { configure: |config| config.with_max_message_bytes(1024), ..Options::default() };
    let cluster = TestCluster::start_with(2, options).await;
    let node = 0;
    let mut client = peer_client(&cluster, node).await;

    // Bigger than the node accepts.
    let huge = "k".repeat(4096);
    let status = raw_get(&mut client, vec![key_ref(KEYSPACE, &huge)]).await.unwrap_err();
    assert!(
        matches!(status.code(), tonic::Code::OutOfRange | tonic::Code::ResourceExhausted),
        "{status:?}"
    );

    // Not protobuf: a length-delimited field longer than the message.
    let garbage = vec![0x0a, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3];
    let status = send_raw(channel(&cluster, node).await, "/distcache.peer.v1.Peer/Get", garbage);
    let status = status.await;
    assert_eq!(status.code(), tonic::Code::Internal, "{status:?}");
    assert!(status.message().contains("decode"), "{status:?}");

    // Not even HTTP/2: the node hangs up.
    let addr = cluster.engine(node).peer_addr().unwrap();
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(b"\x16\x03\x01\x00garbage that is not a preface\r\n\r\n").await.unwrap();
    let mut sink = Vec::new();
    let closed = timeout(WITHIN, socket.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "the connection was closed");

    // Well-formed requests for keys that cannot be served fail per key, in the body.
    let keys = vec![
        key_ref(KEYSPACE, ""),
        key_ref("no-such-keyspace", "k"),
        key_ref(KEYSPACE, "fine"),
        key_ref(KEYSPACE, "missing-k"),
    ];
    let outcomes = raw_get(&mut client, keys).await.unwrap();
    let codes: Vec<Option<Code>> = outcomes.iter().map(code).collect();
    assert_eq!(
        codes,
        [Some(Code::InvalidArgument), Some(Code::KeyspaceNotFound), None, Some(Code::NotFound)]
    );

    // The node still serves, raw clients and peers alike.
    let outcomes = raw_get(&mut client, vec![key_ref(KEYSPACE, "after")]).await.unwrap();
    assert!(matches!(&outcomes[0], Outcome::Value(v) if v.value == value_of("after")));
    let key = cluster.key_owned_by(node, "peer-after");
    assert_eq!(cluster.engine(1).get(KEYSPACE, &key).await.unwrap(), value_of(&key));
    cluster.stop().await;
}

// ---- routing ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_get_is_served_where_it_lands_never_forwarded_again() {
    let cluster = TestCluster::start(3).await;
    let (receiver, owner) = (0, 1);
    let key = cluster.key_owned_by(owner, "disagree");
    // A peer whose ring says `receiver` owns the key sends it there.
    let mut client = peer_client(&cluster, receiver).await;
    let outcomes = raw_get(&mut client, vec![key_ref(KEYSPACE, &key)]).await.unwrap();
    assert!(matches!(&outcomes[0], Outcome::Value(v) if v.value == value_of(&key)));
    assert_eq!(cluster.fetches(receiver), 1, "loaded where it landed");
    assert_eq!(cluster.fetches(owner), 0, "not forwarded to the owner");
    assert_eq!(cluster.stats(owner).served_to_peers, 0);
    assert_eq!(cluster.stats(receiver).served_to_peers, 1);

    // Both ways at once, as when two rings each name the other node: both answer, no loop.
    let key = cluster.key_owned_by(2, "both-ways");
    let mut to_owner = peer_client(&cluster, 2).await;
    let (here, there) = tokio::join!(
        raw_get(&mut client, vec![key_ref(KEYSPACE, &key)]),
        raw_get(&mut to_owner, vec![key_ref(KEYSPACE, &key)]),
    );
    for outcomes in [here.unwrap(), there.unwrap()] {
        assert!(matches!(&outcomes[0], Outcome::Value(v) if v.value == value_of(&key)));
    }
    assert_eq!((cluster.fetches(receiver), cluster.fetches(2)), (2, 1));
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_crashes_and_graceful_leaves_reroute_keys_without_errors() {
    let mut cluster = TestCluster::start(3).await;
    let cached: Vec<String> = (0..80).map(|i| format!("moving-{i}")).collect();
    assert_eq!(failed_gets(cluster.engine(0), &cached).await, Vec::<String>::new());
    let old_owner: Vec<usize> = cached.iter().map(|k| cluster.owner_of(k)).collect();

    // A join: the newcomer owns (and loads) its share.
    let newcomer = cluster.add_node().await;
    cluster.wait_for_ring(&[0, 1, 2, 3]).await;
    let fresh = cluster.keys_owned_by(newcomer, "joined", 20);
    let before: Vec<usize> = (0..3).map(|n| cluster.fetches(n)).collect();
    for node in 0..4 {
        assert_eq!(failed_gets(cluster.engine(node), &fresh).await, Vec::<String>::new());
    }
    assert_eq!(cluster.fetches(newcomer), fresh.len());
    assert_eq!((0..3).map(|n| cluster.fetches(n)).collect::<Vec<_>>(), before);

    // Keys that moved to the newcomer: a write at the new owner reaches the old owner's copy.
    let moved: Vec<usize> =
        (0..cached.len()).filter(|&i| cluster.owner_of(&cached[i]) == newcomer).collect();
    assert!(!moved.is_empty(), "some of {} keys moved", cached.len());
    for &i in &moved {
        cluster.engine(1).put(KEYSPACE, (cached[i].as_str(), "rewritten")).await.unwrap();
        let read = cluster.engine(old_owner[i]).get(KEYSPACE, &cached[i]).await.unwrap();
        assert_eq!(read, "rewritten", "{} read on its old owner {}", cached[i], old_owner[i]);
    }

    // A crash: once the survivors see it, they serve its keys.
    let (victim, survivors) = (1, [0, 2, 3]);
    let orphans = cluster.keys_owned_by(victim, "orphan", 20);
    let mut events = cluster.engine(0).events();
    cluster.kill_node(victim).await;
    next_event(&mut events, left("node-1")).await;
    cluster.wait_for_ring(&survivors).await;
    let fetched = cluster.total_fetches();
    for node in survivors {
        assert_eq!(failed_gets(cluster.engine(node), &orphans).await, Vec::<String>::new());
    }
    assert_eq!(cluster.total_fetches(), fetched + orphans.len(), "each by its new owner, once");
    assert_eq!(orphans.iter().filter(|k| cluster.owner_of(k) == victim).count(), 0);

    // A graceful leave: callers see no error at any time, not even while it drains.
    let leaver = 2;
    let done = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = [0, 3]
        .into_iter()
        .map(|node| {
            let engine = cluster.engine(node).clone();
            let (done, errors) = (done.clone(), errors.clone());
            tokio::spawn(async move {
                // Fresh keys every round, so every round asks their owners (the leaver too).
                let mut rounds = 0;
                while !done.load(SeqCst) {
                    let keys: Vec<String> =
                        (0..10).map(|i| format!("leaving-{node}-{rounds}-{i}")).collect();
                    errors.fetch_add(failed_gets(&engine, &keys).await.len(), SeqCst);
                    rounds += 1;
                }
                rounds
            })
        })
        .collect();
    cluster.stop_node(leaver).await;
    cluster.wait_for_ring(&[0, 3]).await;
    done.store(true, SeqCst);
    for reader in readers {
        assert!(reader.await.unwrap() > 0, "the reader ran while the node left");
    }
    assert_eq!(errors.load(SeqCst), 0);
    let leaving = (0..20).map(|i| format!("left-{i}")).collect::<Vec<_>>();
    for node in [0, 3] {
        assert_eq!(failed_gets(cluster.engine(node), &leaving).await, Vec::<String>::new());
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_owner_is_loaded_around_without_filling_the_main_store() {
    let options = Options {
        // Keep the breaker open for the whole test once it opens.
        configure: |config| config.with_peer_breaker(3, Duration::from_secs(60)),
        ..Options::default()
    };
    let mut cluster = TestCluster::new(options);
    cluster.add_node().await;
    // Node 1 is in every ring but advertises an address where nothing listens.
    let dead = dead_addr();
    cluster
        .add_node_with(|mut node| {
            node.cluster = node.cluster.with_grpc_advertise(dead);
            node
        })
        .await;
    cluster.wait_converged().await;
    let (caller, owner) = (0, 1);
    let keys = cluster.keys_owned_by(owner, "unreachable", 4);

    for (i, key) in keys.iter().enumerate() {
        let before = cluster.stats(caller);
        assert_eq!(cluster.engine(caller).get(KEYSPACE, key).await.unwrap(), value_of(key));
        let after = cluster.stats(caller);
        assert_eq!(after.fallback_loads, before.fallback_loads + 1, "key {i} loaded here");
        assert_eq!(after.entries, 0, "nothing in the main store for a key owned elsewhere");
        assert_eq!(after.peer_loads, 0);
        // The fallback value is kept briefly in the hot cache only.
        assert_eq!(cluster.engine(caller).get(KEYSPACE, key).await.unwrap(), value_of(key));
        assert_eq!(cluster.stats(caller).hot_hits, before.hot_hits + 1);
    }
    assert_eq!((cluster.fetches(caller), cluster.fetches(owner)), (keys.len(), 0));
    // The first three calls failed and opened the breaker; the fourth key was not even tried.
    assert_eq!(cluster.stats(caller).peer_errors, keys.len() as u64);
    let peers = cluster.engine(caller).peers();
    let status = peers.iter().find(|p| p.info.node_id == "node-1").expect("node-1 is known");
    assert_eq!(status.breaker, Some(BreakerState::Open));

    // A write cannot land anywhere: it fails rather than vanishing.
    let written = cluster.engine(caller).put(KEYSPACE, (keys[0].as_str(), "v")).await;
    assert!(matches!(written, Err(Error::Unavailable(_))), "{written:?}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_owner_is_loaded_around_before_the_ring_changes() {
    let options = Options {
        // Failure detection that never fires within the test: the ring keeps the dead node.
        configure: |config| config.with_phi_threshold(1e9),
        ..Options::default()
    };
    let mut cluster = TestCluster::start_with(3, options).await;
    let (caller, victim) = (0, 2);
    let key = cluster.key_owned_by(victim, "crashed");
    cluster.kill_node(victim).await;

    let before = cluster.stats(caller);
    assert_eq!(cluster.engine(caller).get(KEYSPACE, &key).await.unwrap(), value_of(&key));
    assert!(ring_has(&cluster, caller, victim), "the ring had not changed yet");
    let after = cluster.stats(caller);
    assert_eq!(after.fallback_loads, before.fallback_loads + 1);
    assert_eq!(after.entries, before.entries, "not stored in the caller's main store");
    assert_eq!(cluster.fetches(caller), 1);
    assert_eq!(cluster.fetches(victim), 0);
    cluster.stop().await;
}

// ---- membership and keyspaces ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_report_joins_and_leaves() {
    let mut cluster = TestCluster::start(2).await;
    let mut events = cluster.engine(0).events();

    let graceful = cluster.add_node().await;
    let event = next_event(&mut events, joined("node-2")).await;
    assert!(
        matches!(event, ClusterEvent::PeerJoined(p) if p.ready && p.grpc_addr == cluster.engine(graceful).peer_addr())
    );
    cluster.stop_node(graceful).await;
    next_event(&mut events, left("node-2")).await;

    let crashed = cluster.add_node().await;
    next_event(&mut events, joined("node-3")).await;
    cluster.kill_node(crashed).await;
    next_event(&mut events, left("node-3")).await;
    cluster.wait_for_ring(&[0, 1]).await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyspace_updates_and_deletions_reach_every_node() {
    let cluster = TestCluster::start(3).await;
    let source = cluster.nodes[0].source.clone();
    let updated = KeySpace::new(KEYSPACE, 32 << 20, source)
        .with_default_ttl(Duration::from_secs(90))
        .with_negative_ttl(Duration::from_secs(30));
    cluster.engine(0).update_keyspace(updated).await.unwrap();
    for node in 1..3 {
        let def = cluster.engine(node).keyspace(KEYSPACE).unwrap();
        assert_eq!(def.default_ttl(), Some(Duration::from_secs(90)), "node {node}");
        assert_eq!(def.max_bytes(), 32 << 20);
        assert_eq!(cluster.stats(node).max_bytes, 32 << 20);
    }
    // Each node still loads from its own source.
    let key = cluster.key_owned_by(1, "after-update");
    assert_eq!(cluster.engine(2).get(KEYSPACE, &key).await.unwrap(), value_of(&key));
    assert_eq!((cluster.fetches(0), cluster.fetches(1)), (0, 1));

    cluster.engine(0).delete_keyspace(KEYSPACE).await.unwrap();
    for node in 0..3 {
        assert!(cluster.engine(node).keyspaces().is_empty(), "node {node}");
        let get = cluster.engine(node).get(KEYSPACE, &key).await;
        assert!(matches!(get, Err(Error::KeySpaceNotFound(_))), "node {node}: {get:?}");
    }
    cluster.stop().await;
}
