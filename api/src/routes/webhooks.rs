//! `/api/v1/webhooks`: subscriptions, their deliveries log, manual retry and
//! test messages. Every change is an event; the worker (`webhooks` crate)
//! does the sending.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use ingest::events::{DeliveryRetryRequested, WebhookCreated, WebhookDeleted, WebhookTested, WebhookUpdated};
use ingest::Event;
use ledger::{Delivery, DeliveryStatus, Webhook};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{AppState, Page, PageParams};
use crate::error::ApiError;
use crate::extract::{ApiJson, Path, Query};
use crate::patch::Patch;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/webhooks", post(create).get(list))
        .route("/api/v1/webhooks/{id}", get(get_one).put(update).delete(delete))
        .route("/api/v1/webhooks/{id}/deliveries", get(deliveries))
        .route("/api/v1/webhooks/{id}/deliveries/{delivery_id}/retry", post(retry))
        .route("/api/v1/webhooks/{id}/test", post(test))
}

/// The event types a subscription may ask for.
pub const EVENT_TYPES: [&str; 11] = [
    "usage.threshold",
    "usage.rate_limited",
    "credits.granted",
    "credits.low",
    "credits.exhausted",
    "credits.expired",
    "key.created",
    "key.updated",
    "key.revoked",
    "key.rotated",
    "webhook.test",
];

#[derive(Serialize, ToSchema)]
pub struct WebhookObject {
    /// `wh_…`
    id: String,
    url: String,
    /// Event types delivered; empty means all.
    events: Vec<String>,
    description: Option<String>,
    /// False when turned off, or disabled by the worker after 5 days of failures.
    active: bool,
    /// Why the worker disabled it, if it did.
    disabled_reason: Option<String>,
    disabled_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// Only in the create response, and in an update that rotated it.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl WebhookObject {
    fn new(w: &Webhook, secret: Option<String>) -> WebhookObject {
        WebhookObject {
            id: w.id.clone(),
            url: w.url.clone(),
            events: w.events.clone(),
            description: w.description.clone(),
            active: w.active,
            disabled_reason: w.disabled.as_ref().map(|(_, reason)| reason.clone()),
            disabled_at: w.disabled.as_ref().map(|(at, _)| *at),
            created_at: w.created_at,
            updated_at: w.updated_at,
            secret,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryObject {
    /// The message id, also the `webhook-id` header of every attempt.
    id: String,
    event_type: String,
    #[schema(value_type = String, example = "pending")]
    status: DeliveryStatus,
    attempts: u32,
    last_status_code: Option<u16>,
    last_error: Option<String>,
    next_attempt_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl From<&Delivery> for DeliveryObject {
    fn from(d: &Delivery) -> DeliveryObject {
        DeliveryObject {
            id: d.id.clone(),
            event_type: d.event_type.clone(),
            status: d.status,
            attempts: d.attempts,
            last_status_code: d.last_status_code,
            last_error: d.last_error.clone(),
            next_attempt_at: d.next_attempt_at.filter(|_| d.status == DeliveryStatus::Pending),
            created_at: d.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    /// Newest first: every pending delivery and the last 1000 finished ones.
    data: Vec<DeliveryObject>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    url: String,
    /// Event types to deliver; empty or absent means all.
    #[serde(default)]
    events: Vec<String>,
    description: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    #[serde(default)]
    #[schema(value_type = String)]
    url: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    events: Patch<Vec<String>>,
    /// `null` clears it.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    description: Patch<String>,
    #[serde(default)]
    #[schema(value_type = bool)]
    active: Patch<bool>,
    /// True: a new secret, returned in this response only.
    #[serde(default)]
    rotate_secret: bool,
    /// With `rotate_secret`: how long the old secret keeps signing too
    /// (both signatures are sent), default 0, at most 7 days.
    grace_period_seconds: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct TestSent {
    /// The test message's delivery, pending until the worker sends it.
    delivery_id: String,
}

fn current(state: &AppState, id: &str) -> Result<(Webhook, u64), ApiError> {
    let projection = state.projection();
    let mut webhook = projection.webhooks.get(id).cloned().ok_or(ApiError::WebhookNotFound)?;
    webhook.deliveries.clear();
    Ok((webhook, projection.webhooks.last_seq(id)))
}

async fn checked_url(state: &AppState, url: &str) -> Result<String, ApiError> {
    match state.webhook_guard.check(url).await {
        Ok(parsed) => Ok(parsed.to_string()),
        Err(webhooks::Error::Forbidden(reason)) => Err(ApiError::WebhookUrlForbidden(reason)),
        Err(e) => Err(ApiError::validation(e.to_string())),
    }
}

fn checked_events(events: Vec<String>) -> Result<Vec<String>, ApiError> {
    if let Some(bad) = events.iter().find(|e| !EVENT_TYPES.contains(&e.as_str())) {
        return Err(ApiError::validation(format!(
            "events: unknown event type {bad:?}; one of {}",
            EVENT_TYPES.join(", ")
        )));
    }
    let mut events = events;
    events.sort();
    events.dedup();
    Ok(events)
}

fn checked_description(description: Option<String>) -> Result<Option<String>, ApiError> {
    match description {
        Some(d) if d.chars().count() > 1000 => Err(ApiError::validation("description: at most 1000 characters")),
        other => Ok(other),
    }
}

fn new_secret() -> Result<String, ApiError> {
    webhooks::signature::new_secret().map_err(|e| ApiError::internal(e.to_string()))
}

#[utoipa::path(post, path = "/api/v1/webhooks", operation_id = "create_webhook", tag = "webhooks", request_body = CreateWebhook,
    responses((status = 201, body = WebhookObject), (status = 401), (status = 422, description = "validation_error, webhook_url_forbidden")),
    security(("admin" = [])))]
pub async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateWebhook>,
) -> Result<impl IntoResponse, ApiError> {
    let events = checked_events(body.events)?;
    let description = checked_description(body.description)?;
    let url = checked_url(&state, &body.url).await?;
    let id = format!("wh_{}", uuid::Uuid::now_v7().simple());
    let secret = new_secret()?;
    let event = Event::WebhookCreated(WebhookCreated {
        webhook_id: id.clone(),
        url,
        events,
        description,
        secret: secret.clone(),
        active: true,
    });
    state.write(event, Some(0)).await?;
    tracing::info!(webhook_id = id, "webhook created");
    let (webhook, _) = current(&state, &id)?;
    Ok((StatusCode::CREATED, Json(WebhookObject::new(&webhook, Some(secret)))))
}

#[utoipa::path(get, path = "/api/v1/webhooks", operation_id = "list_webhooks", tag = "webhooks", params(PageParams),
    responses((status = 200, body = Page<WebhookObject>), (status = 401)), security(("admin" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Query(params): Query<PageParams>,
) -> Result<Json<Page<WebhookObject>>, ApiError> {
    let limit = params.limit()?;
    let projection = state.projection();
    let found = projection.webhooks.page(params.cursor(), limit);
    Ok(Json(Page::of(found, |w| w.id.clone(), |w| WebhookObject::new(w, None))))
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}", operation_id = "get_webhook", tag = "webhooks",
    responses((status = 200, body = WebhookObject), (status = 401), (status = 404)), security(("admin" = [])))]
pub async fn get_one(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<WebhookObject>, ApiError> {
    Ok(Json(WebhookObject::new(&current(&state, &id)?.0, None)))
}

#[utoipa::path(put, path = "/api/v1/webhooks/{id}", operation_id = "update_webhook", tag = "webhooks", request_body = UpdateWebhook,
    responses((status = 200, body = WebhookObject), (status = 401), (status = 404), (status = 422)), security(("admin" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateWebhook>,
) -> Result<Json<WebhookObject>, ApiError> {
    let (webhook, seq) = current(&state, &id)?;
    let url = match body.url.required("url")? {
        Some(v) => checked_url(&state, v).await?,
        None => webhook.url,
    };
    let (mut events, mut description, mut active) = (webhook.events, webhook.description, webhook.active);
    body.events
        .apply_required("events", &mut events, |v| checked_events(v.clone()))?;
    body.description.apply_optional(&mut description, |v| {
        checked_description(Some(v.clone())).map(Option::unwrap_or_default)
    })?;
    body.active.apply_required("active", &mut active, |v| Ok(*v))?;
    let grace = body.grace_period_seconds.unwrap_or(0);
    if !(0..=7 * 86_400).contains(&grace) {
        return Err(ApiError::validation("grace_period_seconds: 0 to 604800"));
    }
    if body.grace_period_seconds.is_some() && !body.rotate_secret {
        return Err(ApiError::validation("grace_period_seconds needs rotate_secret: true"));
    }
    let secret = body.rotate_secret.then(new_secret).transpose()?;
    let event = Event::WebhookUpdated(WebhookUpdated {
        webhook_id: id.clone(),
        url,
        events,
        description,
        active,
        secret: secret.clone(),
        previous_secret_valid_until: (secret.is_some() && grace > 0)
            .then(|| Utc::now() + chrono::Duration::seconds(grace)),
    });
    state.write(event, Some(seq)).await?;
    tracing::info!(webhook_id = id, rotated = secret.is_some(), "webhook updated");
    Ok(Json(WebhookObject::new(&current(&state, &id)?.0, secret)))
}

#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", operation_id = "delete_webhook", tag = "webhooks",
    responses((status = 204), (status = 401), (status = 404)), security(("admin" = [])))]
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let (_, seq) = current(&state, &id)?;
    let event = Event::WebhookDeleted(WebhookDeleted { webhook_id: id.clone() });
    state.write(event, Some(seq)).await?;
    tracing::info!(webhook_id = id, "webhook deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", operation_id = "list_webhook_deliveries", tag = "webhooks",
    responses((status = 200, body = DeliveryList), (status = 401), (status = 404)), security(("admin" = [])))]
pub async fn deliveries(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<DeliveryList>, ApiError> {
    state.read_own_writes().await?;
    let projection = state.projection();
    let webhook = projection.webhooks.get(&id).ok_or(ApiError::WebhookNotFound)?;
    let mut data: Vec<DeliveryObject> = webhook.deliveries.values().map(DeliveryObject::from).collect();
    data.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    Ok(Json(DeliveryList { data }))
}

#[utoipa::path(post, path = "/api/v1/webhooks/{id}/deliveries/{delivery_id}/retry", operation_id = "retry_webhook_delivery", tag = "webhooks",
    responses((status = 202, body = DeliveryObject), (status = 401), (status = 404)), security(("admin" = [])))]
pub async fn retry(
    State(state): State<AppState>,
    Path((id, delivery_id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    {
        let projection = state.projection();
        let webhook = projection.webhooks.get(&id).ok_or(ApiError::WebhookNotFound)?;
        webhook.deliveries.get(&delivery_id).ok_or(ApiError::DeliveryNotFound)?;
    }
    let event = Event::DeliveryRetryRequested(DeliveryRetryRequested {
        webhook_id: id.clone(),
        message_id: delivery_id.clone(),
    });
    state.write(event, None).await?;
    tracing::info!(webhook_id = id, delivery_id, "webhook delivery retry requested");
    let projection = state.projection();
    let delivery = projection
        .webhooks
        .get(&id)
        .and_then(|w| w.deliveries.get(&delivery_id))
        .ok_or(ApiError::DeliveryNotFound)?;
    Ok((StatusCode::ACCEPTED, Json(DeliveryObject::from(delivery))))
}

#[utoipa::path(post, path = "/api/v1/webhooks/{id}/test", operation_id = "test_webhook", tag = "webhooks",
    responses((status = 202, body = TestSent), (status = 401), (status = 404)), security(("admin" = [])))]
pub async fn test(State(state): State<AppState>, Path(id): Path<String>) -> Result<impl IntoResponse, ApiError> {
    current(&state, &id)?;
    let message_id = format!("msg_{}", uuid::Uuid::now_v7().simple());
    let event = Event::WebhookTested(WebhookTested {
        webhook_id: id.clone(),
        message_id: message_id.clone(),
    });
    state.write(event, None).await?;
    tracing::info!(webhook_id = id, message_id, "webhook test requested");
    Ok((
        StatusCode::ACCEPTED,
        Json(TestSent {
            delivery_id: message_id,
        }),
    ))
}
