//! Reads and writes across nodes.

use super::*;

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
