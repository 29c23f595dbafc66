//! The query path with a customer's limits and a token-priced workflow,
//! against the plain path, in the same run (BENCHMARKS.md, "Customers,
//! limits, tokens and credits"): the real `nodai` binary on a free port,
//! on the embedded log and on a private `nats-server`, loaded by closed-loop
//! clients in this process (they share the machine's cores with it).
//!
//! ```text
//! cargo bench -p api --bench customers        # NODAI_BENCH_SECS=5 NODAI_BENCH_CLIENTS=32 NODAI_BENCH_ROUNDS=3
//! ```
//!
//! - *plain*: a key without limits on a `builtin:echo` workflow with a
//!   price per request: no admission, one append per query.
//! - *customer + tokens*: a key of a prepaid customer with limits on both
//!   (requests per minute and hour, tokens per day, cost per month, far
//!   from reached), on a `builtin:echo` workflow priced per token with a
//!   maximum: the whole limiter (both levels, every window, the balance),
//!   and on NATS the admission append, per query.
//!
//! - the same over one customer per client: what serialising the
//!   admissions of one hot customer costs (on NATS a replica decides one
//!   admission of a scope at a time).
//!
//! They alternate for several rounds; the table shows each round and the
//! median ratios.

use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;

use support::{env, Server};

impl Server {
    /// Sets up both paths; their keys: the plain key, then one key of
    /// each of `customers` customers.
    async fn keys(&self, customers: usize) -> (String, Vec<String>) {
        self.post(
            "/api/v1/workflows",
            json!({"id": "plain", "name": "plain", "upstream_url": "builtin:echo", "price_per_request": 0.002}),
        )
        .await;
        self.post(
            "/api/v1/workflows",
            json!({"id": "tokens", "name": "tokens", "upstream_url": "builtin:echo", "price_per_request": 0.001,
                   "price_per_million_input_tokens": 3, "price_per_million_output_tokens": 15,
                   "max_cost_per_request": 0.01}),
        )
        .await;
        let plain = self.post("/api/v1/api-keys", json!({"name": "plain"})).await;
        let key = |v: &Value| v["key"].as_str().unwrap().to_owned();
        let mut keys = Vec::new();
        for i in 0..customers {
            let id = format!("bench.co{i}");
            self.post(
                "/api/v1/customers",
                json!({"id": id, "name": "Bench", "billing": "prepaid", "max_concurrent": 100000,
                       "limits": [{"metric": "requests", "window": "minute", "max": 1_000_000_000u64},
                                  {"metric": "tokens", "window": "day", "max": 1_000_000_000_000u64},
                                  {"metric": "cost", "window": "month", "max": 1_000_000}]}),
            )
            .await;
            self.post(&format!("/api/v1/customers/{id}/credits"), json!({"amount": 1_000_000}))
                .await;
            let customer = self
                .post(
                    "/api/v1/api-keys",
                    json!({"name": "customer", "customer_id": id,
                           "limits": [{"metric": "requests", "window": "hour", "max": 1_000_000_000u64},
                                      {"metric": "cost", "window": "day", "max": 1_000_000}]}),
                )
                .await;
            keys.push(key(&customer));
        }
        (key(&plain), keys)
    }

    /// `clients` closed loops of queries for `secs`: queries/s, p50, p99.
    async fn load(&self, workflow: &str, keys: &[String], clients: usize, secs: u64) -> (f64, f64, f64) {
        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicU64::new(0));
        let url = format!("{}/api/v1/workflows/{workflow}/query", self.base);
        let tasks: Vec<_> = (0..clients)
            .map(|i| {
                let key = keys[i % keys.len()].clone();
                let (http, url, stop, failed) = (self.http.clone(), url.clone(), stop.clone(), failed.clone());
                tokio::spawn(async move {
                    let mut took = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let start = Instant::now();
                        let response = http
                            .post(&url)
                            .header("x-api-key", &key)
                            .header("content-type", "application/json")
                            .body(r#"{"input":"the quick brown fox"}"#)
                            .send()
                            .await;
                        match response {
                            Ok(r) if r.status() == 200 => {
                                let _ = r.bytes().await;
                                took.push(start.elapsed());
                            }
                            _ => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    took
                })
            })
            .collect();
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(secs)).await;
        stop.store(true, Ordering::Relaxed);
        let mut took = Vec::new();
        for task in tasks {
            took.extend(task.await.unwrap());
        }
        let elapsed = started.elapsed().as_secs_f64();
        assert_eq!(failed.load(Ordering::Relaxed), 0, "some queries were not answered 200");
        took.sort();
        let ms = |p: f64| took[((took.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
        (took.len() as f64 / elapsed, ms(0.5), ms(0.99))
    }
}

async fn bench(name: &str, extra: &[String], clients: usize, secs: u64, rounds: usize) {
    let server = Server::start(extra).await;
    let (plain, customers) = server.keys(clients).await;
    let plain = [plain];
    let hot = &customers[..1];
    // Warm every path (connections, allocator, first segments).
    server.load("plain", &plain, clients, 1).await;
    server.load("tokens", hot, clients, 1).await;
    server.load("tokens", &customers, clients, 1).await;
    let (mut hot_ratios, mut spread_ratios) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let a = server.load("plain", &plain, clients, secs).await;
        let b = server.load("tokens", hot, clients, secs).await;
        let c = server.load("tokens", &customers, clients, secs).await;
        let (hot, spread) = (b.0 / a.0, c.0 / a.0);
        hot_ratios.push(hot);
        spread_ratios.push(spread);
        println!(
            "| {name} | {round} | {:.0} ({:.2} / {:.2}) | {:.0} ({:.2} / {:.2}) | {hot:.3} | {:.0} ({:.2} / {:.2}) | {spread:.3} |",
            a.0, a.1, a.2, b.0, b.1, b.2, c.0, c.1, c.2
        );
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (hot, spread) = (median(hot_ratios), median(spread_ratios));
    println!(
        "| {name} | median | | | **{hot:.3}** ({:.1} % lost) | | **{spread:.3}** ({:.1} % lost) |",
        (1.0 - hot) * 100.0,
        (1.0 - spread) * 100.0
    );
}

fn main() {
    let (secs, clients, rounds) = (
        env("NODAI_BENCH_SECS", 5u64),
        env("NODAI_BENCH_CLIENTS", 32usize),
        env("NODAI_BENCH_ROUNDS", 3usize),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("{clients} clients, {secs} s per cell; queries/s (p50 / p99 ms); the three paths alternate");
        println!();
        println!("| backend | round | plain | one customer + tokens | ratio | {clients} customers + tokens | ratio |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        bench("embedded", &[], clients, secs, rounds).await;
        match ingest::testkit::NatsServer::start().await {
            Some(nats) => {
                let args = ["--nats".to_owned(), nats.url(), "--stream".into(), "BENCH".into()];
                bench("nats", &args, clients, secs, rounds).await;
            }
            None => eprintln!("no nats-server: NATS rows skipped"),
        }
    });
}
