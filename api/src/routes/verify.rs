//! `POST /api/v1/verify`: the query gateway's checks for work nodai does
//! not proxy, as an authorization. A valid verification is an admitted
//! request: it takes its place under the key's and customer's limits like
//! a query (exactly, on the stream: `query.admitted` with `verification`),
//! counts against request limits from then on, and holds `hold` against
//! cost limits and credits until a usage event (`POST /api/v1/events`)
//! names its `authorization_id` or `hold_seconds` pass.
//!
//! Like Unkey's `verifyKey`, every verdict about the key is a 200 with a
//! `code`; only a malformed request, or a replica that cannot decide yet,
//! is an error.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use ingest::events::{Metric, QueryAdmitted};
use ingest::{EventId, Micros};
use ledger::{KeyHash, KeyRejection};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::queries::{catching_up, fire_rate_limited, limits_of};
use super::AppState;
use crate::admission::Ask;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::limiter::{Level, Refused, Standing, Verdict};
use crate::usd;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/verify", post(verify))
}

/// How long a hold lasts by default, and at most, in seconds.
const DEFAULT_HOLD_SECONDS: i64 = 300;
const MAX_HOLD_SECONDS: i64 = 86_400;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The plaintext API key (`nk_…`) your caller presented.
    key: String,
    /// The workflow the work is for: checked against the key's
    /// `workflow_ids`, and its hold is the default `hold`.
    workflow_id: Option<String>,
    /// USD held against cost limits and credits until settled (default:
    /// the workflow's `max_cost_per_request`, else its price; 0 without a
    /// workflow).
    hold: Option<f64>,
    /// 1 to 86400 (default 300): past this an unsettled hold stops
    /// counting; the request it admitted stays counted.
    #[schema(minimum = 1, maximum = 86400)]
    hold_seconds: Option<i64>,
}

/// A limit of the key or its customer, after this verification.
#[derive(Serialize, ToSchema)]
pub struct LimitStanding {
    /// `key` or `customer`.
    scope: &'static str,
    metric: &'static str,
    window: &'static str,
    /// A count (requests, tokens) or USD (cost).
    #[schema(value_type = f64)]
    max: serde_json::Number,
    #[schema(value_type = f64)]
    remaining: serde_json::Number,
    /// When what is used of it next falls.
    reset: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct VerifyResponse {
    valid: bool,
    /// `valid`, or why not: `invalid_api_key`, `key_inactive`,
    /// `key_expired`, `workflow_not_found`, `workflow_not_allowed`,
    /// `rate_limited`, `concurrency_limited`, `cost_limit_exceeded`,
    /// `insufficient_credits`.
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    customer_id: Option<String>,
    /// Name it in the usage event (`data.authorization_id`) that settles this.
    #[serde(skip_serializing_if = "Option::is_none")]
    authorization_id: Option<String>,
    /// USD held.
    #[serde(skip_serializing_if = "Option::is_none")]
    hold: Option<f64>,
    /// When the hold stops counting if not settled.
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<DateTime<Utc>>,
    /// Every limit of the key and its customer, after this verification.
    #[serde(skip_serializing_if = "Option::is_none")]
    limits: Option<Vec<LimitStanding>>,
    /// On a refusal by a limit: which one (`{"scope","metric","window","max"}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    limit: Option<Value>,
    /// On `rate_limited` and `concurrency_limited`: seconds until a place
    /// may free.
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
}

impl VerifyResponse {
    fn invalid(error: &ApiError, key_id: Option<&str>) -> VerifyResponse {
        VerifyResponse {
            valid: false,
            code: error.code(),
            detail: Some(error.to_string()),
            key_id: key_id.map(str::to_owned),
            customer_id: None,
            authorization_id: None,
            hold: None,
            expires_at: None,
            limits: None,
            limit: None,
            retry_after: None,
        }
    }
}

#[utoipa::path(post, path = "/api/v1/verify", operation_id = "verify_key", tag = "usage", request_body = VerifyRequest,
    responses(
        (status = 200, body = VerifyResponse, description = "valid, or not, with a code"),
        (status = 400), (status = 401), (status = 413), (status = 415), (status = 422),
        (status = 503, description = "not_ready (Retry-After); metering_unavailable"),
    ),
    security(("admin" = [])))]
pub async fn verify(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<VerifyRequest>,
) -> Result<Json<VerifyResponse>, ApiError> {
    let hold_seconds = body.hold_seconds.unwrap_or(DEFAULT_HOLD_SECONDS);
    if !(1..=MAX_HOLD_SECONDS).contains(&hold_seconds) {
        return Err(ApiError::validation(format!(
            "hold_seconds must be 1 to {MAX_HOLD_SECONDS}"
        )));
    }
    let hold = body.hold.map(|h| usd::parse("hold", h)).transpose()?;
    if body.key.is_empty() || body.key.len() > 256 {
        return Err(ApiError::validation("key must be 1 to 256 characters"));
    }
    if !state.progress.is_ready() {
        return Err(catching_up());
    }
    let now = Utc::now();
    let hash = KeyHash::from_digest(Sha256::digest(body.key.as_bytes()).into());
    let (key_id, limits, hold) = {
        let projection = state.projection();
        let key = match projection.keys.validate(&hash, now) {
            Ok(key) => key,
            Err(rejection) => {
                let known = projection.keys.named_by(&hash, now).map(|k| k.id.to_string());
                let error = match rejection {
                    KeyRejection::Invalid => ApiError::InvalidApiKey,
                    KeyRejection::Inactive => ApiError::KeyInactive,
                    KeyRejection::Expired => ApiError::KeyExpired,
                };
                return Ok(Json(VerifyResponse::invalid(&error, known.as_deref())));
            }
        };
        let mut default_hold = Micros::ZERO;
        if let Some(workflow_id) = &body.workflow_id {
            let Some(workflow) = projection.workflows.get(workflow_id) else {
                return Ok(Json(VerifyResponse::invalid(
                    &ApiError::WorkflowNotFound,
                    Some(&key.id),
                )));
            };
            let allowed = &key.settings.workflow_ids;
            if !allowed.is_empty() && !allowed.iter().any(|w| w == workflow_id) {
                return Ok(Json(VerifyResponse::invalid(
                    &ApiError::WorkflowNotAllowed,
                    Some(&key.id),
                )));
            }
            default_hold = super::queries::Pricing::of(&workflow.settings).hold();
        }
        (
            key.id.to_string(),
            limits_of(key, &projection),
            hold.unwrap_or(default_hold),
        )
    };
    if limits.any() {
        state.count_recorded().await?;
    }
    let record_id = EventId::new();
    let authorization_id = QueryAdmitted::authorization_id(record_id);
    let expires_at = now + chrono::TimeDelta::seconds(hold_seconds);
    let ask = Ask {
        key_id: &key_id,
        workflow_id: body.workflow_id.as_deref().unwrap_or(""),
        request_id: &authorization_id,
        limits: &limits,
        hold,
        record_id,
        verification: Some(expires_at),
    };
    let verdict = if state.admit_on_stream && (limits.any() || limits.customer_id().is_some()) {
        // Exact across replicas: returns once the verification is stored
        // and this replica applied it. Without limits (nor credits, nor a
        // concurrency cap) there is nothing to be exact about: as a query
        // without them, it is decided here; but not for a customer's key,
        // whose admission in the customer's order would void a limited
        // sibling key's admission under way there.
        state.admissions.admit(&state, ask).await?
    } else {
        crate::admission::admit_here(&state, ask, now).await?
    };
    let refusal = match verdict {
        Verdict::Refused(refusal, _) => refusal,
        Verdict::Stored(_) | Verdict::Admitted(..) => {
            let standing = {
                let projection = state.projection();
                state.limiter.standing(&key_id, &limits, Utc::now(), &projection)
            };
            tracing::debug!(key_id, authorization_id, "verified");
            return Ok(Json(VerifyResponse {
                valid: true,
                code: "valid",
                detail: None,
                key_id: Some(key_id),
                customer_id: limits.customer_id().map(str::to_owned),
                authorization_id: Some(authorization_id),
                hold: Some(usd::to_json(hold)),
                expires_at: Some(expires_at),
                limits: Some(standing.iter().map(shown).collect()),
                limit: None,
                retry_after: None,
            }));
        }
    };
    let limit = crate::error::limit_json(&refusal);
    let (error, retry_after) = match refusal.refused {
        Refused::Credits => (ApiError::InsufficientCredits, None),
        Refused::Concurrent(_) => (ApiError::ConcurrencyLimited { refusal }, Some(1)),
        Refused::Limit(l) if l.metric == Metric::Cost => (ApiError::CostLimitExceeded { refusal }, None),
        Refused::Limit(_) => {
            fire_rate_limited(&state, &key_id, limit.clone(), now);
            let at = refusal.retry_at.unwrap_or(now.timestamp() + 1);
            let secs = (at - now.timestamp()).max(1) as u64;
            (
                ApiError::RateLimited {
                    refusal,
                    retry_after_secs: secs,
                },
                Some(secs),
            )
        }
    };
    let mut answer = VerifyResponse::invalid(&error, Some(&key_id));
    answer.customer_id = limits.customer_id().map(str::to_owned);
    answer.limit = (!limit.is_null()).then_some(limit);
    answer.retry_after = retry_after;
    Ok(Json(answer))
}

fn shown(s: &Standing) -> LimitStanding {
    let object = super::limits::LimitObject::from(&s.limit);
    let remaining = s.limit.max.saturating_sub(s.used);
    let remaining = match s.limit.metric {
        Metric::Cost => serde_json::Number::from_f64(usd::to_json(Micros::new(remaining as i64)))
            .unwrap_or_else(|| serde_json::Number::from(0)),
        _ => serde_json::Number::from(remaining),
    };
    LimitStanding {
        scope: match s.level {
            Level::Key => "key",
            Level::Customer => "customer",
        },
        metric: super::limits::metric_name(s.limit.metric),
        window: super::limits::window_name(s.limit.window),
        max: object.max,
        remaining,
        reset: s.reset.and_then(|at| DateTime::from_timestamp(at, 0)),
    }
}
