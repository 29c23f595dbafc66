//! Keys, workflows and the query gateway over real HTTP, on both backends:
//! every row of the spec's error table, rotation, expiry, revocation,
//! exact limits under concurrency, real upstreams, and no plaintext key
//! anywhere it should not be.

use crate::common;

use axum::routing::post;
use common::app::{eventually, problem, App, Store, TOKEN};
use ingest::{Event, EventStream};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

async fn key_management_and_bad_input(app: App) {
    // Auth: nothing, a wrong token, an API key: all 401.
    let (_, key) = app.create_key(json!({"name": "first"})).await;
    for (auth, challenge) in [
        (None, r#"Bearer realm="nodai""#),
        (Some("wrong"), r#"Bearer realm="nodai", error="invalid_token""#),
        (Some(key.as_str()), r#"Bearer realm="nodai", error="invalid_token""#),
    ] {
        let mut request = app.http.get(format!("{}/api/v1/api-keys", app.base));
        if let Some(auth) = auth {
            request = request.bearer_auth(auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.headers()["www-authenticate"], challenge, "RFC 6750");
        assert_eq!(problem(response).await, (401, "unauthorized".into()));
    }
    // The scheme in any case (RFC 7235); two Authorization headers are
    // refused, never the first taken.
    let list = |values: &[&str]| {
        let mut request = app.http.get(format!("{}/api/v1/api-keys", app.base));
        for value in values {
            request = request.header("authorization", *value);
        }
        request.send()
    };
    let token = format!("bearer {TOKEN}");
    assert_eq!(list(&[&token]).await.unwrap().status(), 200);
    let response = list(&[&format!("Bearer {TOKEN}"), "Bearer wrong"]).await.unwrap();
    assert_eq!(
        response.headers()["www-authenticate"],
        r#"Bearer realm="nodai", error="invalid_request""#
    );
    assert_eq!(problem(response).await, (400, "invalid_authorization".into()));
    let response = app.query("nothing", None, json!(1)).await;
    assert!(
        response.headers().contains_key("www-authenticate"),
        "every 401 says how to authenticate"
    );
    let (status, created) = app
        .post("/api/v1/api-keys", json!({"name": "acme", "owner": "acme", "rate_limit_per_hour": 10, "cost_limit_per_month": 12.5, "metadata": {"plan": "pro"}}))
        .await;
    assert_eq!(status, 201);
    let plaintext = created["key"].as_str().unwrap();
    assert!(
        plaintext.starts_with("nk_")
            && plaintext.len() == 67
            && plaintext[3..]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(created["prefix"], &plaintext[..11]);
    assert_eq!(created["alert_thresholds"], json!([80, 100]));
    assert_eq!(created["cost_limit_per_month"], json!(12.5));
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("key_"));
    let (status, one) = app
        .admin(reqwest::Method::GET, &format!("/api/v1/api-keys/{id}"), None)
        .await;
    assert_eq!(status, 200);
    assert!(one.get("key").is_none(), "the secret is shown only once");
    // Partial update: present fields change, null clears.
    let (status, updated) = app
        .admin(
            reqwest::Method::PUT,
            &format!("/api/v1/api-keys/{id}"),
            Some(json!({"rate_limit_per_hour": null, "name": "acme 2"})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        (
            updated["rate_limit_per_hour"].clone(),
            updated["name"].clone(),
            updated["owner"].clone()
        ),
        (Value::Null, json!("acme 2"), json!("acme"))
    );
    // Pagination.
    for i in 0..3 {
        app.create_key(json!({"name": format!("k{i}")})).await;
    }
    let (_, page) = app.admin(reqwest::Method::GET, "/api/v1/api-keys?limit=2", None).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = app
        .admin(
            reqwest::Method::GET,
            &format!("/api/v1/api-keys?limit=1000&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 3);
    assert_eq!(rest["next_cursor"], Value::Null);
    // Bad input: 422 for each invalid field, 400 malformed, 413 oversized, never 5xx.
    for body in [
        json!({"name": ""}),
        json!({"name": "x".repeat(129)}),
        json!({"name": "a", "rate_limit_per_hour": -1}),
        json!({"name": "a", "cost_limit_per_month": -5}),
        json!({"name": "a", "cost_limit_per_month": 0.0000001}),
        json!({"name": "a", "expires_at": "2001-01-01T00:00:00Z"}),
        json!({"name": "a", "expires_at": "next tuesday"}),
        json!({"name": "a", "workflow_ids": ["Not Valid"]}),
        json!({"name": "a", "nonsense": 1}),
        json!({"name": 5}),
        json!([1, 2]),
    ] {
        let (status, body) = app.post("/api/v1/api-keys", body.clone()).await;
        assert_eq!(
            (status.as_u16(), body["code"].as_str().unwrap()),
            (422, "validation_error"),
            "{body}"
        );
    }
    for (path, body) in [
        (
            "/api/v1/workflows",
            json!({"id": "UPPER", "name": "a", "upstream_url": "builtin:echo"}),
        ),
        (
            "/api/v1/workflows",
            json!({"id": "ok", "name": "a", "upstream_url": "ftp://x"}),
        ),
    ] {
        assert_eq!(app.post(path, body).await.0, 422);
    }
    let send = |body: Vec<u8>| {
        app.http
            .post(format!("{}/api/v1/api-keys", app.base))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_eq!(
        problem(send(b"{\"name\": ".to_vec()).await.unwrap()).await,
        (400, "invalid_json".into())
    );
    // The server answers an oversized body once it has read 1 MiB, and may
    // close the connection while a client is still writing the rest (a
    // broken pipe for reqwest, seen once in a run): write on one half of
    // the socket, read the answer on the other.
    let answer = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut socket = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://"))
            .await
            .unwrap();
        let head = format!(
            "POST /api/v1/api-keys HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            2 << 20
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        let (mut socket, mut writer) = socket.into_split();
        // Written beside the read: the server stops reading after 1 MiB.
        tokio::spawn(async move { writer.write_all(&vec![b' '; 2 << 20]).await });
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&answer).contains("payload_too_large") {
            let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed without an answer: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&answer).into_owned()
    };
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    let (status, body) = app
        .admin(
            reqwest::Method::PUT,
            &format!("/api/v1/api-keys/{id}"),
            Some(json!({"name": null})),
        )
        .await;
    assert_eq!(
        (status.as_u16(), body["code"].clone()),
        (422, json!("validation_error"))
    );
    // Revoke: 204, then kept for billing (revoked_keys_keep_their_history).
    assert_eq!(
        app.admin(reqwest::Method::DELETE, &format!("/api/v1/api-keys/{id}"), None)
            .await
            .0,
        204
    );
    let (status, revoked) = app
        .admin(reqwest::Method::GET, &format!("/api/v1/api-keys/{id}"), None)
        .await;
    assert_eq!((status.as_u16(), revoked["active"].clone()), (200, json!(false)));
    // OpenAPI covers every endpoint.
    let doc: Value = app
        .http
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/api/v1/api-keys",
        "/api/v1/api-keys/{key_id}",
        "/api/v1/api-keys/{key_id}/rotate",
        "/api/v1/workflows",
        "/api/v1/workflows/{id}",
        "/api/v1/workflows/{workflow_id}/query",
        "/api/v1/api-keys/{key_id}/usage",
        "/api/v1/webhooks",
        "/api/v1/webhooks/{id}",
        "/api/v1/webhooks/{id}/deliveries",
        "/api/v1/webhooks/{id}/deliveries/{delivery_id}/retry",
        "/api/v1/webhooks/{id}/test",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing from openapi.json");
    }
    // Every operation has its own id, as OpenAPI requires (code generators rely on it).
    let mut ids = std::collections::HashSet::new();
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let id = operation["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(ids.insert(id.to_owned()), "operationId {id} used twice");
        }
    }
}

async fn the_error_table(app: App) {
    app.workflow("echo", "builtin:echo", 1.0).await;
    app.workflow("other", "builtin:echo", 0.0).await;
    let (_, good) = app
        .create_key(json!({"name": "good", "workflow_ids": ["echo"], "rate_limit_per_hour": 2}))
        .await;
    let response = app.query("echo", Some(&good), json!("hello world")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-ratelimit-limit"], "2");
    assert_eq!(response.headers()["x-ratelimit-remaining"], "1");
    assert!(
        response.headers()["x-ratelimit-reset"]
            .to_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > chrono::Utc::now().timestamp()
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["output"], "hello world");
    assert_eq!(body["usage"]["cost"], json!(1.0));
    assert!(body["request_id"].as_str().unwrap().starts_with("req_"));

    assert_eq!(
        problem(app.query("echo", None, json!(1)).await).await,
        (401, "missing_api_key".into())
    );
    assert_eq!(
        problem(app.query("echo", Some("nk_nope"), json!(1)).await).await,
        (403, "invalid_api_key".into())
    );
    // Once the key is known, every answer carries its rate-limit state,
    // also when the query fails before admission.
    let remaining = |response: &reqwest::Response| {
        response
            .headers()
            .get("x-ratelimit-remaining")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let response = app.query("other", Some(&good), json!(1)).await;
    assert_eq!(remaining(&response).as_deref(), Some("1"));
    assert_eq!(problem(response).await, (403, "workflow_not_allowed".into()));
    let response = app.query("missing", Some(&good), json!(1)).await;
    assert_eq!(remaining(&response).as_deref(), Some("1"));
    assert_eq!(problem(response).await, (404, "workflow_not_found".into()));
    let response = app
        .http
        .post(format!("{}/api/v1/workflows/echo/query", app.base))
        .header("x-api-key", &good)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(remaining(&response).as_deref(), Some("1"));
    assert_eq!(problem(response).await, (400, "invalid_json".into()));
    let response = app
        .http
        .post(format!("{}/api/v1/workflows/echo/query", app.base))
        .header("x-api-key", &good)
        .header("origin", "https://elsewhere.example")
        .json(&json!({"input": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(remaining(&response).as_deref(), Some("1"));
    assert_eq!(problem(response).await, (403, "origin_not_allowed".into()));
    let response = app.query("echo", Some("nk_nope"), json!(1)).await;
    assert_eq!(remaining(&response), None, "an unknown key has no limits to tell");
    assert_eq!(app.query("echo", Some(&good), json!(2)).await.status(), 200);
    let limited = app.query("echo", Some(&good), json!(3)).await;
    assert!(
        limited.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(limited.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(problem(limited).await, (429, "rate_limited".into()));

    let (inactive_id, inactive) = app.create_key(json!({"name": "off", "rate_limit_per_hour": 7})).await;
    app.admin(
        reqwest::Method::PUT,
        &format!("/api/v1/api-keys/{inactive_id}"),
        Some(json!({"active": false})),
    )
    .await;
    let response = app.query("echo", Some(&inactive), json!(1)).await;
    assert_eq!(remaining(&response).as_deref(), Some("7"));
    assert_eq!(problem(response).await, (403, "key_inactive".into()));

    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let (_, expiring) = app.create_key(json!({"name": "brief", "expires_at": soon})).await;
    assert_eq!(app.query("echo", Some(&expiring), json!(1)).await.status(), 200);
    eventually("the key expires", async || {
        app.query("echo", Some(&expiring), json!(1)).await.status() == 403
    })
    .await;
    assert_eq!(
        problem(app.query("echo", Some(&expiring), json!(1)).await).await,
        (403, "key_expired".into())
    );

    // Cost: price 1.0, limit 2.5: the query that crosses is allowed, the next is not.
    let (_, budget) = app
        .create_key(json!({"name": "budget", "cost_limit_per_month": 2.5}))
        .await;
    for _ in 0..3 {
        assert_eq!(app.query("echo", Some(&budget), json!(1)).await.status(), 200);
    }
    assert_eq!(
        problem(app.query("echo", Some(&budget), json!(1)).await).await,
        (402, "cost_limit_exceeded".into())
    );

    let (revoked_id, revoked) = app.create_key(json!({"name": "gone"})).await;
    assert_eq!(app.query("echo", Some(&revoked), json!(1)).await.status(), 200);
    app.admin(reqwest::Method::DELETE, &format!("/api/v1/api-keys/{revoked_id}"), None)
        .await;
    assert_eq!(
        problem(app.query("echo", Some(&revoked), json!(1)).await).await,
        (403, "invalid_api_key".into())
    );
}

async fn rotation_with_grace(app: App) {
    app.workflow("echo", "builtin:echo", 0.0).await;
    let (id, old) = app.create_key(json!({"name": "r"})).await;
    let (status, rotated) = app
        .post(
            &format!("/api/v1/api-keys/{id}/rotate"),
            json!({"grace_period_seconds": 2}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(rotated["id"], id.as_str(), "same id");
    let new = rotated["key"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(rotated["prefix"], &new[..11]);
    assert_eq!(app.query("echo", Some(&new), json!(1)).await.status(), 200);
    assert_eq!(
        app.query("echo", Some(&old), json!(1)).await.status(),
        200,
        "old secret in grace"
    );
    eventually("the grace ends", async || {
        app.query("echo", Some(&old), json!(1)).await.status() == 403
    })
    .await;
    assert_eq!(app.query("echo", Some(&new), json!(1)).await.status(), 200);
    // No grace (no body at all): the old secret stops at once.
    let response = app
        .http
        .post(format!("{}/api/v1/api-keys/{id}/rotate", app.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let newest: Value = response.json().await.unwrap();
    assert_eq!(
        problem(app.query("echo", Some(&new), json!(1)).await).await,
        (403, "invalid_api_key".into())
    );
    assert_eq!(
        app.query("echo", Some(newest["key"].as_str().unwrap()), json!(1))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.post(
            &format!("/api/v1/api-keys/{id}/rotate"),
            json!({"grace_period_seconds": -1})
        )
        .await
        .0,
        422
    );
}

async fn exact_limits_under_concurrency(app: App) {
    app.workflow("echo", "builtin:echo", 0.001).await;
    let (key_id, key) = app.create_key(json!({"name": "hot", "rate_limit_per_hour": 50})).await;
    let app = Arc::new(app);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let app = app.clone();
            let key = key.clone();
            tokio::spawn(async move { app.query("echo", Some(&key), json!(i)).await.status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 50, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 150);
    // Answers do not wait for the projection: the queries it has not applied
    // yet still count, and a read right after sees them all.
    assert_eq!(app.query("echo", Some(&key), json!("one more")).await.status(), 429);
    let (status, body) = app
        .admin(reqwest::Method::GET, &format!("/api/v1/api-keys/{key_id}"), None)
        .await;
    assert_eq!(status, 200);
    assert!(body["last_used_at"].is_string(), "{body}");
    let mut app = Arc::into_inner(app).unwrap();
    app.stop().await;
    let recorded = app
        .events()
        .await
        .into_iter()
        .filter(|(e, _)| matches!(e, Event::QueryRecorded(q) if q.key_id == key_id))
        .count();
    assert_eq!(recorded, 50, "usage events agree with the admitted queries");
}

/// A real upstream: `/priced` reports a cost, `/plain` does not, `/broken` is 500, `/slow` outlives the timeout.
async fn upstream_server() -> String {
    let app = axum::Router::new()
        .route("/priced", post(|axum::Json(body): axum::Json<Value>| async move { axum::Json(json!({"output": {"echo": body["input"], "request_id": body["request_id"]}, "usage": {"cost": 0.25}})) }))
        .route("/plain", post(|| async { axum::Json(json!({"output": "plain"})) }))
        .route("/broken", post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }))
        .route("/slow", post(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            axum::Json(json!({"output": "late"}))
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

async fn real_upstreams(mut app: App) {
    let upstream = upstream_server().await;
    for name in ["priced", "plain", "broken", "slow"] {
        app.workflow(name, &format!("{upstream}/{name}"), 0.5).await;
    }
    let (key_id, key) = app.create_key(json!({"name": "u"})).await;
    let response = app.query("priced", Some(&key), json!({"q": 1})).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["output"]["echo"], json!({"q": 1}));
    assert_eq!(
        body["output"]["request_id"], body["request_id"],
        "the upstream got our request id"
    );
    assert_eq!(body["usage"]["cost"], json!(0.25), "the upstream's cost wins");
    let body: Value = app.query("plain", Some(&key), json!(1)).await.json().await.unwrap();
    assert_eq!(body["usage"]["cost"], json!(0.5), "else the workflow's price");
    let response = app.query("broken", Some(&key), json!(1)).await;
    let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(id.starts_with("req_"), "a failed query names its request: {id}");
    assert_eq!(problem(response).await, (502, "upstream_error".into()));
    assert_eq!(
        problem(app.query("slow", Some(&key), json!(1)).await).await,
        (504, "upstream_timeout".into())
    );
    app.stop().await;
    let mut recorded: Vec<(String, u16, i64)> = app
        .events()
        .await
        .into_iter()
        .filter_map(|(e, _)| match e {
            Event::QueryRecorded(q) if q.key_id == key_id => Some((q.workflow_id, q.status_code, q.cost.get())),
            _ => None,
        })
        .collect();
    recorded.sort();
    assert_eq!(
        recorded,
        [
            ("broken".into(), 502, 0),
            ("plain".into(), 200, 500_000),
            ("priced".into(), 200, 250_000),
            ("slow".into(), 504, 0)
        ]
    );
}

async fn no_plaintext_key_outside_the_responses(mut app: App) {
    app.workflow("echo", "builtin:echo", 0.0).await;
    let mut secrets = Vec::new();
    for i in 0..3 {
        let (id, key) = app.create_key(json!({"name": format!("s{i}")})).await;
        assert_eq!(app.query("echo", Some(&key), json!(key.clone())).await.status(), 200);
        let (_, rotated) = app
            .post(
                &format!("/api/v1/api-keys/{id}/rotate"),
                json!({"grace_period_seconds": 60}),
            )
            .await;
        let new = rotated["key"].as_str().unwrap().to_owned();
        // A query with the key in its header and its input.
        assert_eq!(app.query("echo", Some(&new), json!(new.clone())).await.status(), 200);
        secrets.push(key);
        secrets.push(new);
    }
    app.stop().await;
    // Query inputs are the customer's data and are not stored either; so
    // nothing on disk or on the stream may hold a key.
    let mut haystacks: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in walk(app.dir.path()) {
        haystacks.push((entry.display().to_string(), std::fs::read(&entry).unwrap()));
    }
    for (i, (_, payload)) in app.events().await.into_iter().enumerate() {
        haystacks.push((format!("stream event {i}"), payload));
    }
    assert!(!haystacks.is_empty());
    for secret in &secrets {
        for (place, bytes) in &haystacks {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a plaintext key is in {place}"
            );
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

async fn usage_statistics(mut app: App) {
    app.workflow("echo", "builtin:echo", 0.25).await;
    app.workflow("down", "http://127.0.0.1:1/", 0.25).await;
    let (key_id, key) = app.create_key(json!({"name": "u"})).await;
    let usage_path = format!("/api/v1/api-keys/{key_id}/usage");
    let (status, empty) = app.admin(reqwest::Method::GET, &usage_path, None).await;
    assert_eq!(status, 200, "{empty}");
    assert_eq!(
        (empty["total_requests"].clone(), empty["last_used_at"].clone()),
        (json!(0), Value::Null)
    );
    for i in 0..3 {
        assert_eq!(app.query("echo", Some(&key), json!(i)).await.status(), 200);
    }
    assert_eq!(app.query("down", Some(&key), json!(3)).await.status(), 502);
    // Rejected queries are not usage.
    assert_eq!(app.query("echo", None, json!(4)).await.status(), 401);

    // Read-your-writes: asked at once, the same replica shows all four.
    let (status, u) = app.admin(reqwest::Method::GET, &usage_path, None).await;
    assert_eq!(status, 200, "{u}");
    assert_eq!(u["key_id"], json!(key_id));
    for (field, want) in [
        ("total_requests", json!(4)),
        ("total_cost", json!(0.75)),
        ("requests_today", json!(4)),
        ("cost_today", json!(0.75)),
        ("requests_this_hour", json!(4)),
        ("cost_this_month", json!(0.75)),
    ] {
        assert_eq!(u[field], want, "{field} in {u}");
    }
    assert!(u["last_used_at"].is_string(), "{u}");
    let hourly = u["hourly"].as_array().unwrap();
    assert_eq!(hourly.len(), 48, "the current hour and 47 before it");
    let now = hourly.last().unwrap();
    assert_eq!(
        (now["requests"].clone(), now["cost"].clone(), now["errors"].clone()),
        (json!(4), json!(0.75), json!(1))
    );
    assert!(hourly[..47].iter().all(|h| h["requests"] == json!(0)));
    let this_hour = chrono::Utc::now().format("%Y-%m-%dT%H:00:00Z").to_string();
    assert_eq!(now["hour"], json!(this_hour));
    let daily = u["daily"].as_array().unwrap();
    assert_eq!(daily.len(), 31);
    assert_eq!(
        daily.last().unwrap()["date"],
        json!(chrono::Utc::now().format("%Y-%m-%d").to_string())
    );
    assert_eq!(daily.last().unwrap()["requests"], json!(4));

    // A chosen range: the current hour alone.
    let (status, ranged) = app
        .admin(reqwest::Method::GET, &format!("{usage_path}?from={this_hour}"), None)
        .await;
    assert_eq!(status, 200, "{ranged}");
    assert_eq!(ranged["hourly"].as_array().unwrap().len(), 1, "{ranged}");
    assert_eq!(ranged["daily"].as_array().unwrap().len(), 1, "{ranged}");
    for bad in [
        "from=yesterday",
        "from=2026-11-25T02:00:00Z&to=2026-11-25T01:00:00Z",
        "from=2020-01-01T00:00:00Z",
    ] {
        let (status, body) = app
            .admin(reqwest::Method::GET, &format!("{usage_path}?{bad}"), None)
            .await;
        assert_eq!(
            (status.as_u16(), body["code"].clone()),
            (422, json!("validation_error")),
            "{bad}"
        );
    }
    assert_eq!(
        app.admin(reqwest::Method::GET, "/api/v1/api-keys/key_nope/usage", None)
            .await
            .0,
        404
    );
    let anonymous = app.http.get(format!("{}{usage_path}", app.base)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);

    // The same usage event stored twice, past the stream's own duplicate
    // window, is counted once, also after a restart.
    app.stop().await;
    let (_, usage_event) = app
        .events()
        .await
        .into_iter()
        .find(|(e, _)| matches!(e, Event::QueryRecorded(q) if q.key_id == key_id))
        .unwrap();
    app.store_again(&key_id, usage_event).await;
    let stored = app
        .events()
        .await
        .into_iter()
        .filter(|(e, _)| matches!(e, Event::QueryRecorded(q) if q.key_id == key_id))
        .count();
    assert_eq!(stored, 5, "the duplicate is on the stream");
    app.spawn().await;
    let (_, u) = app.admin(reqwest::Method::GET, &usage_path, None).await;
    assert_eq!(
        (u["total_requests"].clone(), u["total_cost"].clone()),
        (json!(4), json!(0.75)),
        "{u}"
    );
    // The archive holds each query once, the late duplicate included.
    app.stop().await;
    let mut rows = ledger::archive::read_ids(&app.dir.path().join("archive")).unwrap();
    rows.sort();
    assert_eq!(rows.len(), 4, "{rows:?}");
    rows.dedup_by(|a, b| a.0 == b.0);
    assert_eq!(rows.len(), 4, "no event_id twice");
}

async fn snapshots_restore_the_same_state(mut app: App) {
    app.workflow("echo", "builtin:echo", 0.5).await;
    let (first, key) = app
        .create_key(json!({"name": "first", "rate_limit_per_hour": 100}))
        .await;
    let (second, _) = app
        .create_key(json!({"name": "second", "metadata": {"plan": "pro"}}))
        .await;
    for i in 0..5 {
        assert_eq!(app.query("echo", Some(&key), json!(i)).await.status(), 200);
    }
    let (status, _) = app
        .admin(
            reqwest::Method::PUT,
            &format!("/api/v1/api-keys/{second}"),
            Some(json!({"name": "renamed"})),
        )
        .await;
    assert_eq!(status, 200);
    app.stop().await; // the first snapshot
    app.spawn().await;
    let (status, rotated) = app
        .post(
            &format!("/api/v1/api-keys/{first}/rotate"),
            json!({"grace_period_seconds": 3600}),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    for i in 0..3 {
        assert_eq!(
            app.query("echo", Some(&key), json!(i)).await.status(),
            200,
            "the old secret is in grace"
        );
    }
    assert_eq!(
        app.admin(reqwest::Method::DELETE, &format!("/api/v1/api-keys/{second}"), None)
            .await
            .0,
        204
    );
    async fn answers(app: &App, key_id: &str) -> (Value, Value) {
        let keys = app.admin(reqwest::Method::GET, "/api/v1/api-keys", None).await.1;
        let usage = app
            .admin(reqwest::Method::GET, &format!("/api/v1/api-keys/{key_id}/usage"), None)
            .await
            .1;
        (keys, usage)
    }
    let before = answers(&app, &first).await;
    assert_eq!(before.1["total_requests"], json!(8));
    app.stop().await; // the second snapshot

    // Snapshot plus tail, from either snapshot, is exactly the full replay.
    let stream_name = match &app.store {
        Store::Embedded => "embedded".to_owned(),
        Store::Nats(_, name) => format!("nats:{name}"),
    };
    let records = app.records().await;
    let fold = |mut p: ledger::Projection| {
        let from = p.seq;
        for record in records.iter().filter(|r| r.seq > from) {
            let envelope = record.envelope().unwrap();
            p.apply_stored(
                record.seq,
                envelope.id,
                envelope.ts,
                record.stored_micros,
                &envelope.event().unwrap(),
            );
        }
        p
    };
    let full = fold(ledger::Projection::default());
    let dir = app.dir.path().join("snapshots");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    for file in &files {
        let snapshot = ledger::snapshot::decode(&std::fs::read(file).unwrap(), &stream_name).unwrap();
        assert!(snapshot.seq > 0);
        assert_eq!(fold(snapshot), full, "{}", file.display());
    }

    // A damaged newest snapshot: the start falls back to the older one and
    // answers exactly as before.
    let newest = files.last().unwrap();
    let mut bytes = std::fs::read(newest).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0xff;
    std::fs::write(newest, bytes).unwrap();
    app.spawn().await;
    assert_eq!(answers(&app, &first).await, before);
    app.stop().await;
    // And with no snapshot at all, the full replay answers the same.
    std::fs::remove_dir_all(&dir).unwrap();
    app.spawn().await;
    assert_eq!(answers(&app, &first).await, before);
}

/// A browser request (with `Origin`) is served only from an origin its key
/// lists, and the CORS headers, preflight included, name that origin alone;
/// requests without `Origin` and admin endpoints are untouched.
async fn allowed_origins_and_cors(app: App) {
    app.workflow("echo", "builtin:echo", 0.0).await;
    let site = "https://app.example.test";
    let (key_id, key) = app
        .create_key(json!({"name": "browser", "allowed_origins": [site], "rate_limit_per_hour": 100}))
        .await;
    let (_, server_key) = app.create_key(json!({"name": "server"})).await;
    let url = format!("{}/api/v1/workflows/echo/query", app.base);
    let from = |origin: &str, key: &str| {
        app.http
            .post(&url)
            .header("origin", origin)
            .header("x-api-key", key)
            .json(&json!({"input": "hi"}))
            .send()
    };

    let allowed = from(site, &key).await.unwrap();
    assert_eq!(allowed.status(), 200);
    let h = allowed.headers();
    assert_eq!(h["access-control-allow-origin"], site);
    assert_eq!(h["vary"], "origin");
    assert!(h["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .contains("X-RateLimit-Remaining"));
    assert!(h.contains_key("x-ratelimit-remaining"));

    for (origin, key) in [
        ("https://evil.example.test", key.as_str()),
        ("https://app.example.test:8443", key.as_str()),
        ("http://app.example.test", key.as_str()),
        (site, server_key.as_str()),
    ] {
        let refused = from(origin, key).await.unwrap();
        assert!(
            !refused.headers().contains_key("access-control-allow-origin"),
            "{origin}"
        );
        assert_eq!(problem(refused).await, (403, "origin_not_allowed".into()), "{origin}");
    }
    // Refused browser requests ran nothing and metered nothing.
    let (_, usage) = app
        .admin(reqwest::Method::GET, &format!("/api/v1/api-keys/{key_id}/usage"), None)
        .await;
    assert_eq!(usage["total_requests"], 1);

    // Servers and SDKs send no Origin: unaffected, no CORS headers.
    let plain = app.query("echo", Some(&server_key), json!("hi")).await;
    assert_eq!(plain.status(), 200);
    assert!(!plain.headers().contains_key("access-control-allow-origin"));

    let preflight = |origin: &str| {
        app.http
            .request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type, x-api-key")
            .send()
    };
    let ok = preflight(site).await.unwrap();
    assert_eq!(ok.status(), 204);
    assert_eq!(ok.headers()["access-control-allow-origin"], site);
    assert_eq!(ok.headers()["access-control-allow-methods"], "POST");
    assert!(ok.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("x-api-key"));
    let refused = preflight("https://evil.example.test").await.unwrap();
    assert!(!refused.headers().contains_key("access-control-allow-origin"));
    assert_eq!(problem(refused).await, (403, "origin_not_allowed".into()));

    // Admin endpoints never send CORS headers, whatever the origin.
    let admin = app
        .http
        .get(format!("{}/api/v1/api-keys", app.base))
        .bearer_auth(TOKEN)
        .header("origin", site)
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);
    assert!(!admin
        .headers()
        .keys()
        .any(|h| h.as_str().starts_with("access-control-")));

    // A refused key, seen from an origin some live key lists, says why to
    // the page (a widget can then show it); from any other origin it stays
    // unreadable.
    let unknown = "nk_".to_owned() + &"0".repeat(64);
    let refused = from(site, &unknown).await.unwrap();
    assert_eq!(refused.headers()["access-control-allow-origin"], site);
    assert_eq!(problem(refused).await, (403, "invalid_api_key".into()));
    let refused = from("https://evil.example.test", &unknown).await.unwrap();
    assert!(!refused.headers().contains_key("access-control-allow-origin"));
    assert_eq!(problem(refused).await, (403, "invalid_api_key".into()));

    // The origin leaves with the key's list: revoked, the preflight refuses it.
    let (status, _) = app
        .admin(reqwest::Method::DELETE, &format!("/api/v1/api-keys/{key_id}"), None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        problem(preflight(site).await.unwrap()).await,
        (403, "origin_not_allowed".into())
    );
}

/// The events of a `text/event-stream` body: (event, data).
fn sse_events(body: &str) -> Vec<(String, String)> {
    body.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let (mut event, mut data) = (String::new(), Vec::new());
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event:") {
                    event = name.trim().to_owned();
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push(value.strip_prefix(' ').unwrap_or(value));
                }
            }
            (event, data.join("\n"))
        })
        .collect()
}

/// `Accept: text/event-stream`: chunks as they come (`builtin:echo` word by
/// word, an event-stream upstream passed through), then `done` with the
/// usage; errors before the first chunk are problem+json; usage is recorded
/// once, also when the client goes away mid-stream (the upstream is read to
/// its end all the same).
async fn streaming_queries(app: App) {
    use futures::StreamExt;
    let upstream_ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ended = upstream_ended.clone();
    let upstream = {
        let events = |texts: Vec<&'static str>| {
            axum::response::sse::Sse::new(
                futures::stream::iter(texts)
                    .map(|text| Ok::<_, std::convert::Infallible>(axum::response::sse::Event::default().data(text))),
            )
        };
        let router = axum::Router::new()
            .route("/events", post(move || async move { events(vec!["a", "b c", "d\ne"]) }))
            .route(
                "/trickle",
                post(move || {
                    let ended = ended.clone();
                    async move {
                        // "first", then after a while "second", and the end, which
                        // the test can see was reached.
                        let first = futures::stream::once(async {
                            Ok::<_, std::convert::Infallible>(axum::response::sse::Event::default().data("first"))
                        });
                        let rest = futures::stream::once(async move {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            Ok(axum::response::sse::Event::default().data("second"))
                        });
                        let end = futures::stream::once(async move {
                            ended.store(true, std::sync::atomic::Ordering::SeqCst);
                            Ok(axum::response::sse::Event::default().comment("end"))
                        });
                        axum::response::sse::Sse::new(first.chain(rest).chain(end))
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        base
    };
    app.workflow("echo", "builtin:echo", 0.25).await;
    app.workflow("events", &format!("{upstream}/events"), 0.5).await;
    app.workflow("trickle", &format!("{upstream}/trickle"), 0.75).await;
    app.workflow(
        "closed",
        &format!("http://127.0.0.1:{}/", ingest::testkit::free_port()),
        1.0,
    )
    .await;
    let (key_id, key) = app.create_key(json!({"name": "s"})).await;
    let streamed = |workflow: &str, input: Value| {
        app.http
            .post(format!("{}/api/v1/workflows/{workflow}/query", app.base))
            .header("x-api-key", &key)
            .header("accept", "text/event-stream")
            .json(&json!({"input": input}))
            .send()
    };
    let usage = async || {
        let path = format!("/api/v1/api-keys/{key_id}/usage");
        let (_, usage) = app.admin(reqwest::Method::GET, &path, None).await;
        (
            usage["total_requests"].as_u64().unwrap(),
            usage["total_cost"].as_f64().unwrap(),
        )
    };

    let response = streamed("echo", json!("the quick  brown fox")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let events = sse_events(&response.text().await.unwrap());
    let chunks: Vec<&str> = events
        .iter()
        .filter(|(e, _)| e == "chunk")
        .map(|(_, d)| d.as_str())
        .collect();
    assert_eq!(chunks, ["the ", "quick ", " ", "brown ", "fox"], "word by word");
    let (last, done) = events.last().unwrap();
    assert_eq!(last, "done");
    let done: Value = serde_json::from_str(done).unwrap();
    assert_eq!(done["usage"]["cost"], json!(0.25));
    assert!(done["request_id"].as_str().unwrap().starts_with("req_"));
    assert_eq!(usage().await, (1, 0.25), "recorded once, at the end");

    let events = sse_events(&streamed("events", json!(1)).await.unwrap().text().await.unwrap());
    let chunks: Vec<&str> = events
        .iter()
        .filter(|(e, _)| e == "chunk")
        .map(|(_, d)| d.as_str())
        .collect();
    assert_eq!(chunks, ["a", "b c", "d\ne"], "the upstream's events, passed through");
    assert_eq!(events.last().unwrap().0, "done");

    // Before the first byte, errors are the usual answers (and recorded).
    assert_eq!(
        problem(streamed("closed", json!(1)).await.unwrap()).await,
        (502, "upstream_error".into())
    );
    assert_eq!(usage().await, (3, 0.75));

    // The client takes the first chunk and goes away: the upstream is still
    // read to its end, and the query recorded once.
    let mut body = streamed("trickle", json!(1)).await.unwrap().bytes_stream();
    let first = String::from_utf8(body.next().await.unwrap().unwrap().to_vec()).unwrap();
    assert!(first.contains("first"), "{first}");
    drop(body);
    eventually("the abandoned query is recorded", async || usage().await == (4, 1.5)).await;
    assert!(
        upstream_ended.load(std::sync::atomic::Ordering::SeqCst),
        "the upstream was read to its end"
    );
}

/// `?q=` finds keys by name, owner or prefix, ignoring case, and pages
/// through the matches with the same cursors as the plain list.
async fn key_search(app: App) {
    let mut ids = Vec::new();
    for (name, owner) in [
        ("Support bot", "acme"),
        ("billing", "ACME corp"),
        ("other", "initech"),
        ("acme-2", "x"),
    ] {
        ids.push(app.create_key(json!({"name": name, "owner": owner})).await.0);
    }
    let names = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, first) = app
        .admin(reqwest::Method::GET, "/api/v1/api-keys?q=%20Acme%20&limit=2", None)
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(names(&first), ["Support bot", "billing"]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, rest) = app
        .admin(
            reqwest::Method::GET,
            &format!("/api/v1/api-keys?q=acme&limit=2&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(names(&rest), ["acme-2"]);
    assert!(rest["next_cursor"].is_null());
    let (_, key) = app
        .admin(reqwest::Method::GET, &format!("/api/v1/api-keys/{}", ids[2]), None)
        .await;
    let prefix = key["prefix"].as_str().unwrap();
    let (_, found) = app
        .admin(reqwest::Method::GET, &format!("/api/v1/api-keys?q={prefix}"), None)
        .await;
    assert_eq!(names(&found), ["other"]);
    let (_, none) = app.admin(reqwest::Method::GET, "/api/v1/api-keys?q=nobody", None).await;
    assert_eq!((names(&none).len(), none["next_cursor"].is_null()), (0, true));
    let long = "a".repeat(129);
    let (status, body) = app
        .admin(reqwest::Method::GET, &format!("/api/v1/api-keys?q={long}"), None)
        .await;
    assert_eq!(
        (status.as_u16(), body["code"].as_str()),
        (422, Some("validation_error")),
        "{body}"
    );
}

/// Admitted means recorded: a client that gives up before the answer
/// changes nothing. Before, each abandoned query released its place, so a
/// key limited to 1 request an hour drove one upstream call per attempt and
/// recorded none of them.
async fn a_client_that_leaves_changes_nothing(app: App) {
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let upstream = {
        let calls = calls.clone();
        let router = axum::Router::new().route(
            "/slow",
            post(move || {
                let calls = calls.clone();
                async move {
                    calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    axum::Json(json!({"output": "done", "usage": {"cost": 0.3}}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        base
    };
    app.workflow("slow", &format!("{upstream}/slow"), 0.1).await;
    let (key_id, key) = app
        .create_key(json!({"name": "impatient", "rate_limit_per_hour": 1}))
        .await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    for i in 0..10 {
        let sent = impatient
            .post(format!("{}/api/v1/workflows/slow/query", app.base))
            .header("x-api-key", &key)
            .json(&json!({"input": i}))
            .send()
            .await;
        // Either the client gave up (the first) or it was refused at once.
        if let Ok(response) = sent {
            assert_eq!(response.status(), 429, "only one query fits the limit");
        }
    }
    let usage = async || {
        let path = format!("/api/v1/api-keys/{key_id}/usage");
        let (_, usage) = app.admin(reqwest::Method::GET, &path, None).await;
        (usage["total_requests"].clone(), usage["total_cost"].clone())
    };
    eventually("the abandoned query is recorded", async || {
        usage().await == (json!(1), json!(0.3))
    })
    .await;
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1, "one upstream call");
    assert_eq!(problem(app.query("slow", Some(&key), json!(1)).await).await.0, 429);
}

/// Holds: in-flight queries count against a cost limit at the workflow's
/// `max_cost_per_request` (else its price), and a reported cost above the
/// maximum is recorded as the maximum. 200 concurrent queries against an
/// upstream that reports $0.40 a query, on a limit of $1.00.
async fn holds_bound_spend_under_concurrency(app: App) {
    let upstream = {
        let reporting = |cost: f64| {
            post(move || async move {
                // Long enough for all 200 to arrive while the first are in flight.
                tokio::time::sleep(Duration::from_millis(600)).await;
                axum::Json(json!({"output": "ok", "usage": {"cost": cost}}))
            })
        };
        // $0.15 to $0.55, a different cost on each call.
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let varied = post(move || {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(600)).await;
                axum::Json(json!({"output": "ok", "usage": {"cost": 0.15 + f64::from(n % 5) * 0.1}}))
            }
        });
        let router = axum::Router::new()
            .route("/costly", reporting(0.4))
            .route("/varied", varied)
            .route("/over", reporting(0.55));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        base
    };
    let workflow = |id: &str, path: &str, max: Value| json!({"id": id, "name": id, "upstream_url": format!("{upstream}/{path}"), "price_per_request": 0.1, "max_cost_per_request": max});
    assert_eq!(
        app.post("/api/v1/workflows", workflow("low", "costly", json!(0.05)))
            .await
            .0,
        422,
        "a maximum below the price is refused"
    );
    for (id, path, max) in [
        ("capped", "costly", json!(0.4)),
        ("varied", "varied", json!(0.4)),
        ("uncapped", "costly", Value::Null),
        ("over", "over", json!(0.4)),
    ] {
        let (status, body) = app.post("/api/v1/workflows", workflow(id, path, max.clone())).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["max_cost_per_request"], max);
    }
    let app = Arc::new(app);
    let burst = async |workflow: &'static str| {
        let (key_id, key) = app
            .create_key(json!({"name": workflow, "cost_limit_per_month": 1.0}))
            .await;
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let (app, key) = (app.clone(), key.clone());
                tokio::spawn(async move { app.query(workflow, Some(&key), json!(i)).await.status().as_u16() })
            })
            .collect();
        let mut admitted = 0;
        for task in tasks {
            match task.await.unwrap() {
                200 => admitted += 1,
                402 => {}
                other => panic!("{workflow}: {other}"),
            }
        }
        let (_, usage) = app
            .admin(reqwest::Method::GET, &format!("/api/v1/api-keys/{key_id}/usage"), None)
            .await;
        (admitted, usage["cost_this_month"].as_f64().unwrap())
    };
    // Held at $0.40: 0, 0.40 and 0.80 are under $1.00, 1.20 is not. Spend
    // passes the limit by less than one query's hold.
    assert_eq!(burst("capped").await, (3, 1.2));
    // Costs that vary per call, some above the maximum: still three in
    // flight at once, each charged at most $0.40.
    let (admitted, spent) = burst("varied").await;
    assert_eq!(admitted, 3);
    assert!(spent <= 1.2 + 1e-9, "{spent}");
    // Held at the price, $0.10: ten fit under $1.00, and each then costs
    // what the upstream says. The bound without a maximum: the limit over
    // the price, times the largest reported cost.
    assert_eq!(burst("uncapped").await, (10, 4.0));
    // Reported $0.55, recorded and answered as the maximum.
    let (_, key) = app.create_key(json!({"name": "over"})).await;
    let response = app.query("over", Some(&key), json!(1)).await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["usage"]["cost"], json!(0.4), "{body}");
    let (status, cleared) = app
        .admin(
            reqwest::Method::PUT,
            "/api/v1/workflows/over",
            Some(json!({"max_cost_per_request": null})),
        )
        .await;
    assert_eq!(
        (status.as_u16(), cleared["max_cost_per_request"].clone()),
        (200, Value::Null)
    );
    let mut app = Arc::into_inner(app).unwrap();
    app.stop().await;
    let over: Vec<_> = app
        .events()
        .await
        .into_iter()
        .filter_map(|(e, _)| match e {
            Event::QueryRecorded(q) if q.workflow_id == "over" => {
                Some((q.cost.get(), q.reported_cost.map(|c| c.get())))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        over,
        [(400_000, Some(550_000))],
        "the event keeps what the upstream reported"
    );
}

/// A streaming client that stops reading does not hold its query open: the
/// upstream is read to its end and the usage recorded while the client
/// still sits on its unread answer. One that falls more than 8 MiB behind
/// is told so and gets no more.
async fn a_slow_sse_reader_is_recorded_when_the_upstream_ends(mut app: App) {
    use futures::StreamExt;
    // Tens of MiB through a debug build on a loaded machine: more than the
    // tests' usual 1 s upstream timeout.
    app.configure = |config| config.upstream_timeout = Duration::from_secs(60);
    app.stop().await;
    app.spawn().await;
    let upstream = {
        // `n` events of 1 KiB, as fast as the reader takes them.
        let big = |n: usize| {
            post(move || async move {
                let piece = "x".repeat(1024);
                axum::response::sse::Sse::new(futures::stream::iter((0..n).map(move |_| {
                    Ok::<_, std::convert::Infallible>(axum::response::sse::Event::default().data(piece.clone()))
                })))
            })
        };
        let router = axum::Router::new()
            .route("/big", big(6 * 1024))
            .route("/huge", big(32 * 1024));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        base
    };
    app.workflow("big", &format!("{upstream}/big"), 0.5).await;
    app.workflow("huge", &format!("{upstream}/huge"), 0.5).await;
    let (key_id, key) = app
        .create_key(json!({"name": "reader", "rate_limit_per_hour": 2}))
        .await;
    let streamed = |workflow: &str| {
        app.http
            .post(format!("{}/api/v1/workflows/{workflow}/query", app.base))
            .header("x-api-key", &key)
            .header("accept", "text/event-stream")
            .json(&json!({"input": 1}))
            .send()
    };
    let requests = async || {
        let path = format!("/api/v1/api-keys/{key_id}/usage");
        let (_, usage) = app.admin(reqwest::Method::GET, &path, None).await;
        usage["total_requests"].as_u64().unwrap()
    };
    // 6 MiB, more than the sockets buffer: the client reads nothing yet.
    let stalled = streamed("big").await.unwrap();
    assert_eq!(stalled.status(), 200);
    eventually("recorded while the client reads nothing", async || {
        requests().await == 1
    })
    .await;
    // When it does read, it gets all of it, then `done`.
    let text = stalled.text().await.unwrap();
    let events = sse_events(&text);
    assert_eq!(events.iter().filter(|(e, _)| e == "chunk").count(), 6 * 1024);
    assert_eq!(events.last().unwrap().0, "done");

    let stalled = streamed("huge").await.unwrap();
    eventually("recorded while the client reads nothing", async || {
        requests().await == 2
    })
    .await;
    let mut body = stalled.bytes_stream();
    let mut text = Vec::new();
    while let Some(piece) = body.next().await {
        text.extend_from_slice(&piece.unwrap());
    }
    let events = sse_events(&String::from_utf8(text).unwrap());
    let (last, data) = events.last().unwrap();
    assert_eq!(last, "error");
    assert!(data.contains("client_too_slow"), "{data}");
    assert!(events.iter().filter(|(e, _)| e == "chunk").count() < 32 * 1024);
}

/// Every error is problem+json, also the ones axum's own extractors would
/// answer in plain text: a field given twice in a query string, a path
/// segment that is not UTF-8, a raw body over the limit.
async fn malformed_paths_and_query_strings_are_problems(app: App) {
    let (key_id, key) = app.create_key(json!({"name": "p"})).await;
    // A body must be a JSON object: serde would read an array into a
    // struct field by field.
    for body in [json!(["array"]), json!([]), json!("text"), json!(7)] {
        let (status, problem) = app.post("/api/v1/api-keys", body.clone()).await;
        assert_eq!(
            (status.as_u16(), problem["code"].clone()),
            (422, json!("validation_error")),
            "{body}"
        );
        let (status, _) = app
            .post(&format!("/api/v1/api-keys/{key_id}/rotate"), body.clone())
            .await;
        assert_eq!(status.as_u16(), 422, "rotate {body}");
    }
    // A deleted workflow is gone (a revoked key is not: it is kept for billing).
    app.workflow("brief", "builtin:echo", 0.0).await;
    let (status, _) = app
        .admin(reqwest::Method::DELETE, "/api/v1/workflows/brief", None)
        .await;
    assert_eq!(status, 204);
    let (status, gone) = app.admin(reqwest::Method::GET, "/api/v1/workflows/brief", None).await;
    assert_eq!(
        (status.as_u16(), gone["code"].clone()),
        (404, json!("workflow_not_found"))
    );
    let admin = |path: String| app.http.get(format!("{}{path}", app.base)).bearer_auth(TOKEN).send();
    for (path, expected) in [
        ("/api/v1/api-keys?limit=1&limit=2".to_owned(), "invalid_query"),
        ("/api/v1/workflows?limit=1&limit=2".to_owned(), "invalid_query"),
        ("/api/v1/webhooks?cursor=a&cursor=b".to_owned(), "invalid_query"),
        (
            format!("/api/v1/api-keys/{key_id}/usage?from=a&from=b"),
            "invalid_query",
        ),
        ("/api/v1/api-keys/%FF".to_owned(), "invalid_path"),
        ("/api/v1/api-keys/%FF/usage".to_owned(), "invalid_path"),
        ("/api/v1/workflows/%FF".to_owned(), "invalid_path"),
        ("/api/v1/webhooks/%FF/deliveries".to_owned(), "invalid_path"),
        ("/assets/%FF".to_owned(), "invalid_path"),
    ] {
        let response = admin(path.clone()).await.unwrap();
        assert_eq!(problem(response).await, (400, expected.into()), "{path}");
    }
    let response = app
        .http
        .post(format!("{}/api/v1/workflows/%FF/query", app.base))
        .header("x-api-key", &key)
        .json(&json!({"input": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(response).await, (400, "invalid_path".into()));
    let response = app
        .http
        .post(format!("{}/api/v1/api-keys/{key_id}/rotate", app.base))
        .bearer_auth(TOKEN)
        .body(vec![b' '; (1 << 20) + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(problem(response).await, (413, "payload_too_large".into()));
}

/// A revoked key stops validating at once but is kept for billing: it and
/// its usage still read, lists show it on request, and it changes no more.
async fn revoked_keys_keep_their_history(mut app: App) {
    app.workflow("echo", "builtin:echo", 0.5).await;
    let (key_id, key) = app.create_key(json!({"name": "former"})).await;
    let (live_id, _) = app.create_key(json!({"name": "current"})).await;
    for _ in 0..2 {
        assert_eq!(app.query("echo", Some(&key), json!(1)).await.status(), 200);
    }
    let path = format!("/api/v1/api-keys/{key_id}");
    let (status, _) = app.admin(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 204);
    assert_eq!(
        problem(app.query("echo", Some(&key), json!(1)).await).await,
        (403, "invalid_api_key".into())
    );
    let ids = async |app: &App, query: &str| {
        let (status, page) = app
            .admin(reqwest::Method::GET, &format!("/api/v1/api-keys{query}"), None)
            .await;
        assert_eq!(status, 200, "{page}");
        let mut ids: Vec<String> = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let mut both = vec![key_id.clone(), live_id.clone()];
    both.sort();
    for round in ["before a restart", "after a restart"] {
        let (status, object) = app.admin(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "{round}: {object}");
        assert_eq!(object["active"], false, "{round}");
        assert!(object["revoked_at"].is_string(), "{round}: {object}");
        let (status, usage) = app.admin(reqwest::Method::GET, &format!("{path}/usage"), None).await;
        assert_eq!(status, 200, "{round}");
        assert_eq!(
            (usage["total_requests"].clone(), usage["total_cost"].clone()),
            (json!(2), json!(1.0)),
            "{round}"
        );
        assert_eq!(
            ids(&app, "").await,
            vec![live_id.clone()],
            "{round}: left out by default"
        );
        assert_eq!(ids(&app, "?status=live").await, vec![live_id.clone()], "{round}");
        assert_eq!(ids(&app, "?status=revoked").await, vec![key_id.clone()], "{round}");
        assert_eq!(ids(&app, "?status=all").await, both, "{round}");
        app.stop().await;
        app.spawn().await;
    }
    let (status, body) = app
        .admin(reqwest::Method::GET, "/api/v1/api-keys?status=gone", None)
        .await;
    assert_eq!(
        (status.as_u16(), body["code"].clone()),
        (422, json!("validation_error"))
    );
    let (status, body) = app
        .admin(reqwest::Method::PUT, &path, Some(json!({"name": "again"})))
        .await;
    assert_eq!((status.as_u16(), body["code"].clone()), (409, json!("key_revoked")));
    let (status, body) = app.admin(reqwest::Method::POST, &format!("{path}/rotate"), None).await;
    assert_eq!((status.as_u16(), body["code"].clone()), (409, json!("key_revoked")));
    let (status, _) = app.admin(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 204, "revoking again is a no-op");
    let (status, _) = app
        .admin(reqwest::Method::DELETE, "/api/v1/api-keys/key_unknown", None)
        .await;
    assert_eq!(status, 404);
}

/// How a stream loses what a snapshot and the archive's watermark saw.
#[derive(Clone, Copy, Debug)]
enum Loss {
    /// The embedded log's last records are gone, cut at a record's start
    /// (a power cut under `--fsync interval`)…
    TailAtRecord,
    /// …or in the middle of one (a torn write).
    TailMidRecord,
    /// The NATS stream is deleted and made again.
    StreamRecreated,
}

/// A snapshot and an archive watermark are tied to the exact stream they
/// came from. The stream loses what they saw, takes new events at the
/// same sequences, and the process dies (here: a copy of its data dir
/// taken while it runs, as kill -9 would leave it). The next start must
/// not load the old snapshot (the new key would be unknown, usage would
/// jump back) nor skip rows under the old watermark.
async fn a_stream_that_lost_what_a_snapshot_saw(mut app: App, loss: Loss) {
    app.workflow("echo", "builtin:echo", 0.5).await;
    let (_, first) = app.create_key(json!({"name": "first"})).await;
    for _ in 0..5 {
        assert_eq!(app.query("echo", Some(&first), json!(1)).await.status(), 200);
    }
    // A clean stop: a snapshot and an archive flush at the stream's end.
    app.stop().await;
    match (&app.store, loss) {
        (Store::Embedded, Loss::TailAtRecord) => common::cut_log_tail(app.dir.path(), 3, false),
        (Store::Embedded, Loss::TailMidRecord) => common::cut_log_tail(app.dir.path(), 3, true),
        (Store::Nats(server, name), Loss::StreamRecreated) => {
            let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
            assert!(js.delete_stream(name).await.unwrap().success);
        }
        (_, loss) => panic!("{loss:?} does not apply here"),
    }
    app.spawn().await;
    if matches!(loss, Loss::StreamRecreated) {
        app.workflow("echo", "builtin:echo", 0.5).await;
    }
    let (second_id, second) = app.create_key(json!({"name": "second"})).await;
    for _ in 0..10 {
        assert_eq!(app.query("echo", Some(&second), json!(1)).await.status(), 200);
    }
    // The process dies now: its data dir as it is.
    let crashed = tempfile::tempdir().unwrap();
    common::copy_dir(app.dir.path(), crashed.path());
    app.stop().await;
    app.dir = crashed;
    app.spawn().await;
    let (status, usage) = app
        .admin(
            reqwest::Method::GET,
            &format!("/api/v1/api-keys/{second_id}/usage"),
            None,
        )
        .await;
    assert_eq!(
        (status.as_u16(), usage["total_requests"].clone()),
        (200, json!(10)),
        "{usage}"
    );
    assert_eq!(app.query("echo", Some(&second), json!(1)).await.status(), 200);
    app.stop().await;
    // The archive holds exactly the queries on the stream, each once.
    let mut recorded: Vec<String> = app
        .records()
        .await
        .into_iter()
        .filter(|r| matches!(r.envelope().unwrap().event().unwrap(), Event::QueryRecorded(_)))
        .map(|r| r.id.to_string())
        .collect();
    recorded.sort();
    assert_eq!(common::archived_once(&app.dir.path().join("archive")), recorded);
    let set_aside = std::fs::read_dir(app.dir.path().join("snapshots/set-aside"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(set_aside >= 1, "the old snapshot was set aside");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_cut_at_a_record_is_not_mistaken_for_the_old_one() {
    a_stream_that_lost_what_a_snapshot_saw(App::start(false).await.unwrap(), Loss::TailAtRecord).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_torn_mid_record_is_not_mistaken_for_the_old_one() {
    a_stream_that_lost_what_a_snapshot_saw(App::start(false).await.unwrap(), Loss::TailMidRecord).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_nats_stream_is_not_mistaken_for_the_old_one() {
    let Some(app) = App::start(true).await else { return };
    a_stream_that_lost_what_a_snapshot_saw(app, Loss::StreamRecreated).await;
}

/// Snapshots written beside the fold, under load (one every 50 events):
/// the limit stays exact, and a start from a snapshot taken mid-load (the
/// one at shutdown removed) answers exactly as the process did.
async fn snapshots_under_load_restore_the_same_state(mut app: App) {
    app.configure = |config| config.snapshot_every_events = 50;
    app.stop().await;
    app.spawn().await;
    app.workflow("echo", "builtin:echo", 0.25).await;
    let (key_id, key) = app
        .create_key(json!({"name": "busy", "rate_limit_per_hour": 300}))
        .await;
    let app = Arc::new(app);
    let mut admitted = 0;
    for wave in 0..8 {
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let (app, key) = (app.clone(), key.clone());
                tokio::spawn(async move { app.query("echo", Some(&key), json!([wave, i])).await.status().as_u16() })
            })
            .collect();
        for task in tasks {
            match task.await.unwrap() {
                200 => admitted += 1,
                429 => {}
                other => panic!("{other}"),
            }
        }
    }
    assert_eq!(admitted, 300, "exact while snapshots are written");
    let mut app = Arc::into_inner(app).unwrap();
    let usage = async |app: &App| {
        let (_, usage) = app
            .admin(reqwest::Method::GET, &format!("/api/v1/api-keys/{key_id}/usage"), None)
            .await;
        (
            usage["total_requests"].clone(),
            usage["total_cost"].clone(),
            usage["requests_this_hour"].clone(),
        )
    };
    let before = usage(&app).await;
    assert_eq!(before.0, json!(300));
    app.stop().await;
    let dir = app.dir.path().join("snapshots");
    let mut snapshots: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    snapshots.sort();
    assert_eq!(snapshots.len(), 2, "{snapshots:?}");
    std::fs::remove_file(snapshots.pop().unwrap()).unwrap();
    app.spawn().await;
    assert_eq!(
        usage(&app).await,
        before,
        "from a snapshot taken under load, plus the tail"
    );
    assert_eq!(app.query("echo", Some(&key), json!(1)).await.status(), 429);
}

/// A restart serves nothing from half-rebuilt state: a key revoked before
/// the restart, whose creation the replay has seen but not yet its
/// revocation, is never let through; every query before the replica has
/// caught up is 503 `not_ready` with `Retry-After`.
async fn a_restart_decides_nothing_before_it_has_caught_up(mut app: App) {
    app.workflow("echo", "builtin:echo", 0.0).await;
    let (key_id, key) = app.create_key(json!({"name": "revoked before the crash"})).await;
    assert_eq!(app.query("echo", Some(&key), json!(1)).await.status(), 200);
    app.stop().await;
    // Enough events after the key's creation for the replay to take a
    // while, then its revocation; no snapshot, so the start replays all.
    {
        let log: Arc<dyn EventStream> = match &app.store {
            Store::Embedded => Arc::new(
                ingest::embedded::EmbeddedLog::open(ingest::embedded::Options::new(app.dir.path().join("stream")))
                    .await
                    .unwrap(),
            ),
            Store::Nats(server, name) => Arc::new(
                ingest::nats::NatsStream::connect(ingest::nats::Options::new(server.url(), name))
                    .await
                    .unwrap(),
            ),
        };
        let query = |n: u64| {
            Event::QueryRecorded(ingest::events::QueryRecorded {
                request_id: format!("req_{n}"),
                key_id: "key_other".into(),
                workflow_id: "echo".into(),
                status_code: 200,
                cost: ingest::Micros::ZERO,
                duration_ms: 1,
                reported_cost: None,
                record_by: None,
                customer_id: None,
                input_tokens: 0,
                output_tokens: 0,
                authorization_id: None,
            })
        };
        let batch: Vec<_> = (0..100_000)
            .map(|n| ingest::Outgoing::new(&query(n), chrono::Utc::now()).unwrap())
            .collect();
        for chunk in batch.chunks(2_000) {
            for appended in futures::future::join_all(chunk.iter().map(|o| log.append(o))).await {
                appended.unwrap();
            }
        }
        let revoked = Event::KeyRevoked(ingest::events::KeyRevoked { key_id: key_id.clone() });
        log.append(&ingest::Outgoing::new(&revoked, chrono::Utc::now()).unwrap())
            .await
            .unwrap();
        log.close().await;
    }
    std::fs::remove_dir_all(app.dir.path().join("snapshots")).unwrap();
    app.spawn_unready().await;
    let (mut not_ready, mut usage_not_ready) = (0, 0);
    loop {
        let ready = app
            .http
            .get(format!("{}/readyz", app.base))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        let response = app.query("echo", Some(&key), json!(1)).await;
        if ready {
            assert_eq!(problem(response).await, (403, "invalid_api_key".into()));
            break;
        }
        match response.status().as_u16() {
            503 => {
                assert_eq!(response.headers()["retry-after"], "1");
                assert_eq!(problem(response).await, (503, "not_ready".into()));
                not_ready += 1;
                // Nor does it show usage as if complete.
                let (status, body) = app
                    .admin(reqwest::Method::GET, &format!("/api/v1/api-keys/{key_id}/usage"), None)
                    .await;
                match status.as_u16() {
                    503 => {
                        assert_eq!(body["code"], "not_ready");
                        usage_not_ready += 1;
                    }
                    200 => assert!(
                        app.http
                            .get(format!("{}/readyz", app.base))
                            .send()
                            .await
                            .unwrap()
                            .status()
                            == 200,
                        "usage answered before the replica was ready: {body}"
                    ),
                    other => panic!("usage answered {other}: {body}"),
                }
            }
            // Ready between the two requests: the revocation is applied.
            403 => assert_eq!(problem(response).await, (403, "invalid_api_key".into())),
            other => panic!("a revoked key answered {other} while the replica caught up"),
        }
    }
    assert!(
        not_ready > 0,
        "the replay was over before the first query: nothing was tested"
    );
    assert!(usage_not_ready > 0, "usage was never asked while not ready");
    eprintln!("{not_ready} queries and {usage_not_ready} usage reads answered not_ready during the replay");
    app.stop().await;
}

/// A NATS server stopped (SIGSTOP) for `stall` under queries of a key
/// without limits, then continued: every query answered 200 is recorded
/// and counted once; a query answered 503 is never billed, even though its
/// event, buffered while the server was stopped, reaches the stream once
/// it continues (stored after its `record_by`, it does not count).
async fn a_stalled_nats_bills_no_query_answered_503(stall: Duration) {
    let Some(app) = App::start(true).await else { return };
    app.workflow("echo", "builtin:echo", 0.01).await;
    let (key_id, key) = app.create_key(json!({"name": "stalled"})).await;
    assert_eq!(app.query("echo", Some(&key), json!("before")).await.status(), 200);
    let Store::Nats(server, _) = &app.store else {
        unreachable!()
    };
    let pid = server.pid().unwrap() as libc::pid_t;
    // SAFETY: signals a child process this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let app = Arc::new(app);
    let queries: Vec<_> = (0..5)
        .map(|i| {
            let (app, key) = (app.clone(), key.clone());
            tokio::spawn(async move {
                let response = app.query("echo", Some(&key), json!(i)).await;
                let request_id = response
                    .headers()
                    .get("x-request-id")
                    .map(|v| v.to_str().unwrap().to_owned());
                (response.status().as_u16(), request_id)
            })
        })
        .collect();
    // The fault itself lasts `stall`; nothing here waits for a condition.
    tokio::time::sleep(stall).await;
    if stall > Duration::from_secs(25) {
        // Recording gives up 17 s after it started (ARCHITECTURE.md): a
        // longer stall is answered while NATS is still stopped.
        assert!(
            queries.iter().all(|q| q.is_finished()),
            "a query still waits on a stream stalled for {stall:?}"
        );
    }
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let mut answers = Vec::new();
    for query in queries {
        answers.push(query.await.unwrap());
    }
    eprintln!("stall {stall:?}: {answers:?}");
    let ok: Vec<&String> = answers
        .iter()
        .filter(|(s, _)| *s == 200)
        .filter_map(|(_, r)| r.as_ref())
        .collect();
    assert!(
        answers.iter().all(|(s, _)| *s == 200 || *s == 503),
        "only 200 or 503: {answers:?}"
    );
    let mut app = Arc::into_inner(app).unwrap();
    // Whatever reaches the stream has reached it once the events the
    // stopped server buffered are stored: wait for usage to settle.
    let counted = async |app: &App| {
        let (_, usage) = app
            .admin(reqwest::Method::GET, &format!("/api/v1/api-keys/{key_id}/usage"), None)
            .await;
        usage["total_requests"].as_u64()
    };
    let expected = 1 + ok.len() as u64;
    eventually("usage counts the 200s", async || counted(&app).await == Some(expected)).await;
    app.stop().await;
    // Billed = the events that count: recorded once for each 200, never
    // for a 503 (on the stream or not, stored too late to count).
    let records = app.records().await;
    let (mut counting, mut too_late) = (Vec::new(), 0);
    for record in &records {
        let ingest::Event::QueryRecorded(q) = record.envelope().unwrap().event().unwrap() else {
            continue;
        };
        let in_time = q
            .record_by
            .is_none_or(|by| record.stored_micros <= by.timestamp_micros());
        if in_time {
            counting.push(q.request_id);
        } else {
            too_late += 1;
        }
    }
    eprintln!("stall {stall:?}: {too_late} events reached the stream too late to count");
    counting.sort();
    let before = counting.len() - ok.len();
    assert_eq!(
        before, 1,
        "the query before the stall, and the 200s: {counting:?} {answers:?}"
    );
    for request_id in &ok {
        assert_eq!(
            counting.iter().filter(|r| r == request_id).count(),
            1,
            "{request_id} counted once"
        );
    }
    for (status, request_id) in &answers {
        if *status == 503 {
            if let Some(request_id) = request_id {
                assert!(!counting.contains(request_id), "{request_id} answered 503 but billed");
            }
        }
    }
    // The archive holds exactly what counts.
    app.spawn().await;
    app.stop().await;
    let archived = common::archived_once(&app.dir.path().join("archive"));
    assert_eq!(archived.len(), counting.len(), "one archived row per billed query");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_12_second_nats_stall_bills_no_query_answered_503() {
    a_stalled_nats_bills_no_query_answered_503(Duration::from_secs(12)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30_second_nats_stall_bills_no_query_answered_503() {
    a_stalled_nats_bills_no_query_answered_503(Duration::from_secs(30)).await;
}

common::on_both_backends!(
    snapshots_under_load_restore_the_same_state,
    a_restart_decides_nothing_before_it_has_caught_up,
    revoked_keys_keep_their_history,
    malformed_paths_and_query_strings_are_problems,
    a_client_that_leaves_changes_nothing,
    holds_bound_spend_under_concurrency,
    a_slow_sse_reader_is_recorded_when_the_upstream_ends,
    key_search,
    streaming_queries,
    allowed_origins_and_cors,
    key_management_and_bad_input,
    the_error_table,
    rotation_with_grace,
    exact_limits_under_concurrency,
    real_upstreams,
    no_plaintext_key_outside_the_responses,
    usage_statistics,
    snapshots_restore_the_same_state,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_stream_answers_503_and_no_unmetered_200() {
    let Some(mut app) = App::start(true).await else { return };
    app.workflow("echo", "builtin:echo", 0.0).await;
    let (_, key) = app.create_key(json!({"name": "m"})).await;
    assert_eq!(app.query("echo", Some(&key), json!(1)).await.status(), 200);
    if let Store::Nats(server, _) = &mut app.store {
        server.kill();
    }
    assert_eq!(
        problem(app.query("echo", Some(&key), json!(1)).await).await,
        (503, "metering_unavailable".into())
    );
}

/// `/` serves the dashboard under a strict CSP, `/assets/` its bundle and
/// `/widget.js` the widget, each revalidated by ETag; nothing else under
/// `/assets/` is reachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_the_widget_are_served() {
    let app = App::start(false).await.unwrap();
    let get = |path: &str| app.http.get(format!("{}{path}", app.base));
    let page = get("/").send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(page.headers().get("access-control-allow-origin").is_none());
    let html = page.text().await.unwrap();
    assert!(html.contains("/assets/dashboard.js"), "{html}");

    for (path, kind) in [
        ("/assets/dashboard.js", "text/javascript"),
        ("/widget.js", "text/javascript"),
    ] {
        let response = get(path).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with(kind));
        let etag = response.headers()["etag"].clone();
        assert!(!response.bytes().await.unwrap().is_empty());
        let again = get(path).header("if-none-match", etag).send().await.unwrap();
        assert_eq!(again.status(), 304, "{path}");
    }
    for path in [
        "/assets/index.html",
        "/assets/missing.js",
        "/assets/..%2FCargo.toml",
        "/assets/%2e%2e%2fsrc%2flib.rs",
        "/assets/..%2F..%2Fsdk%2Ftypescript%2Ftest%2Fsupport%2Fhttp.js",
    ] {
        let response = get(path).send().await.unwrap();
        assert_eq!(problem(response).await, (404, "not_found".into()), "{path}");
    }
}
