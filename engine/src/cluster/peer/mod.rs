//! Talking to peers: the client side ([`PeerClient`], with its get batcher) and the gRPC
//! service that answers them (`server`).

mod batch;
mod client;
pub(crate) mod server;

pub(crate) use client::{PeerClient, RemoteValue, Unreachable};
