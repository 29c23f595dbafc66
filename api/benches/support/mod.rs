//! What the benchmarks share: the real `nodai` binary on a free port.

#![allow(dead_code)] // each benchmark uses its own part

use serde_json::Value;
use std::time::{Duration, Instant};

pub const TOKEN: &str = "bench-admin-token-0123456789";

pub fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub struct Server {
    pub base: String,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    child: tokio::process::Child,
}

impl Server {
    /// A server on a fresh data dir, with `extra` arguments to `serve`.
    pub async fn start(extra: &[String]) -> Server {
        Server::start_in(tempfile::tempdir().unwrap(), extra).await
    }

    /// A server on `dir`, which may hold a log already.
    pub async fn start_in(dir: tempfile::TempDir, extra: &[String]) -> Server {
        let port = ingest::testkit::free_port();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_nodai"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(dir.path())
            .args(extra)
            .env("NODAI_ADMIN_TOKEN", TOKEN)
            .env("NODAI_LOG", "warn")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let server = Server {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            dir,
            child,
        };
        let started = Instant::now();
        loop {
            let ready = server.http.get(format!("{}/readyz", server.base)).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return server;
            }
            assert!(started.elapsed() < Duration::from_secs(600), "never ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{path}: {}", response.status());
        response.json().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{path}: {}", response.status());
        response.json().await.unwrap()
    }

    /// Stops the server with SIGTERM (it flushes its archive) and waits.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").arg(pid.to_string()).status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(120), self.child.wait()).await;
        self.dir
    }
}

/// Lets `tasks` (loops that end when `stop` is set) run for `secs`, then
/// stops them; the seconds they ran.
pub async fn run_for(secs: u64, stop: &std::sync::atomic::AtomicBool, tasks: Vec<tokio::task::JoinHandle<()>>) -> f64 {
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed().as_secs_f64()
}

/// The `p` quantile of sorted durations, in milliseconds.
pub fn ms(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3
}
