//! [`KubernetesDiscovery`]: peers from a watch on the EndpointSlices of a Service.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_slices};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{Discovery, DiscoveryError, normalized};

/// Where a pod finds its own namespace.
const NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Which Service's endpoints are the peers.
#[derive(Debug, Clone)]
pub struct KubernetesConfig {
    service: String,
    port_name: String,
    namespace: Option<String>,
    sync_timeout: Duration,
}

impl KubernetesConfig {
    /// The ready endpoints of `service`, gossiping on the Service port named `port_name` (the
    /// empty name matches a Service's single unnamed port).
    pub fn new(service: impl Into<String>, port_name: impl Into<String>) -> Self {
        KubernetesConfig {
            service: service.into(),
            port_name: port_name.into(),
            namespace: None,
            sync_timeout: Duration::from_secs(10),
        }
    }

    /// The Service's namespace; by default the pod's own, read from its service account.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// How long the first [`discover`](Discovery::discover) waits for the initial list before
    /// it fails; 10 s by default.
    pub fn with_sync_timeout(mut self, timeout: Duration) -> Self {
        self.sync_timeout = timeout;
        self
    }

    fn selector(&self) -> String {
        format!("kubernetes.io/service-name={}", self.service)
    }
}

/// What the watch task knows: the peer set once the initial list is in, and the last error
/// if the watch is failing now.
#[derive(Debug, Default)]
struct View {
    peers: Option<Vec<String>>,
    error: Option<String>,
}

/// The watch task and how to stop it.
#[derive(Debug)]
struct Watch {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Finds peers by watching EndpointSlices.
///
/// A background task runs kube's watcher on the EndpointSlices labelled
/// `kubernetes.io/service-name=<service>`: an initial list, then a watch that the watcher
/// resumes from the last resource version when the API server closes it (and re-lists when
/// that version is gone). Every slice contributes its ready endpoints on the configured port;
/// a change to that set bumps [`Discovery::changes`], so the engine reacts without polling.
/// While the watch is failing, [`Discovery::discover`] lists the slices itself, so it answers
/// what the API says now or the API's error.
#[derive(Debug)]
pub struct KubernetesDiscovery {
    config: KubernetesConfig,
    /// For listing while the watch fails; `None` after shutdown, so no connection outlives it.
    api: Mutex<Option<Api<EndpointSlice>>>,
    view: watch::Receiver<View>,
    changes: watch::Receiver<u64>,
    watch: tokio::sync::Mutex<Option<Watch>>,
    stopped: AtomicBool,
}

impl KubernetesDiscovery {
    /// Watches the Service's EndpointSlices through `client`.
    ///
    /// Fails with [`DiscoveryError::Config`] when the service or namespace is empty, or no
    /// namespace is configured and the pod's service account namespace cannot be read.
    pub async fn new(
        client: kube::Client,
        mut config: KubernetesConfig,
    ) -> Result<Self, DiscoveryError> {
        if config.service.is_empty() {
            return Err(DiscoveryError::Config("kubernetes service name is empty".into()));
        }
        let namespace = match config.namespace.take() {
            Some(namespace) => namespace,
            None => namespace_from(Path::new(NAMESPACE_FILE)).await?,
        };
        if namespace.is_empty() {
            return Err(DiscoveryError::Config("kubernetes namespace is empty".into()));
        }
        config.namespace = Some(namespace.clone());
        let api = Api::<EndpointSlice>::namespaced(client, &namespace);
        let (view_tx, view) = watch::channel(View::default());
        let (changes_tx, changes) = watch::channel(0);
        let stop = CancellationToken::new();
        let task = tokio::spawn(run_watch(
            api.clone(),
            config.clone(),
            Publisher { view: view_tx, changes: changes_tx },
            stop.clone(),
        ));
        Ok(KubernetesDiscovery {
            config,
            api: Mutex::new(Some(api)),
            view,
            changes,
            watch: tokio::sync::Mutex::new(Some(Watch { stop, task })),
            stopped: AtomicBool::new(false),
        })
    }

    /// Watches through a client configured from the environment: in a pod, its service
    /// account; elsewhere, the kubeconfig.
    pub async fn from_env(config: KubernetesConfig) -> Result<Self, DiscoveryError> {
        let client = kube::Client::try_default().await.map_err(|err| {
            DiscoveryError::Config(format!("cannot configure a Kubernetes client: {err}"))
        })?;
        Self::new(client, config).await
    }

    /// Lists the slices now, for when the watch is failing.
    async fn list(&self, watch_error: &str) -> Result<Vec<String>, DiscoveryError> {
        let api = self.api.lock().ok().and_then(|api| api.clone());
        let Some(api) = api else { return Err(DiscoveryError::Shutdown) };
        let slices = api
            .list(&ListParams::default().labels(&self.config.selector()))
            .await
            .map_err(|err| {
                DiscoveryError::Backend(format!(
                    "cannot list EndpointSlices of `{}`: {err} (watch: {watch_error})",
                    self.config.service
                ))
            })?;
        let peers = slices.items.iter().flat_map(|s| ready_peers(s, &self.config.port_name));
        Ok(normalized(peers.collect()))
    }
}

/// Reads the namespace a pod runs in from its service account.
async fn namespace_from(path: &Path) -> Result<String, DiscoveryError> {
    let namespace = tokio::fs::read_to_string(path).await.map_err(|err| {
        DiscoveryError::Config(format!(
            "kubernetes namespace not configured and `{}` not readable: {err}",
            path.display()
        ))
    })?;
    Ok(namespace.trim().to_owned())
}

/// `host:port` of every ready endpoint of `slice` on the port named `port_name`.
fn ready_peers(slice: &EndpointSlice, port_name: &str) -> Vec<String> {
    let port = slice
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref().unwrap_or_default() == port_name)
        .and_then(|p| p.port)
        .and_then(|port| u16::try_from(port).ok())
        .filter(|&port| port != 0);
    let Some(port) = port else { return Vec::new() };
    // An unknown readiness counts as ready, as the EndpointConditions docs ask.
    let ready = |e: &&k8s_openapi::api::discovery::v1::Endpoint| {
        e.conditions.as_ref().and_then(|c| c.ready) != Some(false)
    };
    slice
        .endpoints
        .iter()
        .flatten()
        .filter(ready)
        .flat_map(|e| &e.addresses)
        .map(|address| match address.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, port).to_string(),
            Err(_) => format!("{address}:{port}"),
        })
        .collect()
}

/// How the watch task tells the provider what it learned.
struct Publisher {
    view: watch::Sender<View>,
    changes: watch::Sender<u64>,
}

impl Publisher {
    /// Publishes the peers of `slices`, bumping the change counter if they differ.
    fn peers(&self, slices: &BTreeMap<String, Vec<String>>) {
        let peers = normalized(slices.values().flatten().cloned().collect());
        let mut changed = false;
        self.view.send_modify(|view| {
            changed = view.peers.as_ref() != Some(&peers);
            view.peers = Some(peers);
            view.error = None;
        });
        if changed {
            self.changes.send_modify(|n| *n += 1);
        }
    }

    fn error(&self, error: String) {
        self.view.send_modify(|view| view.error = Some(error));
    }
}

/// Follows the slices until `stop`: each event updates the slice table, and a complete table
/// (outside an initial list) is published.
async fn run_watch(
    api: Api<EndpointSlice>,
    config: KubernetesConfig,
    publish: Publisher,
    stop: CancellationToken,
) {
    let watch_config = watcher::Config::default().labels(&config.selector());
    let mut events = watch_slices(api, watch_config).default_backoff().boxed();
    let mut slices = BTreeMap::new();
    // Slices of a (re-)list in progress, swapped in whole when it is done.
    let mut listing: Option<BTreeMap<String, Vec<String>>> = None;
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return,
            event = events.next() => event,
        };
        let slice_key = |s: &EndpointSlice| s.metadata.name.clone().unwrap_or_default();
        match event {
            None => return,
            Some(Err(err)) => {
                tracing::warn!(service = %config.service, %err, "EndpointSlice watch failed");
                publish.error(err.to_string());
                continue;
            }
            Some(Ok(Event::Init)) => listing = Some(BTreeMap::new()),
            Some(Ok(Event::InitApply(slice))) => {
                let peers = ready_peers(&slice, &config.port_name);
                listing.get_or_insert_default().insert(slice_key(&slice), peers);
            }
            Some(Ok(Event::InitDone)) => slices = listing.take().unwrap_or_default(),
            Some(Ok(Event::Apply(slice))) => {
                slices.insert(slice_key(&slice), ready_peers(&slice, &config.port_name));
            }
            Some(Ok(Event::Delete(slice))) => {
                slices.remove(&slice_key(&slice));
            }
        }
        if listing.is_none() {
            publish.peers(&slices);
        }
    }
}

#[async_trait]
impl Discovery for KubernetesDiscovery {
    async fn discover(&self) -> Result<Vec<String>, DiscoveryError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(DiscoveryError::Shutdown);
        }
        let mut view = self.view.clone();
        let synced = tokio::time::timeout(
            self.config.sync_timeout,
            view.wait_for(|v| v.peers.is_some() || v.error.is_some()),
        )
        .await
        .map(|seen| seen.map(|view| (view.peers.clone(), view.error.clone())));
        let (peers, error) = match synced {
            Ok(Ok(seen)) => seen,
            Ok(Err(_)) => return Err(DiscoveryError::Shutdown),
            Err(_) => {
                return Err(DiscoveryError::Backend(format!(
                    "no EndpointSlice list from the Kubernetes API within {:?}",
                    self.config.sync_timeout
                )));
            }
        };
        match (error, peers) {
            (Some(error), _) => self.list(&error).await,
            (None, peers) => Ok(peers.unwrap_or_default()),
        }
    }

    fn changes(&self) -> Option<watch::Receiver<u64>> {
        Some(self.changes.clone())
    }

    async fn shutdown(&self) {
        self.stopped.store(true, Ordering::Release);
        if let Ok(mut api) = self.api.lock() {
            api.take();
        }
        if let Some(watch) = self.watch.lock().await.take() {
            watch.stop.cancel();
            if let Err(err) = watch.task.await {
                tracing::warn!(%err, "the EndpointSlice watch task failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(json: &str) -> EndpointSlice {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn only_ready_endpoints_on_the_named_port() {
        let s = slice(
            r#"{"addressType":"IPv4","metadata":{"name":"a"},
                "ports":[{"name":"grpc","port":9000},{"name":"gossip","port":7946}],
                "endpoints":[{"addresses":["10.0.0.1"],"conditions":{"ready":true}},
                             {"addresses":["10.0.0.2"],"conditions":{"ready":false}},
                             {"addresses":["10.0.0.3"]},
                             {"addresses":["fd00::4"],"conditions":{"ready":true}}]}"#,
        );
        assert_eq!(ready_peers(&s, "gossip"), ["10.0.0.1:7946", "10.0.0.3:7946", "[fd00::4]:7946"]);
        assert!(ready_peers(&s, "admin").is_empty());
    }

    #[tokio::test]
    async fn reads_the_namespace_file_or_says_which_file_is_missing() {
        let dir = std::env::temp_dir().join(format!("distcache-ns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("namespace");
        std::fs::write(&file, "cache-system\n").unwrap();
        assert_eq!(namespace_from(&file).await.unwrap(), "cache-system");
        let missing = dir.join("absent");
        let err = namespace_from(&missing).await.unwrap_err();
        assert!(matches!(&err, DiscoveryError::Config(m) if m.contains("absent")), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
