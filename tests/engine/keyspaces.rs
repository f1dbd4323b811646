//! Keyspace changes at run time, batches and shutdown.

use super::*;

#[tokio::test(start_paused = true)]
async fn update_keyspace_caps_stored_values_to_the_new_ttl() -> anyhow::Result<()> {
    let source = Source::new().arc();
    let engine = start([keyspace(KS, &source)]).await;
    assert_eq!(engine.get(KS, "fetched").await?, "fetched#1");
    engine.put(KS, ("put", "p")).await?;
    engine.put(KS, Entry::new("own", "o").with_ttl(Duration::from_secs(3600))).await?;
    advance(Duration::from_secs(3000)).await;

    engine.update_keyspace(keyspace(KS, &source).with_default_ttl(Duration::from_secs(10))).await?;
    assert_eq!(engine.keyspace(KS)?.default_ttl(), Some(Duration::from_secs(10)));
    advance(Duration::from_secs(9)).await;
    assert_eq!(engine.get(KS, "fetched").await?, "fetched#1");
    assert_eq!(engine.get(KS, "put").await?, "p");
    advance(Duration::from_secs(2)).await;
    assert_eq!(engine.get(KS, "fetched").await?, "fetched#2");
    assert_eq!(engine.get(KS, "put").await?, "put#3");
    assert_eq!(engine.get(KS, "own").await?, "o", "a put's own expiry is kept");
    advance(Duration::from_secs(600)).await;
    assert_eq!(engine.get(KS, "own").await?, "own#4");
    assert_eq!(engine.get(KS, "put").await?, "put#5", "new loads get the new TTL");
    assert_eq!(engine.stats(KS)?.puts, 2, "counters carry on");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn update_keyspace_dropping_the_negative_ttl_forgets_absences() -> anyhow::Result<()> {
    let source = Source::new().answering(|_, _| Err(FetchError::NotFound)).arc();
    let engine = start([keyspace(KS, &source).with_negative_ttl(Duration::from_secs(60))]).await;
    assert!(matches!(engine.get(KS, "k").await, Err(Error::NotFound)));
    assert!(matches!(engine.get(KS, "k").await, Err(Error::NotFound)));
    engine.update_keyspace(keyspace(KS, &source)).await?;
    assert!(matches!(engine.get(KS, "k").await, Err(Error::NotFound)));
    assert_eq!(source.fetches(), 2);
    Ok(())
}

#[tokio::test]
async fn update_keyspace_applies_a_smaller_budget() -> anyhow::Result<()> {
    let source = Source::new().arc();
    let lru = |max_bytes| KeySpace::new(KS, max_bytes, source.clone()).with_eviction(Eviction::Lru);
    let engine = start([lru(100 * KIB)]).await;
    let value = Bytes::from(vec![7u8; 1024]);
    for i in 0..50 {
        engine.put(KS, (format!("key-{i:04}"), value.clone())).await?;
    }
    let before = engine.stats(KS)?;
    assert_eq!((before.entries, before.evictions), (50, 0));

    engine.update_keyspace(lru(20 * KIB)).await?;
    let after = engine.stats(KS)?;
    assert_eq!(after.max_bytes, 20 * KIB);
    assert!(after.bytes <= 20 * KIB && after.entries < 50, "{after:?}");
    assert!(after.entries > 0 && after.evictions >= 50 - after.entries, "{after:?}");
    assert_eq!(after.puts, 50, "counters carry on");
    Ok(())
}

#[tokio::test]
async fn update_keyspace_adds_and_validates() -> anyhow::Result<()> {
    let source = Source::new().arc();
    let engine = start([keyspace(KS, &source)]).await;
    engine.update_keyspace(keyspace("added", &source)).await?;
    assert_eq!(engine.keyspaces(), ["added", "ks"]);
    assert_eq!(engine.get("added", "k").await?, "k#1");
    assert_eq!(engine.stats("added")?.fetches, 1);

    let err = engine.update_keyspace(KeySpace::new(KS, 0, source.clone())).await;
    assert!(matches!(err, Err(Error::InvalidArgument(m)) if m.contains("max_bytes")));
    assert_eq!(engine.keyspace(KS)?.max_bytes(), MIB, "a rejected update changes nothing");
    Ok(())
}

#[tokio::test]
async fn delete_keyspace_removes_its_data() -> anyhow::Result<()> {
    let source = Source::new().arc();
    let engine = start([keyspace(KS, &source), keyspace("other", &source)]).await;
    engine.put(KS, ("k", "v")).await?;
    engine.put("other", ("k", "o")).await?;

    let err = engine.delete_keyspaces(&["other", "unknown"]).await;
    assert!(matches!(err, Err(Error::KeySpaceNotFound(n)) if n == "unknown"));
    assert_eq!(engine.keyspaces(), ["ks", "other"], "none removed");
    assert_eq!(engine.get("other", "k").await?, "o");

    engine.delete_keyspace(KS).await?;
    assert_eq!(engine.keyspaces(), ["other"]);
    assert!(matches!(engine.get(KS, "k").await, Err(Error::KeySpaceNotFound(_))));
    assert!(matches!(engine.put(KS, ("k", "v")).await, Err(Error::KeySpaceNotFound(_))));
    assert!(matches!(engine.delete_keyspace(KS).await, Err(Error::KeySpaceNotFound(_))));

    engine.update_keyspace(keyspace(KS, &source)).await?;
    assert_eq!(engine.get(KS, "k").await?, "k#1", "a re-added keyspace starts empty");
    assert_eq!(engine.stats(KS)?.puts, 0);
    Ok(())
}

// ---- batches ----

#[tokio::test]
async fn batch_operations_answer_per_key_in_order() -> anyhow::Result<()> {
    let source = Source::new()
        .answering(|key, n| {
            if key.starts_with("missing") {
                Err(FetchError::NotFound)
            } else {
                Ok(Bytes::from(format!("{key}#{n}")))
            }
        })
        .arc();
    let engine = start([KeySpace::new(KS, 64 * KIB, source.clone())]).await;

    let puts = engine
        .put_many(KS, [("a", vec![1u8]), ("", vec![2]), ("b", vec![3]), ("c", vec![0; 65536])])
        .await?;
    assert!(matches!(
        puts[..],
        [Ok(()), Err(Error::InvalidArgument(_)), Ok(()), Err(Error::InvalidArgument(_))]
    ));

    let got = engine.get_many(KS, &["a", "", "missing", "b", "d", "d"]).await?;
    assert_eq!(got.len(), 6);
    assert_eq!(got[0].as_ref().ok(), Some(&Bytes::from_static(&[1])));
    assert!(matches!(got[1], Err(Error::InvalidArgument(_))));
    assert!(matches!(got[2], Err(Error::NotFound)));
    assert_eq!(got[3].as_ref().ok(), Some(&Bytes::from_static(&[3])));
    let fetched = got[4].as_ref().ok().cloned();
    assert!(fetched.as_ref().is_some_and(|v| v.starts_with(b"d#")), "{fetched:?}");
    assert_eq!(got[5].as_ref().ok(), fetched.as_ref(), "the same key in one batch loads once");
    assert_eq!(source.fetches(), 2);

    let deleted = engine.delete_many(KS, &["a", "", "b"]).await?;
    assert!(matches!(deleted[..], [Ok(()), Err(Error::InvalidArgument(_)), Ok(())]));
    let got = engine.get_many(KS, &["a", "b"]).await?;
    let got: Vec<_> = got.into_iter().collect::<Result<_>>()?;
    assert!(got[0].starts_with(b"a#") && got[1].starts_with(b"b#"), "{got:?}");
    assert_eq!(source.fetches(), 4, "deleted keys load again");
    Ok(())
}

// ---- shutdown ----

#[tokio::test(start_paused = true)]
async fn stop_ends_loads_in_flight() -> anyhow::Result<()> {
    let source = Source::new().gated().arc();
    let engine = start([keyspace(KS, &source)]).await;
    let gets: Vec<_> = (0..2).map(|_| spawn_get(&engine, "k")).collect();
    eventually("both callers wait on the load", || deduped(&engine) == 1).await;
    timeout(Duration::from_secs(1), engine.stop()).await.expect("stop returns");
    for get in gets {
        let (result, _) = timeout(Duration::from_secs(1), get).await??;
        assert!(matches!(result, Err(Error::Stopped)), "{result:?}");
    }
    assert_eq!(source.fetches(), 1);
    Ok(())
}

#[tokio::test]
async fn stats_add_up() -> anyhow::Result<()> {
    let source = Source::new().arc();
    let engine = start([keyspace(KS, &source)]).await;
    engine.get(KS, "a").await?;
    engine.get(KS, "a").await?;
    engine.put(KS, ("b", "v")).await?;
    engine.delete(KS, "b").await?;
    let s = engine.stats(KS)?;
    assert_eq!(s.gets, s.hits + s.negative_hits + s.misses);
    assert_eq!((s.gets, s.hits, s.misses, s.puts, s.deletes, s.entries), (2, 1, 1, 1, 1, 1));
    assert_eq!(s.bytes, "a".len() as u64 + "a#1".len() as u64 + ENTRY_OVERHEAD);
    Ok(())
}
