//! A data source that GETs each key from an HTTP origin.
//!
//! The URL template's `{key}` is replaced by the percent-encoded key. `404` and `410` mean
//! the key has no value ([`FetchError::NotFound`], negatively cacheable); any other status
//! outside 2xx, a connection failure, a body above the keyspace budget or no answer within
//! the timeout is a failed fetch.

use std::time::Duration;

use bytes::Bytes;
use distcache_engine::{DataSource, FetchError, async_trait};
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::node::error::NodeError;
use crate::node::http_client::HttpClient;
use crate::node::keyspace_config::HttpSourceConfig;

/// Characters of a key sent as they are; everything else is percent-encoded (`/` too, so a
/// key is always one path segment or one query value).
const KEEP: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Loads values with `GET` from an HTTP origin.
#[derive(Debug)]
pub struct HttpSource {
    client: HttpClient,
    template: String,
    headers: HeaderMap,
    timeout: Duration,
    max_bytes: usize,
}

impl HttpSource {
    /// A source for `config`, accepting bodies up to `max_bytes`. Fails with a config error
    /// naming the field (`url`, `headers` or `ca`) when the config cannot work.
    pub fn new(config: &HttpSourceConfig, max_bytes: u64) -> Result<Self, NodeError> {
        Self::build(config, max_bytes).map_err(|(field, message)| NodeError::config(field, message))
    }

    /// As [`new`](Self::new), with the failing field apart.
    pub(crate) fn build(
        config: &HttpSourceConfig,
        max_bytes: u64,
    ) -> Result<Self, (&'static str, String)> {
        validate(config)?;
        let headers = headers(config)?;
        let ca = match &config.ca {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|err| ("ca", format!("cannot read {}: {err}", path.display())))?,
            ),
            None => None,
        };
        let tls =
            crate::node::tls::client_config(ca.as_deref(), None).map_err(|err| ("ca", err))?;
        Ok(HttpSource {
            client: HttpClient::new(tls, config.connect_timeout, None),
            template: config.url.clone(),
            headers,
            timeout: config.timeout,
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
        })
    }

    /// The URL asked for `key`.
    pub fn url(&self, key: &str) -> String {
        render(&self.template, key)
    }
}

/// Checks an HTTP source config; the error names the field.
pub(crate) fn validate(config: &HttpSourceConfig) -> Result<(), (&'static str, String)> {
    if !config.url.contains("{key}") {
        return Err((
            "url",
            format!("{:?} has no {{key}}: put {{key}} where the key goes", config.url),
        ));
    }
    let uri: Uri = render(&config.url, "key")
        .parse()
        .map_err(|err| ("url", format!("{:?} is not a URL: {err}", config.url)))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
        return Err((
            "url",
            format!("{:?} must be an absolute http:// or https:// URL", config.url),
        ));
    }
    for (field, value) in [("timeout", config.timeout), ("connect_timeout", config.connect_timeout)]
    {
        if value.is_zero() {
            return Err((field, "is 0: use a positive duration".to_owned()));
        }
    }
    headers(config).map(|_| ())
}

fn headers(config: &HttpSourceConfig) -> Result<HeaderMap, (&'static str, String)> {
    let mut headers = HeaderMap::new();
    for (name, value) in &config.headers {
        let name = HeaderName::try_from(name.as_str())
            .map_err(|_| ("headers", format!("{name:?} is not a header name")))?;
        let value = HeaderValue::try_from(value.as_str())
            .map_err(|_| ("headers", format!("the value of {name} is not a valid header value")))?;
        headers.insert(name, value);
    }
    Ok(headers)
}

fn render(template: &str, key: &str) -> String {
    let encoded = if key.chars().all(|c| c == '.') {
        // "." and ".." would be dot segments: a server could resolve them to another path.
        key.replace('.', "%2E")
    } else {
        utf8_percent_encode(key, KEEP).to_string()
    };
    template.replace("{key}", &encoded)
}

#[async_trait]
impl DataSource for HttpSource {
    async fn fetch(&self, key: &str) -> Result<Bytes, FetchError> {
        let url = self.url(key);
        let mut request = Request::get(url.as_str())
            .body(Full::default())
            .map_err(|err| FetchError::failed(format!("bad origin URL {url}: {err}")))?;
        request.headers_mut().extend(self.headers.clone());
        let response = self
            .client
            .send(request, self.timeout, self.max_bytes)
            .await
            .map_err(|err| FetchError::failed(format!("GET {url}: {err}")))?;
        match response.status() {
            status if status.is_success() => Ok(response.into_body()),
            StatusCode::NOT_FOUND | StatusCode::GONE => Err(FetchError::NotFound),
            status => Err(FetchError::failed(format!("GET {url}: the origin answered {status}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_percent_encoded_into_the_template() {
        let t = "http://origin/items/{key}?v=1";
        assert_eq!(render(t, "a b/c"), "http://origin/items/a%20b%2Fc?v=1");
        assert_eq!(render(t, "x-y_z.~1"), "http://origin/items/x-y_z.~1?v=1");
        assert_eq!(render(t, ".."), "http://origin/items/%2E%2E?v=1");
        assert_eq!(render(t, "é"), "http://origin/items/%C3%A9?v=1");
    }

    #[test]
    fn validation_names_the_field() {
        let bad = |config: HttpSourceConfig| validate(&config).unwrap_err().0;
        assert_eq!(bad(HttpSourceConfig::new("http://origin/items")), "url");
        assert_eq!(bad(HttpSourceConfig::new("ftp://origin/{key}")), "url");
        assert_eq!(bad(HttpSourceConfig::new("/relative/{key}")), "url");
        assert_eq!(
            bad(HttpSourceConfig::new("http://o/{key}").with_timeout(Duration::ZERO)),
            "timeout"
        );
        assert_eq!(
            bad(HttpSourceConfig::new("http://o/{key}").with_header("bad name", "v")),
            "headers"
        );
        assert!(validate(&HttpSourceConfig::new("https://o:8443/v1/{key}.json")).is_ok());
    }
}
