//! [`NodeClient`]: a typed client for a node's client API and admin API, as `distcache ctl`
//! uses them. Any HTTP client works as well (see the README's curl examples).

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, StatusCode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rustls::pki_types::ServerName;

use super::api_error::ApiError;
use super::client_api::TTL_HEADER;
use super::http_client::HttpClient;

/// Path characters sent as they are; the rest is percent-encoded.
const KEEP: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// How a [`NodeClient`] connects.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// Bearer token sent with every request.
    pub token: Option<String>,
    /// Extra CA certificate(s) to trust (PEM), besides the system's.
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate chain and key (PEM), for APIs that require one.
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// The name to expect in the server's certificate, when it differs from the URL's host.
    pub server_name: Option<String>,
    /// Bound on each request (default 10 s).
    pub timeout: Duration,
    /// Largest response body accepted (default 256 MiB).
    pub max_body_bytes: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            token: None,
            ca_pem: None,
            identity_pem: None,
            server_name: None,
            timeout: Duration::from_secs(10),
            max_body_bytes: 256 << 20,
        }
    }
}

impl ClientOptions {
    /// Sends `token` as a bearer token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Trusts the CA certificate(s) in `pem`.
    pub fn with_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// Presents this client certificate chain and key (PEM).
    pub fn with_identity_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.identity_pem = Some((cert.into(), key.into()));
        self
    }

    /// Expects `name` in the server's certificate.
    pub fn with_server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Bounds each request.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The node answered with an error.
    #[error("{error} (HTTP {status})")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The error body.
        error: ApiError,
    },
    /// The node could not be reached, or its answer could not be read.
    #[error("{0}")]
    Transport(String),
    /// The client was set up wrongly (bad URL, certificate or token).
    #[error("{0}")]
    Invalid(String),
}

impl ClientError {
    /// The API error code, if the node answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { error, .. } => Some(&error.code),
            _ => None,
        }
    }
}

/// A response as it came: status and body.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Bytes,
}

/// Calls one node's HTTP API (client API or admin API) at a base URL such as
/// `http://127.0.0.1:3390`.
#[derive(Debug, Clone)]
pub struct NodeClient {
    http: HttpClient,
    base: String,
    token: Option<HeaderValue>,
    options: ClientOptions,
}

impl NodeClient {
    /// A client for the API at `base_url`.
    pub fn new(base_url: impl Into<String>, options: ClientOptions) -> Result<Self, ClientError> {
        let base = base_url.into().trim_end_matches('/').to_owned();
        let uri: hyper::Uri =
            base.parse().map_err(|e| ClientError::Invalid(format!("URL {base:?}: {e}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
            return Err(ClientError::Invalid(format!(
                "URL {base:?}: use http://host:port or https://host:port"
            )));
        }
        let identity = options.identity_pem.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice()));
        let tls = super::tls::client_config(options.ca_pem.as_deref(), identity)
            .map_err(ClientError::Invalid)?;
        let server_name = match &options.server_name {
            Some(name) => Some(
                ServerName::try_from(name.clone())
                    .map_err(|e| ClientError::Invalid(format!("server name {name:?}: {e}")))?,
            ),
            None => None,
        };
        let token = match &options.token {
            Some(token) => {
                Some(HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| {
                    ClientError::Invalid("the token is not a valid header value".into())
                })?)
            }
            None => None,
        };
        let http = HttpClient::new(tls, options.timeout, server_name);
        Ok(NodeClient { http, base, token, options })
    }

    /// The value of `key` (`ClientError::Api` with code `not_found` when there is none).
    pub async fn get(&self, keyspace: &str, key: &str) -> Result<Bytes, ClientError> {
        let response =
            self.request(Method::GET, &key_path(keyspace, key), None, Bytes::new()).await?;
        ok(response).map(|r| r.body)
    }

    /// Stores `value` at `key`, with its own TTL when given.
    pub async fn put(
        &self,
        keyspace: &str,
        key: &str,
        value: impl Into<Bytes>,
        ttl: Option<Duration>,
    ) -> Result<(), ClientError> {
        let ttl = ttl.map(|t| (TTL_HEADER, t.as_millis().to_string()));
        let response =
            self.request(Method::PUT, &key_path(keyspace, key), ttl, value.into()).await?;
        ok(response).map(drop)
    }

    /// Removes `key`.
    pub async fn delete(&self, keyspace: &str, key: &str) -> Result<(), ClientError> {
        let response =
            self.request(Method::DELETE, &key_path(keyspace, key), None, Bytes::new()).await?;
        ok(response).map(drop)
    }

    /// The values of many keys, in order; one key's error does not fail the others.
    pub async fn batch_get<K: AsRef<str>>(
        &self,
        keyspace: &str,
        keys: &[K],
    ) -> Result<Vec<Result<Bytes, ApiError>>, ClientError> {
        let keys: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
        let body = serde_json::to_vec(&serde_json::json!({ "keys": keys }))
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        let path = format!("/v1/keyspaces/{}/batch-get", encode(keyspace));
        let response = ok(self.request(Method::POST, &path, None, Bytes::from(body)).await?)?;
        let json: serde_json::Value = decode(&response.body)?;
        let results = json["results"].as_array().ok_or_else(|| bad_answer("no results array"))?;
        let b64 = base64::engine::general_purpose::STANDARD;
        results
            .iter()
            .map(|result| match (&result["value"], &result["error"]) {
                (serde_json::Value::String(value), _) => b64
                    .decode(value)
                    .map(|v| Ok(Bytes::from(v)))
                    .map_err(|e| bad_answer(&format!("a value is not base64: {e}"))),
                (_, error) => serde_json::from_value::<ApiError>(error.clone())
                    .map(Err)
                    .map_err(|e| bad_answer(&format!("a result is neither value nor error: {e}"))),
            })
            .collect()
    }

    /// GETs `path` (such as `/v1/peers` on the admin API) and parses the JSON answer.
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        let response = ok(self.request(Method::GET, path, None, Bytes::new()).await?)?;
        decode(&response.body)
    }

    /// Sends one request as it is and returns the answer whatever its status.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        header: Option<(&str, String)>,
        body: Bytes,
    ) -> Result<RawResponse, ClientError> {
        let url = format!("{}{}", self.base, path);
        let mut builder = Request::builder().method(method).uri(&url);
        if let Some(token) = &self.token {
            builder = builder.header(AUTHORIZATION, token.clone());
        }
        if let Some((name, value)) = header {
            builder = builder.header(name, value);
        }
        if !body.is_empty() {
            builder = builder.header(CONTENT_TYPE, "application/octet-stream");
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| ClientError::Invalid(format!("request to {url}: {e}")))?;
        let response = self
            .http
            .send(request, self.options.timeout, self.options.max_body_bytes)
            .await
            .map_err(|e| ClientError::Transport(format!("{url}: {e}")))?;
        Ok(RawResponse { status: response.status().as_u16(), body: response.into_body() })
    }
}

fn key_path(keyspace: &str, key: &str) -> String {
    format!("/v1/keyspaces/{}/keys/{}", encode(keyspace), encode(key))
}

fn encode(segment: &str) -> String {
    utf8_percent_encode(segment, KEEP).to_string()
}

fn ok(response: RawResponse) -> Result<RawResponse, ClientError> {
    if StatusCode::from_u16(response.status).is_ok_and(|s| s.is_success()) {
        return Ok(response);
    }
    let error = serde_json::from_slice::<ApiError>(&response.body).unwrap_or_else(|_| {
        ApiError::new("http_error", String::from_utf8_lossy(&response.body).trim().to_owned())
    });
    Err(ClientError::Api { status: response.status, error })
}

fn decode(body: &[u8]) -> Result<serde_json::Value, ClientError> {
    serde_json::from_slice(body).map_err(|e| bad_answer(&format!("not JSON: {e}")))
}

fn bad_answer(what: &str) -> ClientError {
    ClientError::Transport(format!("unexpected answer from the node: {what}"))
}
