//! Usage from anywhere: verify-then-record for work nodai does not proxy
//! (`POST /api/v1/verify`, then a usage event naming the authorization),
//! CloudEvents ingest (`POST /api/v1/events`) and the usage query
//! (`GET /api/v1/usage`), checked against DuckDB over the archive.

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::common;
use common::app::{problem, App};

async fn verify(app: &App, body: Value) -> Value {
    let (status, answer) = app.post("/api/v1/verify", body).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// Posts `body` to `/api/v1/events` as `content_type`.
async fn send(app: &App, content_type: &str, body: &Value) -> reqwest::Response {
    app.http
        .post(format!("{}/api/v1/events", app.base))
        .bearer_auth(common::app::TOKEN)
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// Posts a batch; its 202 answer.
async fn batch(app: &App, events: &[Value]) -> Value {
    let response = send(app, "application/cloudevents-batch+json", &json!(events)).await;
    assert_eq!(response.status(), 202);
    response.json().await.unwrap()
}

fn event(id: &str, key_id: &str, data: Value) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "//batch/nightly", "type": "nodai.usage",
           "subject": key_id, "data": data})
}

async fn usage_of(app: &App, key_id: &str) -> Value {
    let (status, usage) = app
        .admin(reqwest::Method::GET, &format!("/api/v1/api-keys/{key_id}/usage"), None)
        .await;
    assert_eq!(status, 200, "{usage}");
    usage
}

async fn verify_answers_like_the_gateway(app: App) {
    app.workflow("summarize", "builtin:echo", 0.02).await;
    app.workflow("other", "builtin:echo", 0.01).await;
    let (key_id, key) = app
        .create_key(
            json!({"name": "batch", "workflow_ids": ["summarize"], "rate_limit_per_hour": 100,
                           "cost_limit_per_month": 5}),
        )
        .await;
    let valid = verify(&app, json!({"key": key, "workflow_id": "summarize"})).await;
    assert_eq!(
        (valid["valid"].as_bool(), valid["code"].as_str()),
        (Some(true), Some("valid"))
    );
    assert_eq!(valid["key_id"], key_id.as_str());
    assert!(valid["authorization_id"].as_str().unwrap().starts_with("auth_"));
    assert_eq!(valid["hold"], 0.02, "the workflow's price by default");
    assert_eq!(
        valid["limits"],
        json!([
            {"scope": "key", "metric": "requests", "window": "hour", "max": 100, "remaining": 99,
             "reset": valid["limits"][0]["reset"]},
            {"scope": "key", "metric": "cost", "window": "month", "max": 5.0, "remaining": 4.98,
             "reset": valid["limits"][1]["reset"]},
        ]),
        "remaining is after this verification, its hold included"
    );
    let refused = |code: &'static str| {
        move |answer: Value| {
            assert_eq!(
                (answer["valid"].as_bool(), answer["code"].as_str()),
                (Some(false), Some(code)),
                "{answer}"
            );
        }
    };
    // Another key may not settle it, even at once (this replica answers
    // from its own appends).
    let (other_id, _) = app.create_key(json!({"name": "other"})).await;
    for _ in 0..20 {
        let auth = verify(&app, json!({"key": key, "workflow_id": "summarize"})).await["authorization_id"].clone();
        let stolen = event(
            "stolen",
            &other_id,
            json!({"workflow_id": "summarize", "authorization_id": auth}),
        );
        let response = send(&app, "application/cloudevents+json", &stolen).await;
        assert_eq!(problem(response).await, (422, "authorization_mismatch".into()));
    }
    refused("workflow_not_allowed")(verify(&app, json!({"key": key, "workflow_id": "other"})).await);
    refused("workflow_not_found")(verify(&app, json!({"key": key, "workflow_id": "nope"})).await);
    refused("invalid_api_key")(verify(&app, json!({"key": "nk_0000000000000000"})).await);
    let (status, _) = app
        .admin(reqwest::Method::DELETE, &format!("/api/v1/api-keys/{key_id}"), None)
        .await;
    assert_eq!(status, 204);
    refused("invalid_api_key")(verify(&app, json!({"key": key})).await);
    // Malformed requests are problems, not verdicts.
    for (body, status) in [
        (json!({"key": key, "hold_seconds": 0}), 422),
        (json!({"key": key, "hold": -1}), 422),
        (json!({"key": key, "hold": 0.0000001}), 422),
        (json!({"key": key, "surprise": 1}), 422),
        (json!({}), 422),
    ] {
        let (got, answer) = app.post("/api/v1/verify", body.clone()).await;
        assert_eq!(got.as_u16(), status, "{body}: {answer}");
    }
}

/// 200 verifications at once over two keys of a customer limited to 50
/// requests a day: exactly 50 are valid, on either backend. Settling 20 of
/// them with usage events makes 20 requests of usage, and the limit still
/// counts 50.
async fn concurrent_verifications_admit_exactly_the_limit(app: App) {
    app.workflow("echo", "builtin:echo", 0.001).await;
    let (status, _) = app
        .post(
            "/api/v1/customers",
            json!({"id": "acme", "name": "Acme", "limits": [{"metric": "requests", "window": "day", "max": 50}]}),
        )
        .await;
    assert_eq!(status, 201);
    let a = app.create_key(json!({"name": "a", "customer_id": "acme"})).await;
    let b = app.create_key(json!({"name": "b", "customer_id": "acme"})).await;
    let app = Arc::new(app);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let app = app.clone();
            let key = if i % 2 == 0 { a.1.clone() } else { b.1.clone() };
            tokio::spawn(async move { verify(&app, json!({"key": key, "workflow_id": "echo"})).await })
        })
        .collect();
    let mut valid = Vec::new();
    let mut codes = BTreeMap::new();
    for task in tasks {
        let answer = task.await.unwrap();
        *codes.entry(answer["code"].as_str().unwrap().to_owned()).or_insert(0) += 1;
        if answer["valid"] == true {
            valid.push(answer);
        }
    }
    assert_eq!(
        codes,
        BTreeMap::from([("rate_limited".to_owned(), 150), ("valid".to_owned(), 50)])
    );
    let events: Vec<Value> = valid
        .iter()
        .take(20)
        .enumerate()
        .map(|(i, v)| {
            event(
                &format!("settle-{i}"),
                v["key_id"].as_str().unwrap(),
                json!({"workflow_id": "echo", "authorization_id": v["authorization_id"], "cost": 0.5}),
            )
        })
        .collect();
    let answer = batch(&app, &events).await;
    assert_eq!(answer, json!({"accepted": 20, "duplicates": 0, "rejected": []}));
    let (status, usage) = app
        .admin(reqwest::Method::GET, "/api/v1/customers/acme/usage", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        usage["total_requests"], 20,
        "a verification and its settlement are one request"
    );
    assert_eq!(usage["total_cost"], 10.0);
    assert_eq!(
        usage["requests_this_hour"], 50,
        "what the limit sees: the 30 unsettled too"
    );
    let of_a = valid.iter().filter(|v| v["key_id"] == a.0.as_str()).count();
    assert_eq!(usage_of(&app, &a.0).await["requests_this_hour"], of_a, "per key too");
    let refused = verify(&app, json!({"key": a.1})).await;
    assert_eq!(refused["code"], "rate_limited");
    let response = app.query("echo", Some(&a.1), json!("x")).await;
    assert_eq!(problem(response).await, (429, "rate_limited".into()));
}

/// A prepaid customer with $1.00: holds of $0.30 admit four verifications
/// (the crossing one is allowed, like a query), refuse the fifth; settling
/// one releases its hold and draws its cost; expired holds stop counting.
async fn holds_count_against_credits_until_settled_or_expired(app: App) {
    app.workflow("echo", "builtin:echo", 0.01).await;
    let (status, _) = app
        .post(
            "/api/v1/customers",
            json!({"id": "pre", "name": "Pre", "billing": "prepaid"}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = app.post("/api/v1/customers/pre/credits", json!({"amount": 1.0})).await;
    assert_eq!(status, 201);
    let (key_id, key) = app.create_key(json!({"name": "k", "customer_id": "pre"})).await;
    let hold = |seconds: u64| json!({"key": key, "workflow_id": "echo", "hold": 0.3, "hold_seconds": seconds});
    let mut authorizations = Vec::new();
    for _ in 0..4 {
        let answer = verify(&app, hold(300)).await;
        assert_eq!(answer["code"], "valid", "{answer}");
        authorizations.push(answer["authorization_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(verify(&app, hold(300)).await["code"], "insufficient_credits");
    let settle = event(
        "one",
        &key_id,
        json!({"workflow_id": "echo", "authorization_id": authorizations[0], "cost": 0.05}),
    );
    let response = send(&app, "application/cloudevents+json", &settle).await;
    assert_eq!(response.status(), 202);
    let (_, credits) = app
        .admin(reqwest::Method::GET, "/api/v1/customers/pre/credits", None)
        .await;
    assert_eq!(credits["balance"], 0.95, "its cost drawn, its hold released");
    // $0.95 less three holds of $0.30 is above zero: one more.
    let short = verify(&app, hold(1)).await;
    assert_eq!(short["code"], "valid", "{short}");
    assert_eq!(verify(&app, hold(1)).await["code"], "insufficient_credits");
    // The short hold expires: its $0.30 counts no more.
    common::app::eventually("an expired hold stops counting", async || {
        verify(&app, json!({"key": key, "hold": 0.01, "hold_seconds": 1})).await["code"] == "valid"
    })
    .await;
    let usage = usage_of(&app, &key_id).await;
    assert_eq!(usage["total_requests"], 1, "only the settled one is usage");
    assert_eq!(usage["total_cost"], 0.05);
    // A usage event naming another key's authorization is refused.
    let (other_id, _) = app.create_key(json!({"name": "other", "customer_id": "pre"})).await;
    let wrong = event(
        "wrong",
        &other_id,
        json!({"workflow_id": "echo", "authorization_id": authorizations[1]}),
    );
    let response = send(&app, "application/cloudevents+json", &wrong).await;
    assert_eq!(problem(response).await, (422, "authorization_mismatch".into()));
}

/// Events: single and batch, per-event rejections, idempotency, pricing,
/// and the same effects as a proxied query on usage and limits.
async fn usage_events_count_like_queries(app: App) {
    let (status, _) = app
        .post(
            "/api/v1/workflows",
            json!({"id": "llm", "name": "LLM", "upstream_url": "builtin:echo", "price_per_request": 0.001,
                   "price_per_million_input_tokens": 2.0, "price_per_million_output_tokens": 6.0,
                   "max_cost_per_request": 1.0}),
        )
        .await;
    assert_eq!(status, 201);
    let (key_id, key) = app.create_key(json!({"name": "k", "rate_limit_per_hour": 6})).await;
    let one = event(
        "e-1",
        &key_id,
        json!({"workflow_id": "llm", "input_tokens": 1000, "output_tokens": 500}),
    );
    let response = send(&app, "application/cloudevents+json", &one).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"accepted": 1, "duplicates": 0, "rejected": []})
    );
    let now = chrono::Utc::now();
    let mut past = event(
        "e-2",
        &key_id,
        json!({"workflow_id": "llm", "cost": 2.5, "status_code": 200}),
    );
    past["time"] = json!((now - chrono::Duration::days(3)).to_rfc3339());
    let mut too_old = event("e-old", &key_id, json!({"workflow_id": "llm"}));
    too_old["time"] = json!((now - chrono::Duration::days(40)).to_rfc3339());
    let mut ahead = event("e-ahead", &key_id, json!({"workflow_id": "llm"}));
    ahead["time"] = json!((now + chrono::Duration::minutes(30)).to_rfc3339());
    let mut wrong_type = event("e-type", &key_id, json!({"workflow_id": "llm"}));
    wrong_type["type"] = json!("com.example.other");
    let answer = batch(
        &app,
        &[
            one.clone(),
            past,
            event(
                "e-3",
                &key_id,
                json!({"workflow_id": "llm", "status_code": 502, "duration_ms": 40}),
            ),
            event(
                "e-3",
                &key_id,
                json!({"workflow_id": "llm", "status_code": 502, "duration_ms": 40}),
            ),
            event("e-4", "key_nope", json!({"workflow_id": "llm"})),
            event("e-5", &key_id, json!({"workflow_id": "nope"})),
            event("e-6", &key_id, json!({"workflow_id": "llm", "cost": -1})),
            event("e-7", &key_id, json!({"workflow_id": "llm", "tokens": 3})),
            too_old,
            ahead,
            wrong_type,
            json!({"id": "e-8", "source": "x"}),
        ],
    )
    .await;
    let codes: Vec<(i64, &str)> = answer["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_i64().unwrap(), r["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        codes,
        vec![
            (4, "key_not_found"),
            (5, "workflow_not_found"),
            (6, "validation_error"),
            (7, "invalid_event"),
            (8, "time_out_of_range"),
            (9, "time_out_of_range"),
            (10, "unsupported_event_type"),
            (11, "invalid_event"),
        ]
    );
    assert_eq!(
        (&answer["accepted"], &answer["duplicates"]),
        (&json!(2), &json!(2)),
        "e-1 again and e-3 twice: {answer}"
    );
    let usage = usage_of(&app, &key_id).await;
    assert_eq!(usage["total_requests"], 3);
    assert_eq!(usage["total_input_tokens"], 1000);
    // e-1: $0.001 + 1000 × $2/M + 500 × $6/M = $0.006; e-2: capped at $1.00;
    // e-3: a failure without a cost costs nothing.
    assert_eq!(usage["total_cost"], 1.006);
    assert_eq!(
        usage["daily"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["requests"] != 0)
            .count(),
        2
    );
    // Sent again after it was applied: still once.
    assert_eq!(
        batch(&app, &[one]).await,
        json!({"accepted": 0, "duplicates": 1, "rejected": []})
    );
    // They count against limits like queries: 2 of 6 this hour are taken.
    let recent: Vec<Value> = (0..4)
        .map(|i| event(&format!("r-{i}"), &key_id, json!({"workflow_id": "llm"})))
        .collect();
    assert_eq!(batch(&app, &recent).await["accepted"], 4);
    let response = app.query("llm", Some(&key), json!("x")).await;
    assert_eq!(problem(response).await, (429, "rate_limited".into()));
    // Whole requests that are wrong.
    let single_bad = event("bad", "key_nope", json!({"workflow_id": "llm"}));
    let response = send(&app, "application/cloudevents+json", &single_bad).await;
    assert_eq!(problem(response).await, (422, "key_not_found".into()));
    let binary = app
        .http
        .post(format!("{}/api/v1/events", app.base))
        .bearer_auth(common::app::TOKEN)
        .header("content-type", "application/json")
        .header("ce-specversion", "1.0")
        .body(r#"{"workflow_id":"llm"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        problem(binary).await,
        (422, "validation_error".into()),
        "binary mode is named"
    );
    let response = send(&app, "text/plain", &json!([])).await;
    assert_eq!(problem(response).await, (415, "unsupported_media_type".into()));
    let many: Vec<Value> = (0..1001).map(|i| json!({"id": i})).collect();
    let response = send(&app, "application/cloudevents-batch+json", &json!(many)).await;
    assert_eq!(problem(response).await, (413, "payload_too_large".into()));
    let response = send(&app, "application/cloudevents-batch+json", &json!([])).await;
    assert_eq!(problem(response).await.0, 422);
    let response = app
        .http
        .post(format!("{}/api/v1/events", app.base))
        .bearer_auth(common::app::TOKEN)
        .header("content-type", "application/cloudevents+json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(response).await, (400, "invalid_json".into()));
    let unauthenticated = app
        .http
        .post(format!("{}/api/v1/events", app.base))
        .header("content-type", "application/json")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
}

/// An accepted usage event counts against limits from its 202 on, on the
/// replica that took it, as a proxied query counts from its admission:
/// twenty keys limited to one request an hour, each sent one event and
/// then verified at once, are all refused.
async fn usage_events_count_against_limits_from_their_202(app: App) {
    let (status, _) = app
        .post(
            "/api/v1/workflows",
            json!({"id": "w", "name": "w", "upstream_url": "builtin:echo", "price_per_request": 0.001}),
        )
        .await;
    assert_eq!(status, 201);
    for i in 0..20 {
        let (key_id, key) = app.create_key(json!({"name": "one", "rate_limit_per_hour": 1})).await;
        let answer = batch(
            &app,
            &[event(&format!("one-{i}"), &key_id, json!({"workflow_id": "w"}))],
        )
        .await;
        assert_eq!(answer["accepted"], 1, "{answer}");
        let answer = verify(&app, json!({"key": key, "workflow_id": "w"})).await;
        assert_eq!(answer["code"], "rate_limited", "round {i}: {answer}");
    }
}

common::on_both_backends!(
    usage_events_count_against_limits_from_their_202,
    verify_answers_like_the_gateway,
    concurrent_verifications_admit_exactly_the_limit,
    holds_count_against_credits_until_settled_or_expired,
    usage_events_count_like_queries,
);

/// Holds are state until settled or expired: at most 10,000 of one key
/// hold at once; the next is refused until one is settled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_are_bounded_per_key() {
    let app = Arc::new(App::start(false).await.unwrap());
    app.workflow("echo", "builtin:echo", 0.0).await;
    let (key_id, key) = app.create_key(json!({"name": "busy"})).await;
    let max = api::limiter::MAX_HOLDS as usize;
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let (app, key) = (app.clone(), key.clone());
            tokio::spawn(async move {
                let mut first = None;
                for _ in (t..max).step_by(16) {
                    let answer = verify(&app, json!({"key": key})).await;
                    assert_eq!(answer["code"], "valid", "{answer}");
                    first.get_or_insert(answer["authorization_id"].as_str().unwrap().to_owned());
                }
                first
            })
        })
        .collect();
    let mut authorizations = Vec::new();
    for task in tasks {
        authorizations.extend(task.await.unwrap());
    }
    let refused = verify(&app, json!({"key": key})).await;
    assert_eq!(refused["code"], "concurrency_limited", "{refused}");
    // Five settled holds free five places; verifications at once take
    // exactly those, whether or not this replica has folded the ones
    // before them (a CI run was answered valid by a replica that had not).
    let settles: Vec<Value> = authorizations[..5]
        .iter()
        .enumerate()
        .map(|(i, authorization)| {
            event(
                &format!("free-{i}"),
                &key_id,
                json!({"workflow_id": "echo", "authorization_id": authorization}),
            )
        })
        .collect();
    assert_eq!(batch(&app, &settles).await["accepted"], 5);
    common::app::eventually("settled holds free places", async || {
        verify(&app, json!({"key": key})).await["code"] == "valid"
    })
    .await;
    let at_once: Vec<_> = (0..20)
        .map(|_| {
            let (app, key) = (app.clone(), key.clone());
            tokio::spawn(async move { verify(&app, json!({"key": key})).await["code"].clone() })
        })
        .collect();
    let mut valid = 0;
    for answer in at_once {
        match answer.await.unwrap().as_str() {
            Some("valid") => valid += 1,
            Some("concurrency_limited") => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(valid, 4, "five places freed, one taken before");
}

/// The usage query over a spread of usage (events back to 20 days, proxied
/// queries, three keys, two workflows, a customer, failures) answers the
/// same before the archive holds it (read from the stream) and after (read
/// from Parquet), and equals DuckDB's sums over the archive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usage_query_equals_duckdb_over_the_archive() {
    let mut app = App::start(false).await.unwrap();
    app.workflow("summarize", "builtin:echo", 0.002).await;
    app.workflow("classify", "builtin:echo", 0.0005).await;
    let (status, _) = app
        .post("/api/v1/customers", json!({"id": "acme", "name": "Acme"}))
        .await;
    assert_eq!(status, 201);
    let keys = [
        app.create_key(json!({"name": "a", "customer_id": "acme"})).await,
        app.create_key(json!({"name": "b", "customer_id": "acme"})).await,
        app.create_key(json!({"name": "c"})).await,
    ];
    let now = chrono::Utc::now();
    let events: Vec<Value> = (0..600)
        .map(|i: i64| {
            let (key_id, _) = &keys[(i % 3) as usize];
            let workflow = if i % 5 == 0 { "classify" } else { "summarize" };
            let status = if i % 7 == 0 { 500 } else { 200 };
            let mut e = event(
                &format!("spread-{i}"),
                key_id,
                json!({"workflow_id": workflow, "status_code": status, "input_tokens": i, "output_tokens": 2 * i,
                       "cost": (i % 13) as f64 / 1000.0}),
            );
            e["time"] = json!((now - chrono::Duration::minutes(i * 47)).to_rfc3339());
            e
        })
        .collect();
    for chunk in events.chunks(250) {
        assert_eq!(batch(&app, chunk).await["accepted"], chunk.len());
    }
    for i in 0..6 {
        let response = app.query("summarize", Some(&keys[i % 3].1), json!(i)).await;
        assert_eq!(response.status(), 200);
    }
    let from = (now - chrono::Duration::days(25)).to_rfc3339();
    let queries = [
        format!("granularity=day&group_by=workflow_id&from={from}"),
        format!("granularity=hour&group_by=key_id,status_code&from={from}"),
        format!("granularity=month&group_by=customer_id&from={from}"),
        format!("granularity=day&group_by=workflow_id&key_id={}&from={from}", keys[0].0),
        format!("granularity=day&customer_id=acme&from={from}"),
    ];
    let report = async |app: &App, query: &str| {
        let url = format!("/api/v1/usage?{}", query.replace('+', "%2B"));
        let (status, body) = app.admin(reqwest::Method::GET, &url, None).await;
        assert_eq!(status, 200, "{query}: {body}");
        body
    };
    let mut before = Vec::new();
    for q in &queries {
        before.push(report(&app, q).await);
    }
    let total: u64 = before[0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 606, "every event in range and every query: {}", before[0]);
    app.stop().await;
    app.spawn().await;
    for (q, earlier) in queries.iter().zip(&before) {
        assert_eq!(
            &report(&app, q).await,
            earlier,
            "{q}: from the archive as from the stream"
        );
    }
    // DuckDB, over the same files, per day and workflow.
    let archive = app.dir.path().join("archive");
    let script = r#"
import duckdb, sys
rows = duckdb.sql(f"""
  SELECT (epoch(ts)::BIGINT // 86400) * 86400 AS start, workflow_id, count(*) AS requests,
         count(*) FILTER (WHERE status_code >= 500) AS errors, sum(cost)::VARCHAR AS cost,
         sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens
  FROM read_parquet('{sys.argv[1]}/usage/*/*/*.parquet', hive_partitioning = true)
  GROUP BY ALL ORDER BY start, workflow_id""").fetchall()
for r in rows:
    print(*r)
"#;
    let ours: Vec<String> = before[0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let start = chrono::DateTime::parse_from_rfc3339(r["start"].as_str().unwrap()).unwrap();
            format!(
                "{} {} {} {} {:.6} {} {}",
                start.timestamp(),
                r["workflow_id"].as_str().unwrap(),
                r["requests"],
                r["errors"],
                r["cost"].as_f64().unwrap(),
                r["input_tokens"],
                r["output_tokens"]
            )
        })
        .collect();
    if let Some(text) = common::duckdb(script, &[archive.as_os_str()]) {
        let theirs: Vec<&str> = text.lines().collect();
        assert_eq!(theirs, ours, "DuckDB's sums over the archive");
    }
    // The same as CSV.
    let csv = app
        .http
        .get(format!("{}/api/v1/usage?{}", app.base, queries[0].replace('+', "%2B")))
        .bearer_auth(common::app::TOKEN)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("start,end,workflow_id,requests,errors,cost,input_tokens,output_tokens")
    );
    assert_eq!(lines.count(), ours.len());
    for (bad, why) in [
        ("granularity=week", "granularity"),
        ("group_by=model", "group_by"),
        (
            "granularity=hour&from=2026-01-01T00:00:00Z&to=2026-12-01T00:00:00Z",
            "span",
        ),
        ("from=yesterday", "RFC 3339"),
        ("key_id=", "key_id"),
    ] {
        let (status, body) = app
            .admin(reqwest::Method::GET, &format!("/api/v1/usage?{bad}"), None)
            .await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert!(body["detail"].as_str().unwrap().contains(why), "{bad}: {body}");
    }
}
