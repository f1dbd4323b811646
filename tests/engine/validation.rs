//! Invalid input, unknown keyspaces and a stopped engine.

use super::*;

#[tokio::test]
async fn invalid_keys_are_rejected() -> anyhow::Result<()> {
    let source = Source::new().arc();
    let engine = start([keyspace(KS, &source)]).await;
    let invalid = |r: Result<_>| matches!(r, Err(Error::InvalidArgument(_)));
    for key in [String::new(), "x".repeat(MAX_KEY_BYTES + 1)] {
        assert!(invalid(engine.get(KS, &key).await.map(drop)), "get {}", key.len());
        assert!(invalid(engine.put(KS, (key.clone(), "v")).await), "put {}", key.len());
        assert!(invalid(engine.delete(KS, &key).await), "delete {}", key.len());
    }
    let longest = "x".repeat(MAX_KEY_BYTES);
    assert_eq!(engine.get(KS, &longest).await?, format!("{longest}#1"));
    engine.put(KS, (longest.clone(), "v")).await?;
    engine.delete(KS, &longest).await?;
    assert_eq!(source.fetches(), 1, "rejected keys never reach the source");
    Ok(())
}

#[tokio::test]
async fn invalid_configs_fail_to_start_naming_the_problem() {
    let source = Source::new().arc();
    let ks = |name: &str| keyspace(name, &source);
    let cases = [
        (Config::standalone([ks("a"), ks("b"), ks("a")]), "declared twice"),
        (Config::standalone([KeySpace::new("a", 0, source.clone())]), "max_bytes 0"),
        (Config::standalone([ks("")]), "name must not be empty"),
        (Config::standalone([ks("  ")]), "name must not be empty"),
        (Config::standalone([ks("a")]).with_read_timeout(Duration::ZERO), "read_timeout"),
        (Config::standalone([ks("a")]).with_write_timeout(Duration::ZERO), "write_timeout"),
        (Config::standalone([ks("a").with_read_timeout(Duration::ZERO)]), "read_timeout 0"),
        (Config::standalone([ks("a").with_write_timeout(Duration::ZERO)]), "write_timeout 0"),
        (Config::standalone([ks("a").with_default_ttl(Duration::ZERO)]), "default_ttl 0"),
        (Config::standalone([ks("a").with_negative_ttl(Duration::ZERO)]), "negative_ttl 0"),
    ];
    for (config, problem) in cases {
        match Engine::start(config).await {
            Err(Error::InvalidArgument(msg)) => assert!(msg.contains(problem), "{msg}"),
            other => panic!("expected InvalidArgument naming {problem:?}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn unknown_keyspace_fails_every_operation() {
    let source = Source::new().arc();
    let engine = start([keyspace(KS, &source)]).await;
    let unknown = |r: Result<()>| matches!(r, Err(Error::KeySpaceNotFound(n)) if n == "nope");
    assert!(unknown(engine.get("nope", "k").await.map(drop)));
    assert!(unknown(engine.get_many("nope", &["k"]).await.map(drop)));
    assert!(unknown(engine.put("nope", ("k", "v")).await));
    assert!(unknown(engine.put_many("nope", [("k", "v")]).await.map(drop)));
    assert!(unknown(engine.delete("nope", "k").await));
    assert!(unknown(engine.delete_many("nope", &["k"]).await.map(drop)));
    assert!(unknown(engine.delete_keyspace("nope").await));
    assert!(unknown(engine.stats("nope").map(drop)));
    assert!(unknown(engine.keyspace("nope").map(drop)));
    assert_eq!(source.fetches(), 0);
}

#[tokio::test]
async fn operations_after_stop_fail_with_stopped() {
    let source = Source::new().arc();
    let engine = start([keyspace(KS, &source)]).await;
    engine.stop().await;
    engine.stop().await;
    let stopped = |r: Result<()>| matches!(r, Err(Error::Stopped));
    assert!(stopped(engine.get(KS, "k").await.map(drop)));
    assert!(stopped(engine.get_many(KS, &["k"]).await.map(drop)));
    assert!(stopped(engine.put(KS, ("k", "v")).await));
    assert!(stopped(engine.put_many(KS, [("k", "v")]).await.map(drop)));
    assert!(stopped(engine.delete(KS, "k").await));
    assert!(stopped(engine.delete_many(KS, &["k"]).await.map(drop)));
    assert!(stopped(engine.update_keyspace(keyspace("new", &source)).await));
    assert!(stopped(engine.delete_keyspace(KS).await));
    assert!(stopped(engine.delete_keyspaces(&[KS]).await));
    assert_eq!(source.fetches(), 0);
}
