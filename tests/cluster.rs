//! Multi-node behaviour: real nodes on loopback, each with its own counting data source.

mod common;

use std::time::Duration;

use common::{KEYSPACE, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_fetched_once_and_served_by_every_node() {
    let cluster = TestCluster::start(3).await;
    for node in 0..3 {
        let value = cluster.engine(node).get(KEYSPACE, "shared").await.unwrap();
        assert_eq!(value, "value-of-shared");
    }
    assert_eq!(cluster.total_fetches(), 1);
    let owner = cluster.owner_of("shared");
    assert_eq!(cluster.nodes[owner].source.fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
    let _ = Duration::ZERO;
    cluster.stop().await;
}
