//! The month simulation at a small scale (a few queries a minute, 2,000
//! keys): checks the bounds that BENCHMARKS.md, "A month of traffic",
//! measures at full scale. Bounds, not timings: the stream on disk is the
//! retention period's events plus a segment, de-duplication holds minutes
//! of ids, per-key usage holds 48 hours, and the snapshot stops growing
//! with traffic.

#[path = "../../benches/month/sim.rs"]
mod sim;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_stays_within_its_bounds() {
    let params = sim::Params {
        days: 35,
        rate: 0.015,
        keys: 1_000,
        busy: 100,
        retention_days: 7,
        segment_bytes: 256 << 10,
        snapshot_hours: 6,
        flush_hours: 6,
    };
    let root = tempfile::tempdir().unwrap();
    let report = sim::run(&root.path().join("data"), &params, |d| eprintln!("{d:?}")).await;
    let day = |n: i64| report.days.iter().find(|d| d.day == n).unwrap();
    let (d10, d35) = (day(10), day(35));
    let per_event = day(7).stream_bytes as f64 / day(7).events as f64;

    // Stream: what the last 7 days hold, plus at most one segment (and
    // what arrives between two retention passes).
    assert!(d35.first_seq > 1, "nothing was deleted");
    let bound = (d35.retained_events as f64 + params.rate * 3600.0 * (params.flush_hours + 1) as f64) * per_event * 1.1
        + params.segment_bytes as f64;
    assert!(
        (d35.stream_bytes as f64) <= bound,
        "stream {} bytes on disk, bound {bound:.0}",
        d35.stream_bytes
    );
    assert!(
        d35.stream_bytes < d35.events * per_event as u64 / 3,
        "a month kept whole"
    );

    // De-duplication: the ids of minutes of queries, not of a month.
    assert!(d35.dedup_ids < 100, "{} ids remembered", d35.dedup_ids);

    // The snapshot grows by keys, not by events: once the 31 days of daily
    // buckets have filled, it stays within 5 % while events keep coming.
    let d32 = day(32);
    assert!(
        (d35.snapshot_bytes as f64 - d32.snapshot_bytes as f64).abs() <= d32.snapshot_bytes as f64 * 0.05,
        "snapshot {} bytes on day 32, {} on day 35",
        d32.snapshot_bytes,
        d35.snapshot_bytes
    );
    assert!(d10.snapshot_bytes < d35.snapshot_bytes, "days fill up to 31");

    // Every query archived once.
    assert_eq!(d35.archive_rows, d35.events);

    // The newest snapshot holds 48 hours of a busy key, no more.
    let snapshots = ledger::snapshot::list(&report.dir.join("snapshots")).unwrap();
    let bytes = std::fs::read(&snapshots[0].1).unwrap();
    let projection = ledger::snapshot::decode(&bytes, "embedded").unwrap();
    let usage = projection.usage.get(&report.busiest_key).unwrap();
    assert!(usage.hours.range(i64::MIN, i64::MAX).count() <= ledger::usage::HOURS_KEPT as usize);
    assert!(
        usage.days.range(i64::MIN, i64::MAX).count() >= 30,
        "daily buckets are kept"
    );
}
