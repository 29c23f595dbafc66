//! Connection hygiene on a real server: a client that sends its request's
//! head or body too slowly, sits idle on a kept-alive connection, sends a
//! huge head, or opens more connections than the cap.

use crate::common;

use common::app::App;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

async fn start(configure: fn(&mut api::Config)) -> App {
    App::start_with(false, configure).await.unwrap()
}

async fn connect(app: &App) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes the connection (or `limit` passes: then
/// None); what it sent.
async fn until_closed(socket: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_sent_a_byte_at_a_time_is_cut_off() {
    let app = start(|c| c.connections.header_timeout = Duration::from_secs(1)).await;
    let socket = connect(&app).await;
    let (mut read, mut write) = socket.into_split();
    let started = Instant::now();
    // 40 bytes, one every 250 ms: 10 s if the server waited for all of it.
    tokio::spawn(async move {
        for byte in b"GET /healthz HTTP/1.1\r\nhost: slow.test\r\n" {
            if write.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "still open after 5 s");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed() {
    let app = start(|c| c.connections.header_timeout = Duration::from_secs(1)).await;
    let mut socket = connect(&app).await;
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: idle.test\r\n\r\n")
        .await
        .unwrap();
    let answer = until_closed(&mut socket, Duration::from_secs(5)).await;
    let answer = answer.expect("closed within 5 s of going idle");
    assert!(answer.starts_with("HTTP/1.1 200"), "answered first: {answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_in_time_is_a_408() {
    let app = start(|c| c.body_timeout = Duration::from_secs(1)).await;
    let mut socket = connect(&app).await;
    let head = format!(
        "POST /api/v1/api-keys HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"name\":",
        common::app::TOKEN
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let answer = until_closed(&mut socket, Duration::from_secs(10))
        .await
        .expect("an answer within 10 s");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("application/problem+json") && answer.contains("request_timeout"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_head_is_a_431() {
    let app = start(|_| {}).await;
    let mut socket = connect(&app).await;
    let head = format!(
        "GET /healthz HTTP/1.1\r\nhost: x\r\nx-filler: {}\r\n\r\n",
        "a".repeat(420 << 10)
    );
    // The server may answer and close before it has read all of it.
    let _ = socket.write_all(head.as_bytes()).await;
    let answer = until_closed(&mut socket, Duration::from_secs(10))
        .await
        .unwrap_or_default();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
}

/// At the cap, a new connection waits (it is not refused, and the server
/// does not run out of files); once one closes, it is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_wait_for_one_to_close() {
    let app = start(|c| c.connections.max_connections = 3).await;
    let ask = async |socket: &mut TcpStream, path: &str| {
        let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n");
        socket.write_all(request.as_bytes()).await.unwrap();
    };
    // Open connections until one is not served: the harness's own client
    // may hold a place, so count rather than assume.
    let mut held = Vec::new();
    let mut waiting = loop {
        let mut socket = connect(&app).await;
        ask(&mut socket, "/healthz").await;
        let mut buf = [0u8; 512];
        // Served connections answer in milliseconds; 2 s leaves room on a loaded machine.
        match tokio::time::timeout(Duration::from_secs(2), socket.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
                held.push(socket);
                assert!(held.len() <= 3, "more than 3 connections served at once");
            }
            _ => break socket,
        }
    };
    assert!(!held.is_empty());
    drop(held.pop());
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), waiting.read(&mut buf))
        .await
        .expect("served once a place was free")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    waiting
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let metrics = until_closed(&mut waiting, Duration::from_secs(5)).await.unwrap();
    let reached = metrics
        .lines()
        .find(|l| l.starts_with("nodai_http_connection_limit_reached"))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(!reached.ends_with(" 0"), "the cap is counted: {reached}");
}
