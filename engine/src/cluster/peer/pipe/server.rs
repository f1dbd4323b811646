//! The owner's end of the pipe: answers a peer's requests in the order they complete.
//!
//! Requests the stores can answer are answered in the same pass that read them, and every
//! answer of one pass leaves in one write, as Redis answers a pipeline: straight from the
//! reading task when nothing else is being written (no hop through the writer). A request
//! that must load runs in its own task and its answer is queued when the load lands.
//!
//! Plain TCP connections are served on threads of their own ([`super::threaded`]) while the
//! port has slots for them; TLS connections, and any past that, by the tasks here.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use distcache_proto::v1 as pb;
use prost::Message;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::frame::{self, Frame, Kind};
use super::outbox::Outbox;
use super::stream::{Reader, Transport};
use super::threaded::{self, ThreadSlots};
use crate::cluster::wire::{self, KeyRef};
use crate::engine::Engine;

/// Where a connection's answers to requests that had to load go once their loads land.
#[derive(Debug, Clone)]
pub(super) enum Later {
    /// The connection's outbox, for its writer task.
    Outbox(Arc<Outbox>),
    /// The connection's writer thread.
    Thread(std::sync::mpsc::Sender<BytesMut>),
}

impl Later {
    /// Sends the answer to request `id` (dropped if the connection is gone).
    fn answer(&self, id: u32, response: &pb::GetResponse) {
        match self {
            Later::Outbox(answers) => answers.queue(|frames| encode_answer(frames, id, response)),
            Later::Thread(writer) => {
                let mut frames = BytesMut::new();
                encode_answer(&mut frames, id, response);
                let _ = writer.send(frames);
            }
        }
    }
}

fn encode_answer(frames: &mut BytesMut, id: u32, response: &pb::GetResponse) {
    frame::encode(frames, id, Kind::Values, response);
}

/// Serves one connection whose preface was read, until the peer closes it, sends something
/// that is not a request, or `shutdown` is cancelled.
pub(crate) async fn serve_connection(
    engine: Engine,
    stream: TcpStream,
    transport: Transport,
    max_frame_bytes: usize,
    shutdown: CancellationToken,
    threads: &ThreadSlots,
) {
    if matches!(transport, Transport::Plain)
        && let Some(slot) = threads.take()
    {
        return threaded::serve_connection(engine, stream, max_frame_bytes, shutdown, slot).await;
    }
    let peer = stream.peer_addr().ok();
    let (reader, mut sink, direct) = match transport.server(stream).await {
        Ok(halves) => halves,
        Err(err) => {
            tracing::debug!(?peer, %err, "pipe handshake failed");
            return;
        }
    };
    let answers = Arc::new(Outbox::new(direct));
    // The reader is a task of its own, so a request wakes only it (a `select!` polls every
    // branch it holds on each wake); it ends with this one.
    let reading = tokio::spawn(read_requests(engine, answers.clone(), reader, max_frame_bytes));
    let mut reading = AbortOnDropHandle::new(reading);
    let reason = tokio::select! {
        biased;
        read = &mut reading => {
            read.unwrap_or_else(|err| Closed::Failed(format!("the pipe reader failed: {err}")))
        }
        err = answers.write_out(&mut sink, false) => Closed::Failed(format!("writing: {err}")),
        () = shutdown.cancelled() => return,
    };
    report(peer, reason);
}

/// Why a connection's reading ended.
#[derive(Debug)]
pub(super) enum Closed {
    ByPeer,
    Failed(String),
}

/// Logs why a connection closed, unless its peer closed it.
pub(super) fn report(peer: Option<SocketAddr>, reason: Closed) {
    if let Closed::Failed(reason) = reason {
        tracing::warn!(?peer, %reason, "closed a peer's pipe");
    }
}

async fn read_requests(
    engine: Engine,
    answers: Arc<Outbox>,
    mut reader: Reader,
    max_frame_bytes: usize,
) -> Closed {
    let later = Later::Outbox(answers.clone());
    let mut buf = BytesMut::new();
    // The answers of one read pass, sent together at its end.
    let mut pass = BytesMut::new();
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => return Closed::ByPeer,
            Ok(_) => {}
            Err(err) => return Closed::Failed(format!("reading: {err}")),
        }
        if let Err(closed) = answer_all(&engine, &later, &mut buf, &mut pass, max_frame_bytes) {
            return closed;
        }
        if !pass.is_empty() {
            answers.send(&pass);
            pass.clear();
        }
    }
}

/// Answers every whole request in `buf` (into `pass`, or `later` for those that must load).
pub(super) fn answer_all(
    engine: &Engine,
    later: &Later,
    buf: &mut BytesMut,
    pass: &mut BytesMut,
    max_frame_bytes: usize,
) -> Result<(), Closed> {
    loop {
        match frame::decode(buf, max_frame_bytes) {
            Ok(Some(request)) => answer(engine, later, pass, request).map_err(Closed::Failed)?,
            Ok(None) => return Ok(()),
            Err(err) => return Err(Closed::Failed(err.to_string())),
        }
    }
}

/// Answers one request now (into `pass`), or starts the loads it needs and answers `later`.
fn answer(
    engine: &Engine,
    later: &Later,
    pass: &mut BytesMut,
    request: Frame,
) -> Result<(), String> {
    let id = request.id;
    match request.kind {
        Kind::Get => {
            let keys = wire::requested_keys(&request.body)
                .map_err(|err| format!("a malformed request: {err}"))?;
            match engine.serve_gets_now(&keys) {
                Ok(outcomes) => encode_answer(pass, id, &pb::GetResponse { outcomes }),
                Err(partial) => {
                    let keys: Vec<pb::KeyRef> = keys.into_iter().map(KeyRef::to_message).collect();
                    let (engine, later) = (engine.clone(), later.clone());
                    // Tracked with the engine's loads, so `stop` ends it.
                    engine.clone().spawn_load(async move {
                        let outcomes = engine.finish_gets(&keys, partial).await;
                        later.answer(id, &pb::GetResponse { outcomes });
                    });
                }
            }
        }
        Kind::Peek => {
            let keys = decode::<pb::PeekRequest>(request)?.keys;
            encode_answer(pass, id, &pb::GetResponse { outcomes: engine.serve_peeks(&keys) });
        }
        Kind::Values => return Err("a peer sent an answer where a request belongs".into()),
    }
    Ok(())
}

fn decode<M: Message + Default>(request: Frame) -> Result<M, String> {
    M::decode(request.body).map_err(|err| format!("a malformed request: {err}"))
}
