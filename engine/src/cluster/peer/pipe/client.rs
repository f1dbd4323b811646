//! The caller's end of the pipe to one peer: one connection, many requests out at once.
//!
//! A request is registered under an id, then written. When nothing else is out, the caller
//! writes its frame itself (no hop through another task); when other requests are out, its
//! frame joins the outbox and the connection's writer sends everything queued in one write,
//! as a Redis client pipelines. The connection's reader hands each answer to its caller.
//!
//! Each call carries a deadline. One sweep per connection fails the calls whose deadline has
//! passed, so a call needs no timer of its own: it sleeps until the earliest deadline of the
//! calls out, and only a call due sooner than that wakes it. Calls answered in time (nearly
//! all) cost it nothing, and it never wakes the runtime on a schedule of its own.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::BytesMut;
use prost::Message;
use tokio::net::TcpStream;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::frame::{self, Frame, Kind, PREFACE};
use super::outbox::Outbox;
use super::stream::{Reader, Sink, Transport};
use crate::cluster::peer::Unreachable;

type Answer = oneshot::Sender<Result<Frame, CallError>>;
/// Callers waiting for answers, by request id.
type Waiting = HashMap<u32, Waiter, foldhash::fast::FixedState>;

/// A call out on a connection.
#[derive(Debug)]
struct Waiter {
    answer: Answer,
    deadline: Instant,
}

/// Why a call got no answer.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The connection could not be made, or failed.
    Unreachable(Unreachable),
    /// The deadline passed first (the peer may only be slow).
    Expired,
}

/// How to reach one peer's pipe.
#[derive(Debug)]
pub(crate) struct PipeClient {
    addr: SocketAddr,
    transport: Transport,
    connect_timeout: Duration,
    max_frame_bytes: usize,
    /// Whether a caller leaves its frame for the writer when other requests are out, so
    /// concurrent requests share writes.
    coalesce: bool,
    conn: ArcSwapOption<Conn>,
    /// Held while connecting; holds the last failed attempt.
    connecting: tokio::sync::Mutex<Option<(tokio::time::Instant, Unreachable)>>,
}

/// One open connection.
#[derive(Debug)]
struct Conn {
    outbox: Outbox,
    waiting: Mutex<Waiting>,
    next_id: AtomicU32,
    /// Wakes the sweep for a call due before it would wake (see [`sweep`]).
    sweep: Notify,
    /// When the sweep wakes next, in nanoseconds since `opened` (`u64::MAX`: not before a
    /// call wakes it).
    sweep_at: AtomicU64,
    opened: Instant,
    /// Set once the connection failed or its client went away (checked on every call).
    is_closed: AtomicBool,
    closed: CancellationToken,
}

/// Removes a caller's registration when it stops waiting, answered or not.
struct Registration<'a> {
    conn: &'a Conn,
    id: u32,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.conn.lock_waiting().remove(&self.id);
    }
}

impl PipeClient {
    pub(crate) fn new(
        addr: SocketAddr,
        transport: Transport,
        connect_timeout: Duration,
        max_frame_bytes: usize,
        coalesce: bool,
    ) -> Self {
        PipeClient {
            addr,
            transport,
            connect_timeout,
            max_frame_bytes,
            coalesce,
            conn: ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(None),
        }
    }

    /// Refuses a request over the message limit before it is sent: the peer would hang up on
    /// it, failing every other request out on the connection.
    pub(crate) fn check_size(&self, body: &impl Message) -> Result<(), Unreachable> {
        let length = frame::length_of(body);
        if length > self.max_frame_bytes {
            return Err(Unreachable(format!(
                "a request of {length} bytes is over the {}-byte message limit",
                self.max_frame_bytes
            )));
        }
        Ok(())
    }

    /// Sends one request and waits for its answer until `deadline`.
    pub(crate) async fn call(
        &self,
        kind: Kind,
        body: &impl Message,
        deadline: Instant,
    ) -> Result<Frame, CallError> {
        let conn = match self.open_conn() {
            Some(conn) => conn,
            // Boxed: connecting is rare, and its large future would otherwise be part of
            // every call's, moved with it on each call.
            None => Box::pin(tokio::time::timeout_at(deadline, self.connection()))
                .await
                .map_err(|_| CallError::Expired)?
                .map_err(CallError::Unreachable)?,
        };
        let (answer, answered) = oneshot::channel();
        let id = conn.next_id.fetch_add(1, Ordering::Relaxed);
        let others_out = {
            let mut waiting = conn.lock_waiting();
            waiting.insert(id, Waiter { answer, deadline });
            waiting.len() > 1
        };
        let _registration = Registration { conn: &conn, id };
        if conn.nanos_since_opened(deadline) < conn.sweep_at.load(SeqCst) {
            conn.sweep.notify_one();
        }
        let closed = || CallError::Unreachable(Unreachable("the pipe connection closed".into()));
        // A connection that closed before the registration would never answer it.
        if conn.is_closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        let mut request = BytesMut::new();
        frame::encode(&mut request, id, kind, body);
        conn.send(&request, self.coalesce && others_out);
        answered.await.map_err(|_| closed())?
    }

    /// The open connection, connecting if there is none. Callers that queued behind a
    /// connection attempt that failed share its failure rather than each trying in turn (a
    /// silent host would cost every one of them a full connect timeout).
    async fn connection(&self) -> Result<Arc<Conn>, Unreachable> {
        if let Some(conn) = self.open_conn() {
            return Ok(conn);
        }
        let asked_at = tokio::time::Instant::now();
        let mut last_failure = self.connecting.lock().await;
        if let Some(conn) = self.open_conn() {
            return Ok(conn);
        }
        if let Some((failed_at, reason)) = &*last_failure
            && *failed_at >= asked_at
        {
            return Err(reason.clone());
        }
        let connect = tokio::time::timeout(self.connect_timeout, self.connect());
        let connected = connect.await.unwrap_or_else(|_| {
            Err(Unreachable(format!(
                "connecting to {} timed out after {:?}",
                self.addr, self.connect_timeout
            )))
        });
        match connected {
            Ok(conn) => {
                self.conn.store(Some(conn.clone()));
                Ok(conn)
            }
            Err(failure) => {
                *last_failure = Some((tokio::time::Instant::now(), failure.clone()));
                Err(failure)
            }
        }
    }

    fn open_conn(&self) -> Option<Arc<Conn>> {
        self.conn.load_full().filter(|c| !c.is_closed.load(Ordering::Acquire))
    }

    async fn connect(&self) -> Result<Arc<Conn>, Unreachable> {
        let unreachable = |err: std::io::Error| Unreachable(format!("{}: {err}", self.addr));
        let mut stream = TcpStream::connect(self.addr).await.map_err(unreachable)?;
        stream.set_nodelay(true).map_err(unreachable)?;
        tokio::io::AsyncWriteExt::write_all(&mut stream, PREFACE).await.map_err(unreachable)?;
        let (reader, sink, direct) = self.transport.client(stream).await.map_err(unreachable)?;
        let conn = Arc::new(Conn {
            outbox: Outbox::new(direct),
            waiting: Mutex::default(),
            next_id: AtomicU32::new(0),
            sweep: Notify::new(),
            sweep_at: AtomicU64::new(u64::MAX),
            opened: Instant::now(),
            is_closed: AtomicBool::new(false),
            closed: CancellationToken::new(),
        });
        tokio::spawn(run(conn.clone(), reader, sink, self.max_frame_bytes, self.coalesce));
        Ok(conn)
    }
}

impl Drop for PipeClient {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.load_full() {
            conn.closed.cancel();
        }
    }
}

impl Conn {
    fn lock_waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn nanos_since_opened(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.opened).as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// Writes the frame now if the socket allows and `queue` is false; else the writer does.
    fn send(&self, frame: &[u8], queue: bool) {
        if queue {
            self.outbox.queue(|frames| frames.extend_from_slice(frame));
        } else {
            self.outbox.send(frame);
        }
    }

    /// Fails every caller still waiting; later calls open a new connection.
    fn close(&self, reason: &str) {
        self.is_closed.store(true, Ordering::Release);
        self.closed.cancel();
        for (_, waiter) in self.lock_waiting().drain() {
            let _ = waiter.answer.send(Err(CallError::Unreachable(Unreachable(reason.to_owned()))));
        }
    }
}

/// Drives one connection until it fails or its client goes away.
///
/// The reader is a task of its own: an answer wakes only it, not the writer, the sweep and the
/// close watch beside it (each woken future of a `select!` polls all of them, on the path from
/// an answer to its caller).
async fn run(
    conn: Arc<Conn>,
    reader: Reader,
    mut sink: Sink,
    max_frame_bytes: usize,
    coalesce: bool,
) {
    let mut reading =
        AbortOnDropHandle::new(tokio::spawn(read_answers(conn.clone(), reader, max_frame_bytes)));
    let reason = tokio::select! {
        biased;
        read = &mut reading => read.unwrap_or_else(|err| format!("the pipe reader failed: {err}")),
        err = conn.outbox.write_out(&mut sink, coalesce) => format!("writing to the peer: {err}"),
        never = sweep(&conn) => match never {},
        () = conn.closed.cancelled() => "the peer client closed".to_owned(),
    };
    drop(reading);
    tracing::debug!(%reason, "pipe connection closed");
    conn.close(&reason);
}

async fn read_answers(conn: Arc<Conn>, mut reader: Reader, max_frame_bytes: usize) -> String {
    let mut buf = BytesMut::new();
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => return "the peer closed the pipe".to_owned(),
            Ok(_) => {}
            Err(err) => return format!("reading from the peer: {err}"),
        }
        let mut waiting = conn.lock_waiting();
        loop {
            match frame::decode(&mut buf, max_frame_bytes) {
                Ok(Some(answer)) => {
                    // An answer nobody waits for any more belonged to a caller that gave up.
                    if let Some(caller) = waiting.remove(&answer.id) {
                        let _ = caller.answer.send(Ok(answer));
                    }
                }
                Ok(None) => break,
                Err(err) => return format!("the peer sent a bad frame: {err}"),
            }
        }
    }
}

/// Fails the calls whose deadline has passed. Sleeps until the earliest deadline of the calls
/// out, or with none out until a call wakes it; a call wakes it only when due before that.
async fn sweep(conn: &Conn) -> std::convert::Infallible {
    loop {
        let next = {
            let waiting = conn.lock_waiting();
            let next = waiting.values().map(|waiter| waiter.deadline).min();
            // Stored under the lock: a call registered after this sees it and, if due
            // sooner, wakes the sweep (a wake before the wait below is kept).
            conn.sweep_at.store(next.map_or(u64::MAX, |at| conn.nanos_since_opened(at)), SeqCst);
            next
        };
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = conn.sweep.notified() => continue,
                }
            }
            None => {
                conn.sweep.notified().await;
                continue;
            }
        }
        let now = Instant::now();
        let expired: Vec<Waiter> = conn
            .lock_waiting()
            .extract_if(|_, waiter| waiter.deadline <= now)
            .map(|(_, w)| w)
            .collect();
        for waiter in expired {
            let _ = waiter.answer.send(Err(CallError::Expired));
        }
    }
}

#[cfg(test)]
mod tests {
    use distcache_proto::v1 as pb;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    /// A peer that takes every request and answers none.
    async fn silent_peer() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut sink = [0u8; 1024];
            while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
        });
        addr
    }

    fn get(key: &str) -> pb::GetRequest {
        pb::GetRequest {
            keys: vec![pb::KeyRef { keyspace: "ks".into(), key: key.into() }],
            forwarded: false,
        }
    }

    #[tokio::test]
    async fn a_call_due_sooner_wakes_the_sweep_and_expires_on_time() {
        let addr = silent_peer().await;
        let client = Arc::new(PipeClient::new(
            addr,
            Transport::Plain,
            Duration::from_secs(1),
            1 << 20,
            false,
        ));
        let started = Instant::now();
        let patient = tokio::spawn({
            let client = client.clone();
            async move {
                let deadline = started + Duration::from_secs(30);
                client.call(Kind::Get, &get("patient"), deadline).await
            }
        });
        // The sweep arms for the patient call's deadline first.
        while client.open_conn().is_none_or(|conn| conn.sweep_at.load(SeqCst) == u64::MAX) {
            tokio::task::yield_now().await;
        }
        let deadline = started + Duration::from_millis(50);
        let hasty = client.call(Kind::Get, &get("hasty"), deadline).await;
        assert!(matches!(hasty, Err(CallError::Expired)), "{hasty:?}");
        let waited = started.elapsed();
        assert!(waited < Duration::from_secs(5), "expired only after {waited:?}");
        assert!(!patient.is_finished(), "the patient call expired early");
        patient.abort();
    }
}
