//! [`NatsServer`]: a `nats-server` process on a free loopback port.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::process::{Child, Command};

/// Where Debian's `nats-server` package installs the binary, when `/usr/sbin` is not on `PATH`.
const BINARIES: [&str; 2] = ["nats-server", "/usr/sbin/nats-server"];

/// A `nats-server` the test started; killed when stopped or dropped.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    url: String,
    dir: PathBuf,
}

impl NatsServer {
    /// Starts `nats-server -a 127.0.0.1 -p -1` and reads its port from its ports file.
    ///
    /// When `nats-server` is not installed this says so and returns `None`, so the test can
    /// skip, unless the `CI` environment variable is set: then a missing server fails the test.
    pub async fn start() -> Option<Self> {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("distcache-nats-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for the ports file");
        let mut child = None;
        for binary in BINARIES {
            let spawned = Command::new(binary)
                .args(["-a", "127.0.0.1", "-p", "-1", "--ports_file_dir"])
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn();
            match spawned {
                Ok(spawned) => {
                    child = Some(spawned);
                    break;
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => panic!("cannot start {binary}: {err}"),
            }
        }
        let Some(child) = child else {
            let _ = std::fs::remove_dir_all(&dir);
            let missing = "nats-server is not installed (apt-get install nats-server)";
            assert!(std::env::var_os("CI").is_none(), "{missing}, and CI needs it");
            eprintln!("skipping: {missing}");
            return None;
        };
        let pid = child.id().expect("a running nats-server has a pid");
        let ports = dir.join(format!("nats-server_{pid}.ports"));
        let url = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(url) = read_url(&ports) {
                    return url;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("nats-server writes its ports file within 10 s");
        Some(NatsServer { child: Some(child), url, dir })
    }

    /// The client URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Kills the server: clients lose their connection.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

/// The client URL from a ports file (`{"nats":["nats://127.0.0.1:P"],…}`), once it is written.
fn read_url(ports: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(ports).ok()?;
    let ports: serde_json::Value = serde_json::from_str(&text).ok()?;
    ports["nats"][0].as_str().map(str::to_owned)
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
