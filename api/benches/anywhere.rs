//! Usage from anywhere (BENCHMARKS.md, "Verify, usage events and the usage
//! query"), each against a baseline measured in the same run:
//!
//! ```text
//! cargo bench -p api --bench anywhere    # NODAI_BENCH_SECS=5 NODAI_BENCH_CLIENTS=32 NODAI_BENCH_ROWS=10000000
//! ```
//!
//! - **ingest**: usage events accepted over HTTP (`POST /api/v1/events`,
//!   batches of 100 and 1,000, 8 clients) against the stream's raw append
//!   rate (this process appending the same events, 256 in flight), on the
//!   embedded log and on a private `nats-server`.
//! - **verify**: on keys without limits and on keys with one, the peak of
//!   `POST /api/v1/verify` (a closed loop), then its p99 and `GET
//!   /healthz`'s at half that peak (open loops at a fixed rate); the query
//!   path (`builtin:echo`) on the same keys the same way, for the ratio
//!   the goal compares against.
//! - **usage query**: `NODAI_BENCH_ROWS` usage events over 30 days, 100
//!   keys and 10 workflows, archived by the real worker; then p99 of 30
//!   days `group_by=workflow_id&granularity=day`, without and with a
//!   `key_id` filter.

use chrono::Utc;
use ingest::events::QueryRecorded;
use ingest::{Event, EventStream, Micros, Outgoing};
use serde_json::{json, Value};
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;

use support::{env, ms, Server};

// The raw append rate is the stream's under the allocator `nodai` runs on.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn recorded(i: u64) -> QueryRecorded {
    QueryRecorded {
        request_id: format!("req_{i}"),
        key_id: format!("key_{:032x}", i % 100),
        workflow_id: format!("wf{}", i % 10),
        status_code: if i.is_multiple_of(50) { 502 } else { 200 },
        cost: Micros::new(1_000 + (i % 7) as i64),
        duration_ms: 3,
        reported_cost: None,
        record_by: None,
        customer_id: None,
        input_tokens: i % 1000,
        output_tokens: i % 300,
        authorization_id: None,
    }
}

/// Events/s `stream` takes with 256 appends in flight, for `secs`.
async fn raw_rate(stream: Arc<dyn EventStream>, secs: u64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..256u64)
        .map(|t| {
            let (stream, stop, done) = (stream.clone(), stop.clone(), done.clone());
            tokio::spawn(async move {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let out = Outgoing::new(&Event::QueryRecorded(recorded(i)), Utc::now()).unwrap();
                    stream.append(&out).await.unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 256;
                }
            })
        })
        .collect();
    let elapsed = support::run_for(secs, &stop, tasks).await;
    done.load(Ordering::Relaxed) as f64 / elapsed
}

/// Events/s accepted over HTTP in batches of `size`, `clients` at once.
async fn http_rate(server: &Server, keys: &[String], size: usize, clients: usize, secs: u64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let url = format!("{}/api/v1/events", server.base);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (http, url, stop, accepted) = (server.http.clone(), url.clone(), stop.clone(), accepted.clone());
            let keys = keys.to_vec();
            // Ids unique to this run and client; the body is built as text
            // (the client shares the cores with the server).
            let run = uuid::Uuid::now_v7().simple().to_string();
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut body = String::with_capacity(size * 220);
                    body.push('[');
                    for i in 0..size {
                        n += 1;
                        if i > 0 {
                            body.push(',');
                        }
                        let key = &keys[n as usize % keys.len()];
                        let _ = write!(
                            body,
                            r#"{{"specversion":"1.0","id":"{c}-{n}","source":"bench-{run}","type":"nodai.usage","subject":"{key}","data":{{"workflow_id":"wf","input_tokens":{},"output_tokens":12}}}}"#,
                            n % 1000
                        );
                    }
                    body.push(']');
                    let response = http
                        .post(&url)
                        .bearer_auth(support::TOKEN)
                        .header("content-type", "application/cloudevents-batch+json")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 202);
                    let answer: Value = response.json().await.unwrap();
                    accepted.fetch_add(answer["accepted"].as_u64().unwrap(), Ordering::Relaxed);
                }
            })
        })
        .collect();
    let elapsed = support::run_for(secs, &stop, tasks).await;
    accepted.load(Ordering::Relaxed) as f64 / elapsed
}

async fn ingest(name: &str, extra: &[String], raw: Arc<dyn EventStream>, secs: u64) {
    let server = Server::start(extra).await;
    server
        .post(
            "/api/v1/workflows",
            json!({"id": "wf", "name": "wf", "upstream_url": "builtin:echo", "price_per_request": 0.001}),
        )
        .await;
    let mut keys = Vec::new();
    for i in 0..100 {
        keys.push(
            server.post("/api/v1/api-keys", json!({"name": format!("k{i}")})).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    http_rate(&server, &keys, 100, 8, 1).await;
    let raw = raw_rate(raw, secs).await;
    for size in [100, 1000] {
        let rate = http_rate(&server, &keys, size, 8, secs).await;
        println!(
            "| {name} | batches of {size} | {rate:.0} | {raw:.0} | **{:.2}** |",
            rate / raw
        );
    }
}

/// What a request of the load is.
#[derive(Clone)]
enum Call {
    Healthz,
    Verify(Vec<String>),
    Query(Vec<String>),
}

impl Call {
    fn send(&self, http: &reqwest::Client, base: &str, i: usize) -> reqwest::RequestBuilder {
        match self {
            Call::Healthz => http.get(format!("{base}/healthz")),
            Call::Verify(keys) => http
                .post(format!("{base}/api/v1/verify"))
                .bearer_auth(support::TOKEN)
                .header("content-type", "application/json")
                // Work that takes at most 2 s: a hold is kept until then
                // (or until settled), and a decision reads the scope's holds.
                .body(format!(
                    r#"{{"key":"{}","workflow_id":"echo","hold_seconds":2}}"#,
                    keys[i % keys.len()]
                )),
            Call::Query(keys) => http
                .post(format!("{base}/api/v1/workflows/echo/query"))
                .header("x-api-key", &keys[i % keys.len()])
                .header("content-type", "application/json")
                .body(r#"{"input":"the quick brown fox"}"#),
        }
    }
}

/// Closed loops: requests/s.
async fn peak(server: &Server, call: &Call, clients: usize, secs: u64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (http, base, call) = (server.http.clone(), server.base.clone(), call.clone());
            let (stop, done) = (stop.clone(), done.clone());
            tokio::spawn(async move {
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    let response = call.send(&http, &base, i).send().await.unwrap();
                    assert_eq!(response.status(), 200);
                    let _ = response.bytes().await;
                    done.fetch_add(1, Ordering::Relaxed);
                    i += clients;
                }
            })
        })
        .collect();
    let elapsed = support::run_for(secs, &stop, tasks).await;
    done.load(Ordering::Relaxed) as f64 / elapsed
}

/// An open loop at `rate` requests/s for `secs`: p50 and p99, in ms.
async fn at_rate(server: &Server, call: &Call, rate: f64, secs: u64) -> (f64, f64) {
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let n = (rate * secs as f64) as usize;
    // At most 256 in flight (the process's open files): a request that
    // waits for a place is timed from when it was due, so a server that
    // falls behind shows in the latency rather than being hidden.
    let places = Arc::new(tokio::sync::Semaphore::new(256));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let due = ticks.tick().await;
        let place = places.clone().acquire_owned().await.unwrap();
        let request = call.send(&server.http, &server.base, i);
        tasks.push(tokio::spawn(async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            let _ = response.bytes().await;
            drop(place);
            due.elapsed()
        }));
    }
    let mut took = Vec::with_capacity(n);
    for task in tasks {
        took.push(task.await.unwrap());
    }
    took.sort();
    (ms(&took, 0.5), ms(&took, 0.99))
}

async fn verify(name: &str, extra: &[String], clients: usize, secs: u64) {
    let server = Server::start(extra).await;
    server
        .post(
            "/api/v1/workflows",
            json!({"id": "echo", "name": "echo", "upstream_url": "builtin:echo", "price_per_request": 0.001}),
        )
        .await;
    // Keys without limits (a query there is decided by the replica alone)
    // and keys with a limit far from reached (on NATS, admitted through
    // the stream in order, exact across replicas): verify and the query
    // path are compared on the same keys.
    let mut plain = Vec::new();
    let mut limited = Vec::new();
    for i in 0..clients {
        for (keys, body) in [
            (&mut plain, json!({"name": format!("p{i}")})),
            (
                &mut limited,
                json!({"name": format!("l{i}"), "rate_limit_per_hour": 1_000_000_000u64}),
            ),
        ] {
            keys.push(
                server.post("/api/v1/api-keys", body).await["key"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
    }
    let healthz = Call::Healthz;
    peak(&server, &healthz, clients, 1).await;
    let h = peak(&server, &healthz, clients, secs).await;
    for (keys, label) in [(plain, "no limits"), (limited, "a limit")] {
        for (call, path) in [
            (Call::Verify(keys.clone()), "verify"),
            (Call::Query(keys.clone()), "query (baseline)"),
        ] {
            peak(&server, &call, clients, 1).await;
            let v = peak(&server, &call, clients, secs).await;
            let (h50, h99) = at_rate(&server, &healthz, v / 2.0, secs).await;
            let (v50, v99) = at_rate(&server, &call, v / 2.0, secs).await;
            println!(
                "| {name} | {label} | {path} | {v:.0} | {h:.0} | {:.2} | {:.0}/s | {v50:.2} / {v99:.2} | {h50:.2} / {h99:.2} | **{:.1}** |",
                v / h,
                v / 2.0,
                v99 / h99
            );
        }
    }
}

async fn usage_query(rows: u64) {
    // The log, written here, then archived by the real worker.
    let dir = tempfile::tempdir().unwrap();
    let prefill = Instant::now();
    {
        let log: Arc<dyn EventStream> = Arc::new(
            ingest::embedded::EmbeddedLog::open(ingest::embedded::Options::new(dir.path().join("stream")))
                .await
                .unwrap(),
        );
        let now = Utc::now();
        let span = 30 * 86_400_000_000i64;
        let tasks: Vec<_> = (0..64u64)
            .map(|t| {
                let log = log.clone();
                tokio::spawn(async move {
                    for i in (t..rows).step_by(64) {
                        // Oldest first, over the last 30 days.
                        let back = span - (i as i64 * (span / rows as i64));
                        let ts = now - chrono::Duration::microseconds(back);
                        let out = Outgoing::new(&Event::QueryRecorded(recorded(i)), ts).unwrap();
                        log.append(&out).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        log.close().await;
    }
    let appended = prefill.elapsed();
    let started = Instant::now();
    let server = Server::start_in(dir, &["--archive-flush-secs".into(), "1".into()]).await;
    let from = (Utc::now() - chrono::Duration::days(30))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let path = format!("/api/v1/usage?granularity=day&group_by=workflow_id&from={from}");
    // Archived once the archive's watermark is the log's end: the usage
    // query then reads no stream tail.
    let total = |v: &Value| {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["requests"].as_u64().unwrap())
            .sum::<u64>()
    };
    loop {
        let watermark = std::fs::read_to_string(server.dir.path().join("archive/watermark")).unwrap_or_default();
        let seq: u64 = watermark
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if seq >= rows {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(1800), "not archived");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let archived = started.elapsed();
    let key = format!("key_{:032x}", 7);
    for (what, path) in [
        ("30 days, group_by=workflow_id, day", path.clone()),
        ("the same, key_id filter", format!("{path}&key_id={key}")),
    ] {
        let mut took = Vec::new();
        for i in 0..30 {
            let started = Instant::now();
            let answer = server.get(&path).await;
            took.push(started.elapsed());
            if i == 0 && !path.contains("key_id") {
                assert_eq!(total(&answer), rows, "every row counted");
            }
        }
        // The first reads the files (the first query after a start, or of
        // a range not read before); the rest find their sums kept.
        let first = took[0];
        took.sort();
        println!(
            "| {rows} rows | {what} | {:.1} | {:.1} | {:.1} |",
            first.as_secs_f64() * 1e3,
            ms(&took, 0.5),
            ms(&took, 0.99)
        );
    }
    println!();
    println!(
        "prefill {:.0} s, fold and archive {:.0} s; archive {} MiB",
        appended.as_secs_f64(),
        archived.as_secs_f64(),
        dir_size(&server.dir.path().join("archive")) >> 20
    );
}

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => dir_size(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    })
}

fn main() {
    let (secs, clients, rows) = (
        env("NODAI_BENCH_SECS", 5u64),
        env("NODAI_BENCH_CLIENTS", 32usize),
        env("NODAI_BENCH_ROWS", 10_000_000u64),
    );
    let only = std::env::var("NODAI_BENCH_ONLY").unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let nats = ingest::testkit::NatsServer::start().await;
        let nats_args = |stream: &str| {
            nats.as_ref()
                .map(|n| vec!["--nats".to_owned(), n.url(), "--stream".into(), stream.into()])
        };
        if only.is_empty() || only == "ingest" {
            println!("| backend | HTTP | events/s accepted | raw appends/s | ratio |");
            println!("|---|---|---:|---:|---:|");
            let dir = tempfile::tempdir().unwrap();
            let raw: Arc<dyn EventStream> = Arc::new(
                ingest::embedded::EmbeddedLog::open(ingest::embedded::Options::new(dir.path()))
                    .await
                    .unwrap(),
            );
            ingest("embedded", &[], raw, secs).await;
            if let (Some(n), Some(args)) = (&nats, nats_args("INGEST")) {
                let raw = ingest::nats::NatsStream::connect(ingest::nats::Options::new(n.url(), "RAW"))
                    .await
                    .unwrap();
                ingest("nats", &args, Arc::new(raw), secs).await;
            }
            println!();
        }
        if only.is_empty() || only == "verify" {
            println!("| backend | keys | path | peak/s | healthz peak/s | ratio | at half the peak | p50 / p99 ms | healthz at that rate p50 / p99 ms | p99 ratio |");
            println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|");
            verify("embedded", &[], clients, secs).await;
            if let Some(args) = nats_args("VERIFY") {
                verify("nats", &args, clients, secs).await;
            }
            println!();
        }
        if only.is_empty() || only == "query" {
            println!("| archive | query | first (files read) ms | p50 ms | p99 ms |");
            println!("|---|---|---:|---:|---:|");
            usage_query(rows).await;
        }
    });
}
