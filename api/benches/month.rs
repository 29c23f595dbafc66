//! A month of traffic on one machine (BENCHMARKS.md, "A month of
//! traffic"): 35 simulated days written, folded, archived, snapshotted and
//! trimmed (see `month/sim.rs`), then the real `nodai` binary started on
//! the result: time to ready, its memory, and a key's usage for an old
//! range (read from the archive) checked against DuckDB.
//!
//! ```text
//! cargo bench -p api --bench month            # 10 queries/s, 100k keys
//! NODAI_MONTH_RATE=2 NODAI_MONTH_KEYS=20000 cargo bench -p api --bench month
//! ```

#[path = "month/sim.rs"]
mod sim;

use std::time::{Duration, Instant};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let params = sim::Params {
        days: 35,
        rate: env("NODAI_MONTH_RATE", 10.0),
        keys: env("NODAI_MONTH_KEYS", 100_000),
        busy: env("NODAI_MONTH_KEYS", 100_000) / 10,
        retention_days: 7,
        segment_bytes: 256 << 20,
        snapshot_hours: 6,
        flush_hours: 1,
    };
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    eprintln!("{params:?} into {}", dir.display());
    println!("| day | events | stream on disk | first seq | RSS | snapshot | dedup ids | archive bytes/row |");
    println!("|---|---|---|---|---|---|---|---|");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = runtime.block_on(sim::run(&dir, &params, |d| {
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        println!(
            "| {} | {} | {:.0} MiB | {} | {:.0} MiB | {:.1} MiB | {} | {:.1} |",
            d.day,
            d.events,
            mib(d.stream_bytes),
            d.first_seq,
            mib(d.rss_bytes),
            mib(d.snapshot_bytes),
            d.dedup_ids,
            d.archive_bytes as f64 / d.archive_rows.max(1) as f64
        );
    }));
    let last = report.days.last().unwrap();
    println!(
        "\ngenerated {} queries over {} simulated days in {:.0} s; {} events on disk ({:.0} bytes each), {} of them within the retention period",
        last.events,
        params.days,
        report.generate_secs,
        last.on_disk_events,
        last.stream_bytes as f64 / last.on_disk_events.max(1) as f64,
        last.retained_events,
    );
    runtime.block_on(restart(&dir));
}

/// A key's usage for `from..to`, and how long the answer took.
async fn key_usage(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    key: &str,
    from: &str,
    to: &str,
) -> (serde_json::Value, Duration) {
    let timed = Instant::now();
    let usage = http
        .get(format!("{base}/api/v1/api-keys/{key}/usage?from={from}&to={to}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (usage, timed.elapsed())
}

/// Starts the real binary on the simulated data dir: time to ready, RSS,
/// and an old-range usage read against DuckDB.
async fn restart(dir: &std::path::Path) {
    let port = ingest::testkit::free_port();
    let token = "month-bench-admin-token-0123";
    let started = Instant::now();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_nodai"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir)
        .env("NODAI_ADMIN_TOKEN", token)
        .env("NODAI_LOG", "warn")
        .env_remove("NODAI_NATS_URL")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(600), "never ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ready = started.elapsed();
    let pid = child.id().unwrap().to_string();
    println!(
        "restart to ready: {:.2} s; RSS when ready: {:.0} MiB",
        ready.as_secs_f64(),
        sim::rss_of(&pid) as f64 / (1 << 20) as f64
    );

    // The busiest key, one day three weeks back: 24 hours from the archive.
    let day = chrono::Utc::now().date_naive() - chrono::Duration::days(21);
    let (from, to) = (
        format!("{day}T00:00:00Z"),
        format!("{}T00:00:00Z", day + chrono::Duration::days(1)),
    );
    let key = sim::key_id(0);
    let (usage, took) = key_usage(&http, &base, token, &key, &from, &to).await;
    let hourly = usage["hourly"].as_array().cloned().unwrap_or_default();
    let requests: u64 = hourly.iter().filter_map(|h| h["requests"].as_u64()).sum();
    let cost: f64 = hourly.iter().filter_map(|h| h["cost"].as_f64()).sum();
    println!(
        "usage of {key} for {day} (24 hours from the archive): {requests} requests, ${cost:.6}, in {:.0} ms",
        took.as_secs_f64() * 1e3
    );
    let script = format!(
        "import duckdb; print(*duckdb.sql(\"SELECT count(*), sum(cost) FROM read_parquet('{}/archive/usage/*/*/*.parquet', hive_partitioning = true) WHERE key_id = '{key}' AND ts >= TIMESTAMPTZ '{from}' AND ts < TIMESTAMPTZ '{to}'\").fetchall()[0])",
        dir.display()
    );
    match std::process::Command::new("python3").args(["-c", &script]).output() {
        Ok(out) if out.status.success() => println!(
            "DuckDB over the archive: {}",
            String::from_utf8_lossy(&out.stdout).trim()
        ),
        Ok(out) => println!(
            "DuckDB not run: {}",
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        ),
        Err(e) => println!("DuckDB not run: {e}"),
    }

    // Its first four days (older than the 31 the projection keeps): 96
    // hours and 4 days, all from the archive.
    let first = chrono::Utc::now().date_naive() - chrono::Duration::days(35);
    let (from, to) = (
        format!("{first}T00:00:00Z"),
        format!("{}T00:00:00Z", first + chrono::Duration::days(4)),
    );
    let (usage, took) = key_usage(&http, &base, token, &key, &from, &to).await;
    let days: Vec<u64> = usage["daily"]
        .as_array()
        .map(|d| d.iter().filter_map(|d| d["requests"].as_u64()).collect())
        .unwrap_or_default();
    println!("usage of {key} for the 4 days from {first} (96 hours and 4 days from the archive): {days:?} requests a day, in {:.0} ms", took.as_secs_f64() * 1e3);
    let _ = child.start_kill();
}
