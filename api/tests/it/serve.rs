//! `nodai serve` for real: in-process on a free port for the endpoints, and
//! the built binary for signals, locking and start-up errors.

use api::config::{Backend, Config};
use ingest::events::{Event, KeyRevoked};
use ingest::testkit::{unique_stream_name, NatsServer};
use ingest::{EventStream, Outgoing};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

struct TestApp {
    base: String,
    client: reqwest::Client,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<Result<(), api::server::ServeError>>,
}

impl TestApp {
    async fn spawn(config: Config) -> TestApp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(api::server::run(config, listener, shutdown.clone()));
        let app = TestApp {
            base,
            client: reqwest::Client::new(),
            shutdown,
            server,
        };
        app.wait_for(|_, status| status != 0, "/healthz").await;
        app
    }

    async fn get(&self, path: &str) -> (u16, String) {
        match self.client.get(format!("{}{path}", self.base)).send().await {
            Ok(response) => (response.status().as_u16(), response.text().await.unwrap()),
            Err(_) => (0, String::new()),
        }
    }

    /// Polls `path` until `done(body, status)`, with a deadline.
    async fn wait_for(&self, done: impl Fn(&str, u16) -> bool, path: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = self.get(path).await;
            if done(&body, status) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{path} never got there; last: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.server)
            .await
            .expect("server did not stop")
            .unwrap()
            .expect("server failed");
    }
}

fn metric(body: &str, name: &str) -> Option<i64> {
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn event(n: u64) -> Outgoing {
    Outgoing::new(
        &Event::KeyRevoked(KeyRevoked {
            key_id: format!("key_{n}"),
        }),
        chrono::Utc::now(),
    )
    .unwrap()
}

async fn append_n(stream: &dyn EventStream, n: u64) {
    for i in 0..n {
        stream.append(&event(i)).await.unwrap();
    }
}

async fn health_ready_and_metrics(config: Config, preload: impl AsyncFnOnce()) {
    preload().await;
    let app = TestApp::spawn(config).await;
    let (status, body) = app.get("/healthz").await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let ready = app.wait_for(|_, status| status == 200, "/readyz").await;
    assert!(ready.contains(r#""applied_seq":300"#), "{ready}");
    let metrics = app
        .wait_for(|body, _| metric(body, "nodai_stream_lag") == Some(0), "/metrics")
        .await;
    assert_eq!(metric(&metrics, "nodai_stream_last_seq"), Some(300));
    assert_eq!(metric(&metrics, "nodai_projection_applied_seq"), Some(300));
    assert_eq!(metric(&metrics, "nodai_events_appended_total"), Some(0));
    let (status, body) = app.get("/nope").await;
    assert_eq!(status, 404);
    assert!(body.contains(r#""code":"not_found""#), "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_serves_health_readiness_and_metrics_after_catching_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::embedded(dir.path());
    let stream_dir = dir.path().join("stream");
    health_ready_and_metrics(config, async || {
        let log = ingest::embedded::EmbeddedLog::open(ingest::embedded::Options::new(&stream_dir))
            .await
            .unwrap();
        append_n(&log, 300).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_serves_health_readiness_and_metrics_and_follows_other_writers() {
    let Some(server) = NatsServer::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let name = unique_stream_name();
    let mut config = Config::embedded(dir.path());
    config.backend = Backend::Nats {
        url: server.url(),
        stream: name.clone(),
        replicas: 1,
        auth: Default::default(),
    };
    let other = ingest::nats::NatsStream::connect(ingest::nats::Options::new(server.url(), &name))
        .await
        .unwrap();
    health_ready_and_metrics(config.clone(), async || append_n(&other, 300).await).await;

    // Another replica writes; this one follows.
    let app = TestApp::spawn(config).await;
    app.wait_for(|_, status| status == 200, "/readyz").await;
    append_n(&other, 50).await;
    app.wait_for(
        |body, _| metric(body, "nodai_projection_applied_seq") == Some(350),
        "/metrics",
    )
    .await;
    app.stop().await;
}

/// The built `nodai` with its stderr lines.
struct Process {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    seen: Vec<String>,
}

impl Process {
    fn start(args: &[&str], data_dir: &Path) -> Process {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_nodai"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env_remove("NODAI_NATS_URL")
            .env_remove("NODAI_ADMIN_TOKEN")
            // Everything, at the most verbose level, so a leak would show.
            .env("NODAI_LOG", "trace")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        Process {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads stderr until a line contains `needle`; returns that line.
    async fn wait_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no line with {needle:?}; saw {:?}", self.seen))
                .unwrap()
                .unwrap_or_else(|| panic!("stderr ended without {needle:?}; saw {:?}", self.seen));
            self.seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }

    async fn base_url(&mut self) -> String {
        let line = self.wait_line("nodai listening").await;
        let addr = line
            .split("addr=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap();
        format!("http://{addr}")
    }

    async fn exit_code(&mut self) -> Option<i32> {
        // Drain stderr so the child never blocks on a full pipe.
        while let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_secs(30), self.lines.next_line()).await {
            self.seen.push(line);
        }
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("did not exit")
            .unwrap()
            .code()
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().unwrap().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-s", signal, &pid])
            .status()
            .unwrap()
            .success());
    }
}

#[tokio::test]
async fn sigterm_and_ctrl_c_stop_cleanly_with_exit_code_0() {
    for signal in ["TERM", "INT"] {
        let dir = tempfile::tempdir().unwrap();
        let mut nodai = Process::start(&[], dir.path());
        let base = nodai.base_url().await;
        let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
        assert_eq!(health.status(), 200);
        nodai.signal(signal);
        assert_eq!(nodai.exit_code().await, Some(0), "SIG{signal}; log: {:?}", nodai.seen);
        assert!(
            nodai.seen.iter().any(|l| l.contains("nodai stopped")),
            "{:?}",
            nodai.seen
        );
    }
}

#[tokio::test]
async fn a_second_serve_on_the_same_data_dir_fails_at_once_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Process::start(&[], dir.path());
    first.base_url().await;
    let mut second = Process::start(&[], dir.path());
    assert_eq!(second.exit_code().await, Some(1));
    let said = second.seen.join("\n");
    assert!(said.contains("already using the data dir"), "{said}");
    assert!(
        said.contains(&first.child.id().unwrap().to_string()),
        "names the holder's pid: {said}"
    );
    first.signal("TERM");
    assert_eq!(first.exit_code().await, Some(0));
}

#[tokio::test]
async fn an_unreachable_nats_fails_the_start_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("nats://127.0.0.1:{}", ingest::testkit::free_port());
    let mut nodai = Process::start(&["--nats", &url], dir.path());
    assert_eq!(nodai.exit_code().await, Some(1));
    let said = nodai.seen.join("\n");
    assert!(said.contains("cannot connect to NATS") && said.contains(&url), "{said}");
}

#[tokio::test]
async fn bad_flags_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodai = Process::start(&["--stream", "a.b"], dir.path());
    assert_eq!(nodai.exit_code().await, Some(2));
    assert!(nodai.seen.join("\n").contains("--stream"), "{:?}", nodai.seen);
}

#[tokio::test]
async fn the_logs_never_hold_a_plaintext_key_nor_the_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodai = Process::start(&[], dir.path());
    let base = nodai.base_url().await;
    // The generated token is in the data dir, never in the log.
    let token = std::fs::read_to_string(dir.path().join("admin-token")).unwrap();
    let http = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    assert_eq!(
        post(
            "/api/v1/workflows",
            serde_json::json!({"id": "echo", "name": "e", "upstream_url": "builtin:echo"})
        )
        .await
        .unwrap()
        .status(),
        201
    );
    let mut secrets = vec![token.clone()];
    for _ in 0..2 {
        let created: serde_json::Value = post("/api/v1/api-keys", serde_json::json!({"name": "k"}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["id"].as_str().unwrap();
        let rotated: serde_json::Value = post(
            &format!("/api/v1/api-keys/{id}/rotate"),
            serde_json::json!({"grace_period_seconds": 60}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        for key in [created["key"].as_str().unwrap(), rotated["key"].as_str().unwrap()] {
            let query = http
                .post(format!("{base}/api/v1/workflows/echo/query"))
                .header("X-API-Key", key)
                .json(&serde_json::json!({"input": 1}));
            assert_eq!(query.send().await.unwrap().status(), 200);
            secrets.push(key.to_owned());
        }
        // A wrong key is not echoed into the log either.
        let wrong = format!("nk_{}", "f".repeat(64));
        let query = http
            .post(format!("{base}/api/v1/workflows/echo/query"))
            .header("X-API-Key", &wrong)
            .json(&serde_json::json!({"input": 1}));
        assert_eq!(query.send().await.unwrap().status(), 403);
        secrets.push(wrong);
    }
    nodai.signal("TERM");
    assert_eq!(nodai.exit_code().await, Some(0));
    let log = nodai.seen.join("\n");
    assert!(log.contains("api key rotated"), "the log is captured: {log}");
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "a secret is in the log");
    }
}
