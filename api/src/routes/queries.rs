//! `POST /api/v1/workflows/{workflow_id}/query`: the metered gateway.
//!
//! validate the key (projection) → workflow and association → admit under
//! the limits (a reservation, see [`crate::limiter`]) → call the upstream →
//! append the usage event → answer.
//! No usage event, no answer: if the append fails the client gets 503.

use axum::extract::{Path, State};
use axum::http::header::{
    ACCEPT, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ALLOW, ORIGIN, VARY,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{self, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use futures::StreamExt;
use ingest::events::QueryRecorded;
use ingest::{Event, EventId, Micros, Outgoing};
use ledger::{KeyHash, KeyRejection};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Instant;
use tokio::sync::mpsc;
use utoipa::ToSchema;

use super::AppState;
use crate::admission::Ask;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::limiter::{Limits, RateState, Reservation, Verdict};
use crate::{upstream, usd};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/workflows/{workflow_id}/query", post(query).options(preflight))
}

/// Response headers a browser page may read: the rate-limit state.
const EXPOSED: &str = "Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, X-Request-Id";

/// The CORS preflight of a query. It carries no API key, so it is allowed
/// for an origin some live key lists; the query itself is then held to its
/// own key's `allowed_origins`.
async fn preflight(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(origin) = headers.get(ORIGIN) else {
        return (StatusCode::NO_CONTENT, [(ALLOW, "POST, OPTIONS")]).into_response();
    };
    let allowed = origin
        .to_str()
        .is_ok_and(|origin| state.projection().keys.any_allows(origin));
    if !allowed {
        return ApiError::OriginNotAllowed.into_response();
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    h.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST"));
    h.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type, x-api-key, accept"),
    );
    h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    h.insert(VARY, HeaderValue::from_static("origin"));
    response
}

#[derive(Deserialize, ToSchema)]
pub struct QueryRequest {
    /// Anything; passed to the upstream as `input`.
    #[serde(default)]
    input: Value,
}

#[derive(Serialize, ToSchema)]
pub struct QueryUsage {
    /// USD charged for this query.
    cost: f64,
    duration_ms: u64,
}

#[derive(Serialize, ToSchema)]
pub struct QueryResponse {
    output: Value,
    usage: QueryUsage,
    request_id: String,
}

#[utoipa::path(post, path = "/api/v1/workflows/{workflow_id}/query", operation_id = "query_workflow", tag = "queries", request_body = QueryRequest,
    params(("X-API-Key" = String, Header, description = "nk_…")),
    responses(
        (status = 200, body = QueryResponse, description = "JSON; or, with `Accept: text/event-stream`, server-sent events: `chunk` (partial output) as it comes, then `done` ({usage, request_id}) or `error`"),
        (status = 401, description = "missing_api_key"),
        (status = 402, description = "cost_limit_exceeded"),
        (status = 403, description = "invalid_api_key, key_inactive, key_expired, origin_not_allowed, workflow_not_allowed"),
        (status = 404, description = "workflow_not_found"),
        (status = 429, description = "rate_limited, with Retry-After"),
        (status = 502, description = "upstream_error"),
        (status = 503, description = "metering_unavailable"),
        (status = 504, description = "upstream_timeout"),
    ))]
pub async fn query(
    State(state): State<AppState>,
    Path(workflow_id): Path<String>,
    headers: HeaderMap,
    body: Result<ApiJson<QueryRequest>, ApiError>,
) -> Response {
    let mut meta = Meta::default();
    let result = run(&state, &workflow_id, &headers, body, &mut meta).await;
    let Meta { rate, cors, request_id } = meta;
    let mut response = match result {
        Ok(Answer::Json(answer)) => Json(answer).into_response(),
        Ok(Answer::Events(response)) => response,
        Err(e) => e.into_response(),
    };
    // Only an origin the key lists is named (or, for a refused key, one some
    // live key lists).
    if let Some(origin) = cors {
        let h = response.headers_mut();
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED));
        h.insert(VARY, HeaderValue::from_static("origin"));
    }
    if let Some(rate) = rate {
        let h = response.headers_mut();
        h.insert("x-ratelimit-limit", HeaderValue::from(rate.limit));
        h.insert("x-ratelimit-remaining", HeaderValue::from(rate.remaining));
        h.insert("x-ratelimit-reset", HeaderValue::from(rate.reset));
    }
    // Once the query is admitted it has an id, on errors too (502, 504, 503).
    if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        response.headers_mut().insert("x-request-id", id);
    }
    response
}

/// What a query's response carries besides its body.
#[derive(Default)]
struct Meta {
    rate: Option<RateState>,
    /// The request's origin, when its key lists it.
    cors: Option<HeaderValue>,
    request_id: Option<String>,
}

async fn run(
    state: &AppState,
    workflow_id: &str,
    headers: &HeaderMap,
    body: Result<ApiJson<QueryRequest>, ApiError>,
    meta: &mut Meta,
) -> Result<Answer, ApiError> {
    let started = Instant::now();
    let presented = headers.get("x-api-key").ok_or(ApiError::MissingApiKey)?;
    let hash = KeyHash::from_digest(Sha256::digest(presented.as_bytes()).into());
    let now = Utc::now();
    let (key_id, limits, upstream_url, price) = {
        let projection = state.projection();
        let key = match projection.keys.validate(&hash, now) {
            Ok(key) => key,
            Err(rejection) => {
                // A page on an origin some live key lists may read why its
                // key was refused (an embedded widget can then say so); its
                // preflight already told it as much.
                meta.cors = headers
                    .get(ORIGIN)
                    .filter(|o| o.to_str().is_ok_and(|o| projection.keys.any_allows(o)))
                    .cloned();
                return Err(match rejection {
                    // A replica still catching up may not have the key yet.
                    KeyRejection::Invalid if !state.progress.is_ready() => catching_up(),
                    KeyRejection::Invalid => ApiError::InvalidApiKey,
                    KeyRejection::Inactive => ApiError::KeyInactive,
                    KeyRejection::Expired => ApiError::KeyExpired,
                });
            }
        };
        // A browser (it sends Origin) only from the origins the key lists.
        if let Some(origin) = headers.get(ORIGIN) {
            let listed = origin
                .to_str()
                .is_ok_and(|origin| key.settings.allowed_origins.iter().any(|o| o == origin));
            if !listed {
                return Err(ApiError::OriginNotAllowed);
            }
            meta.cors = Some(origin.clone());
        }
        let workflow = projection
            .workflows
            .get(workflow_id)
            .ok_or_else(|| match state.progress.is_ready() {
                true => ApiError::WorkflowNotFound,
                false => catching_up(),
            })?;
        let s = &key.settings;
        if !s.workflow_ids.is_empty() && !s.workflow_ids.iter().any(|w| w == workflow_id) {
            return Err(ApiError::WorkflowNotAllowed);
        }
        let limits = Limits {
            rate_per_hour: s.rate_limit_per_hour,
            cost_per_month: s.cost_limit_per_month,
        };
        (
            key.id.to_string(),
            limits,
            workflow.settings.upstream_url.clone(),
            workflow.settings.price_per_request,
        )
    };
    // Body errors come after key checks: an unauthenticated caller learns nothing from them.
    let ApiJson(body) = body?;

    let request_id = format!("req_{}", uuid::Uuid::now_v7().simple());
    let record_id = EventId::new();
    let limited = limits.rate_per_hour.is_some() || limits.cost_per_month.is_some();
    let verdict = match &state.admissions {
        Some(admissions) if limited => {
            let ask = Ask {
                key_id: &key_id,
                workflow_id,
                request_id: &request_id,
                limits,
                price,
                record_id,
            };
            admissions.admit(state, ask).await?
        }
        _ => {
            let projection = state.projection();
            state.limiter.admit(&key_id, limits, price, now, &projection)
        }
    };
    let reservation = match verdict {
        Verdict::Admitted(reservation, state) => {
            meta.rate = state;
            Some(reservation)
        }
        Verdict::Stored(state) => {
            meta.rate = state;
            None
        }
        Verdict::RateLimited(limited) => {
            meta.rate = Some(limited);
            fire_rate_limited(state, &key_id, limited.limit, now);
            let retry_after_secs = (limited.reset - now.timestamp()).max(1) as u64;
            return Err(ApiError::RateLimited {
                limit: limited.limit,
                retry_after_secs,
            });
        }
        Verdict::CostExceeded(state) => {
            meta.rate = state;
            return Err(ApiError::CostLimitExceeded);
        }
    };

    meta.request_id = Some(request_id.clone());
    let query = Admitted {
        key_id,
        workflow_id: workflow_id.to_owned(),
        request_id,
        record_id,
        price,
        started,
        reservation,
    };
    let wants_events = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if wants_events {
        return stream_events(state, query, upstream_url, body.input)
            .await
            .map(Answer::Events);
    }
    let outcome = upstream::call(
        &state.http,
        &upstream_url,
        workflow_id,
        body.input,
        &query.request_id,
        state.upstream_timeout,
    )
    .await;
    let (status_code, cost, answer) = settle(outcome, price);
    let (request_id, duration_ms) = (query.request_id.clone(), query.started.elapsed().as_millis() as u64);
    record(state, query, status_code, cost).await?;
    Ok(Answer::Json(QueryResponse {
        output: answer?,
        usage: QueryUsage {
            cost: usd::to_json(cost),
            duration_ms,
        },
        request_id,
    }))
}

enum Answer {
    Json(QueryResponse),
    /// `text/event-stream`.
    Events(Response),
}

/// A query past its limits, on its way to the upstream.
struct Admitted {
    key_id: String,
    workflow_id: String,
    request_id: String,
    /// The id its `query.recorded` carries.
    record_id: EventId,
    price: Micros,
    started: Instant,
    /// Its place under the limits on this replica (None: on the stream).
    reservation: Option<Reservation>,
}

/// What the query records and answers, from what the upstream did.
fn settle(outcome: upstream::Outcome, price: Micros) -> (u16, Micros, Result<Value, ApiError>) {
    match outcome {
        upstream::Outcome::Answered { output, cost } => (200, cost.unwrap_or(price), Ok(output)),
        upstream::Outcome::Failed(reason) => (502, Micros::ZERO, Err(ApiError::UpstreamError(reason))),
        upstream::Outcome::TimedOut => (504, Micros::ZERO, Err(ApiError::UpstreamTimeout)),
    }
}

/// Appends the query's usage event; without it there is no answer (503).
async fn record(state: &AppState, query: Admitted, status_code: u16, cost: Micros) -> Result<(), ApiError> {
    let duration_ms = query.started.elapsed().as_millis() as u64;
    let event = Event::QueryRecorded(QueryRecorded {
        request_id: query.request_id.clone(),
        key_id: query.key_id.clone(),
        workflow_id: query.workflow_id.clone(),
        status_code,
        cost,
        duration_ms,
    });
    let outgoing = Outgoing::with_id(query.record_id, &event, Utc::now()).map_err(ApiError::internal)?;
    if let Some(reservation) = &query.reservation {
        reservation.expect(outgoing.id);
    }
    match state.stream.append(&outgoing).await {
        Ok(appended) => state.appended(appended.seq),
        Err(error) => {
            let (key_id, request_id) = (&query.key_id, &query.request_id);
            tracing::error!(%error, key_id, request_id, "usage event not recorded; answering 503");
            return Err(ApiError::MeteringUnavailable);
        }
    };
    // No wait for the follower: the limiter counts this query as in flight
    // until the projection has it, and reads of usage wait for this
    // replica's own appends (read-your-writes).
    if let Some(reservation) = query.reservation {
        reservation.stored();
    }
    tracing::debug!(
        key_id = query.key_id,
        workflow_id = query.workflow_id,
        request_id = query.request_id,
        status_code,
        cost = cost.get(),
        duration_ms,
        "query recorded"
    );
    Ok(())
}

/// What the producer of an event stream hands the response.
enum Piece {
    Event(sse::Event),
    /// Failed before any output: a normal problem+json answer.
    Failed(ApiError),
}

/// `Accept: text/event-stream`: `event: chunk` for each piece of output as
/// the upstream gives it, then `event: done` with the usage, or `event:
/// error`. A task runs the query to its end whatever the client does, so
/// the usage is recorded once, also when the client goes away mid-stream
/// (the upstream is then read no further). Errors before the first piece
/// are answered as problem+json.
async fn stream_events(
    state: &AppState,
    query: Admitted,
    upstream_url: String,
    input: Value,
) -> Result<Response, ApiError> {
    let (tx, mut rx) = mpsc::channel::<Piece>(16);
    let state = state.clone();
    tokio::spawn(async move {
        let (pieces_tx, mut pieces_rx) = mpsc::channel::<String>(16);
        let call = upstream::stream(
            &state.http,
            &upstream_url,
            &query.workflow_id,
            input,
            &query.request_id,
            state.upstream_timeout,
            pieces_tx,
        );
        let forward = async {
            let mut sent = false;
            while let Some(text) = pieces_rx.recv().await {
                if tx
                    .send(Piece::Event(sse::Event::default().event("chunk").data(text)))
                    .await
                    .is_err()
                {
                    // The client went away: stop reading the upstream.
                    break;
                }
                sent = true;
            }
            sent
        };
        // A client that went away stops the upstream call: what was served
        // so far is what the query did.
        let call = async {
            tokio::select! {
                outcome = call => outcome,
                _ = tx.closed() => upstream::Outcome::Answered { output: Value::Null, cost: None },
            }
        };
        let (outcome, sent) = tokio::join!(call, forward);
        let (status_code, cost, answer) = settle(outcome, query.price);
        let (request_id, started) = (query.request_id.clone(), query.started);
        let recorded = record(&state, query, status_code, cost).await;
        let piece = match (recorded.and(answer.map(|_| ())), sent) {
            (Ok(()), _) => {
                let done = json!({
                    "usage": {"cost": usd::to_json(cost), "duration_ms": started.elapsed().as_millis() as u64},
                    "request_id": request_id,
                });
                Piece::Event(sse::Event::default().event("done").data(done.to_string()))
            }
            (Err(error), false) => Piece::Failed(error),
            (Err(error), true) => {
                let problem = json!({"code": error.code(), "detail": error.to_string(), "request_id": request_id});
                Piece::Event(sse::Event::default().event("error").data(problem.to_string()))
            }
        };
        let _ = tx.send(piece).await;
    });
    let first = match rx.recv().await {
        Some(Piece::Event(event)) => event,
        Some(Piece::Failed(error)) => return Err(error),
        None => return Err(ApiError::internal("the query's task ended without an answer")),
    };
    let rest = futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).filter_map(|piece| async move {
        match piece {
            Piece::Event(event) => Some(Ok::<_, std::convert::Infallible>(event)),
            Piece::Failed(_) => None,
        }
    });
    let events = futures::stream::once(async move { Ok(first) }).chain(rest);
    Ok(Sse::new(events).into_response())
}

fn catching_up() -> ApiError {
    ApiError::NotReady("this replica is catching up with the stream; retry shortly".into())
}

/// The first 429 of a key in a clock hour fires `usage.rate_limited`.
/// Appended in the background: the 429 does not wait for it.
fn fire_rate_limited(state: &AppState, key_id: &str, limit: u64, now: chrono::DateTime<Utc>) {
    let alert = ledger::alerts::rate_limited(key_id, limit, now);
    if state.projection().alerts.is_fired(&alert.alert_id) {
        return;
    }
    {
        let mut sent = state.rate_alerts.lock().unwrap_or_else(|e| e.into_inner());
        if sent.len() > 10_000 {
            sent.clear();
        }
        if !sent.insert(alert.alert_id.clone()) {
            return;
        }
    }
    let state = state.clone();
    tokio::spawn(async move {
        let id = alert.alert_id.clone();
        if let Err(error) = state.write(Event::AlertFired(alert), None).await {
            tracing::warn!(alert_id = id, %error, "cannot record a rate-limit alert");
            state.rate_alerts.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        }
    });
}
