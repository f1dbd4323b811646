//! The gRPC service peers call for everything but gets (those take the pipe). Every request
//! is served on this node: it never forwards.

use distcache_proto::v1::{self as pb, peer_server::Peer, peer_server::PeerServer};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::cluster::wire;
use crate::engine::Engine;
use crate::entry::Entry;

/// Answers peers on behalf of an engine.
#[derive(Debug, Clone)]
pub(crate) struct PeerService {
    engine: Engine,
}

impl PeerService {
    /// Serves the gRPC peer service on the connections `incoming` yields (the peer port hands
    /// over those that are not pipes) until `shutdown` is cancelled.
    pub(crate) async fn serve(
        engine: Engine,
        incoming: futures::stream::BoxStream<'static, std::io::Result<TcpStream>>,
        max_message_bytes: usize,
        shutdown: CancellationToken,
    ) -> Result<(), tonic::transport::Error> {
        let service = PeerServer::new(PeerService { engine: engine.clone() })
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes);
        let builder = tonic::transport::Server::builder().tcp_nodelay(true);
        // Mutual TLS when the cluster config asks for it (checked when the engine started).
        #[cfg(feature = "tls")]
        let builder = match engine_tls(&engine) {
            Some(tls) => builder.tls_config(tls)?,
            None => builder,
        };
        let mut server = builder;
        server
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await
    }
}

#[cfg(feature = "tls")]
fn engine_tls(engine: &Engine) -> Option<tonic::transport::ServerTlsConfig> {
    engine.cluster()?.config.tls.as_ref().map(|tls| tls.server())
}

fn write_response(results: Vec<crate::Result<()>>) -> pb::WriteResponse {
    let outcomes = results
        .into_iter()
        .map(|r| pb::WriteOutcome { failure: r.err().map(|e| wire::failure(&e)) })
        .collect();
    pb::WriteResponse { outcomes }
}

fn keyspace_response(result: crate::Result<()>) -> pb::KeySpaceResponse {
    pb::KeySpaceResponse { failure: result.err().map(|e| wire::failure(&e)) }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let outcomes = self.engine.serve_gets(&request.into_inner().keys).await;
        Ok(Response::new(pb::GetResponse { outcomes }))
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let entries = request
            .into_inner()
            .entries
            .into_iter()
            .map(|e| {
                let entry =
                    Entry { key: e.key, value: e.value, expiration: wire::expiration(e.expiry) };
                (e.keyspace, entry)
            })
            .collect();
        Ok(Response::new(write_response(self.engine.serve_put(entries).await)))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let keys = request.into_inner().keys.into_iter().map(|k| (k.keyspace, k.key)).collect();
        Ok(Response::new(write_response(self.engine.serve_delete(keys).await)))
    }

    async fn invalidate(
        &self,
        request: Request<pb::InvalidateRequest>,
    ) -> Result<Response<pb::InvalidateResponse>, Status> {
        for key in request.into_inner().keys {
            self.engine.serve_invalidate(&key.keyspace, &key.key);
        }
        Ok(Response::new(pb::InvalidateResponse {}))
    }

    async fn peek(
        &self,
        request: Request<pb::PeekRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let outcomes = self.engine.serve_peeks(&request.into_inner().keys);
        Ok(Response::new(pb::GetResponse { outcomes }))
    }

    async fn delete_key_spaces(
        &self,
        request: Request<pb::DeleteKeySpacesRequest>,
    ) -> Result<Response<pb::KeySpaceResponse>, Status> {
        let names = request.into_inner().names;
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        Ok(Response::new(keyspace_response(self.engine.serve_delete_keyspaces(&names).await)))
    }

    async fn update_key_space(
        &self,
        request: Request<pb::UpdateKeySpaceRequest>,
    ) -> Result<Response<pb::KeySpaceResponse>, Status> {
        let Some(settings) = request.into_inner().settings else {
            return Err(Status::invalid_argument("update_key_space needs settings"));
        };
        Ok(Response::new(keyspace_response(self.engine.serve_update_keyspace(settings).await)))
    }
}
