//! A month of traffic, simulated: 35 days of queries with stored times
//! spread over those days (a daily cycle around an average rate; most of
//! it from a few busy keys, the rest from many quiet ones), written to a
//! real embedded log whose clock is the simulation's, folded into the real
//! projection, archived to Parquet, snapshotted and trimmed by the same
//! rule the worker applies (`api::retention`): up to the oldest kept
//! snapshot, the archive's watermark and the retention period.
//!
//! Shared by `benches/month.rs` (the measurements in BENCHMARKS.md) and
//! `tests/it/month.rs` (a small run in CI that checks the bounds).
#![allow(dead_code)]

use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use ingest::embedded::{EmbeddedLog, Options};
use ingest::events::{Event, KeyCreated, KeySettings, QueryRecorded};
use ingest::{EventStream, Micros, Outgoing};
use ledger::archive::{Archive, Row};
use ledger::Projection;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

/// The simulation's clock, read by the log's writer.
static NOW: AtomicI64 = AtomicI64::new(0);

fn clock() -> i64 {
    NOW.load(Ordering::Relaxed)
}

#[derive(Debug, Clone)]
pub struct Params {
    pub days: i64,
    /// Average queries per second (the daily cycle swings ±50 % around it).
    pub rate: f64,
    pub keys: usize,
    /// Keys that take 90 % of the traffic.
    pub busy: usize,
    pub retention_days: i64,
    pub segment_bytes: u64,
    /// Simulated hours between snapshots.
    pub snapshot_hours: i64,
    /// Simulated hours between archive flushes (and retention passes).
    pub flush_hours: i64,
}

/// What was measured at the end of one simulated day.
#[derive(Debug, Clone, Default)]
pub struct Day {
    pub day: i64,
    pub events: u64,
    pub stream_bytes: u64,
    pub first_seq: u64,
    pub rss_bytes: u64,
    pub snapshot_bytes: u64,
    pub dedup_ids: usize,
    pub archive_bytes: u64,
    pub archive_rows: u64,
    /// Events stored within the retention period.
    pub retained_events: u64,
    /// Events still on disk (the period's and the rest of the oldest segment).
    pub on_disk_events: u64,
}

pub struct Report {
    pub days: Vec<Day>,
    pub dir: PathBuf,
    pub busiest_key: String,
    pub generate_secs: f64,
}

/// Queries per second at simulated time `t`: the average, swinging ±50 %
/// over the UTC day (lowest at 00:00, highest at 12:00).
fn rate_at(avg: f64, t: DateTime<Utc>) -> f64 {
    let hour = t.timestamp().rem_euclid(86_400) as f64 / 3600.0;
    avg * (1.0 - 0.5 * (std::f64::consts::TAU * hour / 24.0).cos())
}

/// A small, fast, repeatable generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

pub fn key_id(i: usize) -> String {
    format!("key_{i:06}")
}

/// Runs the simulation into `dir` (which becomes a nodai data dir:
/// `stream/`, `snapshots/`, `archive/`), calling `report` after each day.
pub async fn run(dir: &Path, params: &Params, mut report: impl FnMut(&Day)) -> Report {
    let started = Instant::now();
    let end = Utc::now().start_of_day();
    let start = end - Duration::days(params.days);
    NOW.store(start.timestamp_micros(), Ordering::Relaxed);
    let log = EmbeddedLog::open(Options {
        segment_bytes: params.segment_bytes,
        clock,
        ..Options::new(dir.join("stream"))
    })
    .await
    .unwrap();
    let (snapshots, archive_dir) = (dir.join("snapshots"), dir.join("archive"));
    let mut archive = Archive::open(&archive_dir).unwrap();
    let mut projection = Projection::default();
    let mut pending: Vec<Row> = Vec::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    // The keys, created at the start.
    for chunk in (0..params.keys).collect::<Vec<_>>().chunks(1000) {
        let appends = chunk.iter().map(|&i| {
            let event = Event::KeyCreated(KeyCreated {
                key_id: key_id(i),
                key_hash: format!("{:064x}", i),
                prefix: format!("nk_{:08x}", i),
                settings: KeySettings {
                    name: format!("customer {i}"),
                    owner: Some(format!("org_{}", i % 5000)),
                    active: true,
                    workflow_ids: vec![],
                    rate_limit_per_hour: Some(100_000),
                    cost_limit_per_month: Some(Micros::new(1_000_000_000)),
                    alert_thresholds: vec![80, 100],
                    expires_at: None,
                    allowed_origins: vec![],
                    metadata: None,
                    customer_id: None,
                    limits: vec![],
                    max_concurrent: None,
                },
            });
            let outgoing = Outgoing::new(&event, start).unwrap();
            let log = &log;
            async move { log.append(&outgoing).await.unwrap() }
        });
        futures::future::join_all(appends).await;
    }

    let mut days = Vec::new();
    let mut carry = 0.0;
    let mut minute = start;
    let mut events = 0u64;
    let mut archived = 0u64;
    while minute < end {
        NOW.store(minute.timestamp_micros(), Ordering::Relaxed);
        carry += rate_at(params.rate, minute) * 60.0;
        let n = carry as usize;
        carry -= n as f64;
        let batch: Vec<Outgoing> = (0..n)
            .map(|_| {
                let r = rng.next();
                let key = if r % 10 < 9 {
                    (r >> 8) as usize % params.busy
                } else {
                    params.busy + (r >> 8) as usize % (params.keys - params.busy)
                };
                let ts = minute + Duration::milliseconds((r >> 40) as i64 % 60_000);
                let q = Event::QueryRecorded(QueryRecorded {
                    request_id: format!("req_{r:016x}"),
                    key_id: key_id(key),
                    workflow_id: "summarize".into(),
                    status_code: if r.is_multiple_of(97) { 502 } else { 200 },
                    cost: Micros::new(1_000 + (r >> 50) as i64),
                    duration_ms: 40 + (r >> 54),
                    reported_cost: None,
                    record_by: Some(ts + Duration::seconds(15)),
                    customer_id: None,
                    input_tokens: 0,
                    output_tokens: 0,
                    authorization_id: None,
                });
                Outgoing::new(&q, ts).unwrap()
            })
            .collect();
        events += n as u64;
        futures::future::join_all(batch.iter().map(|e| log.append(e))).await;
        minute += Duration::minutes(1);

        // Every `flush_hours`: fold, flush and compact the archive, trim.
        if minute.timestamp() % (3600 * params.flush_hours) == 0 {
            fold(&log, &mut projection, &mut pending).await;
            let through = projection.seq;
            archived += pending.len() as u64;
            archive
                .write(&std::mem::take(&mut pending), through, projection.last_id)
                .unwrap();
            archive.compact(minute - Duration::minutes(10)).unwrap();
            if minute.timestamp() % (3600 * params.snapshot_hours) == 0 {
                ledger::snapshot::write(&snapshots, &projection, "embedded").unwrap();
            }
            let covered = ledger::snapshot::list(&snapshots)
                .unwrap()
                .into_iter()
                .map(|(seq, _)| seq)
                .min()
                .unwrap_or(0);
            let cutoff = (minute - Duration::days(params.retention_days)).timestamp_micros();
            let first = log.first_seq().await.unwrap();
            let old = api::retention::first_stored_after(&log, first, projection.seq, cutoff)
                .await
                .unwrap();
            log.trim_before(old.min(covered).min(archive.watermark()))
                .await
                .unwrap();
        }
        if minute.timestamp() % 86_400 == 0 {
            let first = log.first_seq().await.unwrap();
            let cutoff = (minute - Duration::days(params.retention_days)).timestamp_micros();
            let old = api::retention::first_stored_after(&log, first, projection.seq, cutoff)
                .await
                .unwrap();
            let day = Day {
                day: (minute - start).num_days(),
                events,
                stream_bytes: dir_bytes(&dir.join("stream")),
                first_seq: first,
                rss_bytes: rss(),
                snapshot_bytes: ledger::snapshot::list(&snapshots)
                    .unwrap()
                    .first()
                    .map_or(0, |(_, p)| std::fs::metadata(p).map_or(0, |m| m.len())),
                dedup_ids: projection.dedup.len(),
                archive_bytes: dir_bytes(&archive_dir.join("usage")),
                archive_rows: archived,
                retained_events: log.last_seq().await.unwrap() + 1 - old,
                on_disk_events: log.last_seq().await.unwrap() + 1 - first,
            };
            report(&day);
            days.push(day);
        }
    }
    fold(&log, &mut projection, &mut pending).await;
    archive
        .write(&std::mem::take(&mut pending), projection.seq, projection.last_id)
        .unwrap();
    ledger::snapshot::write(&snapshots, &projection, "embedded").unwrap();
    log.close().await;
    Report {
        days,
        dir: dir.to_owned(),
        busiest_key: key_id(0),
        generate_secs: started.elapsed().as_secs_f64(),
    }
}

/// Folds what the log holds past the projection, as the follower does.
async fn fold(log: &EmbeddedLog, projection: &mut Projection, pending: &mut Vec<Row>) {
    let mut records = log.replay(projection.seq + 1).await.unwrap();
    while let Some(record) = records.next().await {
        let record = record.unwrap();
        let envelope = record.envelope().unwrap();
        let event = envelope.event().unwrap();
        let first = projection.apply_stored(record.seq, envelope.id, envelope.ts, record.stored_micros, &event);
        if let (true, Event::QueryRecorded(q)) = (first, event) {
            pending.push(api::archiver::query_row(record.seq, envelope.id, envelope.ts, q));
        }
    }
}

pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// This process's resident memory.
pub fn rss() -> u64 {
    rss_of("self")
}

pub fn rss_of(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

trait StartOfDay {
    fn start_of_day(self) -> Self;
}

impl StartOfDay for DateTime<Utc> {
    fn start_of_day(self) -> Self {
        DateTime::from_timestamp(self.timestamp().div_euclid(86_400) * 86_400, 0).unwrap_or(self)
    }
}
