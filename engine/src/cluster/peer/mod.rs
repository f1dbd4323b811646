//! Talking to peers: the client side ([`PeerClient`]), the pipelined get protocol (`pipe`),
//! the gRPC service for everything else (`server`) and the port both share (`listener`).

mod client;
pub(crate) mod listener;
mod pipe;
pub(crate) mod server;

pub(crate) use client::{PeerClient, RemoteValue, Unreachable};
#[cfg(feature = "tls")]
pub(crate) use pipe::TlsConfigs;
pub(crate) use pipe::{ThreadSlots, Transport};
