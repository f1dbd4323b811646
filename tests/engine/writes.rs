//! Writes: the byte budget and fill fencing.

use super::*;

#[tokio::test]
async fn byte_budget_evicts_the_least_recently_used() -> anyhow::Result<()> {
    let source = Source::new().arc();
    let max_bytes = 100 * KIB;
    let engine =
        start([KeySpace::new(KS, max_bytes, source.clone()).with_eviction(Eviction::Lru)]).await;
    let value = Bytes::from(vec![7u8; 1024]);
    for i in 0..1000 {
        engine.put(KS, (format!("key-{i:04}"), value.clone())).await?;
    }
    let s = engine.stats(KS)?;
    let per_entry = 1024 + "key-0000".len() as u64 + ENTRY_OVERHEAD;
    assert!(s.bytes <= max_bytes * 105 / 100, "{s:?}");
    assert_eq!(s.bytes, s.entries * per_entry, "{s:?}");
    assert!(s.entries >= max_bytes / per_entry * 9 / 10, "the budget is used: {s:?}");
    assert!(s.evictions >= 1000 - s.entries, "{s:?}");
    assert_eq!(s.max_bytes, max_bytes);
    assert_eq!(engine.get(KS, "key-0999").await?, value, "the newest value stays");
    assert_eq!(engine.get(KS, "key-0000").await?, "key-0000#1", "the oldest was evicted");
    Ok(())
}

#[tokio::test]
async fn values_larger_than_the_budget() -> anyhow::Result<()> {
    let source = Source::new().answering(|_, _| Ok(Bytes::from(vec![0u8; 4096]))).arc();
    let engine = start([KeySpace::new(KS, 4096, source.clone())]).await;
    let fitting = vec![1u8; 4096 - ENTRY_OVERHEAD as usize - 1];
    engine.put(KS, ("k", fitting.clone())).await?;
    assert_eq!(engine.get(KS, "k").await?, fitting);
    let err = engine.put(KS, ("k", vec![1u8; 4096])).await.expect_err("too big");
    assert!(matches!(&err, Error::InvalidArgument(m) if m.contains("max_bytes")), "{err}");
    // A fetched value that cannot fit is served but not stored.
    assert_eq!(engine.get(KS, "big").await?.len(), 4096);
    assert_eq!(engine.get(KS, "big").await?.len(), 4096);
    assert_eq!(source.fetches(), 2);
    Ok(())
}

// ---- fencing ----

#[tokio::test(start_paused = true)]
async fn put_wins_over_a_load_in_flight() -> anyhow::Result<()> {
    let source = Source::new().gated().arc();
    let engine = start([keyspace(KS, &source)]).await;
    let get = spawn_get(&engine, "k");
    source.started.notified().await;
    engine.put(KS, ("k", "put")).await?;
    assert_eq!(engine.get(KS, "k").await?, "put");
    source.release(1);
    assert_eq!(get.await?.0?, "k#1", "the load answers its own callers");
    assert_eq!(engine.get(KS, "k").await?, "put", "but does not write over the put");
    assert_eq!(source.fetches(), 1);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn delete_wins_over_a_load_in_flight() -> anyhow::Result<()> {
    let source = Source::new().gated().arc();
    let engine = start([keyspace(KS, &source)]).await;
    let get = spawn_get(&engine, "k");
    source.started.notified().await;
    engine.delete(KS, "k").await?;
    source.release(1);
    assert_eq!(get.await?.0?, "k#1");
    source.release(1);
    assert_eq!(engine.get(KS, "k").await?, "k#2", "the fenced load stored nothing");
    assert_eq!(source.fetches(), 2);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn get_after_delete_does_not_join_the_stale_load() -> anyhow::Result<()> {
    let source = Source::new().gated().arc();
    let engine = start([keyspace(KS, &source)]).await;
    let before = spawn_get(&engine, "k");
    source.started.notified().await;
    engine.delete(KS, "k").await?;
    let after = spawn_get(&engine, "k");
    eventually("a fresh load started", || source.fetches() == 2).await;
    source.release(2);
    assert_eq!(before.await?.0?, "k#1");
    assert_eq!(after.await?.0?, "k#2", "a get issued after the delete sees a later value");
    assert_eq!(engine.get(KS, "k").await?, "k#2");
    assert_eq!(source.fetches(), 2);
    Ok(())
}
