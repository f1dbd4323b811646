//! A running node: the engine (and its cluster membership), the admin API and the client API,
//! started from a [`NodeConfig`] and stopped gracefully.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use distcache_admin::{Admin, Metrics};
use distcache_engine::{ClusterConfig, Config, Engine, KeySpace};
use rustls::ServerConfig;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::{NodeConfig, TlsConfig};
use super::error::NodeError;
use super::tls::TlsFiles;
use super::{auth, client_api, listener};

/// Where a started node serves; printed as one JSON line by `distcache serve`.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct NodeAddresses {
    /// The node id (`None` standalone).
    pub node_id: Option<String>,
    /// Base URL of the client API, if served.
    pub client_api: Option<String>,
    /// Base URL of the admin API, if served.
    pub admin: Option<String>,
    /// Where the node serves peers (`None` standalone).
    pub peer: Option<SocketAddr>,
    /// Where the node gossips (`None` standalone).
    pub gossip: Option<SocketAddr>,
}

/// A running node. Stop it with [`Node::shutdown`].
#[derive(Debug)]
pub struct Node {
    engine: Engine,
    addresses: NodeAddresses,
    metrics: Metrics,
    shutdown: CancellationToken,
    servers: TaskTracker,
}

/// A bound API listener and how it serves.
struct Api {
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    url: String,
}

impl Node {
    /// Validates `config`, binds the API ports, starts the engine (joining the cluster) and
    /// serves the admin and client APIs. Fails naming the field or the address at fault.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        config.validate()?;
        super::tls::install_crypto_provider();
        let tls = config.tls.as_ref().map(TlsFiles::load).transpose()?;
        // Sources first: a wrong folder or URL fails before any port is taken.
        let keyspaces = keyspaces(&config)?;
        let admin = match config.admin.enabled {
            true => Some(
                bind_api(
                    "admin",
                    config.admin.bind,
                    config.admin.port,
                    config.admin_tls(),
                    config.admin.require_client_cert,
                    tls.as_ref(),
                )
                .await?,
            ),
            false => None,
        };
        let client = match config.client_api.enabled {
            true => Some(
                bind_api(
                    "client_api",
                    config.client_api.bind,
                    config.client_api.port,
                    config.client_api_tls(),
                    config.client_api.require_client_cert,
                    tls.as_ref(),
                )
                .await?,
            ),
            false => None,
        };
        // Prometheus on the admin API's /metrics, and OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set.
        let metrics = Metrics::from_env().map_err(|err| NodeError::Metrics(err.to_string()))?;
        let mut engine_config = Config::standalone(keyspaces)
            .with_meter(metrics.meter())
            .with_read_timeout(config.node.read_timeout)
            .with_write_timeout(config.node.write_timeout);
        // Kubernetes and NATS connect here, so a provider is made once the ports are ours.
        let discovery = config.discovery.provider(&config.node).await?;
        if let Some(discovery) = &discovery {
            let admin_addr =
                admin.as_ref().map(|a| published(&config, a.listener.local_addr().ok()));
            let cluster =
                cluster_config(&config, discovery.clone(), tls.as_ref(), admin_addr.flatten());
            engine_config = engine_config.with_cluster(cluster);
        }
        let engine = match Engine::start(engine_config).await {
            Ok(engine) => engine,
            Err(err) => {
                // A running engine shuts its provider down when it stops; this one never ran.
                if let Some(discovery) = discovery {
                    discovery.shutdown().await;
                }
                return Err(err.into());
            }
        };
        let node = Node {
            addresses: NodeAddresses {
                node_id: engine.node_id(),
                client_api: client.as_ref().map(|a| a.url.clone()),
                admin: admin.as_ref().map(|a| a.url.clone()),
                peer: engine.peer_addr(),
                gossip: engine.gossip_addr(),
            },
            engine,
            metrics,
            shutdown: CancellationToken::new(),
            servers: TaskTracker::new(),
        };
        if let Some(api) = admin {
            let router = Admin::new(node.engine.clone()).with_metrics(&node.metrics).router();
            let router =
                auth::require_token(router, config.admin.token.clone(), &["/healthz", "/readyz"]);
            node.spawn_server("admin", api, router);
        }
        if let Some(api) = client {
            let max_value =
                usize::try_from(config.client_api.max_value_bytes.0).unwrap_or(usize::MAX);
            let router = client_api::router(
                node.engine.clone(),
                max_value,
                config.client_api.max_batch_keys,
            );
            let router =
                auth::require_token(router, config.client_api.token.clone(), &["/healthz"]);
            node.spawn_server("client API", api, router);
        }
        tracing::info!(addresses = ?node.addresses, "node started");
        Ok(node)
    }

    /// Checks `config` as far as possible without binding anything: the fields, the TLS
    /// files and the data sources (folders exist, URLs parse).
    pub fn check(config: &NodeConfig) -> Result<(), NodeError> {
        config.validate()?;
        config.tls.as_ref().map(TlsFiles::load).transpose()?;
        keyspaces(config).map(drop)
    }

    fn spawn_server(&self, name: &'static str, api: Api, router: axum::Router) {
        let shutdown = self.shutdown.clone().cancelled_owned();
        self.servers.spawn(async move {
            if let Err(err) = listener::serve(api.listener, api.tls, router, shutdown).await {
                tracing::error!(%err, "the {name} server stopped");
            }
        });
    }

    /// The node's engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Where the node serves.
    pub fn addresses(&self) -> &NodeAddresses {
        &self.addresses
    }

    /// Stops gracefully: the engine leaves the cluster (peers route elsewhere) and ends its
    /// loads, while the APIs stop accepting and finish the requests they have.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.engine.stop().await;
        self.servers.close();
        self.servers.wait().await;
        // A last OTLP export, if any; the provider's shutdown blocks.
        let metrics = self.metrics;
        let flushed = tokio::task::spawn_blocking(move || metrics.shutdown()).await;
        if let Ok(Err(err)) = flushed {
            tracing::debug!(%err, "metrics shutdown");
        }
    }

    /// Serves until `stop` resolves, then shuts down.
    pub async fn run_until(self, stop: impl Future<Output = ()>) {
        stop.await;
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

async fn bind_api(
    section: &str,
    ip: IpAddr,
    port: u16,
    https: bool,
    require_client_cert: bool,
    tls: Option<&TlsFiles>,
) -> Result<Api, NodeError> {
    let addr = SocketAddr::new(ip, port);
    let listener = TcpListener::bind(addr).await.map_err(|err| {
        NodeError::io(
            format!("cannot bind {section} on {addr} ({section}.bind, {section}.port)"),
            err,
        )
    })?;
    let local =
        listener.local_addr().map_err(|err| NodeError::io(format!("{section} address"), err))?;
    let tls = match (https, tls) {
        (true, Some(files)) => Some(
            files
                .server_config(require_client_cert)
                .map_err(|err| NodeError::config("tls", err))?,
        ),
        _ => None,
    };
    let shown = if local.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), local.port())
    } else {
        local
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    Ok(Api { listener, tls, url: format!("{scheme}://{shown}") })
}

fn keyspaces(config: &NodeConfig) -> Result<Vec<KeySpace>, NodeError> {
    config.keyspaces.iter().enumerate().map(|(index, keyspace)| keyspace.build(index)).collect()
}

fn cluster_config(
    config: &NodeConfig,
    discovery: Arc<dyn distcache_discovery::Discovery>,
    tls: Option<&TlsFiles>,
    admin_addr: Option<String>,
) -> ClusterConfig {
    let node = &config.node;
    let mut cluster = ClusterConfig::new(discovery)
        .with_label(gossip_label(&node.label, config.tls.as_ref(), tls))
        .with_grpc_addr(SocketAddr::new(node.bind, node.peer_port))
        .with_gossip_addr(SocketAddr::new(node.bind, node.gossip_port))
        .with_gossip_interval(node.gossip_interval)
        .with_rediscover_interval(node.rediscover_interval);
    if let Some(id) = &node.id {
        cluster = cluster.with_node_id(id.clone());
    }
    if let Some(ip) = node.advertise {
        cluster = cluster
            .with_grpc_advertise(SocketAddr::new(ip, node.peer_port))
            .with_gossip_advertise(SocketAddr::new(ip, node.gossip_port));
    }
    if let Some(addr) = admin_addr {
        cluster = cluster.with_admin_addr(addr);
    }
    if !node.hot_cache {
        cluster = cluster.without_hot_cache();
    }
    if let (Some(section), Some(files)) = (config.tls.as_ref().filter(|t| t.peer), tls) {
        cluster = cluster.with_tls(
            files.cert_pem.clone(),
            files.key_pem.clone(),
            files.ca_pem.clone().unwrap_or_default(),
            section.server_name.clone(),
        );
    }
    cluster
}

/// The gossip cluster id. With peer TLS it carries a fingerprint of the CA, so nodes that
/// trust different CAs never gossip into one ring (they could not call each other anyway).
fn gossip_label(label: &str, section: Option<&TlsConfig>, files: Option<&TlsFiles>) -> String {
    match (section.filter(|t| t.peer), files.and_then(TlsFiles::ca_fingerprint)) {
        (Some(_), Some(fingerprint)) => format!("{label}.ca-{fingerprint:016x}"),
        _ => label.to_owned(),
    }
}

/// The admin address published in gossip: reachable by others, not a wildcard.
fn published(config: &NodeConfig, local: Option<SocketAddr>) -> Option<String> {
    let local = local?;
    let ip = if local.ip().is_unspecified() {
        config.node.advertise.or(Some(config.node.bind).filter(|ip| !ip.is_unspecified()))?
    } else {
        local.ip()
    };
    Some(SocketAddr::new(ip, local.port()).to_string())
}
