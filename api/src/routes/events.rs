//! `POST /api/v1/events`: usage of work nodai did not proxy, as CloudEvents
//! 1.0 (structured JSON, one or a batch). Each accepted event becomes the
//! same `query.recorded` a proxied query appends, so it counts the same
//! everywhere: usage, limits, credits, alerts, webhooks, Parquet.
//!
//! - Idempotent on (`source`, `id`): the event's id on the stream is
//!   derived from the pair, so a retry is stored or folded once (the
//!   fold remembers ids for 25 hours: `ledger::dedup`).
//! - Durable before 202: every accepted event is appended (concurrently,
//!   so the backends batch them) before the answer.
//! - A bad event in a batch rejects only itself.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use ingest::events::{QueryAdmitted, QueryRecorded};
use ingest::{Event, EventId, Outgoing};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use utoipa::ToSchema;

use super::queries::Pricing;
use super::AppState;
use crate::error::ApiError;
use crate::extract::Body;
use crate::{upstream, usd};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/events", post(ingest_events))
}

/// Events in one batch, at most.
pub const MAX_BATCH: usize = 1000;
/// How far ahead of this server's clock an event's `time` may be.
const MAX_AHEAD: chrono::TimeDelta = chrono::TimeDelta::minutes(5);
/// How far back an event's `time` may be.
const MAX_BACK: chrono::TimeDelta = chrono::TimeDelta::days(35);
/// The CloudEvents `type` of usage.
pub const USAGE_TYPE: &str = "nodai.usage";

/// A usage CloudEvent's `data`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageData {
    workflow_id: String,
    /// From `POST /api/v1/verify`: settles that verification's hold, and
    /// the two are one request.
    authorization_id: Option<String>,
    /// USD; default: priced like a proxied query of the workflow (its
    /// price plus its tokens at its token prices; 0 for a status ≥ 500).
    /// Capped at the workflow's `max_cost_per_request`.
    cost: Option<f64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    /// Default 200; 500 and above count as errors.
    #[schema(minimum = 100, maximum = 599)]
    status_code: Option<u16>,
    duration_ms: Option<u64>,
}

/// A CloudEvent 1.0 (structured JSON) of type `nodai.usage`.
#[derive(Deserialize, ToSchema)]
pub struct UsageEvent {
    /// `1.0`.
    specversion: String,
    /// Unique within `source`: (`source`, `id`) is applied once within 24 h.
    id: String,
    source: String,
    /// `nodai.usage`.
    #[serde(rename = "type")]
    event_type: String,
    /// The key id (`key_…`) the usage is of.
    subject: String,
    /// RFC 3339: when the work was done (default: now). At most 5 minutes
    /// ahead, 35 days back.
    time: Option<String>,
    data: UsageData,
}

/// One event of a batch that was not accepted.
#[derive(Serialize, ToSchema)]
pub struct Rejected {
    /// Its `id`, when it had one.
    id: Option<String>,
    /// Its place in the batch, from 0.
    index: usize,
    status: u16,
    code: &'static str,
    detail: String,
}

#[derive(Serialize, ToSchema)]
pub struct Ingested {
    /// Events stored by this request.
    accepted: usize,
    /// Events applied before (same `source` and `id` within 24 h), or
    /// repeated in this batch: not applied again.
    duplicates: usize,
    rejected: Vec<Rejected>,
}

#[utoipa::path(post, path = "/api/v1/events", operation_id = "ingest_events", tag = "usage",
    request_body(description = "`application/cloudevents+json` (one event) or `application/cloudevents-batch+json` (an array of at most 1,000, each a `UsageEvent`: one that is not is rejected alone, in `rejected`); `application/json` is read as either",
        content((UsageEvent = "application/cloudevents+json"), (Vec<serde_json::Value> = "application/cloudevents-batch+json"))),
    responses(
        (status = 202, body = Ingested, description = "the accepted events are durable"),
        (status = 400), (status = 401), (status = 413, description = "payload_too_large: over 1 MiB or 1,000 events"), (status = 415),
        (status = 422, description = "a single event that is not valid: its code (invalid_event, unsupported_event_type, key_not_found, workflow_not_found, time_out_of_range, authorization_mismatch, validation_error)"),
        (status = 503, description = "not_ready; metering_unavailable (retry: events are idempotent)"),
    ),
    security(("admin" = [])))]
pub async fn ingest_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(bytes): Body,
) -> Result<impl IntoResponse, ApiError> {
    let shape = shape(&headers)?;
    // Each event is kept as its text and read on its own: one that does
    // not parse as a usage event rejects only itself.
    let bad_json = |e: serde_json::Error| ApiError::BadJson(e.to_string());
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
    let (events, single): (Vec<&RawValue>, bool) = match (shape, first) {
        (Shape::Batch | Shape::Either, Some(b'[')) => (serde_json::from_slice(&bytes).map_err(bad_json)?, false),
        (Shape::Single | Shape::Either, Some(b'{')) => (vec![serde_json::from_slice(&bytes).map_err(bad_json)?], true),
        _ => {
            serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).map_err(bad_json)?;
            return Err(ApiError::validation(match shape {
                Shape::Batch => "a batch is a JSON array of CloudEvents",
                _ => "an event is a JSON object (a CloudEvent)",
            }));
        }
    };
    if events.len() > MAX_BATCH {
        return Err(ApiError::BatchTooLarge);
    }
    if events.is_empty() {
        return Err(ApiError::validation("a batch holds 1 to 1,000 events"));
    }
    // Keys, workflows and authorizations are checked against the
    // projection: before it has caught up (503), a key made before a
    // restart would look unknown; and it must hold what this replica
    // appended itself (a verification answered a moment ago).
    state.read_own_writes().await?;
    let now = Utc::now();
    let mut sorted = sort(&events, &state.projection(), now);
    if sorted.unknown {
        // A key or workflow made through another replica a moment ago.
        // If the stream cannot say, the unknown events stay rejected
        // rather than failing the rest of the batch.
        match state.read_stream_head().await {
            Ok(()) => sorted = sort(&events, &state.projection(), now),
            Err(error) => tracing::warn!(%error, "cannot catch up to check unknown keys or workflows; rejecting them"),
        }
    }
    let Sorted {
        outgoing,
        mut duplicates,
        mut rejected,
        ..
    } = sorted;
    if single {
        if let Some(Rejected { code, detail, .. }) = rejected.pop() {
            return Err(ApiError::InvalidEvent { code, detail });
        }
    }
    let (mut accepted, mut last, mut failed) = (0, 0, None);
    for appended in state.stream.append_all(outgoing).await {
        match appended {
            Ok(a) if a.duplicate => {
                // Stored by an earlier try whose answer was lost: it
                // counts against limits from this 202 just the same.
                duplicates += 1;
                last = last.max(a.seq);
            }
            Ok(a) => {
                accepted += 1;
                last = last.max(a.seq);
            }
            Err(error) => failed = Some(error),
        }
    }
    if let Some(error) = failed {
        tracing::error!(%error, "usage events not all stored; answering 503");
        return Err(ApiError::MeteringUnavailable);
    }
    // A read of usage after this answer, and an admission (they count
    // against limits), wait until this replica applied them.
    state.progress.recorded(last);
    Ok((
        StatusCode::ACCEPTED,
        Json(Ingested {
            accepted,
            duplicates,
            rejected,
        }),
    ))
}

#[derive(Clone, Copy)]
enum Shape {
    Single,
    Batch,
    /// `application/json`: an object is one event, an array a batch.
    Either,
}

fn shape(headers: &HeaderMap) -> Result<Shape, ApiError> {
    // Binary mode puts the attributes in headers and the data alone in the
    // body: read as structured, it would be a confusing invalid_event.
    if headers.contains_key("ce-specversion") {
        return Err(ApiError::validation(
            "binary-mode CloudEvents (ce-* headers) are not read: send the event structured, as application/cloudevents+json",
        ));
    }
    let essence = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/cloudevents+json") => Ok(Shape::Single),
        Some("application/cloudevents-batch+json") => Ok(Shape::Batch),
        Some("application/json") => Ok(Shape::Either),
        _ => Err(ApiError::UnsupportedMediaType),
    }
}

/// Why an event is not accepted: its code and what to fix.
struct Invalid(&'static str, String);

fn invalid(detail: impl Into<String>) -> Invalid {
    Invalid("invalid_event", detail.into())
}

/// The stream id of the event (`source`, `id`): the same for every retry.
pub fn event_id(source: &str, id: &str) -> EventId {
    let digest = Sha256::digest(format!("{source}\0{id}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    EventId::from_bytes(bytes)
}

/// A request's events, checked against the projection.
struct Sorted {
    outgoing: Vec<Outgoing>,
    duplicates: usize,
    rejected: Vec<Rejected>,
    /// Some event named a key or workflow this projection does not have.
    unknown: bool,
}

fn sort(events: &[&RawValue], projection: &ledger::Projection, now: DateTime<Utc>) -> Sorted {
    let mut sorted = Sorted {
        outgoing: Vec::with_capacity(events.len()),
        duplicates: 0,
        rejected: Vec::new(),
        unknown: false,
    };
    let mut seen = HashSet::with_capacity(events.len());
    for (index, raw) in events.iter().enumerate() {
        match recorded(raw, projection, now) {
            Ok(out) if !seen.insert(out.id) || projection.dedup.contains(out.id) => sorted.duplicates += 1,
            Ok(out) => sorted.outgoing.push(out),
            Err(Invalid(code, detail)) => {
                sorted.unknown |= matches!(code, "key_not_found" | "workflow_not_found");
                // Its id, if it has one, to name it by.
                let id = serde_json::from_str::<Value>(raw.get())
                    .ok()
                    .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned));
                sorted.rejected.push(Rejected {
                    id,
                    index,
                    status: 422,
                    code,
                    detail,
                })
            }
        }
    }
    sorted
}

/// The `query.recorded` an event stands for, checked.
fn recorded(raw: &RawValue, projection: &ledger::Projection, now: DateTime<Utc>) -> Result<Outgoing, Invalid> {
    let event: UsageEvent =
        serde_json::from_str(raw.get()).map_err(|e| invalid(format!("not a usage CloudEvent: {e}")))?;
    if event.specversion != "1.0" {
        return Err(invalid("specversion must be \"1.0\""));
    }
    if event.id.is_empty() || event.id.len() > 256 {
        return Err(invalid("id must be 1 to 256 characters"));
    }
    if event.source.is_empty() || event.source.len() > 1024 {
        return Err(invalid("source must be 1 to 1024 characters"));
    }
    if event.event_type != USAGE_TYPE {
        return Err(Invalid(
            "unsupported_event_type",
            format!("type must be \"{USAGE_TYPE}\""),
        ));
    }
    let ts = match &event.time {
        None => now,
        Some(time) => DateTime::parse_from_rfc3339(time)
            .map_err(|_| Invalid("validation_error", "time must be an RFC 3339 timestamp".into()))?
            .with_timezone(&Utc),
    };
    if ts > now + MAX_AHEAD || ts < now - MAX_BACK {
        return Err(Invalid(
            "time_out_of_range",
            "time must be at most 5 minutes ahead and 35 days back".into(),
        ));
    }
    let Some(key) = projection.keys.get(&event.subject) else {
        return Err(Invalid(
            "key_not_found",
            "subject must be the id of an API key (key_…)".into(),
        ));
    };
    let data = event.data;
    let Some(workflow) = projection.workflows.get(&data.workflow_id) else {
        return Err(Invalid(
            "workflow_not_found",
            "data.workflow_id names no workflow".into(),
        ));
    };
    let status_code = data.status_code.unwrap_or(200);
    if !(100..=599).contains(&status_code) {
        return Err(Invalid(
            "validation_error",
            "data.status_code must be 100 to 599".into(),
        ));
    }
    let customer_id = key.settings.customer_id.clone();
    if let Some(authorization) = &data.authorization_id {
        let Some(record_id) = QueryAdmitted::record_id_of(authorization) else {
            return Err(Invalid(
                "validation_error",
                "data.authorization_id must be one POST /api/v1/verify answered (auth_…)".into(),
            ));
        };
        let other_key = projection
            .usage
            .verified_key(record_id)
            .is_some_and(|k| !k.is_empty() && k != &*key.id);
        if other_key {
            return Err(Invalid(
                "authorization_mismatch",
                "data.authorization_id was verified for another key".into(),
            ));
        }
    }
    let given = data
        .cost
        .map(|c| usd::parse("data.cost", c))
        .transpose()
        .map_err(|e| Invalid("validation_error", e.to_string()))?;
    let bounded = |n: Option<u64>| n.unwrap_or(0).min(1 << 40);
    let reported = upstream::Reported {
        cost: given,
        input_tokens: bounded(data.input_tokens),
        output_tokens: bounded(data.output_tokens),
    };
    // Like a proxied query: a failed one costs nothing unless it says so.
    let cost = if status_code >= 500 && given.is_none() {
        ingest::Micros::ZERO
    } else {
        Pricing::of(&workflow.settings).cost(reported)
    };
    let q = QueryRecorded {
        request_id: event.id.clone(),
        key_id: key.id.to_string(),
        workflow_id: data.workflow_id,
        status_code,
        cost,
        duration_ms: data.duration_ms.unwrap_or(0),
        reported_cost: given,
        record_by: None,
        customer_id,
        input_tokens: reported.input_tokens,
        output_tokens: reported.output_tokens,
        authorization_id: data.authorization_id,
    };
    // Ahead of this clock (by at most MAX_AHEAD: the sender's clock) it
    // counts now: a time in the future would push a key's rolling windows
    // forward and drop what they hold.
    Outgoing::with_id(
        event_id(&event.source, &event.id),
        &Event::QueryRecorded(q),
        ts.min(now),
    )
    .map_err(|e| invalid(format!("cannot be stored: {e}")))
}
