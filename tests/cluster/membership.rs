//! Membership events and keyspace changes on every node.

use super::*;

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
