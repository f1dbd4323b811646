//! Config errors, the HTTP source in process, dev-cluster.

use super::*;

#[test]
fn bad_configs_fail_at_startup_naming_the_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = quoted(dir.path());
    let keyspace =
        format!("[[keyspaces]]\nname = \"files\"\nsource = {{ kind = \"files\", dir = {data} }}\n");
    let ports = "[admin]\nport = 0\n[client_api]\nport = 0\n";
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "size",
            format!(
                "{ports}[[keyspaces]]\nname = \"a\"\nmax_bytes = \"64 parsecs\"\nsource = {{ kind = \"files\", dir = {data} }}\n"
            ),
            vec!["keyspaces[0].max_bytes", "parsecs"],
        ),
        (
            "duration",
            format!(
                "{ports}[[keyspaces]]\nname = \"a\"\ndefault_ttl = \"soon\"\nsource = {{ kind = \"files\", dir = {data} }}\n"
            ),
            vec!["keyspaces[0].default_ttl", "soon"],
        ),
        (
            "unknown field",
            format!("[node]\nprot = 1\n{ports}{keyspace}"),
            vec!["node", "unknown field `prot`"],
        ),
        (
            "port type",
            format!("[node]\npeer_port = \"abc\"\n{ports}{keyspace}"),
            vec!["node.peer_port"],
        ),
        (
            "no seeds",
            format!("[discovery]\nkind = \"static\"\nseeds = []\n{ports}{keyspace}"),
            vec!["discovery.seeds"],
        ),
        (
            "bad discovery",
            format!("[discovery]\nkind = \"carrier-pigeon\"\n{ports}{keyspace}"),
            vec!["discovery", "carrier-pigeon"],
        ),
        (
            "url",
            format!(
                "{ports}[[keyspaces]]\nname = \"a\"\nsource = {{ kind = \"http\", url = \"http://origin/items\" }}\n"
            ),
            vec!["keyspaces[0].source.url", "{key}"],
        ),
        ("duplicate", format!("{ports}{keyspace}{keyspace}"), vec!["keyspaces[1].name", "twice"]),
        (
            "eviction",
            format!(
                "{ports}[[keyspaces]]\nname = \"a\"\neviction = \"fifo\"\nsource = {{ kind = \"files\", dir = {data} }}\n"
            ),
            vec!["keyspaces[0].eviction", "fifo"],
        ),
        (
            "missing dir",
            format!(
                "{ports}[[keyspaces]]\nname = \"a\"\nsource = {{ kind = \"files\", dir = \"/no/such/dir\" }}\n"
            ),
            vec!["keyspaces[0].source.dir", "/no/such/dir"],
        ),
        (
            "cert",
            format!("[tls]\ncert = \"/no/cert.pem\"\nkey = \"/no/key.pem\"\n{ports}{keyspace}"),
            vec!["tls.cert", "/no/cert.pem"],
        ),
        (
            "ports",
            format!("[admin]\nport = 4000\n[client_api]\nport = 4000\n{keyspace}"),
            vec!["client_api.port", "admin.port"],
        ),
        ("no keyspaces", ports.to_owned(), vec!["keyspaces", "at least one"]),
        (
            "zero",
            format!("[node]\ngossip_interval = \"0s\"\n{ports}{keyspace}"),
            vec!["node.gossip_interval"],
        ),
    ];
    for (name, config, needles) in cases {
        let path = dir.path().join(format!("{}.toml", name.replace(' ', "-")));
        std::fs::write(&path, &config).expect("write config");
        let mut child = distcache()
            .args(["serve", "--config"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start distcache");
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().expect("poll").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("case {name}: the node started with a bad config:\n{config}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output().expect("output");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "case {name} must fail");
        for needle in needles {
            assert!(stderr.contains(needle), "case {name}: {needle:?} not in:\n{stderr}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_source_maps_origin_answers() {
    let (origin, seen) = start_origin().await;
    let url = format!("http://{origin}/items/{{key}}");
    let config = HttpSourceConfig::new(&url)
        .with_timeout(Duration::from_millis(300))
        .with_header("x-api-key", "k");
    let source = HttpSource::new(&config, 1 << 20).expect("source");

    assert_eq!(source.fetch("a b/c").await.expect("value"), "origin:a b/c");
    assert!(seen.lock().expect("paths").contains(&"/items/a%20b%2Fc".to_owned()));
    assert!(matches!(source.fetch("missing").await, Err(FetchError::NotFound)));
    let failed = |result: Result<Bytes, FetchError>| match result {
        Err(FetchError::Failed(err)) => err.to_string(),
        other => panic!("expected a failed fetch, got {other:?}"),
    };
    assert!(failed(source.fetch("broken").await).contains("500"));
    let started = Instant::now();
    assert!(failed(source.fetch("slow").await).contains("no answer within"));
    assert!(started.elapsed() < Duration::from_secs(2), "the timeout must cut the slow request");
    let without_key = HttpSource::new(&HttpSourceConfig::new(&url), 1 << 20).expect("source");
    assert!(failed(without_key.fetch("x").await).contains("403"));
    let tiny = HttpSource::new(&config, 4).expect("source");
    assert!(failed(tiny.fetch("larger-than-four-bytes").await).contains("larger than"));
    match HttpSource::new(&HttpSourceConfig::new("http://origin/no-key"), 1) {
        Err(err) => assert!(err.to_string().contains("`url`"), "{err}"),
        Ok(_) => panic!("a URL without {{key}} must be refused"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_cluster_starts_three_nodes_and_stops_them() {
    for attempt in 1..=3 {
        // Ten consecutive ports per node below the ephemeral range; if one is taken,
        // dev-cluster exits and the next attempt moves on.
        let base = 20_000 + (std::process::id() % 1100) as u16 * 10 + attempt * 37;
        let dir = tempfile::tempdir().expect("temp dir");
        let child = distcache()
            .args([
                "dev-cluster",
                "--stop-on-stdin-close",
                "--base-port",
                &base.to_string(),
                "--dir",
            ])
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dev-cluster");
        let mut cluster = KillOnDrop(child);
        let stdout = cluster.0.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut ready = 0;
        let started = tokio::task::block_in_place(|| {
            loop {
                match rx.recv_timeout(Duration::from_secs(60)) {
                    Ok(line) if line.contains("ready:") => ready += 1,
                    Ok(line) if line.contains("Ctrl-C stops every node") => break true,
                    Ok(_) => {}
                    Err(_) => break false,
                }
            }
        });
        if !started {
            continue; // a port was taken: try another base (the guard kills this one)
        }
        assert_eq!(ready, 3);
        let node3 = client(&format!("http://127.0.0.1:{}", base + 20), ClientOptions::default());
        let admin = client(&format!("http://127.0.0.1:{}", base + 1), ClientOptions::default());
        wait_for_ring(std::slice::from_ref(&admin), 3).await;
        assert_eq!(
            node3.get("files", "greeting.txt").await.expect("sample data"),
            "hello from the distcache dev cluster\n"
        );
        // Its owner going away (as on Ctrl-C): every node stops, then dev-cluster exits.
        drop(cluster.0.stdin.take());
        let status = tokio::task::block_in_place(|| cluster.0.wait()).expect("wait");
        assert!(status.success(), "dev-cluster exit: {status}");
        assert!(node3.get("files", "greeting.txt").await.is_err(), "the nodes must be gone");
        return;
    }
    panic!("dev-cluster did not start in three attempts");
}

/// Kills the process when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
