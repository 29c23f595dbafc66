//! What only the NATS backend has: a server that goes away and comes back.

use futures::StreamExt;
use ingest::events::{Event, KeyRevoked};
use ingest::nats::{NatsStream, Options};
use ingest::testkit::{free_port, unique_stream_name, NatsServer};
use ingest::{EventStream, Outgoing, StreamError};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

fn event(n: u64) -> Outgoing {
    let e = Event::KeyRevoked(KeyRevoked {
        key_id: format!("key_{n}"),
    });
    Outgoing::new(&e, chrono::Utc::now()).unwrap()
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error_not_a_hang() {
    // Skip like every NATS test when the binary is missing, for symmetry with CI.
    let Some(_server) = NatsServer::start().await else {
        return;
    };
    let url = format!("nats://127.0.0.1:{}", free_port());
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        NatsStream::connect(Options::new(&url, "NODAI")),
    )
    .await
    .expect("connect hung");
    match result {
        Err(StreamError::Unavailable(message)) => assert!(message.contains(&url), "{message}"),
        Err(other) => panic!("expected Unavailable, got {other}"),
        Ok(_) => panic!("connected to nothing"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_under_load_loses_and_doubles_nothing() {
    let Some(mut server) = NatsServer::start().await else {
        return;
    };
    let name = unique_stream_name();
    let stream = Arc::new(NatsStream::connect(Options::new(server.url(), &name)).await.unwrap());
    let mut follower = stream.follow(1).await.unwrap();

    // Appenders keep going while the server is killed and restarted.
    const TASKS: u64 = 4;
    const EACH: u64 = 100;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let stream = stream.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..EACH {
                let e = event(t * 1000 + i);
                stream
                    .append(&e)
                    .await
                    .unwrap_or_else(|err| panic!("append {t}/{i} failed: {err}"));
                ids.push(e.id);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            ids
        }));
    }
    // Wait until the load is under way, then pull the server out from under it.
    let first = tokio::time::timeout(Duration::from_secs(30), follower.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.seq, 1);
    server.restart().await;

    let mut sent = HashSet::new();
    for task in tasks {
        sent.extend(task.await.unwrap());
    }
    let total = (TASKS * EACH) as usize;
    assert_eq!(sent.len(), total);

    let mut seen = vec![first];
    while seen.len() < total {
        let record = tokio::time::timeout(Duration::from_secs(30), follower.next())
            .await
            .unwrap_or_else(|_| panic!("follower stalled after {} records", seen.len()))
            .expect("follower ended")
            .unwrap();
        seen.push(record);
    }
    assert_eq!(
        seen.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=total as u64).collect::<Vec<_>>()
    );
    assert_eq!(
        seen.iter().map(|r| r.id).collect::<HashSet<_>>(),
        sent,
        "every acknowledged event, once"
    );
    assert_eq!(stream.last_seq().await.unwrap(), total as u64, "no duplicates stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_message_on_the_subjects_is_skipped_not_fatal() {
    let Some(server) = NatsServer::start().await else {
        return;
    };
    let name = unique_stream_name();
    let stream = NatsStream::connect(Options::new(server.url(), &name)).await.unwrap();
    stream.append(&event(1)).await.unwrap();
    // Anyone on the server may publish on `<stream>.>`, without our headers.
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.publish(format!("{}.key.intruder", name.to_lowercase()), "not an event".into())
        .await
        .unwrap()
        .await
        .unwrap();
    stream.append(&event(3)).await.unwrap();
    let records: Vec<_> = stream.replay(1).await.unwrap().map(|r| r.unwrap().seq).collect().await;
    assert_eq!(
        records,
        [1, 3],
        "the foreign message (seq 2) is skipped, the rest delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_ends_even_when_the_tail_was_deleted() {
    let Some(server) = NatsServer::start().await else {
        return;
    };
    let name = unique_stream_name();
    let stream = NatsStream::connect(Options::new(server.url(), &name)).await.unwrap();
    for n in 0..3 {
        stream.append(&event(n)).await.unwrap();
    }
    // An operator removes the newest message; the stream's last sequence stays 3.
    let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
    assert!(js.get_stream(&name).await.unwrap().delete_message(3).await.unwrap());
    assert_eq!(stream.last_seq().await.unwrap(), 3);
    let replay = stream
        .replay(1)
        .await
        .unwrap()
        .map(|r| r.unwrap().seq)
        .collect::<Vec<_>>();
    let seqs = tokio::time::timeout(Duration::from_secs(30), replay)
        .await
        .expect("replay never ended");
    assert_eq!(seqs, [1, 2]);
}

/// One holder at a time; renewals keep it; a release frees it at once; a
/// holder that stops renewing loses it within about `LEASE_TTL`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_has_one_holder_and_lapses_when_not_renewed() {
    let Some(server) = NatsServer::start().await else {
        return;
    };
    let name = unique_stream_name();
    let one = NatsStream::connect(Options::new(server.url(), &name)).await.unwrap();
    let two = NatsStream::connect(Options::new(server.url(), &name)).await.unwrap();
    assert!(one.hold_lease("worker", "a").await.unwrap(), "free: taken");
    assert!(!two.hold_lease("worker", "b").await.unwrap(), "held by a");
    assert!(one.hold_lease("worker", "a").await.unwrap(), "renewed by its holder");
    assert!(two.hold_lease("other", "b").await.unwrap(), "leases are independent");
    two.release_lease("worker", "b").await.unwrap();
    assert!(
        !two.hold_lease("worker", "b").await.unwrap(),
        "b cannot release a's lease"
    );
    one.release_lease("worker", "a").await.unwrap();
    assert!(two.hold_lease("worker", "b").await.unwrap(), "released: taken at once");

    // b stops renewing: a gets it once it lapses, and not long after.
    let stopped = std::time::Instant::now();
    let deadline = stopped + ingest::LEASE_TTL + Duration::from_secs(5);
    while !one.hold_lease("worker", "a").await.unwrap() {
        assert!(std::time::Instant::now() < deadline, "the lease never lapsed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        stopped.elapsed() >= ingest::LEASE_TTL - Duration::from_millis(500),
        "lapsed after {:?}, before its time",
        stopped.elapsed()
    );
    assert!(!two.hold_lease("worker", "b").await.unwrap());
}

/// `--nats` takes several servers, comma-separated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_server_urls_connect() {
    let Some(server) = NatsServer::start().await else {
        return;
    };
    let urls = format!("nats://127.0.0.1:{}, {}", free_port(), server.url());
    let stream = NatsStream::connect(Options::new(urls, unique_stream_name()))
        .await
        .unwrap();
    assert_eq!(stream.last_seq().await.unwrap(), 0);
}

/// A server that requires a user and password: refused without them, open
/// with them, and the password appears in no error or `Debug` output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_password_authenticate() {
    use ingest::nats::{Auth, Password};
    let Some(_probe) = NatsServer::start().await else {
        return;
    };
    let (port, store) = (free_port(), tempfile::tempdir().unwrap());
    let binary = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into());
    let binary = if std::path::Path::new("/usr/sbin/nats-server").exists() && binary == "nats-server" {
        "/usr/sbin/nats-server".to_owned()
    } else {
        binary
    };
    let mut server = std::process::Command::new(binary)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(store.path())
        .args(["--user", "nodai", "--pass", "s3cret-pass"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("nats://127.0.0.1:{port}");
    let with = |password: &str| Options {
        auth: Auth {
            user: Some(("nodai".into(), Password(password.into()))),
            ..Auth::default()
        },
        ..Options::new(&url, "AUTHED")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let stream = loop {
        match NatsStream::connect(with("s3cret-pass")).await {
            Ok(stream) => break stream,
            Err(e) => assert!(std::time::Instant::now() < deadline, "never connected: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stream.append(&event(1)).await.unwrap();
    for refused in [Options::new(&url, "AUTHED"), with("wrong-pass")] {
        let debug = format!("{refused:?}");
        assert!(!debug.contains("wrong-pass"), "{debug}");
        match NatsStream::connect(refused).await {
            Err(StreamError::Unavailable(message)) => assert!(!message.contains("pass"), "{message}"),
            other => panic!("connected without the right password: {:?}", other.map(|_| ())),
        }
    }
    let _ = server.kill();
    let _ = server.wait();
}
