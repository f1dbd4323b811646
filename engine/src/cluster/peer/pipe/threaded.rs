//! The owner's end of a plain-TCP pipe on a thread of its own, reading with blocking reads.
//!
//! At low concurrency a get's latency is mostly the kernel's: the network path and waking the
//! side that sleeps. A thread blocked in `read` is woken by the socket itself and goes
//! straight to the request: one system call to wait and read, where a runtime task waits in
//! `epoll_wait`, then reads, with the scheduler's bookkeeping between (W2 at concurrency 1:
//! p50 about 7% lower). A node keeps one pipe connection per peer, so this costs a thread per
//! peer, plus one for answers that had to load; past the configured number of connections
//! (`ClusterConfig::with_pipe_threads`), the runtime serves the rest ([`super::server`]).
//!
//! As there, every frame of a read is answered in the same pass from the stores and the pass's
//! answers leave in one write. A request that must load runs on the runtime as before; its
//! answer goes to the connection's writer thread, so no runtime thread blocks on the socket.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use bytes::BytesMut;
use tokio_util::sync::CancellationToken;

use super::server::{Closed, Later, answer_all, report};
use super::stream::READ_CHUNK;
use crate::engine::Engine;

/// The connections a peer port may still serve on threads of their own.
#[derive(Debug, Clone)]
pub(crate) struct ThreadSlots(Arc<AtomicUsize>);

impl ThreadSlots {
    /// Slots for `connections` at once.
    pub(crate) fn new(connections: usize) -> Self {
        ThreadSlots(Arc::new(AtomicUsize::new(connections)))
    }

    /// One slot, given back when the returned guard drops; `None` when all are taken.
    pub(crate) fn take(&self) -> Option<Slot> {
        let left = &self.0;
        left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).ok()?;
        Some(Slot(left.clone()))
    }
}

/// A taken slot.
#[derive(Debug)]
pub(crate) struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// Serves one plain pipe connection whose preface was read, on threads of its own, until the
/// peer closes it, sends something that is not a request, or `shutdown` is cancelled.
pub(crate) async fn serve_connection(
    engine: Engine,
    stream: tokio::net::TcpStream,
    max_frame_bytes: usize,
    shutdown: CancellationToken,
    slot: Slot,
) {
    let peer = stream.peer_addr().ok();
    let (socket, closer) = match blocking(stream) {
        Ok(sockets) => sockets,
        Err(err) => return tracing::warn!(?peer, %err, "cannot serve a peer's pipe"),
    };
    let (done, finished) = tokio::sync::oneshot::channel();
    let runtime = tokio::runtime::Handle::current();
    let started = std::thread::Builder::new().name("distcache-pipe".into()).spawn(move || {
        // Loads are spawned on the runtime, and the engine reads its clock.
        let _runtime = runtime.enter();
        let _ = done.send(serve_on_this_thread(&engine, socket, max_frame_bytes));
    });
    if let Err(err) = started {
        return tracing::warn!(?peer, %err, "cannot start a thread for a peer's pipe");
    }
    tokio::select! {
        reason = finished => {
            report(peer, reason.unwrap_or_else(|_| Closed::Failed("its thread panicked".into())));
        }
        () = shutdown.cancelled() => {}
    }
    // Ends a thread still reading, and the writer's next write.
    let _ = closer.shutdown(Shutdown::Both);
    drop(slot);
}

/// The stream in blocking mode, and a handle to shut it down with.
fn blocking(stream: tokio::net::TcpStream) -> io::Result<(TcpStream, TcpStream)> {
    let socket = stream.into_std()?;
    socket.set_nonblocking(false)?;
    let closer = socket.try_clone()?;
    Ok((socket, closer))
}

fn serve_on_this_thread(engine: &Engine, socket: TcpStream, max_frame_bytes: usize) -> Closed {
    let writing = match socket.try_clone() {
        Ok(writing) => Arc::new(Mutex::new(writing)),
        Err(err) => return Closed::Failed(format!("cloning the socket: {err}")),
    };
    let (loaded, answers) = mpsc::channel();
    let writer = writing.clone();
    let started = std::thread::Builder::new()
        .name("distcache-pipe-writer".into())
        .spawn(move || write_loaded(&writer, &answers));
    if let Err(err) = started {
        return Closed::Failed(format!("starting its writer thread: {err}"));
    }
    read_requests(engine, socket, &writing, &Later::Thread(loaded), max_frame_bytes)
}

fn read_requests(
    engine: &Engine,
    mut socket: TcpStream,
    writing: &Mutex<TcpStream>,
    later: &Later,
    max_frame_bytes: usize,
) -> Closed {
    let mut buf = BytesMut::new();
    // The answers of one read pass, sent together at its end.
    let mut pass = BytesMut::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        let read = match socket.read(&mut chunk) {
            Ok(0) => return Closed::ByPeer,
            Ok(read) => read,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Closed::Failed(format!("reading: {err}")),
        };
        buf.extend_from_slice(&chunk[..read]);
        if let Err(closed) = answer_all(engine, later, &mut buf, &mut pass, max_frame_bytes) {
            return closed;
        }
        if !pass.is_empty() {
            if let Err(err) = lock(writing).write_all(&pass) {
                return Closed::Failed(format!("writing: {err}"));
            }
            pass.clear();
        }
    }
}

/// Writes the answers of loads as they land, those waiting together, until the connection's
/// reader and every load it started are gone, or a write fails.
fn write_loaded(socket: &Mutex<TcpStream>, answers: &mpsc::Receiver<BytesMut>) {
    while let Ok(mut frames) = answers.recv() {
        while let Ok(more) = answers.try_recv() {
            frames.extend_from_slice(&more);
        }
        if lock(socket).write_all(&frames).is_err() {
            return;
        }
    }
}

fn lock(socket: &Mutex<TcpStream>) -> std::sync::MutexGuard<'_, TcpStream> {
    socket.lock().unwrap_or_else(PoisonError::into_inner)
}
