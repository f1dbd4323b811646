//! A plain cluster: client API, admin API, tokens, ctl, both data sources.

use super::*;

fn plain_config(i: usize, p: Ports, seeds: &str, data: &Path, origin: SocketAddr) -> String {
    format!(
        r#"
[node]
id = "node-{n}"
label = "node-test"
bind = "127.0.0.1"
peer_port = {peer}
gossip_port = {gossip}
gossip_interval = "100ms"

[discovery]
kind = "static"
seeds = [{seeds}]

[admin]
port = {admin}
token = "admin-secret"

[client_api]
bind = "127.0.0.1"
port = {client}
token = "client-secret"

[[keyspaces]]
name = "files"
max_bytes = "16MiB"
default_ttl = "1m"
source = {{ kind = "files", dir = {data} }}

[[keyspaces]]
name = "origin"
max_bytes = 1048576
read_timeout = "500ms"
[keyspaces.source]
kind = "http"
url = "http://{origin}/items/{{key}}"
timeout = "5s"
headers = {{ x-api-key = "k" }}
"#,
        n = i + 1,
        peer = p.peer,
        gossip = p.gossip,
        admin = p.admin,
        client = p.client,
        data = quoted(data),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_serve_the_client_api_admin_api_and_ctl() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("users")).expect("data dir");
    std::fs::write(data.join("greeting.txt"), "hello from a file").expect("write");
    std::fs::write(data.join("users/alice.json"), "{\"name\":\"Alice\"}").expect("write");
    std::fs::write(dir.path().join("secret.txt"), "not for you").expect("write");
    let (origin, origin_paths) = start_origin().await;
    let nodes = tokio::task::block_in_place(|| {
        start_cluster(dir.path(), 3, |i, p, seeds| plain_config(i, p, seeds, &data, origin))
    });
    let with_token = |token: &str| ClientOptions::default().with_token(token);
    let admins: Vec<NodeClient> =
        nodes.iter().map(|n| client(&n.admin_url(), with_token("admin-secret"))).collect();
    let clients: Vec<NodeClient> =
        nodes.iter().map(|n| client(&n.client_url(), with_token("client-secret"))).collect();
    wait_for_ring(&admins, 3).await;

    // A put on one node is read on the others (through the key's owner).
    clients[0].put("files", "note", "written on node 1", None).await.expect("put");
    for c in &clients[1..] {
        assert_eq!(c.get("files", "note").await.expect("get"), "written on node 1");
    }
    // Misses load from the files source, keys may hold slashes.
    assert_eq!(clients[2].get("files", "greeting.txt").await.expect("file"), "hello from a file");
    assert_eq!(
        clients[1].get("files", "users/alice.json").await.expect("file"),
        "{\"name\":\"Alice\"}"
    );
    assert_eq!(code(clients[1].get("files", "missing.txt").await), "not_found");
    assert_eq!(code(clients[1].get("nope", "x").await), "keyspace_not_found");
    // The files source refuses keys that leave its folder.
    match clients[0].get("files", "../secret.txt").await {
        Err(ClientError::Api { status: 502, error }) => {
            assert_eq!(error.code, "data_source");
            assert!(error.message.contains("refused"), "{}", error.message);
        }
        other => panic!("a traversal must be refused, got {other:?}"),
    }
    // Batch get: per-key results.
    let batch = clients[2]
        .batch_get("files", &["greeting.txt", "missing.txt", "note"])
        .await
        .expect("batch");
    assert_eq!(batch[0].as_ref().expect("greeting"), "hello from a file");
    assert_eq!(batch[1].as_ref().expect_err("missing").code, "not_found");
    assert_eq!(batch[2].as_ref().expect("note"), "written on node 1");
    // Delete on another node: the next get falls through to the (empty) source.
    clients[1].delete("files", "note").await.expect("delete");
    assert_eq!(code(clients[0].get("files", "note").await), "not_found");
    // A bad TTL header is the caller's error.
    let raw = clients[0]
        .request(
            axum::http::Method::PUT,
            "/v1/keyspaces/files/keys/t",
            Some(("x-distcache-ttl", "soon".into())),
            Bytes::from("v"),
        )
        .await
        .expect("request");
    assert_eq!(raw.status, 400);
    assert!(String::from_utf8_lossy(&raw.body).contains("invalid_argument"));

    // The HTTP origin: value, not found, timeout; the key arrives percent-encoded.
    assert_eq!(clients[0].get("origin", "a b/c").await.expect("origin"), "origin:a b/c");
    assert!(origin_paths.lock().expect("paths").contains(&"/items/a%20b%2Fc".to_owned()));
    assert_eq!(code(clients[1].get("origin", "missing").await), "not_found");
    assert_eq!(code(clients[2].get("origin", "slow").await), "timeout");
    assert_eq!(code(clients[2].get("origin", "broken").await), "data_source");

    // The admin API serves the engine's metrics.
    let metrics = admins[0]
        .request(axum::http::Method::GET, "/metrics", None, Bytes::new())
        .await
        .expect("metrics");
    assert_eq!(metrics.status, 200);
    assert!(String::from_utf8_lossy(&metrics.body).contains("distcache_gets_total"));
    // Peer calls are timed per peer and outcome (two nodes asked the owner of "note").
    let mut peer_calls_timed = false;
    for admin in &admins {
        let metrics = admin.request(axum::http::Method::GET, "/metrics", None, Bytes::new()).await;
        let body = metrics.expect("metrics").body;
        peer_calls_timed |= String::from_utf8_lossy(&body).lines().any(|line| {
            line.starts_with("distcache_peer_call_duration")
                && line.contains("peer=\"node-")
                && line.contains("outcome=\"ok\"")
        });
    }
    assert!(peer_calls_timed, "no node reports its peer calls' latency");

    check_tokens(&nodes[0]).await;
    check_ctl(&nodes).await;
}

/// Wrong or missing tokens get 401 with a JSON error; health checks stay open.
async fn check_tokens(node: &NodeProcess) {
    for options in [ClientOptions::default(), ClientOptions::default().with_token("wrong")] {
        let client_api = client(&node.client_url(), options.clone());
        match client_api.get("files", "greeting.txt").await {
            Err(ClientError::Api { status: 401, error }) => assert_eq!(error.code, "unauthorized"),
            other => panic!("the client API must refuse a missing or wrong token, got {other:?}"),
        }
        let admin = client(&node.admin_url(), options);
        assert_eq!(code(admin.get_json("/v1/peers").await), "unauthorized");
        let health = admin
            .request(axum::http::Method::GET, "/healthz", None, Bytes::new())
            .await
            .expect("healthz");
        assert_eq!(health.status, 200);
        let health = client_api
            .request(axum::http::Method::GET, "/healthz", None, Bytes::new())
            .await
            .expect("healthz");
        assert_eq!(health.status, 200);
    }
}

/// `ctl` against the cluster: tables, `--json`, get/put/delete, errors.
async fn check_ctl(nodes: &[NodeProcess]) {
    let (admin, client1, client3) =
        (nodes[0].admin_url(), nodes[0].client_url(), nodes[2].client_url());
    let at_admin = ["--admin-url", admin.as_str(), "--admin-token", "admin-secret"];

    let peers = stdout(&ctl(&[&at_admin[..], &["peers", "--json"]].concat()));
    let peers: Value = serde_json::from_str(&peers).expect("peers --json is JSON");
    assert_eq!(peers_of(&peers).iter().filter(|p| p["ready"] == true).count(), 3);
    let table = stdout(&ctl(&[&at_admin[..], &["peers"]].concat()));
    for node in ["node-1", "node-2", "node-3", "NODE"] {
        assert!(table.contains(node), "peers table lacks {node}:\n{table}");
    }
    let keyspaces = stdout(&ctl(&[&at_admin[..], &["keyspaces"]].concat()));
    assert!(keyspaces.contains("files") && keyspaces.contains("origin"), "{keyspaces}");
    let stats: Value =
        serde_json::from_str(&stdout(&ctl(
            &[&at_admin[..], &["stats", "files", "--json"]].concat()
        )))
        .expect("stats --json is JSON");
    assert!(stats["gets"].as_u64().is_some(), "{stats}");

    let on = |url: &str| {
        vec![
            "--client-url".to_owned(),
            url.to_owned(),
            "--client-token".to_owned(),
            "client-secret".to_owned(),
        ]
    };
    let run = |base: Vec<String>, more: &[&str]| {
        let mut args: Vec<&str> = base.iter().map(String::as_str).collect();
        args.extend_from_slice(more);
        ctl(&args)
    };
    stdout(&run(on(&client1), &["put", "files", "from-ctl", "ctl value", "--ttl", "1m"]));
    assert_eq!(stdout(&run(on(&client3), &["get", "files", "from-ctl"])), "ctl value");
    let got: Value =
        serde_json::from_str(&stdout(&run(on(&client3), &["get", "files", "from-ctl", "--json"])))
            .expect("get --json is JSON");
    assert_eq!(got["value"], "ctl value");
    stdout(&run(on(&client3), &["delete", "files", "from-ctl"]));
    let missing = run(on(&client1), &["get", "files", "from-ctl"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not_found"));
    let refused = ctl(&["--client-url", &client1, "get", "files", "greeting.txt"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unauthorized"));
}
