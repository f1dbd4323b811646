//! TLS: mutual TLS between peers, HTTPS APIs, certificates from another CA refused.

use super::*;

/// A CA and certificates it signs, written as PEM files.
struct Pki {
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    dir: PathBuf,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("{name} CA"));
        let key = rcgen::KeyPair::generate().expect("CA key");
        let ca = rcgen::CertifiedIssuer::self_signed(params, key).expect("CA cert");
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).expect("pki dir");
        std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write CA");
        Pki { ca, dir }
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A certificate for `distcache`, `localhost` and 127.0.0.1 (server and client use);
    /// returns (cert, key) paths.
    fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
        let mut params =
            rcgen::CertificateParams::new(vec!["distcache".to_owned(), "localhost".to_owned()])
                .expect("params");
        params.subject_alt_names.push(rcgen::SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = rcgen::KeyPair::generate().expect("key");
        let issuer: &rcgen::Issuer<'_, rcgen::KeyPair> = &self.ca;
        let cert = params.signed_by(&key, issuer).expect("sign");
        let (cert_path, key_path) =
            (self.dir.join(format!("{name}.pem")), self.dir.join(format!("{name}-key.pem")));
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    }

    fn options(&self, identity: Option<&(PathBuf, PathBuf)>) -> ClientOptions {
        let mut options =
            ClientOptions::default().with_ca_pem(std::fs::read(self.ca()).expect("CA"));
        if let Some((cert, key)) = identity {
            options = options.with_identity_pem(
                std::fs::read(cert).expect("cert"),
                std::fs::read(key).expect("key"),
            );
        }
        options
    }
}

fn tls_config(i: usize, p: Ports, seeds: &str, pki: &Pki, data: &Path) -> String {
    let (cert, key) = pki.issue(&format!("node-{}", i + 1));
    format!(
        r#"
[node]
id = "{name}-{n}"
label = "tls-test"
bind = "127.0.0.1"
peer_port = {peer}
gossip_port = {gossip}
gossip_interval = "100ms"

[discovery]
kind = "static"
seeds = [{seeds}]

[tls]
cert = {cert}
key = {key}
ca = {ca}

[admin]
port = {admin}

[client_api]
bind = "127.0.0.1"
port = {client}
require_client_cert = true

[[keyspaces]]
name = "files"
source = {{ kind = "files", dir = {data} }}
"#,
        name = pki.dir.file_name().and_then(|n| n.to_str()).unwrap_or("node"),
        n = i + 1,
        peer = p.peer,
        gossip = p.gossip,
        admin = p.admin,
        client = p.client,
        cert = quoted(&cert),
        key = quoted(&key),
        ca = quoted(&pki.ca()),
        data = quoted(data),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cluster_admits_only_certificates_of_its_ca() {
    distcache::node::install_crypto_provider();
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let (good, rogue) = (Pki::new(dir.path(), "good"), Pki::new(dir.path(), "rogue"));
    let nodes = tokio::task::block_in_place(|| {
        start_cluster(dir.path(), 2, |i, p, seeds| tls_config(i, p, seeds, &good, &data))
    });
    assert!(nodes[0].admin_url().starts_with("https://"));
    let admins: Vec<NodeClient> =
        nodes.iter().map(|n| client(&n.admin_url(), good.options(None))).collect();
    wait_for_ring(&admins, 2).await;

    // Values cross between the nodes over mutual TLS.
    let app = good.issue("app");
    let clients: Vec<NodeClient> =
        nodes.iter().map(|n| client(&n.client_url(), good.options(Some(&app)))).collect();
    for i in 0..8 {
        clients[0]
            .put("files", &format!("k{i}"), format!("v{i}"), None)
            .await
            .expect("put over TLS");
    }
    for i in 0..8 {
        assert_eq!(
            clients[1].get("files", &format!("k{i}")).await.expect("get over TLS"),
            format!("v{i}")
        );
    }

    // API clients: no client certificate, one from another CA, or not trusting the node's CA.
    let intruder = rogue.issue("intruder");
    let mut refused = vec![
        client(&nodes[0].client_url(), good.options(None)),
        client(&nodes[0].client_url(), good.options(Some(&intruder))),
        client(&nodes[0].client_url(), rogue.options(Some(&app))),
    ];
    refused.push(client(
        &nodes[0].client_url().replace("https://", "http://"),
        ClientOptions::default(),
    ));
    for c in &refused {
        assert!(
            matches!(c.get("files", "k1").await, Err(ClientError::Transport(_))),
            "{c:?} must be refused"
        );
    }

    // The peer protocol refuses a caller with a certificate from another CA.
    let peer = nodes[0].ready["peer"].as_str().expect("peer addr").to_owned();
    assert!(
        peer_get(&peer, &good, &app, "k1").await.is_ok(),
        "a caller with the right certificate is served"
    );
    assert!(
        peer_get(&peer, &good, &intruder, "k1").await.is_err(),
        "a caller from another CA must be refused"
    );

    // A node with another CA's certificate seeded with the cluster never joins its ring, and
    // reads only what its own source has.
    let gossip = nodes[0].ready["gossip"].as_str().expect("gossip addr").to_owned();
    let rogue_node = tokio::task::block_in_place(|| {
        let p = free_ports(1)[0];
        spawn_node(dir.path(), "rogue", &tls_config(0, p, &format!("\"{gossip}\""), &rogue, &data))
            .unwrap_or_else(|log| panic!("the rogue node did not start:\n{log}"))
    });
    let rogue_admin = client(&rogue_node.admin_url(), rogue.options(None));
    let rogue_client = client(&rogue_node.client_url(), rogue.options(Some(&intruder)));
    eventually("the rogue node to be ready", Duration::from_secs(20), || async {
        (ready_peers(&rogue_admin).await? == 1).then_some(())
    })
    .await;
    let watch_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watch_until {
        for admin in &admins {
            assert_eq!(
                ready_peers(admin).await,
                Some(2),
                "the rogue node must stay out of the ring"
            );
        }
        assert_eq!(ready_peers(&rogue_admin).await, Some(1), "the rogue node must see nobody");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(code(rogue_client.get("files", "k1").await), "not_found");
}

/// One get over the peer protocol, with `identity`, trusting `ca`'s CA.
async fn peer_get(
    peer: &str,
    ca: &Pki,
    identity: &(PathBuf, PathBuf),
    key: &str,
) -> Result<(), String> {
    use distcache_proto::v1 as pb;
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let read = |path: &Path| std::fs::read(path).expect("read PEM");
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&ca.ca())))
        .identity(Identity::from_pem(read(&identity.0), read(&identity.1)))
        .domain_name("distcache");
    let endpoint = Endpoint::from_shared(format!("https://{peer}"))
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .timeout(Duration::from_secs(5));
    let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
    let request = pb::GetRequest {
        keys: vec![pb::KeyRef { keyspace: "files".to_owned(), key: key.to_owned() }],
        forwarded: true,
    };
    pb::peer_client::PeerClient::new(channel).get(request).await.map_err(|e| e.to_string())?;
    Ok(())
}
