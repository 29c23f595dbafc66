//! Damaged and restored files on a real data dir: a flipped bit in the
//! middle of the embedded log refuses the start (naming the file, the
//! offset and the repair) instead of silently cutting acknowledged queries;
//! `nodai check` says the same offline, and `--repair` is the operator's
//! way on. The deploy guide's one-machine restore, step by step.

use crate::common;

use common::app::App;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_bit_mid_log_stops_the_start_and_check_repairs_it() {
    let mut app = App::start(false).await.unwrap();
    app.workflow("echo", "builtin:echo", 0.0).await;
    let (key_id, key) = app.create_key(json!({"name": "k"})).await;
    for i in 0..200 {
        assert_eq!(app.query("echo", Some(&key), json!(i)).await.status(), 200);
    }
    app.stop().await;
    let segment = common::newest_segment(app.dir.path());
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&segment, &bytes).unwrap();

    // Offline: the damage, and that intact records follow it.
    let found = api::check::run(app.dir.path(), false).unwrap();
    let text = found.lines.join("\n");
    assert!(found.problems >= 1, "{text}");
    assert!(
        text.contains("intact records follow") && text.contains("nodai check --repair"),
        "{text}"
    );

    // The server refuses to start on it, saying why and what to run.
    let mut config = api::Config::embedded(app.dir.path());
    config.admin_token = Some(api::auth::AdminToken::new(common::app::TOKEN.into()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let started = api::server::run(config, listener, tokio_util::sync::CancellationToken::new());
    let refused = tokio::time::timeout(Duration::from_secs(30), started)
        .await
        .expect("the start neither failed nor served")
        .expect_err("started on a damaged log");
    let message = refused.to_string();
    assert!(
        message.contains(&segment.display().to_string()) && message.contains("nodai check --repair"),
        "{message}"
    );
    assert_eq!(
        std::fs::read(&segment).unwrap(),
        bytes,
        "nothing cut by the refused start"
    );

    // The operator's choice: cut at the damage, a copy kept.
    let found = api::check::run(app.dir.path(), true).unwrap();
    let text = found.lines.join("\n");
    assert!(text.contains("repaired") && text.contains(".damaged-"), "{text}");
    app.spawn().await;
    let (status, usage) = app
        .admin(reqwest::Method::GET, &format!("/api/v1/api-keys/{key_id}/usage"), None)
        .await;
    let requests = usage["total_requests"].as_u64().unwrap();
    assert_eq!(status, 200);
    assert!(
        (1..200).contains(&requests),
        "the queries before the damage: {requests}"
    );
    app.stop().await;
    let found = api::check::run(app.dir.path(), false).unwrap();
    assert_eq!(found.problems, 0, "{}", found.lines.join("\n"));
}

/// deploy/README.md, "Backups and restore": stop, put the backup's
/// `stream/` in place, leave `snapshots/` and `archive/`, start. Every
/// query answered after the restore is archived, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_one_machine_restore_works_as_written() {
    let mut app = App::start(false).await.unwrap();
    app.workflow("echo", "builtin:echo", 0.0).await;
    let (key_id, key) = app.create_key(json!({"name": "k"})).await;
    for i in 0..5 {
        assert_eq!(app.query("echo", Some(&key), json!(i)).await.status(), 200);
    }
    app.stop().await;
    let backup = tempfile::tempdir().unwrap();
    common::copy_dir(&app.dir.path().join("stream"), &backup.path().join("stream"));
    // Life goes on after the backup: a snapshot and the archive move ahead.
    app.spawn().await;
    for i in 0..10 {
        assert_eq!(app.query("echo", Some(&key), json!(i)).await.status(), 200);
    }
    app.stop().await;
    // The guide's steps.
    let stream = app.dir.path().join("stream");
    std::fs::rename(&stream, app.dir.path().join("stream.before-restore")).unwrap();
    common::copy_dir(&backup.path().join("stream"), &stream);
    app.spawn().await;
    for i in 0..20 {
        assert_eq!(app.query("echo", Some(&key), json!(i)).await.status(), 200);
    }
    let (_, usage) = app
        .admin(reqwest::Method::GET, &format!("/api/v1/api-keys/{key_id}/usage"), None)
        .await;
    assert_eq!(usage["total_requests"], json!(25), "the backup's 5 and the 20 since");
    app.stop().await;
    let mut recorded: Vec<String> = app
        .records()
        .await
        .into_iter()
        .filter(|r| matches!(r.envelope().unwrap().event().unwrap(), ingest::Event::QueryRecorded(_)))
        .map(|r| r.id.to_string())
        .collect();
    recorded.sort();
    assert_eq!(recorded.len(), 25);
    assert_eq!(common::archived_once(&app.dir.path().join("archive")), recorded);
    let aside: Vec<_> = std::fs::read_dir(app.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("archive.set-aside-"))
        .collect();
    assert_eq!(aside.len(), 1, "the archive from after the backup, kept");
    assert_eq!(common::archived_once(&aside[0].path()).len(), 15);
}
