//! The control protocol between the orchestrator and its node processes.
//!
//! One request per line, one reply per line, over a loopback TCP connection:
//! `verb key=value key=value ...` answered by `ok key=value ...` or `err <message>`. Values
//! hold no spaces (lists are comma-separated). A node serves every connection in its own task,
//! so the orchestrator can poll a node's ring on one connection while a load runs on another.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::net::SocketAddr;
use std::str::FromStr;

use anyhow::{Context, anyhow, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// `key=value` pairs of a request or a reply.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fields(BTreeMap<String, String>);

impl Fields {
    pub(crate) fn new() -> Self {
        Fields::default()
    }

    /// Adds a field (builder style).
    pub(crate) fn with(mut self, key: &str, value: impl Display) -> Self {
        self.set(key, value);
        self
    }

    pub(crate) fn set(&mut self, key: &str, value: impl Display) {
        let value = value.to_string();
        debug_assert!(!value.contains(char::is_whitespace), "field {key} holds whitespace");
        self.0.insert(key.to_owned(), value);
    }

    /// Parses `key=value` tokens.
    pub(crate) fn parse<'a>(tokens: impl Iterator<Item = &'a str>) -> anyhow::Result<Self> {
        let mut fields = Fields::new();
        for token in tokens {
            let (key, value) =
                token.split_once('=').with_context(|| format!("`{token}` is not key=value"))?;
            fields.0.insert(key.to_owned(), value.to_owned());
        }
        Ok(fields)
    }

    pub(crate) fn text(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A required field, parsed.
    pub(crate) fn get<T: FromStr>(&self, key: &str) -> anyhow::Result<T>
    where
        T::Err: Display,
    {
        let text = self.text(key).with_context(|| format!("missing field `{key}`"))?;
        text.parse().map_err(|err| anyhow!("field `{key}`=`{text}`: {err}"))
    }

    /// An optional field, parsed, or `default`.
    pub(crate) fn get_or<T: FromStr>(&self, key: &str, default: T) -> anyhow::Result<T>
    where
        T::Err: Display,
    {
        if self.0.contains_key(key) { self.get(key) } else { Ok(default) }
    }

    /// A comma-separated list of numbers (empty when absent).
    pub(crate) fn list(&self, key: &str) -> anyhow::Result<Vec<u64>> {
        match self.text(key) {
            None | Some("") => Ok(Vec::new()),
            Some(text) => text
                .split(',')
                .map(|n| n.parse().map_err(|err| anyhow!("field `{key}`: {err}")))
                .collect(),
        }
    }

    fn render(&self) -> String {
        self.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
    }
}

/// Joins numbers into a list field.
pub(crate) fn join_list(values: impl IntoIterator<Item = u64>) -> String {
    values.into_iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",")
}

/// Splits a request line into its verb and fields.
pub(crate) fn parse_request(line: &str) -> anyhow::Result<(String, Fields)> {
    let mut tokens = line.split_whitespace();
    let verb = tokens.next().context("empty request")?.to_owned();
    Ok((verb, Fields::parse(tokens)?))
}

/// Renders a reply line (without the newline).
pub(crate) fn render_reply(reply: &anyhow::Result<Fields>) -> String {
    match reply {
        Ok(fields) => format!("ok {}", fields.render()).trim_end().to_owned(),
        Err(err) => format!("err {}", format!("{err:#}").replace('\n', " ")),
    }
}

/// The orchestrator's end of one control connection.
#[derive(Debug)]
pub(crate) struct ControlClient {
    node: String,
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl ControlClient {
    pub(crate) async fn connect(node: &str, addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to the control port of {node} at {addr}"))?;
        stream.set_nodelay(true)?;
        let (read, writer) = stream.into_split();
        Ok(ControlClient { node: node.to_owned(), reader: BufReader::new(read), writer })
    }

    /// Sends `verb` with `fields` and waits for the reply.
    pub(crate) async fn call(&mut self, verb: &str, fields: &Fields) -> anyhow::Result<Fields> {
        let line = format!("{verb} {}\n", fields.render());
        self.writer.write_all(line.as_bytes()).await?;
        let mut reply = String::new();
        let read = self.reader.read_line(&mut reply).await?;
        if read == 0 {
            bail!("{} closed its control connection during `{verb}`", self.node);
        }
        let reply = reply.trim_end();
        match reply.split_once(' ').unwrap_or((reply, "")) {
            ("ok", rest) => Fields::parse(rest.split_whitespace()),
            ("err", message) => bail!("{} answered `{verb}` with: {message}", self.node),
            _ => bail!("{} sent a malformed reply to `{verb}`: {reply}", self.node),
        }
    }
}
