//! The distcache peer protocol, generated from `proto/peer.proto` (see that file for the
//! semantics of each call). No logic lives here: the engine converts these messages to and from
//! its own types. Byte fields are `bytes::Bytes`, sliced from the receive buffer without a copy.
#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]
#![allow(clippy::all, clippy::pedantic)]

/// Version 1 of the peer protocol.
pub mod v1 {
    tonic::include_proto!("distcache.peer.v1");
}
