//! Append and replay throughput of both backends, with a baseline for each
//! measured in the same run (these machines are noisy; compare ratios).
//!
//! Run: `cargo bench -p ingest --bench stream` (starts its own nats-server;
//! the NATS rows are skipped without one). `BENCH_SCALE=0.2` shrinks every
//! count for a quick look. Results go in BENCHMARKS.md.

use async_nats::HeaderMap;
use futures::StreamExt;
use ingest::embedded::{EmbeddedLog, FsyncPolicy, Options};
use ingest::events::{Event, QueryRecorded};
use ingest::nats::NatsStream;
use ingest::testkit::{unique_stream_name, NatsServer};
use ingest::{EventStream, Micros, Outgoing};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

const APPENDERS: usize = 64;

fn events(n: usize) -> Vec<Outgoing> {
    (0..n)
        .map(|i| {
            let e = Event::QueryRecorded(QueryRecorded {
                request_id: format!("req_{i:08}"),
                key_id: format!("key_{:04}", i % 1000),
                workflow_id: "wf".into(),
                status_code: 200,
                cost: Micros::new(2500),
                duration_ms: 812,
                reported_cost: None,
                record_by: None,
                customer_id: None,
                input_tokens: 0,
                output_tokens: 0,
                authorization_id: None,
            });
            Outgoing::new(&e, chrono::Utc::now()).unwrap()
        })
        .collect()
}

fn scaled(n: usize) -> usize {
    let scale: f64 = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * scale) as usize).max(APPENDERS)
}

struct Row {
    name: String,
    events: usize,
    secs: f64,
}

impl Row {
    fn rate(&self) -> f64 {
        self.events as f64 / self.secs
    }
}

/// `appenders` tasks share the events and append them as fast as acks come back.
async fn append_with(appenders: usize, stream: Arc<dyn EventStream>, events: Arc<Vec<Outgoing>>) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = (0..appenders)
        .map(|t| {
            let stream = stream.clone();
            let events = events.clone();
            tokio::spawn(async move {
                for e in events.iter().skip(t).step_by(appenders) {
                    stream.append(e).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed().as_secs_f64()
}

async fn replay_all(stream: &dyn EventStream, decode: bool) -> (usize, f64) {
    let start = Instant::now();
    let mut records = stream.replay(1).await.unwrap();
    let mut n = 0;
    while let Some(record) = records.next().await {
        let record = record.unwrap();
        if decode {
            std::hint::black_box(record.envelope().unwrap());
        }
        n += 1;
    }
    (n, start.elapsed().as_secs_f64())
}

async fn embedded(rows: &mut Vec<Row>) {
    let n = scaled(1_000_000);
    let evs = Arc::new(events(n));
    println!("event size: {} bytes (JSON envelope)", evs[0].payload.len());

    // Baseline: the same bytes, one write() per event, one thread.
    let dir = tempfile::tempdir().unwrap();
    let mut file = std::fs::File::create(dir.path().join("baseline")).unwrap();
    let start = Instant::now();
    for e in evs.iter() {
        file.write_all(&e.payload).unwrap();
    }
    rows.push(Row {
        name: "baseline: one write() per event, 1 thread".into(),
        events: n,
        secs: start.elapsed().as_secs_f64(),
    });
    drop(file);

    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventStream> = Arc::new(EmbeddedLog::open(Options::new(dir.path())).await.unwrap());
    let secs = append_with(APPENDERS, log.clone(), evs.clone()).await;
    rows.push(Row {
        name: format!("embedded append, {APPENDERS} appenders, fsync=interval"),
        events: n,
        secs,
    });

    let (count, secs) = replay_all(log.as_ref(), false).await;
    assert_eq!(count, n);
    rows.push(Row {
        name: "embedded replay (records)".into(),
        events: n,
        secs,
    });
    let (_, secs) = replay_all(log.as_ref(), true).await;
    rows.push(Row {
        name: "embedded replay + envelope decode".into(),
        events: n,
        secs,
    });
    drop(log);

    let one = scaled(100_000);
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(Options::new(dir.path())).await.unwrap();
    let start = Instant::now();
    for e in evs.iter().take(one) {
        log.append(e).await.unwrap();
    }
    rows.push(Row {
        name: "embedded append, 1 appender, fsync=interval".into(),
        events: one,
        secs: start.elapsed().as_secs_f64(),
    });
    drop(log);

    let always = scaled(200_000);
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        fsync: FsyncPolicy::Always,
        ..Options::new(dir.path())
    };
    let log: Arc<dyn EventStream> = Arc::new(EmbeddedLog::open(options).await.unwrap());
    let secs = append_with(APPENDERS, log, Arc::new(evs[..always].to_vec())).await;
    rows.push(Row {
        name: format!("embedded append, {APPENDERS} appenders, fsync=always"),
        events: always,
        secs,
    });
}

/// A fresh stream for raw publishes, configured as the backend configures
/// its own; returns its subject prefix.
async fn raw_stream(js: &async_nats::jetstream::Context) -> String {
    let name = unique_stream_name();
    let prefix = name.to_lowercase();
    js.create_stream(async_nats::jetstream::stream::Config {
        name,
        subjects: vec![format!("{prefix}.>")],
        storage: async_nats::jetstream::stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .unwrap();
    prefix
}

async fn nats(rows: &mut Vec<Row>) {
    let Some(server) = NatsServer::start().await else {
        println!("no nats-server: NATS rows skipped");
        return;
    };
    let n = scaled(200_000);
    let evs = Arc::new(events(n));

    // Baseline: raw async-nats JetStream publishes of the same payloads with
    // the same Nats-Msg-Id header, same concurrency, each awaiting its ack.
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let raw_prefix = raw_stream(&js).await;
    let start = Instant::now();
    let tasks: Vec<_> = (0..APPENDERS)
        .map(|t| {
            let js = js.clone();
            let evs = evs.clone();
            let prefix = raw_prefix.clone();
            tokio::spawn(async move {
                for e in evs.iter().skip(t).step_by(APPENDERS) {
                    let mut headers = HeaderMap::new();
                    headers.insert("Nats-Msg-Id", e.id.to_string().as_str());
                    let subject = format!("{prefix}.{}", e.subject);
                    js.publish_with_headers(subject, headers, e.payload.clone())
                        .await
                        .unwrap()
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    rows.push(Row {
        name: format!("baseline: raw async-nats publish, {APPENDERS} tasks"),
        events: n,
        secs: start.elapsed().as_secs_f64(),
    });

    let stream: Arc<dyn EventStream> = Arc::new(
        NatsStream::connect(ingest::nats::Options::new(server.url(), unique_stream_name()))
            .await
            .unwrap(),
    );
    let secs = append_with(APPENDERS, stream.clone(), evs.clone()).await;
    rows.push(Row {
        name: format!("NATS backend append, {APPENDERS} appenders"),
        events: n,
        secs,
    });
    let (count, secs) = replay_all(stream.as_ref(), false).await;
    assert_eq!(count, n);
    rows.push(Row {
        name: "NATS backend replay (records)".into(),
        events: n,
        secs,
    });

    // A harsher baseline: one task keeping PIPELINE publishes in flight,
    // against the backend with as many concurrent appenders.
    const PIPELINE: usize = 1024;
    let piped_prefix = raw_stream(&js).await;
    let start = Instant::now();
    let mut in_flight = futures::stream::FuturesUnordered::new();
    for e in evs.iter() {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", e.id.to_string().as_str());
        let ack = js
            .publish_with_headers(format!("{piped_prefix}.{}", e.subject), headers, e.payload.clone())
            .await
            .unwrap();
        in_flight.push(std::future::IntoFuture::into_future(ack));
        if in_flight.len() >= PIPELINE {
            in_flight.next().await.unwrap().unwrap();
        }
    }
    while let Some(ack) = in_flight.next().await {
        ack.unwrap();
    }
    rows.push(Row {
        name: format!("baseline: raw async-nats publish, pipelined {PIPELINE} in flight"),
        events: n,
        secs: start.elapsed().as_secs_f64(),
    });
    let stream: Arc<dyn EventStream> = Arc::new(
        NatsStream::connect(ingest::nats::Options::new(server.url(), unique_stream_name()))
            .await
            .unwrap(),
    );
    let secs = append_with(PIPELINE, stream, evs.clone()).await;
    rows.push(Row {
        name: format!("NATS backend append, {PIPELINE} appenders"),
        events: n,
        secs,
    });
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; nothing here takes arguments.
    let mut rows = Vec::new();
    // BENCH_ONLY=embedded or BENCH_ONLY=nats runs one half.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only != "nats" {
        embedded(&mut rows).await;
    }
    if only != "embedded" {
        nats(&mut rows).await;
    }
    println!("\n| measurement | events | seconds | events/s |\n|---|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {} | {:.3} | {:.0} |",
            row.name,
            row.events,
            row.secs,
            row.rate()
        );
    }
    let rate = |prefix: &str| rows.iter().find(|r| r.name.starts_with(prefix)).map(Row::rate);
    println!();
    if let (Some(a), Some(b)) = (rate("embedded append, 64"), rate("baseline: one write()")) {
        println!(
            "embedded append (64, interval) / one-write-per-event baseline: {:.2}x",
            a / b
        );
    }
    if let (Some(a), Some(b)) = (
        rate("NATS backend append, 64"),
        rate("baseline: raw async-nats publish, 64"),
    ) {
        println!(
            "NATS backend append / raw async-nats publish, 64 in flight each: {:.2}x",
            a / b
        );
    }
    if let (Some(a), Some(b)) = (
        rate("NATS backend append, 1024"),
        rate("baseline: raw async-nats publish, pipelined"),
    ) {
        println!(
            "NATS backend append (1024 appenders) / raw pipelined publish (1024 in flight): {:.2}x",
            a / b
        );
    }
}
