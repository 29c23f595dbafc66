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
