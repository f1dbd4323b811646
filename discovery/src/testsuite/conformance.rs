//! One generic test per promise of the [`Discovery`] contract, run against every provider
//! through its [`Fixture`].

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::{Discovery, DiscoveryError, normalized};

/// How long a test waits for a provider to see a change in its backend.
const WITHIN: Duration = Duration::from_secs(15);

/// A peer a test lists in a backend: `127.0.1.<n>`, gossiping on port `7000 + n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Peer(pub u8);

impl Peer {
    /// The peer's address.
    pub fn ip(self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 1, self.0))
    }

    /// The peer's gossip port (backends that carry ports: SRV, EndpointSlices, NATS).
    pub fn port(self) -> u16 {
        7000 + u16::from(self.0)
    }

    /// `ip:port`, as discovery answers it.
    pub fn addr(self) -> String {
        SocketAddr::new(self.ip(), self.port()).to_string()
    }
}

/// A backend a provider reads, which a test can change, and how to make providers for it.
pub trait Fixture: Send + Sized + 'static {
    /// The provider under test.
    type Provider: Discovery;

    /// Whether peers can be added to and removed from the backend while a provider runs
    /// (false for fixed lists: static seeds, standalone).
    const LIVE: bool = true;

    /// Starts a backend that lists `peers`, or `None` (having said why) when this machine
    /// cannot run the backend and the test is skipped.
    fn start(peers: &[Peer]) -> impl Future<Output = Option<Self>> + Send;

    /// Makes a provider that reads this backend; the suite runs it on a runtime of its own.
    fn provider(&self) -> BoxFuture<'static, Result<Self::Provider, DiscoveryError>>;

    /// Lists `peer` in the backend (called only when [`LIVE`](Self::LIVE)).
    fn add(&mut self, peer: Peer) -> impl Future<Output = ()> + Send {
        let _ = peer;
        async {}
    }

    /// Stops listing `peer` (called only when [`LIVE`](Self::LIVE)).
    fn remove(&mut self, peer: Peer) -> impl Future<Output = ()> + Send {
        let _ = peer;
        async {}
    }

    /// What the provider answers while the backend lists `peers`.
    fn expected(&self, peers: &[Peer]) -> Vec<String> {
        normalized(peers.iter().map(|p| p.addr()).collect())
    }

    /// Makes the backend unreachable; false when the provider has no backend to lose.
    fn break_backend(&mut self) -> impl Future<Output = bool> + Send;

    /// Makes a provider that is misconfigured (pointed at nothing, or invalid); `None` when
    /// the provider has no configuration to get wrong.
    fn misconfigured(&self) -> Option<BoxFuture<'static, Result<Self::Provider, DiscoveryError>>>;
}

/// A provider running on a runtime of its own, so the tasks it leaves behind can be counted.
#[derive(Debug)]
pub struct Hosted<P: Discovery> {
    runtime: Option<tokio::runtime::Runtime>,
    provider: Arc<P>,
}

impl<P: Discovery> Hosted<P> {
    /// Makes a provider with `make`, on a new runtime.
    pub async fn start(
        make: BoxFuture<'static, Result<P, DiscoveryError>>,
    ) -> Result<Self, DiscoveryError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the provider");
        match runtime.spawn(make).await.expect("making the provider does not panic") {
            Ok(provider) => Ok(Hosted { runtime: Some(runtime), provider: Arc::new(provider) }),
            Err(err) => {
                runtime.shutdown_background();
                Err(err)
            }
        }
    }

    async fn run<T: Send + 'static>(&self, call: impl Future<Output = T> + Send + 'static) -> T {
        let runtime = self.runtime.as_ref().expect("the provider's runtime is up");
        runtime.spawn(call).await.expect("a provider call does not panic")
    }

    /// [`Discovery::discover`], run on the provider's runtime.
    pub async fn discover(&self) -> Result<Vec<String>, DiscoveryError> {
        let provider = self.provider.clone();
        self.run(async move { provider.discover().await }).await
    }

    /// [`Discovery::changes`].
    pub fn changes(&self) -> Option<watch::Receiver<u64>> {
        self.provider.changes()
    }

    /// [`Discovery::shutdown`], run on the provider's runtime.
    pub async fn shutdown(&self) {
        let provider = self.provider.clone();
        self.run(async move { provider.shutdown().await }).await;
    }

    /// Tasks alive on the provider's runtime.
    pub fn alive_tasks(&self) -> usize {
        self.runtime.as_ref().map_or(0, |r| r.metrics().num_alive_tasks())
    }
}

impl<P: Discovery> Drop for Hosted<P> {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is not allowed on the test's runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn start<F: Fixture>(peers: &[Peer]) -> Option<(F, Hosted<F::Provider>)> {
    let fixture = F::start(peers).await?;
    let hosted = Hosted::start(fixture.provider()).await.expect("the provider starts");
    Some((fixture, hosted))
}

/// Waits until `provider` answers `expected`. A provider that signals
/// [`changes`](Discovery::changes) is asked again only when it signals, so a change it
/// notices but does not signal fails the test; others are polled.
pub async fn until_discovered<P: Discovery>(provider: &Hosted<P>, expected: &[String]) {
    let mut changes = provider.changes();
    let waited = tokio::time::timeout(WITHIN, async {
        loop {
            let answer = provider.discover().await;
            if answer.as_deref() == Ok(expected) {
                return;
            }
            match changes.as_mut() {
                Some(changes) => {
                    if changes.changed().await.is_err() {
                        panic!("the changes channel closed while waiting for {expected:?}");
                    }
                }
                None => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await;
    if waited.is_err() {
        let last = provider.discover().await;
        panic!("discovery did not answer {expected:?} within {WITHIN:?}; it answers {last:?}");
    }
}

/// A new provider answers the peers its backend lists.
pub async fn initial_peers<F: Fixture>() {
    let peers = [Peer(1), Peer(2), Peer(3)];
    let Some((fixture, provider)) = start::<F>(&peers).await else { return };
    let expected = fixture.expected(&peers);
    assert_eq!(provider.discover().await, Ok(expected.clone()), "the first answer");
    assert_eq!(provider.discover().await, Ok(expected), "asked again");
}

/// A peer added to the backend shows up (signalled, for providers that push changes).
pub async fn peers_added_show_up<F: Fixture>() {
    let Some((mut fixture, provider)) = start::<F>(&[Peer(1)]).await else { return };
    assert_eq!(provider.discover().await, Ok(fixture.expected(&[Peer(1)])));
    if !F::LIVE {
        return;
    }
    fixture.add(Peer(2)).await;
    until_discovered(&provider, &fixture.expected(&[Peer(1), Peer(2)])).await;
    fixture.add(Peer(3)).await;
    until_discovered(&provider, &fixture.expected(&[Peer(1), Peer(2), Peer(3)])).await;
}

/// A peer removed from the backend disappears, down to an empty (not failed) answer.
pub async fn peers_removed_disappear<F: Fixture>() {
    let Some((mut fixture, provider)) = start::<F>(&[Peer(1), Peer(2)]).await else { return };
    assert_eq!(provider.discover().await, Ok(fixture.expected(&[Peer(1), Peer(2)])));
    if !F::LIVE {
        return;
    }
    fixture.remove(Peer(2)).await;
    until_discovered(&provider, &fixture.expected(&[Peer(1)])).await;
    fixture.remove(Peer(1)).await;
    until_discovered(&provider, &[]).await;
}

/// A provider pointed at nothing fails, at construction or in `discover`, and never
/// answers an empty list instead.
pub async fn misconfiguration_is_an_error<F: Fixture>() {
    let Some(fixture) = F::start(&[Peer(1)]).await else { return };
    let Some(make) = fixture.misconfigured() else { return };
    match Hosted::start(make).await {
        Err(err) => assert!(!matches!(err, DiscoveryError::Shutdown), "{err}"),
        Ok(provider) => {
            let answer = provider.discover().await;
            assert!(
                matches!(answer, Err(DiscoveryError::Config(_) | DiscoveryError::Backend(_))),
                "a misconfigured provider answered {answer:?}"
            );
            provider.shutdown().await;
        }
    }
}

/// A backend that goes away makes `discover` fail, instead of answering stale or no peers.
pub async fn unreachable_backend_is_an_error<F: Fixture>() {
    let Some((mut fixture, provider)) = start::<F>(&[Peer(1)]).await else { return };
    assert_eq!(provider.discover().await, Ok(fixture.expected(&[Peer(1)])));
    if !fixture.break_backend().await {
        assert_eq!(provider.discover().await, Ok(fixture.expected(&[Peer(1)])));
        return;
    }
    let failed = tokio::time::timeout(WITHIN, async {
        loop {
            match provider.discover().await {
                Err(DiscoveryError::Backend(_)) => return,
                Err(err) => panic!("expected a backend error, got {err}"),
                Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await;
    assert!(failed.is_ok(), "discover kept answering after the backend went away");
}

/// After shutdown no task of the provider is left, `discover` fails with
/// [`DiscoveryError::Shutdown`], the changes channel is closed, and shutting down again is
/// harmless.
pub async fn shutdown_leaves_nothing_running<F: Fixture>() {
    let Some((fixture, provider)) = start::<F>(&[Peer(1)]).await else { return };
    assert_eq!(provider.discover().await, Ok(fixture.expected(&[Peer(1)])));
    let changes = provider.changes();
    provider.shutdown().await;
    provider.shutdown().await;
    assert_eq!(provider.discover().await, Err(DiscoveryError::Shutdown));
    if let Some(mut changes) = changes {
        let closed =
            tokio::time::timeout(WITHIN, async { while changes.changed().await.is_ok() {} }).await;
        assert!(closed.is_ok(), "the changes channel is still open after shutdown");
    }
    let settled = tokio::time::timeout(WITHIN, async {
        while provider.alive_tasks() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        settled.is_ok(),
        "{} task(s) of the provider still run after shutdown",
        provider.alive_tasks()
    );
}

/// Declares one `#[tokio::test]` per conformance test, in module `$name`, for `$fixture`.
#[macro_export]
macro_rules! conformance_suite {
    ($name:ident, $fixture:ty) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use $crate::testsuite;

            #[::tokio::test]
            async fn initial_peers() {
                testsuite::initial_peers::<$fixture>().await;
            }

            #[::tokio::test]
            async fn peers_added_show_up() {
                testsuite::peers_added_show_up::<$fixture>().await;
            }

            #[::tokio::test]
            async fn peers_removed_disappear() {
                testsuite::peers_removed_disappear::<$fixture>().await;
            }

            #[::tokio::test]
            async fn misconfiguration_is_an_error() {
                testsuite::misconfiguration_is_an_error::<$fixture>().await;
            }

            #[::tokio::test]
            async fn unreachable_backend_is_an_error() {
                testsuite::unreachable_backend_is_an_error::<$fixture>().await;
            }

            #[::tokio::test]
            async fn shutdown_leaves_nothing_running() {
                testsuite::shutdown_leaves_nothing_running::<$fixture>().await;
            }
        }
    };
}
