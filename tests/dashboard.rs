//! The admin dashboard in headless Chromium: a 3-node cluster, each node with its admin server,
//! and node 0's page, dumped after it rendered, shows every node, its ownership share and the
//! keyspace's hit ratio after some traffic.
//!
//! Needs Debian's `chromium` (`scripts/test` installs it). Under CI (`CI=true`) a missing
//! browser fails the test; elsewhere the test is skipped with a message.
mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::{KEYSPACE, Options, TestCluster};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// One node's admin server, stopped when its sender is dropped.
struct AdminServer {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_peers_ownership_and_hit_ratio() {
    let Some(chromium) = chromium() else { return };
    let mut cluster = TestCluster::new(Options::default());
    let mut admins = Vec::new();
    for _ in 0..3 {
        // Bound first, so the node gossips where its admin server listens.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let index = cluster
            .add_node_with(|mut setup| {
                setup.cluster = setup.cluster.with_admin_addr(addr.to_string());
                setup
            })
            .await;
        let (stop, stopped) = oneshot::channel::<()>();
        let engine = cluster.engine(index).clone();
        let task = tokio::spawn(distcache::admin::serve(listener, engine, async {
            let _ = stopped.await;
        }));
        admins.push(AdminServer { addr, stop, task });
    }
    cluster.wait_converged().await;

    // Keys node 0 owns, each read twice (one miss, one hit), one of them a third time.
    let keys = cluster.keys_owned_by(0, "dashboard", 4);
    for key in keys.iter().chain(&keys).chain(&keys[..1]) {
        cluster.engine(0).get(KEYSPACE, key).await.unwrap();
    }
    let stats = cluster.stats(0);
    assert_eq!((stats.gets, stats.hits), (9, 5));

    let url = format!("http://{}/", admins[0].addr);
    let dom = rendered_dom(&chromium, &url).await;

    let ring = cluster.engine(0).ring().unwrap();
    assert_eq!(ring.members().len(), 3);
    for (member, share) in ring.members().iter().zip(ring.shares()) {
        let row = format!(r#"data-node="{}""#, member.node_id);
        let shown = percent_after(&dom, &row, r#"class="num ownership">"#);
        assert!((shown - share * 100.0).abs() <= 0.051, "{row}: shows {shown}%, share {share}");
        assert!(dom.contains(&format!("{} {:.1}%", member.node_id, shown)), "legend of {row}");
    }
    assert!(dom.contains("node-0 (this node)"), "node 0's page marks itself");
    let hit_ratio =
        percent_after(&dom, &format!(r#"data-keyspace="{KEYSPACE}""#), r#"class="num hit-ratio">"#);
    assert!((hit_ratio - 5.0 / 9.0 * 100.0).abs() <= 0.051, "hit ratio shown {hit_ratio}%");
    assert!(!dom.contains("cannot reach the admin API"), "no polling error: {dom}");

    for admin in admins {
        let _ = admin.stop.send(());
        admin.task.await.unwrap().unwrap();
    }
    cluster.stop().await;
}

/// Node 0's page after Chromium ran its script, dumped again (at most 3 times) until it shows
/// the three peers and the keyspace row.
async fn rendered_dom(chromium: &PathBuf, url: &str) -> String {
    let mut dom = String::new();
    for _ in 0..3 {
        dom = dump_dom(chromium, url).await;
        let peers = (0..3).all(|i| dom.contains(&format!(r#"data-node="node-{i}""#)));
        if peers && dom.contains(&format!(r#"data-keyspace="{KEYSPACE}""#)) {
            return dom;
        }
    }
    panic!("the dashboard did not render the cluster: {dom}");
}

/// Loads `url` in headless Chromium with a virtual-time budget and returns the DOM.
async fn dump_dom(chromium: &PathBuf, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--virtual-time-budget=5000", "--dump-dom", url])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("chromium finishes within 90 s")
        .expect("chromium starts");
    assert!(
        output.status.success(),
        "chromium failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The percentage in the first `cell` (e.g. `class="ownership">`) after `anchor` in `dom`.
fn percent_after(dom: &str, anchor: &str, cell: &str) -> f64 {
    let after_anchor = &dom[dom.find(anchor).unwrap_or_else(|| panic!("no {anchor} in {dom}"))..];
    let start =
        after_anchor.find(cell).unwrap_or_else(|| panic!("no {cell} after {anchor}")) + cell.len();
    let text = &after_anchor[start..];
    let end = text.find('%').unwrap_or_else(|| panic!("no percentage after {anchor}: {text}"));
    text[..end].parse().unwrap_or_else(|_| panic!("not a percentage after {anchor}: {text}"))
}

/// The Chromium binary, if installed. Under CI a missing browser fails the test.
fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser"].iter().find_map(|name| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
    });
    if found.is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        assert!(!ci, "chromium is not installed; CI must install it (scripts/test `needed`)");
        // Straight to stderr: the test harness would swallow `eprintln!` of a passing test.
        let note = "SKIPPED dashboard test: chromium is not installed (apt-get install chromium)\n";
        let _ = std::io::Write::write_all(&mut std::io::stderr(), note.as_bytes());
    }
    found
}
