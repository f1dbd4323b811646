//! Loads: one fetch per key, cancellation, timeouts, panics, errors, not-found.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_cold_gets_fetch_once() -> anyhow::Result<()> {
    let source = Source::new().gated().arc();
    let engine = start([keyspace(KS, &source)]).await;
    let gets: Vec<_> = (0..100).map(|_| spawn_get(&engine, "k")).collect();
    eventually("99 callers joined the load", || deduped(&engine) == 99).await;
    source.release(1);
    for get in gets {
        assert_eq!(get.await?.0?, "k#1");
    }
    assert_eq!(source.fetches(), 1);
    let s = engine.stats(KS)?;
    assert_eq!((s.gets, s.misses, s.hits, s.fetches, s.fetches_deduped), (100, 100, 0, 1, 99));
    assert_eq!(engine.get(KS, "k").await?, "k#1");
    assert_eq!((engine.stats(KS)?.hits, source.fetches()), (1, 1));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn cancelled_callers_cancel_nobody_else() -> anyhow::Result<()> {
    let source = Source::new().gated().arc();
    let engine = start([keyspace(KS, &source)]).await;
    let first = spawn_get(&engine, "k");
    source.started.notified().await;
    first.abort();
    assert!(first.await.expect_err("aborted").is_cancelled());
    // A follower giving up on its own does not end the load either.
    assert!(timeout(ms(10), engine.get(KS, "k")).await.is_err());
    let second = spawn_get(&engine, "k");
    eventually("the second caller joined", || deduped(&engine) == 2).await;
    source.release(1);
    assert_eq!(second.await?.0?, "k#1");
    assert_eq!(engine.get(KS, "k").await?, "k#1");
    assert_eq!(source.fetches(), 1);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn read_timeout_bounds_the_load_and_every_waiter() -> anyhow::Result<()> {
    let source = Source::new().delayed(ms(150)).arc();
    let engine = start([keyspace(KS, &source).with_read_timeout(ms(100))]).await;
    let first = spawn_get(&engine, "k");
    sleep(ms(40)).await;
    let second = spawn_get(&engine, "k");
    let ((first, first_took), (second, second_took)) = (first.await?, second.await?);
    assert!(matches!(first, Err(Error::Timeout(t)) if t == ms(100)), "{first:?}");
    assert_eq!(first_took, ms(100));
    // The fetch itself is bounded by the read timeout, so the later waiter gets the load's
    // timeout when it ends, before its own deadline (40 + 100 ms).
    assert!(matches!(second, Err(Error::Timeout(_))), "{second:?}");
    assert_eq!(second_took, ms(60));
    let s = engine.stats(KS)?;
    assert_eq!((s.fetches, s.fetches_deduped, s.fetch_errors, s.entries), (1, 1, 1, 0));
    // A timed-out load stores nothing: the next get fetches again.
    assert!(matches!(engine.get(KS, "k").await, Err(Error::Timeout(_))));
    assert_eq!(source.fetches(), 2);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn each_waiter_honours_its_own_deadline() -> anyhow::Result<()> {
    let source = Source::new().delayed(ms(500)).arc();
    let engine = start([keyspace(KS, &source).with_read_timeout(Duration::from_secs(1))]).await;
    let first = spawn_get(&engine, "k");
    source.started.notified().await;
    // Later callers get a shorter deadline than the load in flight (bounded by 1 s).
    engine.update_keyspace(keyspace(KS, &source).with_read_timeout(ms(100))).await?;
    sleep(ms(20)).await;
    let (second, second_took) = spawn_get(&engine, "k").await?;
    assert!(matches!(second, Err(Error::Timeout(t)) if t == ms(100)), "{second:?}");
    assert_eq!(second_took, ms(100));
    assert!(!first.is_finished(), "the load goes on after a waiter's deadline");
    let (first, first_took) = first.await?;
    assert_eq!((first?, first_took), (Bytes::from("k#1"), ms(500)));
    assert_eq!(engine.get(KS, "k").await?, "k#1");
    assert_eq!(source.fetches(), 1);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn panicking_source_fails_every_waiter_then_retries() -> anyhow::Result<()> {
    let source = Source::new()
        .gated()
        .answering(|key, n| match n {
            1 => panic!("boom on {key}"),
            _ => Ok(Bytes::from(format!("{key}#{n}"))),
        })
        .arc();
    let engine = start([keyspace(KS, &source)]).await;
    let gets: Vec<_> = (0..3).map(|_| spawn_get(&engine, "k")).collect();
    eventually("two callers joined the load", || deduped(&engine) == 2).await;
    source.release(1);
    for get in gets {
        let (result, _) = timeout(Duration::from_secs(1), get).await??;
        match result {
            Err(Error::DataSource(err)) => {
                let msg = err.to_string();
                assert!(msg.contains("panicked") && msg.contains("boom on k"), "{msg}");
            }
            other => panic!("expected a data-source error, got {other:?}"),
        }
    }
    assert_eq!(engine.stats(KS)?.fetch_errors, 1);
    source.release(1);
    assert_eq!(engine.get(KS, "k").await?, "k#2");
    assert_eq!(source.fetches(), 2);
    Ok(())
}

#[tokio::test]
async fn source_errors_reach_the_caller_and_are_not_cached() -> anyhow::Result<()> {
    let source = Source::new().answering(|_, _| Err(FetchError::failed("backend down"))).arc();
    let engine = start([keyspace(KS, &source)]).await;
    for _ in 0..2 {
        let err = engine.get(KS, "k").await.expect_err("the source fails");
        assert!(matches!(&err, Error::DataSource(e) if e.to_string() == "backend down"), "{err}");
    }
    assert_eq!((source.fetches(), engine.stats(KS)?.fetch_errors), (2, 2));
    Ok(())
}

// ---- not found ----

#[tokio::test(start_paused = true)]
async fn not_found_is_negatively_cached_only_with_a_negative_ttl() -> anyhow::Result<()> {
    let missing = |_: &str, _| Err(FetchError::NotFound);
    let remembered = Source::new().answering(missing).arc();
    let forgotten = Source::new().answering(missing).arc();
    let engine = start([
        keyspace(KS, &remembered).with_negative_ttl(Duration::from_secs(10)),
        keyspace("plain", &forgotten),
    ])
    .await;

    assert!(matches!(engine.get(KS, "k").await, Err(Error::NotFound)));
    assert!(matches!(engine.get(KS, "k").await, Err(Error::NotFound)));
    assert_eq!((remembered.fetches(), engine.stats(KS)?.negative_hits), (1, 1));
    advance(Duration::from_secs(9)).await;
    assert!(matches!(engine.get(KS, "k").await, Err(Error::NotFound)));
    assert_eq!(remembered.fetches(), 1);
    advance(Duration::from_secs(2)).await;
    assert!(matches!(engine.get(KS, "k").await, Err(Error::NotFound)));
    assert_eq!(remembered.fetches(), 2);
    // A put replaces the remembered absence.
    engine.put(KS, ("k", "now here")).await?;
    assert_eq!(engine.get(KS, "k").await?, "now here");

    for _ in 0..3 {
        assert!(matches!(engine.get("plain", "k").await, Err(Error::NotFound)));
    }
    let s = engine.stats("plain")?;
    assert_eq!((forgotten.fetches(), s.negative_hits, s.misses), (3, 0, 3));
    Ok(())
}
