//! The pipelined get protocol: gets and peeks as length-prefixed protobuf frames on one TCP
//! (or TLS) connection per peer, many requests out at once, like a Redis pipeline.
//!
//! Gets are the hot path between nodes, and HTTP/2 costs them several task hand-offs and
//! copies per call; here a get costs one write and one read on each side. It shares the
//! peer port with gRPC, which carries everything else: a connection that opens with
//! [`frame::PREFACE`] is a pipe.

mod client;
pub(crate) mod frame;
mod outbox;
mod server;
mod stream;
mod threaded;

pub(crate) use client::{CallError, PipeClient};
pub(crate) use server::serve_connection;
pub(crate) use stream::Transport;
#[cfg(feature = "tls")]
pub(crate) use stream::tls::Configs as TlsConfigs;
pub(crate) use threaded::ThreadSlots;
