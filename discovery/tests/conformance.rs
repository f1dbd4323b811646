//! The `Discovery` conformance suite, run against every provider, and what each provider does
//! beyond it. One test binary: each provider's fixture and own tests live in
//! `conformance/<provider>.rs`.

#[path = "conformance/fixed.rs"]
mod fixed;

#[cfg(feature = "dns")]
#[path = "conformance/dns.rs"]
mod dns;

#[cfg(feature = "kubernetes")]
#[path = "conformance/kubernetes.rs"]
mod kubernetes;

#[cfg(feature = "nats")]
#[path = "conformance/nats.rs"]
mod nats;
