//! The byte streams under the pipe: plain TCP, or mutual TLS with the cluster's certificates.

use std::io;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::Interest;
#[cfg(feature = "tls")]
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Bytes read per call at most; values are sliced out of these buffers.
pub(super) const READ_CHUNK: usize = 64 * 1024;

/// How pipe connections are secured.
#[derive(Debug, Clone)]
pub(crate) enum Transport {
    Plain,
    #[cfg(feature = "tls")]
    Tls(Arc<tls::Configs>),
}

/// The read side of a connection.
pub(crate) enum Reader {
    Tcp(OwnedReadHalf),
    /// Any other stream (TLS).
    #[cfg(feature = "tls")]
    Stream(Box<dyn AsyncRead + Send + Unpin>),
}

/// The write side of a connection.
pub(crate) enum Sink {
    /// Plain TCP, shared with callers that write their own frame when the connection is idle.
    Tcp(Arc<OwnedWriteHalf>),
    /// Any other stream (TLS): only the connection's writer writes.
    #[cfg(feature = "tls")]
    Stream(Box<dyn AsyncWrite + Send + Unpin>),
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reader")
    }
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sink::Tcp(_) => "Sink::Tcp",
            #[cfg(feature = "tls")]
            Sink::Stream(_) => "Sink::Stream",
        })
    }
}

impl Reader {
    /// Reads what has arrived onto the end of `buf`; 0 at end of stream.
    pub(crate) async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        if buf.capacity() - buf.len() < READ_CHUNK / 8 {
            buf.reserve(READ_CHUNK);
        }
        match self {
            Reader::Tcp(socket) => read_drained(socket.as_ref(), buf).await,
            #[cfg(feature = "tls")]
            Reader::Stream(stream) => stream.read_buf(buf).await,
        }
    }
}

/// Reads from a socket, taking a read shorter than the room offered to mean the socket is
/// drained: its readiness is cleared then, so the next read waits for new data instead of
/// first making a read that can only say "nothing yet" (a system call per request saved on
/// each side of a quiet pipe). Data arriving meanwhile raises a newer readiness event, which
/// clearing the older one leaves standing.
async fn read_drained(socket: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    loop {
        socket.readable().await?;
        let room = buf.capacity() - buf.len();
        let mut read = 0;
        let cleared = socket.try_io(Interest::READABLE, || {
            read = socket.try_read_buf(buf)?;
            if read > 0 && read < room {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(read)
        });
        match cleared {
            Ok(read) => return Ok(read),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock && read > 0 => return Ok(read),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => return Err(err),
        }
    }
}

impl Sink {
    pub(crate) async fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        match self {
            Sink::Tcp(socket) => {
                while !bytes.is_empty() {
                    match socket.try_write(bytes) {
                        Ok(written) => bytes = &bytes[written..],
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                            socket.writable().await?;
                        }
                        Err(err) => return Err(err),
                    }
                }
                Ok(())
            }
            #[cfg(feature = "tls")]
            Sink::Stream(stream) => {
                stream.write_all(bytes).await?;
                stream.flush().await
            }
        }
    }
}

/// A connection's halves; `direct` is the socket callers may write to themselves.
pub(crate) type Halves = (Reader, Sink, Option<Arc<OwnedWriteHalf>>);

impl Transport {
    /// Secures a connection this node opened (after the preface went out in the clear).
    pub(crate) async fn client(&self, stream: TcpStream) -> io::Result<Halves> {
        match self {
            Transport::Plain => Ok(plain(stream)),
            #[cfg(feature = "tls")]
            Transport::Tls(configs) => {
                let (reader, writer) = tokio::io::split(configs.connect(stream).await?);
                Ok((Reader::Stream(Box::new(reader)), Sink::Stream(Box::new(writer)), None))
            }
        }
    }

    /// Secures a connection a peer opened (its preface already read).
    pub(crate) async fn server(&self, stream: TcpStream) -> io::Result<Halves> {
        match self {
            Transport::Plain => Ok(plain(stream)),
            #[cfg(feature = "tls")]
            Transport::Tls(configs) => {
                let (reader, writer) = tokio::io::split(configs.accept(stream).await?);
                Ok((Reader::Stream(Box::new(reader)), Sink::Stream(Box::new(writer)), None))
            }
        }
    }
}

fn plain(stream: TcpStream) -> Halves {
    let (reader, writer) = stream.into_split();
    let writer = Arc::new(writer);
    (Reader::Tcp(reader), Sink::Tcp(writer.clone()), Some(writer))
}

#[cfg(feature = "tls")]
pub(crate) mod tls {
    //! rustls configurations built from the cluster's PEM files: both sides present a
    //! certificate the cluster CA signed.

    use std::io;
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::net::TcpStream;
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    use crate::cluster::config::PeerTls;

    /// Client and server configurations of one node.
    pub(crate) struct Configs {
        connector: TlsConnector,
        acceptor: TlsAcceptor,
        server_name: ServerName<'static>,
    }

    impl std::fmt::Debug for Configs {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Configs")
                .field("server_name", &self.server_name)
                .finish_non_exhaustive()
        }
    }

    impl Configs {
        pub(crate) fn new(tls: &PeerTls) -> Result<Self, String> {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let certs = CertificateDer::pem_slice_iter(&tls.cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("peer certificate: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(&tls.key_pem)
                .map_err(|e| format!("peer private key: {e}"))?;
            let mut roots = rustls::RootCertStore::empty();
            for ca in CertificateDer::pem_slice_iter(&tls.ca_pem) {
                let ca = ca.map_err(|e| format!("peer CA: {e}"))?;
                roots.add(ca).map_err(|e| format!("peer CA: {e}"))?;
            }
            let roots = Arc::new(roots);
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots.clone(),
                provider.clone(),
            )
            .build()
            .map_err(|e| format!("peer CA: {e}"))?;
            let server = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_client_cert_verifier(verifier)
                .with_single_cert(certs.clone(), key.clone_key())
                .map_err(|e| format!("peer certificate: {e}"))?;
            let client = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("peer certificate: {e}"))?;
            let server_name = ServerName::try_from(tls.server_name.clone())
                .map_err(|e| format!("peer TLS server name `{}`: {e}", tls.server_name))?;
            Ok(Configs {
                connector: TlsConnector::from(Arc::new(client)),
                acceptor: TlsAcceptor::from(Arc::new(server)),
                server_name,
            })
        }

        pub(crate) async fn connect(
            &self,
            stream: TcpStream,
        ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
            self.connector.connect(self.server_name.clone(), stream).await
        }

        pub(crate) async fn accept(
            &self,
            stream: TcpStream,
        ) -> io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
            self.acceptor.accept(stream).await
        }
    }
}
