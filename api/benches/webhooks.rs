//! Webhook delivery speed, end to end through a real server on the embedded
//! log and a real receiver on loopback that answers at once:
//!
//! - deliveries per second to one endpoint (test messages queued while the
//!   endpoint is inactive, then released), against the baseline of plain
//!   POSTs to the same receiver from one client with the same concurrency;
//! - alert latency: from sending the query that crosses a key's cost limit
//!   to the receiver holding the `usage.threshold` webhook, p50 and p99.
//!
//!   cargo bench -p api --bench webhooks     (BENCH_DELIVERIES=5000, BENCH_ALERTS=200)
//!
//! Prints markdown rows for BENCHMARKS.md.

use api::auth::AdminToken;
use api::config::Config;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const TOKEN: &str = "bench-admin-token-0123456789";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[derive(Clone)]
struct Receiver {
    count: Arc<AtomicU64>,
    alerts: mpsc::UnboundedSender<String>,
}

async fn receive(axum::extract::State(r): axum::extract::State<Receiver>, body: String) -> &'static str {
    r.count.fetch_add(1, Ordering::Relaxed);
    if body.contains("\"usage.threshold\"") {
        let message: Value = serde_json::from_str(&body).unwrap_or_default();
        if let Some(key_id) = message["data"]["key_id"].as_str() {
            let _ = r.alerts.send(key_id.to_owned());
        }
    }
    "ok"
}

struct Admin {
    http: reqwest::Client,
    base: String,
}

impl Admin {
    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{path}: {}", response.status());
        response.json().await.unwrap_or(Value::Null)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let deliveries = env("BENCH_DELIVERIES", 5000);
    let samples = env("BENCH_ALERTS", 200);
    let concurrency = webhooks::worker::PER_ENDPOINT;

    let (alerts_tx, mut alerts_rx) = mpsc::unbounded_channel();
    let receiver = Receiver {
        count: Arc::default(),
        alerts: alerts_tx,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::embedded(dir.path());
    config.admin_token = Some(AdminToken::new(TOKEN.into()));
    config.webhook_guard.allow_private = true;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = Arc::new(Admin {
        http: reqwest::Client::new(),
        base: format!("http://{}", listener.local_addr().unwrap()),
    });
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(api::server::run(config, listener, shutdown.clone()));
    while reqwest::get(format!("{}/readyz", admin.base))
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    println!("| measurement | count | seconds | per second | |");
    println!("|---|---:|---:|---:|---|");

    // Baseline: the same receiver, plain POSTs, the same concurrency.
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let posts: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, hook) = (next.clone(), hook.clone());
            let http = reqwest::Client::new();
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < deliveries as u64 {
                    let body = r#"{"type":"bench","timestamp":"2026-11-25T00:00:00Z","data":{}}"#;
                    http.post(&hook).body(body).send().await.unwrap();
                }
            })
        })
        .collect();
    futures::future::join_all(posts).await;
    let baseline = deliveries as f64 / started.elapsed().as_secs_f64();
    println!(
        "| baseline: plain POSTs to the receiver, {concurrency} at a time | {deliveries} | {:.3} | {baseline:.0} | |",
        started.elapsed().as_secs_f64()
    );

    // Queue the test messages while the endpoint is off, then turn it on.
    let webhook = admin
        .call(
            reqwest::Method::POST,
            "/api/v1/webhooks",
            json!({"url": hook, "events": ["webhook.test"]}),
        )
        .await;
    let id = webhook["id"].as_str().unwrap().to_owned();
    admin
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/webhooks/{id}"),
            json!({"active": false}),
        )
        .await;
    let next = Arc::new(AtomicU64::new(0));
    let queued: Vec<_> = (0..8)
        .map(|_| {
            let (next, admin, id) = (next.clone(), admin.clone(), id.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < deliveries as u64 {
                    admin
                        .call(reqwest::Method::POST, &format!("/api/v1/webhooks/{id}/test"), json!({}))
                        .await;
                }
            })
        })
        .collect();
    futures::future::join_all(queued).await;
    let before = receiver.count.load(Ordering::Relaxed);
    let started = Instant::now();
    admin
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/webhooks/{id}"),
            json!({"active": true}),
        )
        .await;
    while receiver.count.load(Ordering::Relaxed) < before + deliveries as u64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let rate = deliveries as f64 / secs;
    println!(
        "| webhook deliveries to one endpoint (signed, each attempt recorded on the stream) | {deliveries} | {secs:.3} | {rate:.0} | {:.2}× baseline |",
        rate / baseline
    );

    // Alert latency: each key's first query takes it to 100% of its limit.
    admin
        .call(
            reqwest::Method::POST,
            "/api/v1/webhooks",
            json!({"url": hook, "events": ["usage.threshold"]}),
        )
        .await;
    admin
        .call(
            reqwest::Method::POST,
            "/api/v1/workflows",
            json!({"id": "echo", "name": "echo", "upstream_url": "builtin:echo", "price_per_request": 0.001}),
        )
        .await;
    let http = reqwest::Client::new();
    let mut latencies = Vec::with_capacity(samples);
    for _ in 0..samples {
        let key = admin
            .call(
                reqwest::Method::POST,
                "/api/v1/api-keys",
                json!({"name": "alert", "cost_limit_per_month": 0.001, "alert_thresholds": [100]}),
            )
            .await;
        let started = Instant::now();
        let response = http
            .post(format!("{}/api/v1/workflows/echo/query", admin.base))
            .header("X-API-Key", key["key"].as_str().unwrap())
            .json(&json!({"input": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        loop {
            let got = tokio::time::timeout(Duration::from_secs(10), alerts_rx.recv())
                .await
                .expect("no alert within 10 s")
                .unwrap();
            if got == key["id"].as_str().unwrap() {
                break;
            }
        }
        latencies.push(started.elapsed());
    }
    latencies.sort();
    println!();
    println!("| alert latency (query → receiver has the webhook) | samples | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| usage.threshold, nothing else pending | {samples} | {:.1} | {:.1} | {:.1} |",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );

    shutdown.cancel();
    let _ = server.await;
}
