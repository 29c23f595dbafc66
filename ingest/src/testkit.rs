//! Test support shared by every crate's tests (feature `testkit`): a private
//! `nats-server` per test, on a free port with its own store directory.
//!
//! Without the `nats-server` binary, [`NatsServer::start`] returns `None` and
//! the test skips, unless `NODAI_REQUIRE_NATS=1` (as in CI), where it fails.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

/// A running `nats-server -js`, killed on drop.
pub struct NatsServer {
    child: Option<Child>,
    binary: PathBuf,
    pub port: u16,
    store: tempfile::TempDir,
}

fn find_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
        return Some(PathBuf::from(path));
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    // Debian installs it in sbin, which is not on every PATH.
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/usr/local/bin"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join("nats-server")).find(|p| p.is_file())
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind an ephemeral port on 127.0.0.1")
}

/// A stream name no other test uses.
pub fn unique_stream_name() -> String {
    format!("T{}", uuid::Uuid::now_v7().simple()).to_uppercase()
}

impl NatsServer {
    /// Starts a server, or returns `None` (test skipped) when there is no
    /// `nats-server` and `NODAI_REQUIRE_NATS` is not `1`.
    pub async fn start() -> Option<NatsServer> {
        let Some(binary) = find_binary() else {
            if std::env::var("NODAI_REQUIRE_NATS").is_ok_and(|v| v == "1") {
                panic!("NODAI_REQUIRE_NATS=1 but no nats-server binary was found (install nats-server or set NATS_SERVER_BIN)");
            }
            eprintln!("skipping: nats-server not found (set NODAI_REQUIRE_NATS=1 to fail instead)");
            return None;
        };
        let store = tempfile::tempdir().expect("cannot create a temp dir for the NATS store");
        let mut server = NatsServer {
            child: None,
            binary,
            port: free_port(),
            store,
        };
        server.spawn().await;
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let child = Command::new(&self.binary)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
        self.wait_ready().await;
    }

    /// Waits until JetStream answers, with a deadline.
    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = async {
                let client = async_nats::connect(self.url()).await.ok()?;
                // Any answer from the JetStream API means it is up.
                client.request("$JS.API.INFO", "".into()).await.ok()
            };
            if tokio::time::timeout(Duration::from_secs(2), ready)
                .await
                .ok()
                .flatten()
                .is_some()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server on port {} did not become ready",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the server at once (SIGKILL), keeping its store.
    /// The server's process id while it runs (to stop and continue it).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same store.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
