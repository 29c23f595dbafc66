//! Retention on a real server: old events are deleted once a snapshot and
//! the archive cover them, never sooner; a replica that starts after the
//! stream's head was deleted loads the published snapshot, and one that
//! has no snapshot reaching it refuses to start; usage older than the
//! projection keeps is read from the archive.

use crate::common;

use api::config::{Backend, Config, Role};
use chrono::{Duration as TimeDelta, Utc};
use common::app::{eventually, App, Store, TOKEN};
use ingest::events::{Event, QueryRecorded};
use ingest::{EventStream, Micros, Outgoing};
use serde_json::{json, Value};
use std::time::Duration;

/// Deletes as soon as it may: tiny segments, a 1 s retention, a pass every
/// 100 ms, a snapshot every 50 events and an archive flush every second.
fn eager(config: &mut Config) {
    config.segment_bytes = 8 << 10;
    config.retention = Duration::from_secs(1);
    config.retention_every = Duration::from_millis(100);
    config.snapshot_every_events = 50;
    config.archive_flush = Duration::from_secs(1);
}

/// A key and `n` answered queries on `echo` ($0.01 each).
async fn traffic(app: &App, n: usize) -> (String, String) {
    app.workflow("echo", "builtin:echo", 0.01).await;
    let (key_id, secret) = app.create_key(json!({"name": "busy"})).await;
    for i in 0..n {
        let r = app.query("echo", Some(&secret), json!(i)).await;
        assert_eq!(r.status(), 200);
    }
    (key_id, secret)
}

async fn usage(app: &App, key_id: &str, query: &str) -> Value {
    let (status, body) = app
        .admin(
            reqwest::Method::GET,
            &format!("/api/v1/api-keys/{key_id}/usage{query}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn deleted_some(app: &App) {
    eventually("retention deletes the stream's head", async || {
        app.metric("nodai_stream_first_seq").await > 1.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_events_go_and_a_restart_answers_the_same() {
    let mut app = App::start_with(false, eager).await.unwrap();
    let (key_id, secret) = traffic(&app, 300).await;
    deleted_some(&app).await;
    let before = usage(&app, &key_id, "").await;
    assert_eq!(before["total_requests"], 300);
    app.stop().await;

    let segments = std::fs::read_dir(app.dir.path().join("stream"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .count();
    let records = app.records().await;
    assert!(records[0].seq > 1, "the head is gone from disk");
    assert_eq!(
        common::archived_once(&app.dir.path().join("archive")).len(),
        300,
        "every query archived once, deleted or not"
    );
    // Nothing the archive or the oldest snapshot does not cover is gone.
    let oldest_snapshot = ledger::snapshot::list(&app.dir.path().join("snapshots"))
        .unwrap()
        .into_iter()
        .map(|(seq, _)| seq)
        .min()
        .unwrap();
    assert!(records[0].seq <= oldest_snapshot, "deleted past the oldest snapshot");
    eprintln!("{segments} segments left, first sequence {}", records[0].seq);

    app.spawn().await;
    let after = usage(&app, &key_id, "").await;
    for field in [
        "total_requests",
        "total_cost",
        "requests_today",
        "requests_this_hour",
        "hourly",
        "daily",
    ] {
        assert_eq!(after[field], before[field], "{field}");
    }
    assert_eq!(app.query("echo", Some(&secret), json!("again")).await.status(), 200);
    // A key change after its last event was deleted is not a conflict.
    let (status, body) = app
        .admin(
            reqwest::Method::PUT,
            &format!("/api/v1/api-keys/{key_id}"),
            Some(json!({"name": "renamed"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// A snapshot file that does not load (an older build's format after an
/// upgrade, a damaged one) covers nothing: retention holds deletion back
/// rather than delete what only a replay could rebuild.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_does_not_load_covers_nothing() {
    let mut app = App::start_with(false, |c| {
        eager(c);
        c.snapshot_every_events = u64::MAX;
    })
    .await
    .unwrap();
    let (_, secret) = traffic(&app, 100).await;
    app.stop().await;
    let snapshots = app.dir.path().join("snapshots");
    for file in std::fs::read_dir(&snapshots).unwrap() {
        std::fs::remove_file(file.unwrap().path()).unwrap();
    }
    std::fs::write(
        snapshots.join(format!("snapshot-{:020}.bin", 150)),
        b"NODAISNP from an older build",
    )
    .unwrap();
    app.spawn().await;
    for i in 0..100 {
        assert_eq!(app.query("echo", Some(&secret), json!(i)).await.status(), 200);
    }
    eventually("retention holds old events back for want of a snapshot", async || {
        app.metric("nodai_retention_held_back_events").await > 0.0
    })
    .await;
    assert_eq!(app.metric("nodai_stream_first_seq").await, 1.0, "nothing deleted");
    assert_eq!(app.metric("nodai_snapshot_covered_seq").await, 0.0);
}

/// A power cut under `--fsync interval` can lose the log's unsynced tail
/// after the archive took it. On a stream whose head retention deleted,
/// the archive cannot be rebuilt from the stream: it is cut back to the
/// stream's end, keeping every older row, rather than set aside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_past_a_lost_tail_is_cut_back_not_set_aside() {
    let mut app = App::start_with(false, eager).await.unwrap();
    let (key_id, secret) = traffic(&app, 300).await;
    deleted_some(&app).await;
    app.stop().await;
    assert_eq!(common::archived_once(&app.dir.path().join("archive")).len(), 300);
    // The last record (a query) never reached the disk. (The newest of
    // these tiny segments may hold only one.)
    common::cut_log_tail(app.dir.path(), 1, false);
    app.spawn().await;
    assert_eq!(usage(&app, &key_id, "").await["total_requests"], 299);
    assert_eq!(app.query("echo", Some(&secret), json!("after")).await.status(), 200);
    app.stop().await;
    let aside = std::fs::read_dir(app.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("archive.set-aside"))
        .count();
    assert_eq!(aside, 0, "the archive was set aside");
    assert_eq!(
        common::archived_once(&app.dir.path().join("archive")).len(),
        300,
        "the rows before the cut, each once, and the query after it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_with_no_snapshot_reaching_the_stream_refuses() {
    let mut app = App::start_with(false, eager).await.unwrap();
    traffic(&app, 200).await;
    deleted_some(&app).await;
    app.stop().await;
    std::fs::remove_dir_all(app.dir.path().join("snapshots")).unwrap();
    let mut config = Config::embedded(app.dir.path());
    eager(&mut config);
    config.admin_token = Some(api::auth::AdminToken::new(TOKEN.into()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = api::server::run(config, listener, Default::default()).await;
    match refused {
        Err(api::server::ServeError::NoSnapshot { first, .. }) => assert!(first > 1),
        other => panic!("expected a refusal for want of a snapshot, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_replica_joins_a_trimmed_nats_stream_from_the_published_snapshot() {
    let Some(app) = App::start_with(true, eager).await else {
        return;
    };
    let (key_id, secret) = traffic(&app, 300).await;
    deleted_some(&app).await;
    eventually("a snapshot is published", async || {
        app.metric("nodai_snapshot_covered_seq").await > 0.0
    })
    .await;
    let Store::Nats(server, stream) = &app.store else {
        unreachable!()
    };

    // An API replica with an empty data dir.
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::embedded(dir.path());
    config.admin_token = Some(api::auth::AdminToken::new(TOKEN.into()));
    config.role = Role::Api;
    config.backend = Backend::Nats {
        url: server.url(),
        stream: stream.clone(),
        replicas: 1,
        auth: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let replica = tokio::spawn(api::server::run(config, listener, shutdown.clone()));
    let replica_app = App {
        base,
        http: reqwest::Client::new(),
        shutdown: shutdown.clone(),
        server: Some(replica),
        dir,
        store: Store::Embedded,
        configure: |_| {},
    };
    replica_app.ready().await;
    assert_eq!(usage(&replica_app, &key_id, "").await["total_requests"], 300);
    assert_eq!(
        replica_app.query("echo", Some(&secret), json!("there")).await.status(),
        200
    );
    eventually("the first replica counts the second's query", async || {
        usage(&app, &key_id, "").await["total_requests"] == 301
    })
    .await;
    shutdown.cancel();
}

/// Hours and days older than the projection keeps (48 hours, 31 days) are
/// read from the archive: queries stored with times 40 days back answer
/// from Parquet, equal to the sums of what was stored and to DuckDB's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_hours_are_read_from_the_archive() {
    let mut app = App::start_with(false, |c| c.archive_flush = Duration::from_secs(1))
        .await
        .unwrap();
    app.workflow("echo", "builtin:echo", 0.01).await;
    let (key_id, _) = app.create_key(json!({"name": "old"})).await;
    let (other, _) = app.create_key(json!({"name": "other"})).await;
    app.stop().await;

    let start = (Utc::now() - TimeDelta::days(5))
        .duration_trunc(TimeDelta::hours(1))
        .unwrap();
    let log = ingest::embedded::EmbeddedLog::open(ingest::embedded::Options::new(app.dir.path().join("stream")))
        .await
        .unwrap();
    let mut expected = std::collections::BTreeMap::<i64, (u64, i64, u64)>::new();
    let mut last = 0;
    for i in 0..600i64 {
        let (key, ts) = (
            if i % 3 == 0 { &other } else { &key_id },
            start + TimeDelta::seconds(i * 37),
        );
        let (status, cost) = (if i % 7 == 0 { 502 } else { 200 }, 1_000 + i);
        let e = Event::QueryRecorded(QueryRecorded {
            request_id: format!("req_{i}"),
            key_id: key.clone(),
            workflow_id: "echo".into(),
            status_code: status,
            cost: Micros::new(cost),
            duration_ms: 1,
            reported_cost: None,
            record_by: None,
            customer_id: None,
            input_tokens: 0,
            output_tokens: 0,
            authorization_id: None,
        });
        last = log.append(&Outgoing::new(&e, ts).unwrap()).await.unwrap().seq;
        if key == &key_id {
            let hour = expected.entry(ts.timestamp().div_euclid(3600)).or_default();
            *hour = (hour.0 + 1, hour.1 + cost, hour.2 + u64::from(status >= 500));
        }
    }
    log.close().await;
    drop(log);

    app.spawn().await;
    let (from, to) = (start.to_rfc3339(), (start + TimeDelta::hours(8)).to_rfc3339());
    let range = format!("?from={}&to={}", urlencode(&from), urlencode(&to));
    eventually("the backdated queries are archived", async || {
        let archived = ledger::archive::Archive::peek(&app.dir.path().join("archive")).unwrap();
        archived.is_some_and(|(seq, _)| seq >= last)
    })
    .await;
    let body = usage(&app, &key_id, &range).await;
    let hourly: Vec<(i64, (u64, i64, u64))> = body["hourly"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let hour = chrono::DateTime::parse_from_rfc3339(h["hour"].as_str().unwrap()).unwrap();
            let cost = (h["cost"].as_f64().unwrap() * 1e6).round() as i64;
            (
                hour.timestamp().div_euclid(3600),
                (h["requests"].as_u64().unwrap(), cost, h["errors"].as_u64().unwrap()),
            )
        })
        .filter(|(_, b)| b.0 > 0)
        .collect();
    let daily_requests: u64 = body["daily"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["requests"].as_u64().unwrap())
        .sum();
    let daily_cost: f64 = body["daily"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["cost"].as_f64().unwrap())
        .sum();
    assert_eq!(daily_requests, 400, "the days come from the archive too");
    assert_eq!(
        (daily_cost * 1e6).round() as i64,
        expected.values().map(|b| b.1).sum::<i64>()
    );
    assert_eq!(hourly, expected.into_iter().collect::<Vec<_>>());
    assert_eq!(body["total_requests"], 400);
    duckdb_agrees(&app.dir.path().join("archive"), &key_id, &from, &to, &hourly);
}

/// DuckDB over the archive gives the same hours as the usage API. Skipped
/// without Python's duckdb unless `NODAI_REQUIRE_PYTHON=1` (CI installs it).
fn duckdb_agrees(archive: &std::path::Path, key_id: &str, from: &str, to: &str, hourly: &[(i64, (u64, i64, u64))]) {
    let script = r#"
import sys, duckdb
rows = duckdb.sql(f"""SELECT epoch(date_trunc('hour', ts))::BIGINT // 3600, count(*), (sum(cost) * 1000000)::BIGINT,
    count(*) FILTER (WHERE status_code >= 500)
  FROM read_parquet('{sys.argv[1]}/usage/*/*/*.parquet', hive_partitioning = true)
  WHERE key_id = '{sys.argv[2]}' AND ts >= '{sys.argv[3]}'::TIMESTAMPTZ AND ts < '{sys.argv[4]}'::TIMESTAMPTZ
  GROUP BY 1 ORDER BY 1""").fetchall()
for r in rows: print(*r)
"#;
    let Some(text) = common::duckdb(
        script,
        &[archive.as_os_str(), key_id.as_ref(), from.as_ref(), to.as_ref()],
    ) else {
        return;
    };
    let duck: Vec<(i64, (u64, i64, u64))> = text
        .lines()
        .map(|line| {
            let f: Vec<i64> = line.split_whitespace().map(|x| x.parse().unwrap()).collect();
            (f[0], (f[1] as u64, f[2], f[3] as u64))
        })
        .collect();
    assert_eq!(duck, hourly, "DuckDB and the usage API disagree");
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

use chrono::DurationRound;
