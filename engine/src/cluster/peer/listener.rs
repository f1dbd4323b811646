//! The peer port: accepts connections and tells pipes from gRPC by their first bytes.

use std::time::Duration;

use futures::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::pipe::{self, Transport, frame::PREFACE};
use super::server::PeerService;
use crate::engine::Engine;

/// How long a new connection may take to send its first bytes.
const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);

/// What the peer port needs to serve.
#[derive(Debug, Clone)]
pub(crate) struct PeerPort {
    pub(crate) engine: Engine,
    pub(crate) transport: Transport,
    pub(crate) max_message_bytes: usize,
    pub(crate) shutdown: CancellationToken,
    /// Plain pipe connections still to be served on threads of their own.
    pub(crate) pipe_threads: pipe::ThreadSlots,
}

/// Serves pipes and gRPC on `listener` until `shutdown` is cancelled.
pub(crate) async fn serve(
    port: PeerPort,
    listener: TcpListener,
) -> Result<(), tonic::transport::Error> {
    let (grpc_connections, incoming) = mpsc::channel::<TcpStream>(64);
    let incoming = futures::stream::unfold(incoming, |mut rx| async move {
        rx.recv().await.map(|stream| (Ok::<_, std::io::Error>(stream), rx))
    })
    .boxed();
    let grpc = PeerService::serve(
        port.engine.clone(),
        incoming,
        port.max_message_bytes,
        port.shutdown.clone(),
    );
    let accept = async {
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(err) => {
                        // Out of descriptors and the like: pause rather than spin.
                        tracing::warn!(%err, "accepting a peer connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = port.shutdown.cancelled() => return,
            };
            tokio::spawn(route(port.clone(), stream, grpc_connections.clone()));
        }
    };
    let (served, ()) = tokio::join!(grpc, accept);
    served
}

/// Hands a new connection to the pipe or to gRPC.
async fn route(port: PeerPort, stream: TcpStream, grpc: mpsc::Sender<TcpStream>) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(%err, "cannot set TCP_NODELAY on a peer connection");
    }
    let is_pipe = match tokio::time::timeout(FIRST_BYTES_TIMEOUT, opens_with_preface(&stream)).await
    {
        Ok(Ok(is_pipe)) => is_pipe,
        // Silent or gone before saying anything: nothing to serve.
        _ => return,
    };
    if !is_pipe {
        let _ = grpc.send(stream).await;
        return;
    }
    let mut stream = stream;
    let mut preface = [0u8; PREFACE.len()];
    if stream.read_exact(&mut preface).await.is_err() {
        return;
    }
    let PeerPort { engine, transport, max_message_bytes, shutdown, pipe_threads } = port;
    pipe::serve_connection(engine, stream, transport, max_message_bytes, shutdown, &pipe_threads)
        .await;
}

/// Whether the connection's first bytes are the pipe preface, without consuming them.
async fn opens_with_preface(stream: &TcpStream) -> std::io::Result<bool> {
    let mut first = [0u8; PREFACE.len()];
    loop {
        let seen = stream.peek(&mut first).await?;
        if seen == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if first[..seen] != PREFACE[..seen] {
            return Ok(false);
        }
        if seen == PREFACE.len() {
            return Ok(true);
        }
        // A prefix of the preface so far: wait for more.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
