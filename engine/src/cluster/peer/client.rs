//! Calls to one peer behind a circuit breaker: gets and peeks over the pipe, everything else
//! over a lazily connected tonic channel.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use distcache_proto::v1::{self as pb, peer_client::PeerClient as Rpc};
use tonic::transport::{Channel, Endpoint};

use super::pipe::{CallError, PipeClient, frame::Kind};
use crate::cluster::config::ClusterConfig;
use crate::cluster::ring::Member;
use crate::cluster::wire;
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::metrics::{Metrics, PeerCallAttributes};
use crate::protect::{Breaker, BreakerState};

/// A value as its owner returned it.
#[derive(Debug, Clone)]
pub(crate) struct RemoteValue {
    pub(crate) value: Bytes,
    pub(crate) ttl: Option<Duration>,
    pub(crate) rate: f64,
}

/// A call that did not reach the peer or got no usable answer; the caller may fall back.
#[derive(Debug, Clone)]
pub(crate) struct Unreachable(pub(crate) String);

impl From<Unreachable> for Error {
    fn from(err: Unreachable) -> Self {
        Error::Unavailable(err.0)
    }
}

/// Per-key outcomes of a get.
pub(crate) type GetOutcomes = Vec<Result<RemoteValue>>;

/// The client side of one peer.
#[derive(Debug)]
pub(crate) struct PeerClient {
    member: Member,
    rpc: Rpc<Channel>,
    pipe: PipeClient,
    breaker: Breaker,
    metrics: Metrics,
    call_attributes: PeerCallAttributes,
}

impl PeerClient {
    /// A client for `member`; connects on first use.
    pub(crate) fn new(
        member: Member,
        config: &ClusterConfig,
        metrics: Metrics,
    ) -> Result<std::sync::Arc<Self>> {
        let endpoint = Endpoint::from_shared(format!("{}://{}", scheme(config), member.grpc_addr))
            .map_err(|e| Error::invalid(format!("peer address {}: {e}", member.grpc_addr)))?
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true)
            .http2_adaptive_window(true);
        #[cfg(feature = "tls")]
        let endpoint = match &config.tls {
            Some(tls) => endpoint
                .tls_config(tls.client())
                .map_err(|e| Error::invalid(format!("peer TLS for {}: {e}", member.grpc_addr)))?,
            None => endpoint,
        };
        let rpc = Rpc::new(endpoint.connect_lazy())
            .max_decoding_message_size(config.max_message_bytes)
            .max_encoding_message_size(config.max_message_bytes);
        let pipe = PipeClient::new(
            member.grpc_addr,
            config.pipe_transport()?,
            config.connect_timeout,
            config.max_message_bytes,
            config.batching,
        );
        let breaker = Breaker::new(config.breaker_threshold, config.breaker_cooldown);
        let call_attributes = PeerCallAttributes::new(&member.node_id);
        Ok(std::sync::Arc::new(PeerClient { member, rpc, pipe, breaker, metrics, call_attributes }))
    }

    pub(crate) fn member(&self) -> &Member {
        &self.member
    }

    pub(crate) fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// Gets one key, waiting for it until `deadline`.
    pub(crate) async fn get(
        &self,
        keyspace: &str,
        key: &str,
        deadline: Deadline,
    ) -> Result<Result<RemoteValue>, Unreachable> {
        let request = wire::OneKeyGet(wire::KeyRef { keyspace, key });
        let outcome = self.pipe_call(Kind::Get, &request, deadline).await?.into_iter().next();
        outcome.map(get_outcome).ok_or_else(|| Unreachable("the peer answered no outcome".into()))
    }

    /// Gets many keys in one call; outcomes in request order.
    pub(crate) async fn get_many(
        &self,
        keys: Vec<pb::KeyRef>,
        deadline: Deadline,
    ) -> Result<GetOutcomes, Unreachable> {
        let expected = keys.len();
        let request = pb::GetRequest { keys, forwarded: true };
        let outcomes = self.pipe_call(Kind::Get, &request, deadline).await?;
        if outcomes.len() != expected {
            return Err(Unreachable(format!(
                "peer {} answered {} outcomes for {expected} keys",
                self.member.node_id,
                outcomes.len()
            )));
        }
        Ok(outcomes.into_iter().map(get_outcome).collect())
    }

    /// Reads one stored value without loading it (warm handoff).
    pub(crate) async fn peek(
        &self,
        key: pb::KeyRef,
        timeout: Duration,
    ) -> Result<Result<RemoteValue>, Unreachable> {
        let request = pb::PeekRequest { keys: vec![key] };
        let deadline = Deadline::after(timeout);
        let outcome = self.pipe_call(Kind::Peek, &request, deadline).await?.into_iter().next();
        outcome.map(get_outcome).ok_or_else(|| Unreachable("the peer answered no outcome".into()))
    }

    /// One request over the pipe, answered by a `GetResponse` before `deadline`.
    async fn pipe_call(
        &self,
        kind: Kind,
        request: &impl prost::Message,
        deadline: Deadline,
    ) -> Result<Vec<pb::GetOutcome>, Unreachable> {
        // Not the peer's fault: refused before the breaker counts anything.
        self.pipe.check_size(request)?;
        let call = async {
            // A failed connection or a bad answer counts against the peer; running out of
            // time does not (the owner may be loading from a slow data source).
            let answer =
                self.pipe.call(kind, request, deadline.at).await.map_err(|err| match err {
                    CallError::Unreachable(unreachable) => (unreachable.0, true),
                    CallError::Expired => ("no answer before the deadline".to_owned(), false),
                })?;
            match answer.kind {
                Kind::Values => <pb::GetResponse as prost::Message>::decode(answer.body)
                    .map(|response| response.outcomes)
                    .map_err(|err| (format!("a malformed answer: {err}"), true)),
                other => Err((format!("an answer of kind {other:?}"), true)),
            }
        };
        self.guarded(None, deadline.started, call).await
    }

    /// Stores entries at this peer (their owner).
    pub(crate) async fn put(
        &self,
        entries: Vec<pb::Entry>,
        timeout: Duration,
    ) -> Result<Vec<Result<()>>, Unreachable> {
        let request = pb::PutRequest { entries, forwarded: true };
        let response =
            self.call(timeout, |mut rpc, req| async move { rpc.put(req).await }, request).await?;
        Ok(write_outcomes(response))
    }

    /// Deletes keys at this peer (their owner).
    pub(crate) async fn delete(
        &self,
        keys: Vec<pb::KeyRef>,
        timeout: Duration,
    ) -> Result<Vec<Result<()>>, Unreachable> {
        let request = pb::DeleteRequest { keys, forwarded: true };
        let response = self
            .call(timeout, |mut rpc, req| async move { rpc.delete(req).await }, request)
            .await?;
        Ok(write_outcomes(response))
    }

    /// Drops keys from this peer's hot cache.
    pub(crate) async fn invalidate(
        &self,
        keys: Vec<pb::KeyRef>,
        timeout: Duration,
    ) -> Result<(), Unreachable> {
        let request = pb::InvalidateRequest { keys };
        self.call(timeout, |mut rpc, req| async move { rpc.invalidate(req).await }, request)
            .await?;
        Ok(())
    }

    /// Removes keyspaces on this peer.
    pub(crate) async fn delete_keyspaces(
        &self,
        names: Vec<String>,
        timeout: Duration,
    ) -> Result<Result<()>, Unreachable> {
        let request = pb::DeleteKeySpacesRequest { names };
        let response = self
            .call(timeout, |mut rpc, req| async move { rpc.delete_key_spaces(req).await }, request)
            .await?;
        Ok(response.failure.map_or(Ok(()), |f| Err(wire::error(f))))
    }

    /// Applies keyspace settings on this peer.
    pub(crate) async fn update_keyspace(
        &self,
        settings: pb::KeySpaceSettings,
        timeout: Duration,
    ) -> Result<Result<()>, Unreachable> {
        let request = pb::UpdateKeySpaceRequest { settings: Some(settings) };
        let response = self
            .call(timeout, |mut rpc, req| async move { rpc.update_key_space(req).await }, request)
            .await?;
        Ok(response.failure.map_or(Ok(()), |f| Err(wire::error(f))))
    }

    /// Runs one gRPC call under the breaker and a deadline.
    async fn call<Req, Resp, F, Fut>(
        &self,
        timeout: Duration,
        send: F,
        request: Req,
    ) -> Result<Resp, Unreachable>
    where
        F: FnOnce(Rpc<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let mut request = tonic::Request::new(request);
        request.set_timeout(timeout);
        let call = async {
            send(self.rpc.clone(), request).await.map(tonic::Response::into_inner).map_err(
                |status| {
                    // The peer answered: a refused request says nothing about its health.
                    let peer_failed = matches!(
                        status.code(),
                        tonic::Code::Unavailable
                            | tonic::Code::DeadlineExceeded
                            | tonic::Code::Unknown
                            | tonic::Code::Cancelled
                    );
                    (status.message().to_owned(), peer_failed)
                },
            )
        };
        self.guarded(Some(timeout), tokio::time::Instant::now(), call).await
    }

    /// Runs a call under the breaker and a timeout (`None`: the call bounds itself), recording
    /// it in the metrics as started at `started`. The call fails with a reason and whether the
    /// failure counts against the peer's health.
    async fn guarded<T>(
        &self,
        timeout: Option<Duration>,
        started: tokio::time::Instant,
        call: impl Future<Output = Result<T, (String, bool)>>,
    ) -> Result<T, Unreachable> {
        let breaker_open =
            || Unreachable(format!("peer {} is failing (breaker open)", self.member.node_id));
        let Some(probe) = self.breaker.try_probe() else { return Err(breaker_open()) };
        let result = match timeout {
            Some(timeout) => tokio::time::timeout(timeout, call)
                .await
                .unwrap_or_else(|_| Err(("peer call timed out".to_owned(), true))),
            None => call.await,
        };
        self.metrics.peer_call(&self.call_attributes, started.elapsed(), result.is_ok());
        probe.record(!matches!(result, Err((_, true))));
        result.map_err(|(reason, _)| {
            Unreachable(format!(
                "peer {} at {}: {reason}",
                self.member.node_id, self.member.grpc_addr
            ))
        })
    }
}

/// `https` when the peer protocol runs over TLS.
fn scheme(config: &ClusterConfig) -> &'static str {
    #[cfg(feature = "tls")]
    if config.tls.is_some() {
        return "https";
    }
    let _ = config;
    "http"
}

fn get_outcome(outcome: pb::GetOutcome) -> Result<RemoteValue> {
    match outcome.outcome {
        Some(pb::get_outcome::Outcome::Value(v)) => Ok(RemoteValue {
            value: v.value,
            ttl: v.ttl_ms.map(Duration::from_millis),
            rate: if v.rate.is_finite() { v.rate } else { 0.0 },
        }),
        Some(pb::get_outcome::Outcome::Failure(failure)) => Err(wire::error(failure)),
        None => Err(Error::Unavailable("a peer sent an empty outcome".into())),
    }
}

fn write_outcomes(response: pb::WriteResponse) -> Vec<Result<()>> {
    response
        .outcomes
        .into_iter()
        .map(|outcome| outcome.failure.map_or(Ok(()), |f| Err(wire::error(f))))
        .collect()
}
