//! [`FakeApiServer`]: the EndpointSlice endpoints of a Kubernetes API server, over plain HTTP.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// An EndpointSlice of `service` in `namespace` with one port and `endpoints` as
/// `(address, ready)`, as the API server returns it (without a resource version).
pub fn endpoint_slice(
    namespace: &str,
    name: &str,
    service: &str,
    port: (&str, u16),
    endpoints: &[(String, bool)],
) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .enumerate()
        .map(|(i, (address, ready))| {
            json!({
                "addresses": [address],
                "conditions": {"ready": ready, "serving": ready, "terminating": false},
                "targetRef": {
                    "kind": "Pod",
                    "namespace": namespace,
                    "name": format!("{service}-{i}"),
                },
            })
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": port.0, "port": port.1, "protocol": "UDP"}],
    })
}

/// One change, as a watch streams it.
#[derive(Debug, Clone)]
struct Change {
    version: u64,
    namespace: String,
    object: Value,
    line: String,
}

#[derive(Debug, Default)]
struct Store {
    version: u64,
    /// Slices by (namespace, name).
    slices: BTreeMap<(String, String), Value>,
    history: Vec<Change>,
}

#[derive(Debug)]
struct Shared {
    store: Mutex<Store>,
    changes: broadcast::Sender<Change>,
    /// Cancelled to end the watches open now; replaced by a fresh token for later ones.
    close_watches: Mutex<CancellationToken>,
    lists: AtomicUsize,
    watches: AtomicUsize,
}

/// A fake Kubernetes API server for EndpointSlices.
///
/// It serves what kube's watcher asks for: a list
/// (`GET /apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices?labelSelector=…`) answered
/// with the slices and the store's resource version, and a watch
/// (`…&watch=true&resourceVersion=N`) that streams every change after `N` as JSON lines and
/// stays open until the test closes it.
#[derive(Debug)]
pub struct FakeApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl FakeApiServer {
    /// Serves an empty store on a free port of 127.0.0.1.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            changes: broadcast::channel(1024).0,
            close_watches: Mutex::new(CancellationToken::new()),
            lists: AtomicUsize::new(0),
            watches: AtomicUsize::new(0),
        });
        let stop = CancellationToken::new();
        let app = Router::new()
            .route("/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices", get(serve))
            .with_state((shared.clone(), stop.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a TCP port");
        let addr = listener.local_addr().expect("a bound address");
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let serving = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.cancelled().await });
            if let Err(err) = serving.await {
                tracing::debug!(%err, "fake API server stopped with an error");
            }
        });
        FakeApiServer { addr, shared, stop, task: Some(task) }
    }

    /// The server's URL, for `kube::Config::new`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client of this server (plain HTTP, no credentials), made on the current runtime.
    #[cfg(feature = "kubernetes")]
    pub fn client(&self) -> kube::Client {
        let url = self.url().parse().expect("the server's URL is a URI");
        kube::Client::try_from(kube::Config::new(url)).expect("a client for the fake API server")
    }

    /// Creates or replaces a slice (built with [`endpoint_slice`]) and tells the watches.
    pub fn apply(&self, slice: Value) {
        self.change(slice, false);
    }

    /// Deletes the slice `name` of `namespace`, if there is one, and tells the watches.
    pub fn delete(&self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        let slice = self.shared.store.lock().expect("store").slices.get(&key).cloned();
        if let Some(slice) = slice {
            self.change(slice, true);
        }
    }

    fn change(&self, mut slice: Value, delete: bool) {
        let namespace = slice["metadata"]["namespace"].as_str().unwrap_or_default().to_owned();
        let name = slice["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        let mut store = self.shared.store.lock().expect("store");
        store.version += 1;
        slice["metadata"]["resourceVersion"] = json!(store.version.to_string());
        let key = (namespace.clone(), name);
        let kind = if delete {
            store.slices.remove(&key);
            "DELETED"
        } else if store.slices.insert(key, slice.clone()).is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let line = format!("{}\n", json!({"type": kind, "object": slice}));
        let change = Change { version: store.version, namespace, object: slice, line };
        store.history.push(change.clone());
        // Sent under the store lock, so a watch that reads the history then follows the
        // channel misses nothing.
        let _ = self.shared.changes.send(change);
    }

    /// Ends every watch open now, as an API server does when a watch times out; the client
    /// must resume from the last resource version it saw.
    pub fn close_watches(&self) {
        let mut token = self.shared.close_watches.lock().expect("watch token");
        token.cancel();
        *token = CancellationToken::new();
    }

    /// List requests answered so far.
    pub fn lists(&self) -> usize {
        self.shared.lists.load(Ordering::SeqCst)
    }

    /// Watch requests answered so far.
    pub fn watches(&self) -> usize {
        self.shared.watches.load(Ordering::SeqCst)
    }

    /// Stops serving: every watch ends and the port is closed when this returns.
    pub async fn stop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Whether `object` carries every `key=value` label of `selector`.
fn selected(object: &Value, selector: Option<&String>) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else { return true };
    selector.split(',').all(|term| match term.split_once('=') {
        Some((key, value)) => object["metadata"]["labels"][key].as_str() == Some(value),
        None => false,
    })
}

async fn serve(
    State((shared, stop)): State<(Arc<Shared>, CancellationToken)>,
    Path(namespace): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let selector = query.get("labelSelector");
    if matches!(query.get("watch").map(String::as_str), Some("true" | "1")) {
        let since = query.get("resourceVersion").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        return watch(&shared, stop, namespace, selector.cloned(), since);
    }
    shared.lists.fetch_add(1, Ordering::SeqCst);
    let store = shared.store.lock().expect("store");
    let items: Vec<&Value> = store
        .slices
        .iter()
        .filter(|((ns, _), slice)| *ns == namespace && selected(slice, selector))
        .map(|(_, slice)| slice)
        .collect();
    let list = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSliceList",
        "metadata": {"resourceVersion": store.version.to_string()},
        "items": items,
    });
    ([("content-type", "application/json")], list.to_string()).into_response()
}

/// Streams the changes after `since` in `namespace` that `selector` matches, until the test
/// closes watches or stops the server.
fn watch(
    shared: &Shared,
    stop: CancellationToken,
    namespace: String,
    selector: Option<String>,
    since: u64,
) -> Response {
    shared.watches.fetch_add(1, Ordering::SeqCst);
    let closed = shared.close_watches.lock().expect("watch token").clone();
    let (past, live) = {
        let store = shared.store.lock().expect("store");
        let past: Vec<Change> =
            store.history.iter().filter(|c| c.version > since).cloned().collect();
        (past, shared.changes.subscribe())
    };
    let live = broadcast_stream(live);
    let wanted = move |change: &Change| {
        change.version > since
            && change.namespace == namespace
            && selected(&change.object, selector.as_ref())
    };
    let lines = futures::stream::iter(past)
        .chain(live)
        .filter(move |change| std::future::ready(wanted(change)))
        .map(|change| Ok::<_, Infallible>(change.line))
        .take_until(async move {
            tokio::select! {
                () = closed.cancelled() => {}
                () = stop.cancelled() => {}
            }
        });
    ([("content-type", "application/json")], Body::from_stream(lines)).into_response()
}

/// The changes a broadcast receiver gets, as a stream (a lagging receiver skips ahead).
fn broadcast_stream(receiver: broadcast::Receiver<Change>) -> impl futures::Stream<Item = Change> {
    futures::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(change) => return Some((change, receiver)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}
