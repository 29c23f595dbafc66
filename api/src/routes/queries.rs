//! `POST /api/v1/workflows/{workflow_id}/query`: the metered gateway.
//!
//! validate the key (projection) → workflow and association → admit under
//! the limits (a reservation, see [`crate::limiter`]) → call the upstream →
//! append the usage event → answer.
//! No usage event, no answer: if the append fails the client gets 503.
//! Admitted means recorded: from admission on, the query runs on a task of
//! its own, so a client that disconnects, times out or stops reading
//! changes nothing about what is called, recorded and counted.

use axum::extract::State;
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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use utoipa::ToSchema;

use super::AppState;
use crate::admission::Ask;
use crate::error::ApiError;
use crate::extract::{ApiJson, Path};
use crate::limiter::{Limits, RateState, Refused, Reservation, Rules, Verdict};
use crate::{upstream, usd};
use ingest::events::Metric;

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
    /// Tokens the upstream reported (0: none).
    input_tokens: u64,
    output_tokens: u64,
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
        (status = 400, description = "invalid_json"),
        (status = 401, description = "missing_api_key"),
        (status = 402, description = "cost_limit_exceeded"),
        (status = 403, description = "invalid_api_key, key_inactive, key_expired, origin_not_allowed, workflow_not_allowed"),
        (status = 404, description = "workflow_not_found"),
        (status = 413, description = "payload_too_large"),
        (status = 415, description = "unsupported_media_type"),
        (status = 422, description = "validation_error"),
        (status = 429, description = "rate_limited, with Retry-After"),
        (status = 502, description = "upstream_error"),
        (status = 503, description = "metering_unavailable; not_ready, with Retry-After"),
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
    meta.respond(result)
}

/// What a query's response carries besides its body.
#[derive(Default)]
struct Meta {
    rate: Option<RateState>,
    /// The request's origin, when its key lists it.
    cors: Option<HeaderValue>,
    request_id: Option<String>,
}

impl Meta {
    fn respond(self, result: Result<Answer, ApiError>) -> Response {
        let mut response = match result {
            Ok(Answer::Json(answer)) => Json(answer).into_response(),
            Ok(Answer::Events(response)) => response,
            Err(e) => e.into_response(),
        };
        let h = response.headers_mut();
        // Only an origin the key lists is named (or, for a refused key, one
        // some live key lists).
        if let Some(origin) = self.cors {
            h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            h.insert(ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED));
            h.insert(VARY, HeaderValue::from_static("origin"));
        }
        if let Some(rate) = self.rate {
            h.insert("x-ratelimit-limit", HeaderValue::from(rate.limit));
            h.insert("x-ratelimit-remaining", HeaderValue::from(rate.remaining));
            h.insert("x-ratelimit-reset", HeaderValue::from(rate.reset));
        }
        // Once the query is admitted it has an id, on errors too (502, 504, 503).
        if let Some(id) = self.request_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
            h.insert("x-request-id", id);
        }
        response
    }
}

/// validate → admit → call → record → answer.
async fn run(
    state: &AppState,
    workflow_id: &str,
    headers: &HeaderMap,
    body: Result<ApiJson<QueryRequest>, ApiError>,
    meta: &mut Meta,
) -> Result<Answer, ApiError> {
    let started = Instant::now();
    let presented = headers.get("x-api-key").ok_or(ApiError::MissingApiKey)?;
    // Nothing is decided from state older than the stream was at start: a
    // key revoked or a limit reached before a restart is not in it yet.
    if !state.progress.is_ready() {
        return Err(catching_up());
    }
    let now = Utc::now();
    let checked = check(state, workflow_id, headers, presented, now, meta)?;
    // Body errors come after key checks: an unauthenticated caller learns nothing from them.
    let ApiJson(body) = body.inspect_err(|_| meta.rate = rate_state(state, &checked.key_id, &checked.limits, now))?;
    let admitted = admit(state, checked, started, now, meta).await?;
    meta.request_id = Some(admitted.request_id.clone());
    let wants_events = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if wants_events {
        return stream_events(state, admitted, body.input).await.map(Answer::Events);
    }
    // On its own task: a client that goes away changes nothing about what
    // is called, recorded and counted.
    let task = tokio::spawn(answer_json(state.clone(), admitted, body.input));
    task.await
        .unwrap_or_else(|e| Err(ApiError::internal(e)))
        .map(Answer::Json)
}

enum Answer {
    Json(QueryResponse),
    /// `text/event-stream`.
    Events(Response),
}

/// A query whose key, origin and workflow check out.
struct Checked {
    key_id: String,
    workflow_id: String,
    limits: Limits,
    upstream_url: String,
    pricing: Pricing,
}

/// How a workflow's queries are charged.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pricing {
    price: Micros,
    /// Micro-dollars per million tokens.
    per_million_input: Micros,
    per_million_output: Micros,
    max: Option<Micros>,
}

impl Pricing {
    pub(crate) fn of(settings: &ingest::events::WorkflowSettings) -> Pricing {
        Pricing {
            price: settings.price_per_request,
            per_million_input: settings.price_per_million_input_tokens,
            per_million_output: settings.price_per_million_output_tokens,
            max: settings.max_cost_per_request,
        }
    }

    /// What an in-flight query counts for against cost limits: its tokens
    /// are not known yet.
    pub(crate) fn hold(self) -> Micros {
        self.max.unwrap_or(self.price)
    }

    /// What a query costs: the upstream's reported cost, else the price
    /// plus its tokens at the workflow's prices, rounded half up to the
    /// micro-dollar; capped at the maximum.
    pub(crate) fn cost(self, reported: upstream::Reported) -> Micros {
        let cost = reported.cost.unwrap_or_else(|| {
            let tokens = u128::from(reported.input_tokens) * self.per_million_input.get().max(0) as u128
                + u128::from(reported.output_tokens) * self.per_million_output.get().max(0) as u128;
            let micros = (tokens + 500_000) / 1_000_000;
            self.price + Micros::new(i64::try_from(micros).unwrap_or(i64::MAX / 2))
        });
        self.max.map_or(cost, |max| cost.min(max))
    }
}

/// The key (from the projection), its origins, the workflow and whether
/// the key may use it. Once the key is known, `meta` carries its rate state.
fn check(
    state: &AppState,
    workflow_id: &str,
    headers: &HeaderMap,
    presented: &HeaderValue,
    now: chrono::DateTime<Utc>,
    meta: &mut Meta,
) -> Result<Checked, ApiError> {
    let hash = KeyHash::from_digest(Sha256::digest(presented.as_bytes()).into());
    let projection = state.projection();
    // The rate state is read only for an answer that admits nothing: an
    // admitted query gets it from the limiter's own decision.
    let tell_rate = |key: &ledger::ApiKey, meta: &mut Meta| {
        meta.rate = state
            .limiter
            .rate_state(&key.id, &limits_of(key, &projection), now, &projection);
    };
    let key = match projection.keys.validate(&hash, now) {
        Ok(key) => key,
        Err(rejection) => {
            // An inactive or expired key is known: its answer tells its rate state.
            if let Some(key) = projection.keys.named_by(&hash, now) {
                tell_rate(key, meta);
            }
            // A page on an origin some live key lists may read why its key
            // was refused (an embedded widget can then say so); its
            // preflight already told it as much.
            meta.cors = headers
                .get(ORIGIN)
                .filter(|o| o.to_str().is_ok_and(|o| projection.keys.any_allows(o)))
                .cloned();
            return Err(match rejection {
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
            tell_rate(key, meta);
            return Err(ApiError::OriginNotAllowed);
        }
        meta.cors = Some(origin.clone());
    }
    let Some(workflow) = projection.workflows.get(workflow_id) else {
        tell_rate(key, meta);
        return Err(ApiError::WorkflowNotFound);
    };
    let s = &key.settings;
    if !s.workflow_ids.is_empty() && !s.workflow_ids.iter().any(|w| w == workflow_id) {
        tell_rate(key, meta);
        return Err(ApiError::WorkflowNotAllowed);
    }
    Ok(Checked {
        key_id: key.id.to_string(),
        workflow_id: workflow_id.to_owned(),
        limits: limits_of(key, &projection),
        upstream_url: workflow.settings.upstream_url.clone(),
        pricing: Pricing::of(&workflow.settings),
    })
}

/// The rate state of a known key, for an answer that admits nothing.
fn rate_state(state: &AppState, key_id: &str, limits: &Limits, now: chrono::DateTime<Utc>) -> Option<RateState> {
    state.limiter.rate_state(key_id, limits, now, &state.projection())
}

/// The key's limits and its customer's (a customer deleted by a race
/// across replicas has none).
pub(crate) fn limits_of(key: &ledger::ApiKey, projection: &ledger::Projection) -> Limits {
    let s = &key.settings;
    let customer = s.customer_id.as_deref().and_then(|id| projection.customers.get(id));
    Limits {
        key: Rules {
            limits: s.all_limits(),
            max_concurrent: s.max_concurrent,
            prepaid: false,
        },
        customer: customer.map(|c| {
            let rules = Rules {
                limits: c.settings.limits.clone(),
                max_concurrent: c.settings.max_concurrent,
                prepaid: c.settings.billing == ingest::events::Billing::Prepaid,
            };
            (c.id.clone(), rules)
        }),
        anchor_day: customer.map_or(1, |c| c.settings.billing_anchor_day),
    }
}

/// Takes the query's place under its key's limits: on this replica, or on
/// the stream when limits must hold across replicas (NATS).
async fn admit(
    state: &AppState,
    checked: Checked,
    started: Instant,
    now: chrono::DateTime<Utc>,
    meta: &mut Meta,
) -> Result<Admitted, ApiError> {
    let request_id = format!("req_{}", uuid::Uuid::now_v7().simple());
    let record_id = EventId::new();
    let Checked {
        key_id,
        workflow_id,
        limits,
        upstream_url,
        pricing,
    } = checked;
    if limits.any() {
        state.count_recorded().await?;
    }
    let verdict = if state.admit_on_stream && limits.any() {
        let ask = Ask {
            key_id: &key_id,
            workflow_id: &workflow_id,
            request_id: &request_id,
            limits: &limits,
            hold: pricing.hold(),
            record_id,
            verification: None,
        };
        state.admissions.admit(state, ask).await?
    } else {
        let projection = state.projection();
        state.limiter.admit(&key_id, &limits, pricing.hold(), now, &projection)
    };
    let customer_id = limits.customer_id().map(str::to_owned);
    let reservation = place(state, verdict, &key_id, now, meta)?;
    Ok(Admitted {
        key_id,
        customer_id,
        workflow_id,
        upstream_url,
        request_id,
        record_id,
        pricing,
        started,
        reservation,
    })
}

/// The query's place under its limits (None: its place is on the stream),
/// or the refusal; `meta` gets the key's rate state either way.
fn place(
    state: &AppState,
    verdict: Verdict,
    key_id: &str,
    now: chrono::DateTime<Utc>,
    meta: &mut Meta,
) -> Result<Option<Reservation>, ApiError> {
    match verdict {
        Verdict::Admitted(reservation, rate) => {
            meta.rate = rate;
            Ok(Some(reservation))
        }
        Verdict::Stored(rate) => {
            meta.rate = rate;
            Ok(None)
        }
        Verdict::Refused(refusal, rate) => {
            meta.rate = rate;
            Err(match refusal.refused {
                Refused::Credits => ApiError::InsufficientCredits,
                Refused::Concurrent(_) => ApiError::ConcurrencyLimited { refusal },
                Refused::Limit(limit) if limit.metric == Metric::Cost => ApiError::CostLimitExceeded { refusal },
                Refused::Limit(_) => {
                    fire_rate_limited(state, key_id, crate::error::limit_json(&refusal), now);
                    let at = refusal.retry_at.unwrap_or(now.timestamp() + 1);
                    ApiError::RateLimited {
                        refusal,
                        retry_after_secs: (at - now.timestamp()).max(1) as u64,
                    }
                }
            })
        }
    }
}

/// An admitted query: from here it runs to its end and is recorded once.
struct Admitted {
    key_id: String,
    /// The key's customer, whose usage the query counts for too.
    customer_id: Option<String>,
    workflow_id: String,
    upstream_url: String,
    request_id: String,
    /// The id its `query.recorded` carries.
    record_id: EventId,
    pricing: Pricing,
    started: Instant,
    /// Its place under the limits on this replica (None: on the stream).
    reservation: Option<Reservation>,
}

/// What the upstream did, as the query records and answers it.
struct Settled {
    status_code: u16,
    cost: Micros,
    reported_cost: Option<Micros>,
    input_tokens: u64,
    output_tokens: u64,
    output: Result<Value, ApiError>,
}

impl Admitted {
    fn settle(&self, outcome: upstream::Outcome) -> Settled {
        let (status_code, reported, output) = match outcome {
            upstream::Outcome::Answered { output, usage } => (200, usage, Ok(output)),
            upstream::Outcome::Failed(reason) => (502, Default::default(), Err(ApiError::UpstreamError(reason))),
            upstream::Outcome::TimedOut => (504, Default::default(), Err(ApiError::UpstreamTimeout)),
        };
        let cost = match &output {
            Ok(_) => self.pricing.cost(reported),
            // A failed upstream costs nothing unless it said otherwise.
            Err(_) => Micros::ZERO,
        };
        Settled {
            status_code,
            cost,
            reported_cost: reported.cost,
            input_tokens: reported.input_tokens,
            output_tokens: reported.output_tokens,
            output,
        }
    }

    /// Appends the query's usage event; without it there is no answer
    /// (503). It counts only if stored within [`RECORD_WITHIN`]: a 503 is
    /// never billed, even when the event reaches the stream later.
    async fn record(self, state: &AppState, settled: &Settled) -> Result<(), ApiError> {
        let duration_ms = self.started.elapsed().as_millis() as u64;
        let record_by = Utc::now() + chrono::TimeDelta::from_std(RECORD_WITHIN).unwrap_or_default();
        let event = Event::QueryRecorded(QueryRecorded {
            request_id: self.request_id.clone(),
            key_id: self.key_id.clone(),
            workflow_id: self.workflow_id.clone(),
            status_code: settled.status_code,
            cost: settled.cost,
            duration_ms,
            reported_cost: settled.reported_cost,
            record_by: Some(record_by),
            customer_id: self.customer_id.clone(),
            input_tokens: settled.input_tokens,
            output_tokens: settled.output_tokens,
            authorization_id: None,
        });
        let outgoing = Outgoing::with_id(self.record_id, &event, Utc::now()).map_err(ApiError::internal)?;
        // No wait for the follower: the limiter counts this query as in
        // flight until the projection has it, and reads of usage wait for
        // this replica's own appends (read-your-writes).
        let appending = state.append_in_time(&outgoing, record_by);
        let appended = match self.reservation {
            Some(reservation) => reservation.append(outgoing.id, appending).await,
            None => appending.await,
        };
        match appended {
            Ok(appended) => state.appended(appended.seq),
            Err(error) => {
                let (key_id, request_id) = (&self.key_id, &self.request_id);
                tracing::error!(%error, key_id, request_id, "usage event not recorded; answering 503");
                return Err(ApiError::MeteringUnavailable);
            }
        };
        tracing::debug!(
            key_id = self.key_id,
            workflow_id = self.workflow_id,
            request_id = self.request_id,
            status_code = settled.status_code,
            cost = settled.cost.get(),
            duration_ms,
            "query recorded"
        );
        Ok(())
    }
}

/// How long a query's usage event may take to be stored: after it, the
/// query is answered 503 and its event, should it still reach the stream,
/// does not count. Longer than one round of the NATS backend's own append
/// retries (10 s), so a short stall still ends in a 200.
const RECORD_WITHIN: std::time::Duration = std::time::Duration::from_secs(15);

/// Calls the upstream, records, answers: run on a task of its own.
async fn answer_json(state: AppState, query: Admitted, input: Value) -> Result<QueryResponse, ApiError> {
    let outcome = upstream::call(
        &state.http,
        &query.upstream_url,
        &query.workflow_id,
        input,
        &query.request_id,
        state.upstream_timeout,
    )
    .await;
    let settled = query.settle(outcome);
    let (request_id, started) = (query.request_id.clone(), query.started);
    query.record(&state, &settled).await?;
    Ok(QueryResponse {
        output: settled.output?,
        usage: QueryUsage {
            cost: usd::to_json(settled.cost),
            input_tokens: settled.input_tokens,
            output_tokens: settled.output_tokens,
            duration_ms: started.elapsed().as_millis() as u64,
        },
        request_id,
    })
}

/// What the query's task hands the response of an event stream.
enum Piece {
    /// An event and the bytes of output it carries.
    Event((sse::Event, usize)),
    /// Failed before any output: a normal problem+json answer.
    Failed(ApiError),
}

/// Output queued for a client that has not read it yet, at most: past it
/// the client is dropped (the query still runs to its end and is recorded).
const UNREAD_LIMIT: usize = 8 << 20;

/// `Accept: text/event-stream`: `event: chunk` for each piece of output as
/// the upstream gives it, then `event: done` with the usage, or `event:
/// error`. A task runs the query to its end whatever the client does: the
/// upstream is read to its end and the usage recorded as soon as it ends,
/// never held back by a client that reads slowly, stops reading or went
/// away. Errors before the first piece are answered as problem+json.
async fn stream_events(state: &AppState, query: Admitted, input: Value) -> Result<Response, ApiError> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Piece>();
    let unread = Arc::new(AtomicUsize::new(0));
    tokio::spawn(run_events(state.clone(), query, input, tx, unread.clone()));
    let first = match rx.recv().await {
        Some(Piece::Event(event)) => event,
        Some(Piece::Failed(error)) => return Err(error),
        None => return Err(ApiError::internal("the query's task ended without an answer")),
    };
    let rest = futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).filter_map(|piece| async move {
        match piece {
            Piece::Event(event) => Some(event),
            Piece::Failed(_) => None,
        }
    });
    let events = futures::stream::once(async move { first })
        .chain(rest)
        .map(move |(event, len)| {
            unread.fetch_sub(len, Ordering::Relaxed);
            Ok::<_, std::convert::Infallible>(event)
        });
    Ok(Sse::new(events).into_response())
}

/// The task behind [`stream_events`].
async fn run_events(
    state: AppState,
    query: Admitted,
    input: Value,
    tx: mpsc::UnboundedSender<Piece>,
    unread: Arc<AtomicUsize>,
) {
    let (pieces_tx, mut pieces_rx) = mpsc::channel::<String>(16);
    let call = upstream::stream(
        &state.http,
        &query.upstream_url,
        &query.workflow_id,
        input,
        &query.request_id,
        state.upstream_timeout,
        pieces_tx,
    );
    let forward = async {
        let (mut sent, mut client) = (false, Some(&tx));
        // Every piece is taken, so the upstream is read to its end.
        while let Some(text) = pieces_rx.recv().await {
            let Some(to) = client else { continue };
            let len = text.len();
            if unread.fetch_add(len, Ordering::Relaxed) + len > UNREAD_LIMIT {
                tracing::warn!(
                    request_id = query.request_id,
                    "a client stopped reading its event stream; it gets no more of it"
                );
                let problem = json!({"code": "client_too_slow", "detail": "the output was not read fast enough; the query ran to its end and was recorded", "request_id": query.request_id});
                let _ = to.send(Piece::Event((
                    sse::Event::default().event("error").data(problem.to_string()),
                    0,
                )));
                client = None;
                continue;
            }
            let chunk = sse::Event::default().event("chunk").data(text);
            if to.send(Piece::Event((chunk, len))).is_err() {
                client = None;
            }
            sent = true;
        }
        (sent, client.is_some())
    };
    let (outcome, (sent, listening)) = tokio::join!(call, forward);
    let settled = query.settle(outcome);
    let (request_id, started) = (query.request_id.clone(), query.started);
    let recorded = query.record(&state, &settled).await;
    if !listening {
        return;
    }
    let piece = match (recorded.and(settled.output.map(|_| ())), sent) {
        (Ok(()), _) => {
            let done = json!({
                "usage": {
                    "cost": usd::to_json(settled.cost),
                    "duration_ms": started.elapsed().as_millis() as u64,
                    "input_tokens": settled.input_tokens,
                    "output_tokens": settled.output_tokens,
                },
                "request_id": request_id,
            });
            Piece::Event((sse::Event::default().event("done").data(done.to_string()), 0))
        }
        (Err(error), false) => Piece::Failed(error),
        (Err(error), true) => {
            let problem = json!({"code": error.code(), "detail": error.to_string(), "request_id": request_id});
            Piece::Event((sse::Event::default().event("error").data(problem.to_string()), 0))
        }
    };
    let _ = tx.send(piece);
}

pub(crate) fn catching_up() -> ApiError {
    ApiError::NotReady("this replica is catching up with the stream; retry shortly".into())
}

/// The first 429 of a key in a clock hour fires `usage.rate_limited`.
/// Appended in the background: the 429 does not wait for it.
pub(crate) fn fire_rate_limited(state: &AppState, key_id: &str, limit: Value, now: chrono::DateTime<Utc>) {
    let own = state
        .projection()
        .keys
        .get(key_id)
        .and_then(|k| k.settings.rate_limit_per_hour);
    let alert = ledger::alerts::rate_limited(key_id, own, limit, now);
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
