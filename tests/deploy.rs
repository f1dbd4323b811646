//! The Kubernetes deployment in `deploy/` agrees with itself, with the image and with the
//! node: every manifest the kustomization lists parses; Services select the StatefulSet's
//! pods and name its container ports; the ConfigMap's `node.toml` is a valid config that
//! discovers through the headless Service's gossip port (and passes `distcache serve
//! --check`); probes hit the admin port's open paths; the Role grants only what discovery
//! needs, to the pods' ServiceAccount; and `deploy/Dockerfile` exposes the ports and runs
//! the command the pods expect. No cluster or container engine is needed: the files are read.
#![cfg(feature = "node")]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use distcache::node::NodeConfig;
use serde_json::Value;

/// The folder of the manifests.
fn kubernetes_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

/// Every document of every file `kustomization.yaml` lists.
fn manifests() -> Vec<Value> {
    let dir = kubernetes_dir();
    let kustomization = yaml(&dir.join("kustomization.yaml")).remove(0);
    let resources = kustomization["resources"].as_array().expect("resources").clone();
    resources.iter().flat_map(|file| yaml(&dir.join(file.as_str().expect("a file name")))).collect()
}

/// The YAML documents of `path`.
fn yaml(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The manifests of `kind`.
fn all(manifests: &[Value], kind: &str) -> Vec<Value> {
    manifests.iter().filter(|m| m["kind"] == kind).cloned().collect()
}

/// The one manifest of `kind`.
fn one(manifests: &[Value], kind: &str) -> Value {
    let found = all(manifests, kind);
    assert_eq!(found.len(), 1, "expected one {kind}");
    found[0].clone()
}

fn name(manifest: &Value) -> &str {
    manifest["metadata"]["name"].as_str().expect("metadata.name")
}

fn strings(value: &Value) -> BTreeSet<String> {
    let list = value.as_array().map(Vec::as_slice).unwrap_or_default();
    list.iter().map(|v| v.as_str().expect("a string").to_owned()).collect()
}

/// Whether every `key: value` of `selector` is among `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_object().expect("a selector");
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The StatefulSet's (only) container.
fn container(statefulset: &Value) -> Value {
    let containers = statefulset["spec"]["template"]["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    containers[0].clone()
}

/// The container port named `name`: (number, protocol).
fn container_port(container: &Value, name: &str) -> (u64, String) {
    let ports = container["ports"].as_array().expect("container ports");
    let port = ports.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("port {name}"));
    (port["containerPort"].as_u64().unwrap(), port["protocol"].as_str().unwrap().to_owned())
}

/// The headless Service the nodes discover each other through.
fn headless_service(manifests: &[Value]) -> Value {
    let services = all(manifests, "Service");
    let mut headless = services.iter().filter(|s| s["spec"]["clusterIP"] == "None");
    let service = headless.next().expect("a headless Service").clone();
    assert!(headless.next().is_none(), "one headless Service");
    service
}

/// The `node.toml` of the ConfigMap, parsed and validated.
fn node_config(manifests: &[Value]) -> (String, NodeConfig) {
    let text = one(manifests, "ConfigMap")["data"]["node.toml"].as_str().unwrap().to_owned();
    let config = NodeConfig::from_toml(&text).expect("node.toml parses");
    config.validate().expect("node.toml is valid");
    (text, config)
}

#[test]
fn every_manifest_is_listed_and_named() {
    let dir = kubernetes_dir();
    let listed = strings(&yaml(&dir.join("kustomization.yaml"))[0]["resources"]);
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|file| file.ends_with(".yaml") && file != "kustomization.yaml")
        .collect();
    assert_eq!(listed, on_disk, "kustomization.yaml lists every manifest");
    let manifests = manifests();
    for manifest in &manifests {
        assert!(manifest["apiVersion"].is_string() && manifest["kind"].is_string());
        assert!(!name(manifest).is_empty());
    }
    let kinds: BTreeSet<_> = manifests.iter().map(|m| m["kind"].as_str().unwrap()).collect();
    let expected = [
        "ConfigMap",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "StatefulSet",
    ];
    assert_eq!(kinds, expected.into_iter().collect());
}

#[test]
fn services_and_the_pdb_select_the_statefulset_pods() {
    let manifests = manifests();
    let statefulset = one(&manifests, "StatefulSet");
    let labels = &statefulset["spec"]["template"]["metadata"]["labels"];
    assert!(selects(&statefulset["spec"]["selector"]["matchLabels"], labels));
    for service in all(&manifests, "Service") {
        assert!(
            selects(&service["spec"]["selector"], labels),
            "{} selects the pods",
            name(&service)
        );
    }
    let headless = headless_service(&manifests);
    assert_eq!(statefulset["spec"]["serviceName"], name(&headless));
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);
    let pdb = one(&manifests, "PodDisruptionBudget");
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"], labels));
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
}

#[test]
fn service_ports_are_the_container_ports_the_node_config_opens() {
    let manifests = manifests();
    let container = container(&one(&manifests, "StatefulSet"));
    let (_, config) = node_config(&manifests);
    let expected = [
        ("peer", config.node.peer_port, "TCP"),
        ("gossip", config.node.gossip_port, "UDP"),
        ("admin", config.admin.port, "TCP"),
        ("client", config.client_api.port, "TCP"),
    ];
    for (port_name, number, protocol) in expected {
        assert_eq!(container_port(&container, port_name), (u64::from(number), protocol.into()));
    }
    let headless = headless_service(&manifests);
    let headless_ports = headless["spec"]["ports"].as_array().unwrap();
    let headless_names: BTreeSet<&str> =
        headless_ports.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(headless_names, expected.iter().map(|e| e.0).collect());
    for service in all(&manifests, "Service") {
        for port in service["spec"]["ports"].as_array().unwrap() {
            // Each Service port targets the container port of its own name, same number.
            let target = port["targetPort"].as_str().expect("a named targetPort");
            assert_eq!(port["name"], target, "{}", name(&service));
            let (number, protocol) = container_port(&container, target);
            assert_eq!(
                (port["port"].as_u64().unwrap(), port["protocol"].as_str().unwrap()),
                (number, protocol.as_str())
            );
        }
    }
}

#[test]
fn the_pods_get_their_config_identity_and_address() {
    let manifests = manifests();
    let statefulset = one(&manifests, "StatefulSet");
    let container = container(&statefulset);
    let args = serde_json::json!(["serve", "--config", "/etc/distcache/node.toml"]);
    assert_eq!(container["args"], args);
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/etc/distcache")
        .expect("the config mount")
        .clone();
    let volumes = statefulset["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
    let volume = volumes.iter().find(|v| v["name"] == mount["name"]).expect("the config volume");
    assert_eq!(volume["configMap"]["name"], name(&one(&manifests, "ConfigMap")));
    let env = |var: &str| {
        let vars = container["env"].as_array().unwrap();
        vars.iter().find(|e| e["name"] == var).unwrap_or_else(|| panic!("{var}")).clone()
    };
    assert_eq!(env("DISTCACHE_NODE_ID")["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name");
    assert_eq!(env("DISTCACHE_ADVERTISE")["valueFrom"]["fieldRef"]["fieldPath"], "status.podIP");
    // Tokens come from a Secret the operator may or may not create.
    assert_eq!(env("DISTCACHE_ADMIN_TOKEN")["valueFrom"]["secretKeyRef"]["optional"], true);
}

#[test]
#[cfg(feature = "kubernetes")]
fn the_node_config_discovers_through_the_headless_service_gossip_port() {
    use distcache::node::DiscoveryConfig;
    let manifests = manifests();
    let (_, config) = node_config(&manifests);
    let DiscoveryConfig::Kubernetes(discovery) = &config.discovery else {
        panic!("node.toml discovers with kind = \"kubernetes\", not {:?}", config.discovery)
    };
    let headless = headless_service(&manifests);
    assert_eq!(discovery.service, name(&headless));
    assert_eq!(discovery.namespace, None, "the pod's own namespace");
    let ports = headless["spec"]["ports"].as_array().unwrap();
    let gossip = ports
        .iter()
        .find(|p| p["name"] == discovery.port_name.as_str())
        .expect("port_name names a Service port");
    assert_eq!(gossip["protocol"], "UDP");
    assert_eq!(gossip["port"].as_u64(), Some(u64::from(config.node.gossip_port)));
    // The id and address come from the pod; a fixed one in the file would be shared.
    assert_eq!((config.node.id.as_ref(), config.node.advertise), (None, None));
}

#[test]
fn probes_hit_the_open_admin_paths() {
    let manifests = manifests();
    let container = container(&one(&manifests, "StatefulSet"));
    let (_, config) = node_config(&manifests);
    // The kubelet probes the pod IP: admin must listen beyond loopback.
    assert!(config.admin.enabled && config.admin.bind.is_unspecified());
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(get["port"], "admin", "{probe}");
        // The admin token, when set, exempts only these paths: probes carry no token.
        assert!(get.get("httpHeaders").is_none() && get.get("scheme").is_none_or(|s| s == "HTTP"));
    }
    assert!(!config.admin_tls(), "probes speak plain HTTP");
}

#[test]
fn the_role_grants_only_the_endpointslice_watch_to_the_pods_account() {
    let manifests = manifests();
    let role = one(&manifests, "Role");
    let rules = role["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(strings(&rules[0]["apiGroups"]), ["discovery.k8s.io".to_owned()].into());
    assert_eq!(strings(&rules[0]["resources"]), ["endpointslices".to_owned()].into());
    let verbs: BTreeSet<String> = ["get", "list", "watch"].map(String::from).into();
    assert_eq!(strings(&rules[0]["verbs"]), verbs);
    assert!(rules[0].get("resourceNames").is_none());
    let binding = one(&manifests, "RoleBinding");
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert_eq!(binding["roleRef"]["name"], name(&role));
    assert_eq!(binding["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
    let account = one(&manifests, "ServiceAccount");
    let subjects = binding["subjects"].as_array().unwrap();
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0]["kind"], "ServiceAccount");
    assert_eq!(subjects[0]["name"], name(&account));
    let statefulset = one(&manifests, "StatefulSet");
    assert_eq!(statefulset["spec"]["template"]["spec"]["serviceAccountName"], name(&account));
}

#[test]
fn the_pods_run_unprivileged_within_limits() {
    let manifests = manifests();
    let statefulset = one(&manifests, "StatefulSet");
    let pod = &statefulset["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = container(&statefulset);
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL".to_owned()].into());
    for (kind, resource) in [("requests", "cpu"), ("requests", "memory"), ("limits", "memory")] {
        assert!(container["resources"][kind][resource].is_string(), "{kind}.{resource}");
    }
    // The image's user is the one the pod runs as.
    let uid = pod["securityContext"]["runAsUser"].as_u64().expect("runAsUser");
    let user = dockerfile_instructions("USER");
    assert_eq!(user, [format!("{uid}:{uid}")]);
}

/// The arguments of every `instruction` line of `deploy/Dockerfile` (continuations joined).
fn dockerfile_instructions(instruction: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/Dockerfile");
    let text = std::fs::read_to_string(path).unwrap().replace("\\\n", " ");
    let lines = text.lines().filter(|l| !l.trim_start().starts_with('#'));
    lines
        .filter_map(|line| line.trim().strip_prefix(instruction).map(str::trim).map(str::to_owned))
        .collect()
}

#[test]
fn the_image_exposes_the_pod_ports_and_runs_the_pod_command() {
    let manifests = manifests();
    let container = container(&one(&manifests, "StatefulSet"));
    let ports = container["ports"].as_array().unwrap();
    let expected: BTreeSet<String> = ports
        .iter()
        .map(|p| {
            format!("{}/{}", p["containerPort"], p["protocol"].as_str().unwrap().to_lowercase())
        })
        .collect();
    let exposed: BTreeSet<String> = dockerfile_instructions("EXPOSE")
        .iter()
        .flat_map(|line| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    assert_eq!(exposed, expected);
    let froms = dockerfile_instructions("FROM");
    assert_eq!(froms.len(), 2, "a builder stage and a runtime stage");
    assert!(froms[0].ends_with("AS builder"));
    let build =
        dockerfile_instructions("RUN").into_iter().find(|r| r.contains("cargo build")).unwrap();
    assert!(build.contains("--release") && build.contains("kubernetes"), "{build}");
    assert_eq!(dockerfile_instructions("ENTRYPOINT"), ["[\"distcache\"]"]);
    let cmd: Value = serde_json::from_str(&dockerfile_instructions("CMD")[0]).unwrap();
    assert_eq!(cmd, container["args"], "the image's default command is the pod's");
}

#[test]
#[cfg(feature = "kubernetes")]
fn the_configmap_config_passes_distcache_serve_check() {
    let (text, _) = node_config(&manifests());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(&path, text).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_distcache"))
        .args(["serve", "--check", "--config"])
        .arg(&path)
        // As the pod sets them.
        .env("DISTCACHE_NODE_ID", "distcache-0")
        .env("DISTCACHE_ADVERTISE", "10.0.0.5")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "distcache serve --check failed: {stderr}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("config ok"));
}
