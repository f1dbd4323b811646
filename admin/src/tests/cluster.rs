//! Peers, ring and readiness of cluster nodes on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use distcache_discovery::StaticDiscovery;
use distcache_engine::{ClusterConfig, Config, Engine};

use super::{call, eventually, keys, keyspace, round_trips};
use crate::{BreakerView, PeerState, PeerView, RingView, router};

/// The fields of a peer, as the crate docs and README list them.
const PEER_FIELDS: [&str; 12] = [
    "admin_addr",
    "breaker",
    "generation",
    "gossip_addr",
    "grpc_addr",
    "is_self",
    "keyspaces_hash",
    "keyspaces_match",
    "node_id",
    "ownership",
    "ready",
    "state",
];

fn cluster(node_id: &str, seeds: Vec<String>, gossip: Duration) -> ClusterConfig {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    ClusterConfig::new(Arc::new(StaticDiscovery::new(seeds)))
        .with_label("admin-test")
        .with_node_id(node_id)
        .with_grpc_addr(loopback)
        .with_gossip_addr(loopback)
        .with_admin_addr(format!("{node_id}.admin:9090"))
        .with_gossip_interval(gossip)
        .with_phi_threshold(5.0)
        .with_rediscover_interval(Duration::from_millis(200))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_and_ring_show_members_shares_breakers_and_drift() {
    let gossip = Duration::from_millis(50);
    let a = Config::standalone([keyspace("users")]).with_cluster(cluster("node-a", vec![], gossip));
    let a = Engine::start(a).await.unwrap();
    let seed = a.gossip_addr().unwrap().to_string();
    // node-b defines `users` with another TTL: its keyspace hash differs.
    let drifted = keyspace("users").with_default_ttl(Duration::from_secs(5));
    let b = Config::standalone([drifted]).with_cluster(cluster("node-b", vec![seed], gossip));
    let b = Engine::start(b).await.unwrap();
    let admin = router(a.clone());

    eventually("node-a sees both nodes in its ring, with their hashes", || async {
        let peers: Vec<PeerView> =
            serde_json::from_str(&call(&admin, "/v1/peers").await.body).unwrap();
        peers.len() == 2
            && peers.iter().all(|p| p.state == PeerState::InRing && !p.keyspaces_hash.is_empty())
    })
    .await;

    let answer = call(&admin, "/v1/peers").await;
    assert_eq!(answer.status, StatusCode::OK);
    let json = answer.json();
    assert_eq!(keys(&json[0]), PEER_FIELDS);
    let peers: Vec<PeerView> = round_trips(&json);
    let (me, other) = (&peers[0], &peers[1]);
    assert_eq!((me.node_id.as_str(), other.node_id.as_str()), ("node-a", "node-b"));
    assert!(me.is_self && !other.is_self);
    assert!(me.ready && other.ready);
    assert_eq!((me.breaker, other.breaker), (None, Some(BreakerView::Closed)));
    assert_eq!(other.grpc_addr, b.peer_addr());
    assert_eq!(other.admin_addr.as_deref(), Some("node-b.admin:9090"));
    assert!((me.ownership + other.ownership - 1.0).abs() < 1e-9, "{peers:?}");
    assert!(me.keyspaces_match, "a node matches itself");
    assert!(!other.keyspaces_match, "node-b's `users` has another TTL: {peers:?}");
    assert_eq!(json[1]["state"], "in_ring");
    assert_eq!(json[1]["breaker"], "closed");

    let ring = call(&admin, "/v1/ring").await;
    assert_eq!(ring.status, StatusCode::OK);
    let json = ring.json();
    assert_eq!(keys(&json), ["epoch", "members"]);
    assert_eq!(keys(&json["members"][0]), ["grpc_addr", "node_id", "ownership"]);
    let view: RingView = round_trips(&json);
    assert!(view.epoch >= 1);
    let ids: Vec<&str> = view.members.iter().map(|m| m.node_id.as_str()).collect();
    assert_eq!(ids, ["node-a", "node-b"]);
    assert_eq!(view.members[1].ownership, other.ownership);

    assert_eq!(call(&admin, "/readyz").await.status, StatusCode::OK);
    futures_join(a.stop(), b.stop()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_a_draining_node_then_a_stopped_one() {
    // A long gossip interval makes the drain (two rounds) long enough to observe.
    let config = Config::standalone([keyspace("users")]).with_cluster(cluster(
        "node-a",
        vec![],
        Duration::from_millis(500),
    ));
    let engine = Engine::start(config).await.unwrap();
    let admin = router(engine.clone());
    eventually("the node joins its own ring", || async {
        call(&admin, "/readyz").await.status == StatusCode::OK
    })
    .await;

    let stopping = tokio::spawn({
        let engine = engine.clone();
        async move { engine.stop().await }
    });
    eventually("/readyz says the node is draining", || async {
        let answer = call(&admin, "/readyz").await;
        answer.status == StatusCode::SERVICE_UNAVAILABLE && answer.json()["reason"] == "not_in_ring"
    })
    .await;
    let draining = call(&admin, "/readyz").await.json();
    assert_eq!(draining["ready"], false);
    assert!(draining["message"].as_str().unwrap().contains("node-a"), "{draining}");

    stopping.await.unwrap();
    let stopped = call(&admin, "/readyz").await;
    assert_eq!(stopped.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(stopped.json()["reason"], "stopped");
}

async fn futures_join(a: impl Future<Output = ()>, b: impl Future<Output = ()>) {
    tokio::join!(a, b);
}
