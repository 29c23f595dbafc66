//! The ledger's own speed: folding events into the projection, snapshots,
//! writing the Parquet archive and scanning it with DuckDB.
//!
//!   cargo bench -p ledger --bench ledger                 (BENCH_EVENTS=10000000)
//!   BENCH_ONLY=fold | copy                               (stop after that step)
//!
//! Prints markdown rows for BENCHMARKS.md. Baselines run in the same
//! process just before what they are compared with.

use chrono::{TimeZone, Utc};
use ingest::events::QueryRecorded;
use ingest::{Event, EventId, Micros};
use ledger::archive::{Archive, Row};
use ledger::Projection;
use std::collections::HashMap;
use std::time::Instant;

fn events(n: u64) -> Vec<(u64, EventId, chrono::DateTime<Utc>, Event)> {
    let start = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let keys: Vec<String> = (0..10_000).map(|k| format!("key_{k:032x}")).collect();
    (0..n)
        .map(|i| {
            let q = QueryRecorded {
                request_id: format!("req_{i:032x}"),
                key_id: keys[(i.wrapping_mul(2_654_435_761) % keys.len() as u64) as usize].clone(),
                workflow_id: ["summarize", "translate", "classify"][(i % 3) as usize].into(),
                status_code: if i % 50 == 0 { 502 } else { 200 },
                cost: Micros::new(1_500),
                duration_ms: 20 + i % 900,
                reported_cost: None,
                record_by: None,
                customer_id: None,
                input_tokens: 0,
                output_tokens: 0,
                authorization_id: None,
            };
            // 20 days of traffic: 10M events is ~6 per second.
            let ts = start + chrono::Duration::microseconds((i as i64) * 172_800);
            (i + 1, EventId::new(), ts, Event::QueryRecorded(q))
        })
        .collect()
}

fn row(label: &str, n: u64, secs: f64, extra: &str) {
    println!("| {label} | {n} | {secs:.3} | {:.0} | {extra} |", n as f64 / secs);
}

fn main() {
    let n: u64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let events = events(n);
    println!("| measurement | events | seconds | per second | |");
    println!("|---|---:|---:|---:|---|");

    // Baseline: the least a fold must do, a hash map update per event.
    let started = Instant::now();
    let mut counts: HashMap<&str, (u64, i64)> = HashMap::new();
    for (_, _, _, event) in &events {
        if let Event::QueryRecorded(q) = event {
            let c = counts.entry(q.key_id.as_str()).or_default();
            c.0 += 1;
            c.1 += q.cost.get();
        }
    }
    row(
        "baseline: count per key in a HashMap",
        n,
        started.elapsed().as_secs_f64(),
        "",
    );
    std::hint::black_box(&counts);

    // The keys exist, with a $1 monthly limit each crosses: the alert
    // rules run on every query, as in a real replay.
    let mut projection = Projection::default();
    for k in 0..10_000u64 {
        let key = Event::KeyCreated(ingest::events::KeyCreated {
            key_id: format!("key_{k:032x}"),
            key_hash: format!("{k:064x}"),
            prefix: "nk_00000000".into(),
            settings: ingest::events::KeySettings {
                name: "bench".into(),
                owner: None,
                active: true,
                workflow_ids: vec![],
                rate_limit_per_hour: None,
                cost_limit_per_month: Some(Micros::new(1_000_000)),
                alert_thresholds: vec![80, 100],
                expires_at: None,
                allowed_origins: vec![],
                metadata: None,
                customer_id: None,
                limits: vec![],
                max_concurrent: None,
            },
        });
        projection.apply(
            0,
            EventId::new(),
            Utc.with_ymd_and_hms(2026, 10, 31, 0, 0, 0).unwrap(),
            &key,
        );
    }
    let started = Instant::now();
    for (seq, id, ts, event) in &events {
        projection.apply(*seq, *id, *ts, event);
    }
    row(
        "projection fold (usage series, dedup, alert rules), 1 core",
        n,
        started.elapsed().as_secs_f64(),
        "",
    );
    if std::env::var("BENCH_ONLY").as_deref() == Ok("fold") {
        return;
    }

    // What a snapshot costs the follower: it writes from a copy taken
    // under the read lock, so the fold waits for the copy alone.
    let started = Instant::now();
    let copy = projection.clone();
    row(
        "projection copy (the fold's pause for a snapshot)",
        n,
        started.elapsed().as_secs_f64(),
        "",
    );
    drop(copy);
    if std::env::var("BENCH_ONLY").as_deref() == Ok("copy") {
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let bytes = ledger::snapshot::write(dir.path(), &projection, "bench").unwrap();
    row(
        "snapshot write",
        n,
        started.elapsed().as_secs_f64(),
        &format!("{} MiB", bytes >> 20),
    );
    let started = Instant::now();
    let loaded = ledger::snapshot::load_newest(dir.path(), "bench", 1, u64::MAX, |_| Ok(projection.last_id)).unwrap();
    row("snapshot load", n, started.elapsed().as_secs_f64(), "");
    assert_eq!(loaded.seq, projection.seq);
    drop((loaded, projection));

    let rows: Vec<Row> = events
        .iter()
        .filter_map(|(seq, id, ts, event)| match event {
            Event::QueryRecorded(q) => Some(Row {
                seq: *seq,
                event_id: *id,
                ts: *ts,
                key_id: q.key_id.clone(),
                workflow_id: q.workflow_id.clone(),
                status_code: q.status_code,
                cost: q.cost,
                duration_ms: q.duration_ms,
                input_tokens: q.input_tokens,
                output_tokens: q.output_tokens,
                customer_id: q.customer_id.clone(),
            }),
            _ => None,
        })
        .collect();
    drop(events);
    let archive_dir = tempfile::tempdir().unwrap();
    let mut archive = Archive::open(archive_dir.path()).unwrap();
    let started = Instant::now();
    let mut written = 0u64;
    // Flushes of 300k rows: hours at flush boundaries get two files to compact.
    for chunk in rows.chunks(300_000) {
        written += archive.write(chunk, chunk.last().unwrap().seq, None).unwrap().bytes;
    }
    row(
        "archive write (Parquet, zstd)",
        n,
        started.elapsed().as_secs_f64(),
        &format!("{:.1} bytes/row on disk", written as f64 / n as f64),
    );
    let started = Instant::now();
    let compacted = archive.compact(Utc::now()).unwrap();
    row(
        "archive compaction (all hours)",
        n,
        started.elapsed().as_secs_f64(),
        &format!("{} hours merged", compacted.files),
    );

    let script = r#"
import sys, time, duckdb
t = time.perf_counter()
r = duckdb.sql(f"SELECT workflow_id, count(*), sum(cost), quantile_disc(duration_ms, 0.95) FROM read_parquet('{sys.argv[1]}/usage/*/*/*.parquet', hive_partitioning = true) GROUP BY ALL").fetchall()
print(time.perf_counter() - t, sum(x[1] for x in r))
"#;
    match std::process::Command::new("python3")
        .args(["-c", script])
        .arg(archive_dir.path())
        .output()
    {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let mut fields = text.split_whitespace();
            let secs: f64 = fields.next().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
            let counted: u64 = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            assert_eq!(counted, n);
            row("DuckDB scan: count, sum, p95 by workflow", n, secs, "");
        }
        _ => eprintln!("DuckDB row skipped: pip install duckdb"),
    }
}
