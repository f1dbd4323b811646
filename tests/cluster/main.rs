//! Multi-node behaviour: real nodes on loopback, each with its own counting data source.
//!
//! Every test starts its own cluster (see `common`), so tests run in parallel. Conditions that
//! take gossip time are awaited with `eventually` under a timeout, never with a bare sleep.

#[path = "../common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use bytes::{Buf, BufMut};
use common::{KEYSPACE, Options, TestCluster, value_of};
use distcache::{BreakerState, ClusterEvent, Engine, Error, KeySpace, Member, Ring};
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

mod errors;
mod membership;
mod reads_and_writes;
mod routing;
