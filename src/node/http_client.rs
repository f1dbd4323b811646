//! A small HTTP/1.1 client (hyper-util's pooled client over rustls on ring) shared by the HTTP
//! data source and [`NodeClient`](super::NodeClient): one request, a deadline, and a
//! bounded body.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Response};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;

/// Why a request got no usable response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// No response within the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection or the request failed.
    #[error("request failed: {0}")]
    Transport(String),
    /// The body was larger than allowed.
    #[error("the response body is larger than {0} bytes")]
    TooLarge(usize),
}

/// A pooled client for `http` and `https` URLs.
#[derive(Debug, Clone)]
pub(crate) struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HttpClient {
    /// A client trusting what `tls` trusts; `server_name` replaces the URL's host when checking
    /// servers' certificates.
    pub(crate) fn new(
        tls: ClientConfig,
        connect_timeout: Duration,
        server_name: Option<ServerName<'static>>,
    ) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        let builder = HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http();
        let connector = match server_name {
            Some(name) => builder
                .with_server_name_resolver(FixedServerNameResolver::new(name))
                .enable_http1()
                .wrap_connector(http),
            None => builder.enable_http1().wrap_connector(http),
        };
        HttpClient { inner: Client::builder(TokioExecutor::new()).build(connector) }
    }

    /// Sends `request` and reads the whole response body (at most `limit` bytes), all
    /// within `timeout`.
    pub(crate) async fn send(
        &self,
        request: Request<Full<Bytes>>,
        timeout: Duration,
        limit: usize,
    ) -> Result<Response<Bytes>, HttpError> {
        let exchange = async {
            let response = self.inner.request(request).await.map_err(|err| {
                let source =
                    std::error::Error::source(&err).map(|s| format!(": {s}")).unwrap_or_default();
                HttpError::Transport(format!("{err}{source}"))
            })?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, limit).collect().await.map_err(|err| {
                if err.is::<http_body_util::LengthLimitError>() {
                    HttpError::TooLarge(limit)
                } else {
                    HttpError::Transport(format!("reading the body: {err}"))
                }
            })?;
            Ok(Response::from_parts(parts, body.to_bytes()))
        };
        tokio::time::timeout(timeout, exchange).await.unwrap_or(Err(HttpError::Timeout(timeout)))
    }
}
