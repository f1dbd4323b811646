//! Expiry: default TTL, expiry functions, per-put expiry, wall-clock instants.

use super::*;

#[tokio::test(start_paused = true)]
async fn default_ttl_expires_values() -> anyhow::Result<()> {
    let source = Source::new().arc();
    let engine = start([keyspace(KS, &source).with_default_ttl(Duration::from_secs(60))]).await;
    assert_eq!(engine.get(KS, "k").await?, "k#1");
    engine.put(KS, ("p", "put")).await?;
    advance(Duration::from_secs(59)).await;
    assert_eq!(engine.get(KS, "k").await?, "k#1");
    assert_eq!(engine.get(KS, "p").await?, "put");
    advance(Duration::from_secs(2)).await;
    assert_eq!(engine.get(KS, "k").await?, "k#2");
    assert_eq!(engine.get(KS, "p").await?, "p#3", "put values follow the default TTL too");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn expiry_fn_chooses_by_value_over_the_default_ttl() -> anyhow::Result<()> {
    let source = Source::new().arc();
    let ks = keyspace(KS, &source).with_default_ttl(Duration::from_secs(1)).with_expiry(
        |_key, value| {
            if value.starts_with(b"perm") {
                Expiration::Never
            } else {
                Expiration::After(Duration::from_secs(10))
            }
        },
    );
    let engine = start([ks]).await;
    assert_eq!(engine.get(KS, "perm").await?, "perm#1");
    assert_eq!(engine.get(KS, "temp").await?, "temp#2");
    advance(Duration::from_secs(9)).await;
    assert_eq!(engine.get(KS, "temp").await?, "temp#2", "the fn's 10 s beat the default 1 s");
    advance(Duration::from_secs(2)).await;
    assert_eq!(engine.get(KS, "temp").await?, "temp#3");
    advance(Duration::from_secs(365 * 24 * 3600)).await;
    assert_eq!(engine.get(KS, "perm").await?, "perm#1");
    assert_eq!(source.fetches(), 3);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn put_with_its_own_expiry_overrides_the_policy() -> anyhow::Result<()> {
    let source = Source::new().arc();
    let engine = start([keyspace(KS, &source).with_default_ttl(Duration::from_secs(60))]).await;
    engine.put(KS, Entry::new("short", "s").with_ttl(Duration::from_secs(5))).await?;
    engine.put(KS, Entry::new("forever", "f").with_expiration(Expiration::Never)).await?;
    advance(Duration::from_secs(4)).await;
    assert_eq!(engine.get(KS, "short").await?, "s");
    advance(Duration::from_secs(2)).await;
    assert_eq!(engine.get(KS, "short").await?, "short#1");
    advance(Duration::from_secs(10 * 365 * 24 * 3600)).await;
    assert_eq!(engine.get(KS, "forever").await?, "f");
    assert_eq!(source.fetches(), 1);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn expiration_at_a_wall_clock_instant() -> anyhow::Result<()> {
    let source = Source::new().arc();
    let engine = start([keyspace(KS, &source)]).await;
    let past = SystemTime::now() - Duration::from_secs(1);
    let future = SystemTime::now() + Duration::from_secs(30);

    // Already expired: not stored, and it removes what was there.
    engine.put(KS, Entry::new("gone", "old")).await?;
    engine.put(KS, Entry::new("gone", "new").with_expiration(Expiration::At(past))).await?;
    assert_eq!(engine.get(KS, "gone").await?, "gone#1");

    // In the future: stored, for the time left then (the paused clock moves it).
    engine.put(KS, Entry::new("later", "v").with_expiration(Expiration::At(future))).await?;
    advance(Duration::from_secs(25)).await;
    assert_eq!(engine.get(KS, "later").await?, "v");
    advance(Duration::from_secs(10)).await;
    assert_eq!(engine.get(KS, "later").await?, "later#2");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn huge_ttls_mean_practically_never() -> anyhow::Result<()> {
    let source = Source::new().answering(|_, _| Err(FetchError::NotFound)).arc();
    let ks = keyspace(KS, &source).with_default_ttl(Duration::MAX).with_negative_ttl(Duration::MAX);
    let engine = start([ks.clone()]).await;
    engine.put(KS, ("policy", "p")).await?;
    engine.put(KS, Entry::new("own", "o").with_ttl(Duration::MAX)).await?;
    assert!(matches!(engine.get(KS, "absent").await, Err(Error::NotFound)));
    engine.update_keyspace(ks).await?;
    advance(Duration::from_secs(100 * 365 * 24 * 3600)).await;
    assert_eq!(engine.get(KS, "policy").await?, "p");
    assert_eq!(engine.get(KS, "own").await?, "o");
    assert!(matches!(engine.get(KS, "absent").await, Err(Error::NotFound)));
    assert_eq!(source.fetches(), 1);
    Ok(())
}
