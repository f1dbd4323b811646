//! Routing: forwarded gets, membership changes, unreachable owners.

use super::*;

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
    // An old owner asks the new one rather than answering from the copy it kept.
    for &i in &moved {
        let (node, key) = (old_owner[i], &cached[i]);
        let before = cluster.stats(node);
        assert_eq!(cluster.engine(node).get(KEYSPACE, key).await.unwrap(), value_of(key));
        let after = cluster.stats(node);
        assert_eq!((after.hits, after.peer_loads), (before.hits, before.peer_loads + 1), "{key}");
    }
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
async fn a_crashed_owners_keys_go_to_their_next_owner_before_the_ring_changes() {
    let options = Options {
        // Failure detection that never fires within the test: the ring keeps the dead node.
        configure: |config| config.with_phi_threshold(1e9),
        ..Options::default()
    };
    let mut cluster = TestCluster::start_with(3, options).await;
    let (caller, other, victim) = (0, 1, 2);
    // The owner each of the victim's keys gets once the victim leaves the ring.
    let ring = cluster.engine(caller).ring().unwrap();
    let victim_id = cluster.engine(victim).node_id().unwrap();
    let survivors: Vec<Member> =
        ring.members().iter().filter(|m| *m.node_id != *victim_id).cloned().collect();
    let next_ring = Ring::new(0, survivors);
    let next_owner = |key: &String| {
        let owner = next_ring.owner(key).unwrap().node_id.clone();
        (0..3).find(|&n| cluster.engine(n).node_id().as_deref() == Some(&*owner)).unwrap()
    };
    let keys = cluster.keys_owned_by(victim, "crashed", 40);
    let to_other = keys.iter().find(|k| next_owner(k) == other).unwrap().clone();
    let to_caller = keys.iter().find(|k| next_owner(k) == caller).unwrap().clone();
    cluster.kill_node(victim).await;

    // The other survivor will own this key: it loads and keeps it now.
    let before = cluster.stats(caller);
    assert_eq!(cluster.engine(caller).get(KEYSPACE, &to_other).await.unwrap(), value_of(&to_other));
    assert!(ring_has(&cluster, caller, victim), "the ring had not changed yet");
    let after = cluster.stats(caller);
    assert_eq!(
        (after.fallback_loads, after.peer_loads),
        (before.fallback_loads, before.peer_loads + 1)
    );
    assert_eq!((cluster.fetches(caller), cluster.fetches(other)), (0, 1));
    assert_eq!(cluster.stats(other).entries, 1, "kept by its next owner");

    // This node will own this one: it loads it, keeping it only briefly, off the main store.
    assert_eq!(
        cluster.engine(caller).get(KEYSPACE, &to_caller).await.unwrap(),
        value_of(&to_caller)
    );
    let last = cluster.stats(caller);
    assert_eq!(last.fallback_loads, after.fallback_loads + 1);
    assert_eq!(last.entries, before.entries, "not stored in the caller's main store");
    assert_eq!((cluster.fetches(caller), cluster.fetches(other)), (1, 1));
    assert_eq!(cluster.fetches(victim), 0);
    cluster.stop().await;
}
