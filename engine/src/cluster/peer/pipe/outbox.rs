//! Frames waiting to be written on one connection, and the one writer that writes them.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

use super::stream::Sink;

/// Frames waiting to be written, and whether a writer is on them. Whoever finds the outbox
/// idle after adding to it wakes the connection's writer ([`write_out`](Self::write_out)).
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    state: Mutex<OutboxState>,
    writer: Notify,
    /// The socket, for frames written straight away when the outbox is idle (plain TCP only:
    /// a TLS stream has one writer).
    direct: Option<Arc<OwnedWriteHalf>>,
}

#[derive(Debug, Default)]
struct OutboxState {
    frames: BytesMut,
    writing: bool,
}

impl Outbox {
    /// An outbox that writes straight to `direct` when it can.
    pub(crate) fn new(direct: Option<Arc<OwnedWriteHalf>>) -> Self {
        Outbox { direct, ..Outbox::default() }
    }

    /// Queues frames for the writer.
    pub(crate) fn queue(&self, add: impl FnOnce(&mut BytesMut)) {
        if self.push(add) {
            self.writer.notify_one();
        }
    }

    /// Writes `frames` to the socket right away if nothing is queued or being written, with
    /// no hop through the writer; the writer sends whatever the socket did not take.
    pub(crate) fn send(&self, frames: &[u8]) {
        let Some(socket) = &self.direct else { return self.queue(|f| f.extend_from_slice(frames)) };
        if self.write_now(frames, |bytes| socket.try_write(bytes).unwrap_or(0)) {
            self.writer.notify_one();
        }
    }

    /// The connection's writer: writes what is queued each time it is woken, until a write
    /// fails. With `coalesce`, it first lets the tasks ready to run queue their frames too, so
    /// they leave in one write.
    pub(crate) async fn write_out(&self, sink: &mut Sink, coalesce: bool) -> io::Error {
        loop {
            self.writer.notified().await;
            if coalesce {
                tokio::task::yield_now().await;
            }
            while let Some(frames) = self.take() {
                if let Err(err) = sink.write_all(&frames).await {
                    return err;
                }
            }
        }
    }

    /// Adds frames; true if no writer was on the outbox, so one must be woken.
    fn push(&self, add: impl FnOnce(&mut BytesMut)) -> bool {
        let mut state = self.lock();
        add(&mut state.frames);
        !std::mem::replace(&mut state.writing, true)
    }

    /// Runs `write` on the frame if the outbox is idle and empty; what it could not write stays
    /// queued. True if a writer must be woken for that rest.
    fn write_now(&self, frame: &[u8], write: impl FnOnce(&[u8]) -> usize) -> bool {
        let mut state = self.lock();
        let written = if state.writing || !state.frames.is_empty() { 0 } else { write(frame) };
        if written == frame.len() {
            return false;
        }
        state.frames.extend_from_slice(&frame[written..]);
        !std::mem::replace(&mut state.writing, true)
    }

    /// Everything queued, for the writer to write; `None` (and the writer stands down) when
    /// the outbox is empty.
    fn take(&self) -> Option<Bytes> {
        let mut state = self.lock();
        if state.frames.is_empty() {
            state.writing = false;
            return None;
        }
        Some(state.frames.split().freeze())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OutboxState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outbox_hands_writing_to_one_writer() {
        let outbox = Outbox::default();
        // Idle and empty: the caller writes; a short write leaves the rest for a writer.
        assert!(!outbox.write_now(b"abc", |f| f.len()));
        assert!(outbox.write_now(b"abcd", |_| 1));
        // A writer is now on it: more frames queue behind, nobody else is woken.
        assert!(!outbox.push(|b| b.extend_from_slice(b"ef")));
        assert!(!outbox.write_now(b"gh", |_| panic!("must not write past the queue")));
        assert_eq!(outbox.take().as_deref(), Some(&b"bcdefgh"[..]));
        assert_eq!(outbox.take(), None);
        // The writer stood down: the next push must wake one.
        assert!(outbox.push(|b| b.extend_from_slice(b"i")));
    }
}
