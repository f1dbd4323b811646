//! The provider conformance suite and the backends the tests run against.
//!
//! - `conformance`: the [`Fixture`] trait (a backend a test can add peers to and remove them
//!   from), [`Hosted`] (a provider on a runtime of its own, so its tasks can be counted) and one
//!   generic async function per promise of the [`Discovery`](crate::Discovery) contract;
//!   [`conformance_suite!`](crate::conformance_suite) turns them into `#[tokio::test]`s for one
//!   fixture.
//! - `dns_server`: [`DnsServer`], an authoritative DNS server on a loopback UDP port whose
//!   records a test changes while it serves.
//! - `fake_apiserver`: [`FakeApiServer`], the EndpointSlice list and watch endpoints of a
//!   Kubernetes API server over plain HTTP, with resource versions and closable watches.
//! - `nats_server`: [`NatsServer`], a real `nats-server` process on a free loopback port.
//!
//! Test support: failures panic with a message, as test assertions do.

mod conformance;
mod dns_server;
mod fake_apiserver;
mod nats_server;

pub use conformance::{
    Fixture, Hosted, Peer, initial_peers, misconfiguration_is_an_error, peers_added_show_up,
    peers_removed_disappear, shutdown_leaves_nothing_running, unreachable_backend_is_an_error,
    until_discovered,
};
pub use dns_server::DnsServer;
pub use fake_apiserver::{FakeApiServer, endpoint_slice};
pub use nats_server::NatsServer;
