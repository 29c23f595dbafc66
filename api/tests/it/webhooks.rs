//! Webhooks over real HTTP on both backends: subscriptions, Standard
//! Webhooks signatures (with a rotation's two secrets), usage alerts fired
//! once per key, month and threshold (also across a full replay), retries
//! with the same `webhook-id`, a delivery that fails for good and its manual
//! retry, pending deliveries that survive a restart, and the SSRF guard.

use crate::common;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::response::IntoResponse;
use common::app::{eventually, problem, App};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A message a receiver got.
#[derive(Debug, Clone)]
struct Received {
    endpoint: String,
    id: String,
    timestamp: i64,
    signature: String,
    body: String,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// Endpoints: `/ok` answers 200; `/flaky` 503 (Retry-After: 0) to the first
/// two attempts of each message, then 200; `/redirect` 307 to `/ok`; `/down` always 500; `/slow` 200 after
/// five seconds.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Received>>>, Arc<std::sync::atomic::AtomicUsize>);

impl Receiver {
    async fn start(self, listener: tokio::net::TcpListener) -> String {
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route("/{endpoint}", axum::routing::post(receive))
            .with_state(self);
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }

    fn got(&self, endpoint: &str) -> Vec<Received> {
        let all = self.0.lock().unwrap();
        all.iter().filter(|r| r.endpoint == endpoint).cloned().collect()
    }

    fn of_type(&self, endpoint: &str, event_type: &str) -> Vec<Received> {
        self.got(endpoint)
            .into_iter()
            .filter(|r| r.json()["type"] == event_type)
            .collect()
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    Path(endpoint): Path<String>,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    let header = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let received = Received {
        endpoint: endpoint.clone(),
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp").parse().unwrap_or(0),
        signature: header("webhook-signature"),
        body,
    };
    let earlier = {
        let mut all = receiver.0.lock().unwrap();
        let earlier = all
            .iter()
            .filter(|r| r.endpoint == endpoint && r.id == received.id)
            .count();
        all.push(received);
        earlier
    };
    if endpoint == "slow" {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        receiver.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    match endpoint.as_str() {
        "flaky" if earlier < 2 => (AxumStatus::SERVICE_UNAVAILABLE, [("retry-after", "0")]).into_response(),
        "redirect" => (AxumStatus::TEMPORARY_REDIRECT, [("location", "/ok")]).into_response(),
        "down" => AxumStatus::INTERNAL_SERVER_ERROR.into_response(),
        _ => AxumStatus::OK.into_response(),
    }
}

fn fast_retries(config: &mut api::config::Config) {
    config.webhook_guard.allow_private = true;
    config.webhook_retry_schedule = "200ms,200ms".parse().unwrap();
}

/// Standard Webhooks verification written from the specification, sharing
/// nothing with the crate under test: HMAC-SHA256 (RFC 2104) over
/// `id.timestamp.body`, keyed by the base64-decoded part of `whsec_…`,
/// base64 encoded, any of the space-separated `v1,` signatures.
fn verifies(secret: &str, r: &Received) -> bool {
    let key = base64_decode(secret.strip_prefix("whsec_").unwrap());
    let message = format!("{}.{}.{}", r.id, r.timestamp, r.body);
    let expected = format!("v1,{}", base64_encode(&hmac_sha256(&key, message.as_bytes())));
    r.signature.split(' ').any(|s| s == expected)
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Vec<u8> {
    let digits: Vec<u32> = text
        .bytes()
        .filter(|b| *b != b'=')
        .map(|b| BASE64.iter().position(|c| *c == b).unwrap() as u32)
        .collect();
    let mut out = Vec::new();
    for chunk in digits.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, d)| n | d << (18 - 6 * i));
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

#[test]
fn the_independent_verifier_matches_the_reference_vector() {
    // From the Standard Webhooks specification.
    let r = Received {
        endpoint: String::new(),
        id: "msg_p5jXN8AQM9LWM0D4loKWxJek".into(),
        timestamp: 1614265330,
        signature: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".into(),
        body: r#"{"test": 2432232314}"#.into(),
    };
    assert!(verifies("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &r));
    assert!(!verifies("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSx", &r));
}

async fn create_webhook(app: &App, url: String, events: Value) -> (String, String) {
    let (status, body) = app
        .post(
            "/api/v1/webhooks",
            json!({"url": url, "events": events, "description": "test"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let secret = body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (body["id"].as_str().unwrap().to_owned(), secret)
}

async fn deliveries(app: &App, webhook_id: &str) -> Vec<Value> {
    let (status, body) = app
        .admin(Method::GET, &format!("/api/v1/webhooks/{webhook_id}/deliveries"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().unwrap().clone()
}

async fn alerts_signed_retried_and_once(mut app: App) {
    let receiver = Receiver::default();
    let base = receiver
        .clone()
        .start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
        .await;
    let (ok, ok_secret) = create_webhook(&app, format!("{base}/ok"), json!(["usage.threshold"])).await;
    let (flaky, flaky_secret) = create_webhook(&app, format!("{base}/flaky"), json!([])).await;
    let (down, _) = create_webhook(&app, format!("{base}/down"), json!(["webhook.test"])).await;

    // The secret is shown once.
    let (status, one) = app.admin(Method::GET, &format!("/api/v1/webhooks/{ok}"), None).await;
    assert_eq!(status, 200);
    assert!(one.get("secret").is_none(), "{one}");
    assert_eq!(one["events"], json!(["usage.threshold"]));
    let (_, list) = app.admin(Method::GET, "/api/v1/webhooks", None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 3);
    assert!(list["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w.get("secret").is_none()));

    // A $0.01 budget at $0.003 a query: 30%, 60% (crosses 50), 90%, 120% (crosses 100), then 402.
    app.workflow("echo", "builtin:echo", 0.003).await;
    let (key_id, key) = app
        .create_key(json!({"name": "budget", "cost_limit_per_month": 0.01, "alert_thresholds": [50, 100]}))
        .await;
    for _ in 0..4 {
        assert_eq!(app.query("echo", Some(&key), json!("hi")).await.status(), 200);
    }
    assert_eq!(app.query("echo", Some(&key), json!("hi")).await.status(), 402);

    eventually("two threshold alerts at /ok", async || {
        receiver.of_type("ok", "usage.threshold").len() >= 2
    })
    .await;
    let alerts = receiver.of_type("ok", "usage.threshold");
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    let mut percents: Vec<u64> = alerts
        .iter()
        .map(|r| r.json()["data"]["threshold_percent"].as_u64().unwrap())
        .collect();
    percents.sort();
    assert_eq!(percents, [50, 100]);
    for r in &alerts {
        assert!(verifies(&ok_secret, r), "signature of {r:?}");
        assert!(!verifies(&flaky_secret, r), "another endpoint's secret does not verify");
        let body = r.json();
        assert_eq!(body["type"], "usage.threshold");
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
        let data = &body["data"];
        assert_eq!(data["key_id"], key_id.as_str());
        assert_eq!(data["cost_limit_per_month"], 0.01);
        assert_eq!(data["month"], chrono::Utc::now().format("%Y-%m").to_string());
        let expected = if data["threshold_percent"] == 50 { 0.006 } else { 0.012 };
        assert_eq!(data["cost_this_month"], expected, "{data}");
        assert!((r.timestamp - chrono::Utc::now().timestamp()).abs() < 60);
    }

    // /flaky wants everything: key.created and both thresholds, each refused twice and retried with the same id.
    eventually("three messages delivered to /flaky", async || {
        let got = receiver.got("flaky");
        let ids: std::collections::HashSet<_> = got.iter().map(|r| r.id.clone()).collect();
        ids.len() >= 3 && got.len() >= 9
    })
    .await;
    let got = receiver.got("flaky");
    let mut by_id: HashMap<String, Vec<&Received>> = HashMap::new();
    for r in &got {
        assert!(verifies(&flaky_secret, r));
        by_id.entry(r.id.clone()).or_default().push(r);
    }
    for (id, attempts) in &by_id {
        assert_eq!(attempts.len(), 3, "{id}: two 503s and a 200");
        assert!(
            attempts.iter().all(|a| a.body == attempts[0].body),
            "the same message on every attempt"
        );
    }
    let types: Vec<String> = by_id
        .values()
        .map(|a| a[0].json()["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types.iter().filter(|t| *t == "key.created").count(), 1, "{types:?}");
    assert_eq!(types.iter().filter(|t| *t == "usage.threshold").count(), 2, "{types:?}");
    let created = by_id.values().find(|a| a[0].json()["type"] == "key.created").unwrap()[0].json();
    assert_eq!(created["data"]["key_id"], key_id.as_str());
    assert!(!created.to_string().contains(&key), "never the plaintext key");
    eventually("the deliveries log shows them succeeded", async || {
        let log = deliveries(&app, &flaky).await;
        log.len() == 3 && log.iter().all(|d| d["status"] == "succeeded")
    })
    .await;
    for d in deliveries(&app, &flaky).await {
        assert_eq!(
            (d["attempts"].as_u64(), d["last_status_code"].as_u64()),
            (Some(3), Some(200)),
            "{d}"
        );
        assert!(d["next_attempt_at"].is_null());
        assert!(
            by_id.contains_key(d["id"].as_str().unwrap()),
            "the delivery id is the webhook-id"
        );
    }

    // The first 429 of the hour fires usage.rate_limited once.
    let (_, limited) = app
        .create_key(json!({"name": "hourly", "rate_limit_per_hour": 1}))
        .await;
    assert_eq!(app.query("echo", Some(&limited), json!(1)).await.status(), 200);
    for _ in 0..3 {
        assert_eq!(app.query("echo", Some(&limited), json!(1)).await.status(), 429);
    }
    eventually("a rate-limit alert at /flaky", async || {
        receiver.of_type("flaky", "usage.rate_limited").len() >= 3
    })
    .await;
    let limited_alerts = receiver.of_type("flaky", "usage.rate_limited");
    assert!(
        limited_alerts.iter().all(|r| r.id == limited_alerts[0].id),
        "one alert for the hour"
    );

    // An endpoint that always fails: three attempts (two retries), then failed; a manual retry starts again.
    let (status, sent) = app.post(&format!("/api/v1/webhooks/{down}/test"), json!({})).await;
    assert_eq!(status, 202, "{sent}");
    let test_id = sent["delivery_id"].as_str().unwrap().to_owned();
    eventually("the test delivery fails for good", async || {
        deliveries(&app, &down)
            .await
            .first()
            .is_some_and(|d| d["status"] == "failed")
    })
    .await;
    let d = &deliveries(&app, &down).await[0];
    assert_eq!(d["id"], test_id.as_str());
    assert_eq!(
        (d["attempts"].as_u64(), d["last_status_code"].as_u64()),
        (Some(3), Some(500)),
        "{d}"
    );
    assert_eq!(receiver.got("down").len(), 3);
    assert!(receiver.got("down").iter().all(|r| r.id == test_id));
    let (status, retried) = app
        .post(
            &format!("/api/v1/webhooks/{down}/deliveries/{test_id}/retry"),
            json!({}),
        )
        .await;
    assert_eq!(status, 202, "{retried}");
    eventually("the manual retry runs the schedule again", async || {
        deliveries(&app, &down).await[0]["attempts"].as_u64() == Some(6)
    })
    .await;
    let (status, missing) = app
        .post(&format!("/api/v1/webhooks/{down}/deliveries/msg_nope/retry"), json!({}))
        .await;
    assert_eq!(
        (status, missing["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("delivery_not_found"))
    );

    // Rotation with a grace period: both secrets sign.
    let (status, rotated) = app
        .admin(
            Method::PUT,
            &format!("/api/v1/webhooks/{ok}"),
            Some(json!({"rotate_secret": true, "grace_period_seconds": 3600})),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, ok_secret);
    app.post(&format!("/api/v1/webhooks/{ok}/test"), json!({})).await;
    eventually("a test message at /ok", async || {
        !receiver.of_type("ok", "webhook.test").is_empty()
    })
    .await;
    let test = &receiver.of_type("ok", "webhook.test")[0];
    assert_eq!(test.signature.split(' ').count(), 2, "{}", test.signature);
    assert!(verifies(&new_secret, test) && verifies(&ok_secret, test));

    // Bad input is a 422 or a 404, never a 5xx.
    for (body, code) in [
        (json!({"url": "ftp://example.com"}), "validation_error"),
        (
            json!({"url": format!("{base}/ok"), "events": ["usage.nope"]}),
            "validation_error",
        ),
        (json!({"url": 5}), "invalid_json"),
        (json!({"events": []}), "invalid_json"),
    ] {
        let response = app
            .http
            .post(format!("{}/api/v1/webhooks", app.base))
            .bearer_auth(common::app::TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, got) = problem(response).await;
        assert!(status == 422 || status == 400, "{body}: {status}");
        if code != "invalid_json" {
            assert_eq!(got, code, "{body}");
        }
    }
    let (status, _) = app
        .admin(
            Method::PUT,
            &format!("/api/v1/webhooks/{ok}"),
            Some(json!({"grace_period_seconds": 5})),
        )
        .await;
    assert_eq!(status, 422, "a grace period needs a rotation");
    let (status, _) = app
        .admin(Method::DELETE, &format!("/api/v1/webhooks/{down}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, gone) = app.admin(Method::GET, &format!("/api/v1/webhooks/{down}"), None).await;
    assert_eq!(
        (status, gone["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("webhook_not_found"))
    );

    // A restart, and a full replay without snapshots, fire and deliver nothing again.
    let count = |endpoint: &str| receiver.got(endpoint).len();
    let before = (count("ok"), count("flaky"));
    app.stop().await;
    std::fs::remove_dir_all(app.dir.path().join("snapshots")).unwrap();
    app.spawn().await;
    app.post(&format!("/api/v1/webhooks/{ok}/test"), json!({})).await;
    eventually("a second test message at /ok", async || {
        receiver.of_type("ok", "webhook.test").len() >= 2
    })
    .await;
    // A stop lets attempts in flight finish: anything sent again after the
    // replay has arrived by the time it returns.
    app.stop().await;
    assert_eq!((count("ok") - 1, count("flaky")), before, "nothing delivered twice");
    let fired: Vec<String> = app
        .events()
        .await
        .into_iter()
        .filter_map(|(e, _)| match e {
            ingest::Event::AlertFired(a) => Some(a.alert_id),
            _ => None,
        })
        .collect();
    assert_eq!(
        fired.len(),
        3,
        "two thresholds and one rate limit, once each: {fired:?}"
    );
}

async fn pending_deliveries_survive_a_restart(mut app: App) {
    // An endpoint that is down at first: nothing listens on its port.
    let reserved = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = reserved.local_addr().unwrap();
    drop(reserved);
    let (id, secret) = create_webhook(&app, format!("http://{addr}/ok"), json!([])).await;
    let (status, sent) = app.post(&format!("/api/v1/webhooks/{id}/test"), json!({})).await;
    assert_eq!(status, 202);
    let message = sent["delivery_id"].as_str().unwrap().to_owned();
    eventually("the first attempt fails", async || {
        deliveries(&app, &id).await.first().is_some_and(|d| d["attempts"] == 1)
    })
    .await;
    let d = &deliveries(&app, &id).await[0];
    assert_eq!(d["status"], "pending", "{d}");
    assert!(d["last_status_code"].is_null() && d["last_error"].is_string(), "{d}");
    assert!(d["next_attempt_at"].is_string(), "{d}");
    app.stop().await;

    let receiver = Receiver::default();
    receiver
        .clone()
        .start(tokio::net::TcpListener::bind(addr).await.unwrap())
        .await;
    app.spawn().await;
    eventually("delivered after the restart", async || !receiver.got("ok").is_empty()).await;
    let got = &receiver.got("ok")[0];
    assert_eq!(got.id, message, "the same webhook-id as before the restart");
    assert!(verifies(&secret, got));
    eventually("recorded as succeeded", async || {
        deliveries(&app, &id).await[0]["status"] == "succeeded"
    })
    .await;
    // Two or more attempts: the retry schedule may have run once more
    // against the closed port while the server stopped.
    assert!(deliveries(&app, &id).await[0]["attempts"].as_u64().unwrap() >= 2);
    assert_eq!(receiver.got("ok").len(), 1, "one successful attempt");
}

async fn a_slow_endpoint_delays_no_other(app: App) {
    let receiver = Receiver::default();
    let base = receiver
        .clone()
        .start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
        .await;
    let (slow, _) = create_webhook(&app, format!("{base}/slow"), json!([])).await;
    let (ok, _) = create_webhook(&app, format!("{base}/ok"), json!([])).await;
    for _ in 0..webhooks::worker::PER_ENDPOINT + 2 {
        app.post(&format!("/api/v1/webhooks/{slow}/test"), json!({})).await;
    }
    eventually("the slow endpoint is busy", async || !receiver.got("slow").is_empty()).await;
    app.post(&format!("/api/v1/webhooks/{ok}/test"), json!({})).await;
    eventually("the other endpoint got its message", async || {
        !receiver.got("ok").is_empty()
    })
    .await;
    assert_eq!(
        receiver.1.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "delivered while the slow endpoint still held its first requests"
    );
    assert!(
        receiver.got("slow").len() <= webhooks::worker::PER_ENDPOINT,
        "a bounded number of attempts in flight to one endpoint"
    );
}

async fn addresses_are_checked_again_at_delivery(mut app: App) {
    // Saved while private addresses were allowed…
    let receiver = Receiver::default();
    let base = receiver
        .clone()
        .start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
        .await;
    let (id, _) = create_webhook(&app, format!("{base}/ok"), json!([])).await;
    let localhost = base.replace("127.0.0.1", "localhost");
    let (by_name, _) = create_webhook(&app, format!("{localhost}/ok"), json!([])).await;
    app.stop().await;
    // …then the guard is back: neither the address nor the name may be called.
    app.configure = |config| config.webhook_retry_schedule = "200ms".parse().unwrap();
    app.spawn().await;
    for webhook in [&id, &by_name] {
        app.post(&format!("/api/v1/webhooks/{webhook}/test"), json!({})).await;
    }
    for webhook in [&id, &by_name] {
        eventually("refused at delivery", async || {
            deliveries(&app, webhook)
                .await
                .first()
                .is_some_and(|d| d["status"] == "failed")
        })
        .await;
        let d = &deliveries(&app, webhook).await[0];
        assert!(d["last_status_code"].is_null(), "{d}");
        assert!(d["last_error"].as_str().unwrap().contains("loopback, private"), "{d}");
    }
    assert!(receiver.got("ok").is_empty(), "nothing reached the private address");
}

async fn redirects_are_not_followed(app: App) {
    let receiver = Receiver::default();
    let base = receiver
        .clone()
        .start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
        .await;
    let (id, _) = create_webhook(&app, format!("{base}/redirect"), json!([])).await;
    app.post(&format!("/api/v1/webhooks/{id}/test"), json!({})).await;
    eventually("the redirected delivery fails", async || {
        deliveries(&app, &id)
            .await
            .first()
            .is_some_and(|d| d["status"] == "failed")
    })
    .await;
    assert_eq!(deliveries(&app, &id).await[0]["last_status_code"], 307);
    assert_eq!(receiver.got("redirect").len(), 3);
    assert!(receiver.got("ok").is_empty(), "the redirect was not followed");
}

async fn the_ssrf_guard(app: App) {
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/hook",
        "http://192.168.0.1/hook",
        "http://0.0.0.0/hook",
    ] {
        let response = app
            .http
            .post(format!("{}/api/v1/webhooks", app.base))
            .bearer_auth(common::app::TOKEN)
            .json(&json!({"url": url}))
            .send()
            .await
            .unwrap();
        assert_eq!(problem(response).await, (422, "webhook_url_forbidden".into()), "{url}");
    }
    let (_, list) = app.admin(Method::GET, "/api/v1/webhooks", None).await;
    assert_eq!(list["data"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ssrf_guard_refuses_private_addresses() {
    the_ssrf_guard(App::start(false).await.unwrap()).await;
}

common::on_both_backends!(configured by super::fast_retries; alerts_signed_retried_and_once, pending_deliveries_survive_a_restart);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slow_endpoint_delays_no_other() {
    a_slow_endpoint_delays_no_other(App::start_with(false, fast_retries).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_a_failure_not_followed() {
    redirects_are_not_followed(App::start_with(false, fast_retries).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_applies_at_delivery_too() {
    addresses_are_checked_again_at_delivery(App::start_with(false, fast_retries).await.unwrap()).await;
}

/// The README's Python verifier, run for real on a delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_verifier_accepts_a_real_delivery() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme.find("```python\nimport base64").expect("the README's verifier") + "```python\n".len();
    let verifier = &readme[start..start + readme[start..].find("```").unwrap()];

    let app = App::start_with(false, fast_retries).await.unwrap();
    let receiver = Receiver::default();
    let base = receiver
        .clone()
        .start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
        .await;
    let (id, secret) = create_webhook(&app, format!("{base}/ok"), json!([])).await;
    app.post(&format!("/api/v1/webhooks/{id}/test"), json!({})).await;
    eventually("a test message", async || !receiver.got("ok").is_empty()).await;
    let got = receiver.got("ok")[0].clone();

    let script = format!(
        "{verifier}\nimport sys\nh = {{'webhook-id': sys.argv[2], 'webhook-timestamp': sys.argv[3], 'webhook-signature': sys.argv[4]}}\n\
         print(verify(sys.argv[1], h, sys.argv[5].encode()), verify(sys.argv[1], h, sys.argv[5].encode() + b' '))"
    );
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            &script,
            &secret,
            &got.id,
            &got.timestamp.to_string(),
            &got.signature,
            &got.body,
        ])
        .output();
    match output {
        Ok(out) if out.status.success() => {
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "True False");
        }
        _ if std::env::var("NODAI_REQUIRE_PYTHON").is_err() => eprintln!("python3 not available: skipped"),
        other => panic!("python3 failed: {other:?}"),
    }
}
