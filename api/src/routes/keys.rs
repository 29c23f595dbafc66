//! `/api/v1/api-keys`: create, list, get, update, revoke, rotate. Every
//! change is an event; every answer is read back from this replica's
//! projection after it applied that event.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use ingest::events::{KeyCreated, KeyRevoked, KeyRotated, KeySettings, KeyUpdated};
use ingest::Event;
use ledger::{ApiKey, Listed, Projection};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::limits::{self, LimitObject};
use super::{AppState, Page, PageParams};
use crate::error::ApiError;
use crate::extract::{ApiJson, Body, Path, Query};
use crate::patch::Patch;
use crate::{usd, validate};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/api-keys", post(create).get(list))
        .route("/api/v1/api-keys/{key_id}", get(get_one).put(update).delete(revoke))
        .route("/api/v1/api-keys/{key_id}/rotate", post(rotate))
}

/// An API key as the API shows it (never with its secret, except in
/// [`KeyWithSecret`]).
#[derive(Serialize, ToSchema)]
pub struct KeyObject {
    /// `key_…`
    id: String,
    /// The first 11 characters of the key: `nk_` and 8 hex.
    prefix: String,
    name: String,
    owner: Option<String>,
    active: bool,
    /// Empty: any workflow.
    workflow_ids: Vec<String>,
    rate_limit_per_hour: Option<u64>,
    /// USD.
    cost_limit_per_month: Option<f64>,
    alert_thresholds: Vec<u32>,
    expires_at: Option<DateTime<Utc>>,
    allowed_origins: Vec<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    metadata: Option<Value>,
    /// When it was revoked (then `active` is false); null for a live key.
    revoked_at: Option<DateTime<Utc>>,
    /// The customer whose shared limits the key's queries also count against.
    customer_id: Option<String>,
    /// Every limit of the key, `rate_limit_per_hour` (requests per hour)
    /// and `cost_limit_per_month` (cost per month) included.
    limits: Vec<LimitObject>,
    max_concurrent: Option<u64>,
}

impl KeyObject {
    /// `key` as shown, with its last use from the projection's usage.
    fn new(key: &ApiKey, projection: &Projection) -> KeyObject {
        let s = &key.settings;
        KeyObject {
            id: key.id.to_string(),
            prefix: key.prefix.clone(),
            name: s.name.clone(),
            owner: s.owner.clone(),
            active: s.active && !key.is_revoked(),
            workflow_ids: s.workflow_ids.clone(),
            rate_limit_per_hour: s.rate_limit_per_hour,
            cost_limit_per_month: s.cost_limit_per_month.map(usd::to_json),
            alert_thresholds: s.alert_thresholds.clone(),
            expires_at: s.expires_at,
            allowed_origins: s.allowed_origins.clone(),
            created_at: key.created_at,
            updated_at: key.updated_at,
            last_used_at: projection.usage.get(&key.id).and_then(|u| u.last_used_at),
            metadata: s.metadata.clone(),
            revoked_at: key.revoked_at,
            customer_id: s.customer_id.clone(),
            limits: s.all_limits().iter().map(LimitObject::from).collect(),
            max_concurrent: s.max_concurrent,
        }
    }
}

/// The key object plus the plaintext `key`: only from create and rotate.
#[derive(Serialize, ToSchema)]
pub struct KeyWithSecret {
    #[serde(flatten)]
    object: KeyObject,
    /// `nk_` + 64 hex. Shown once: store it now.
    key: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// 1 to 128 characters, not blank.
    #[schema(min_length = 1, max_length = 128, pattern = r"\S")]
    name: String,
    owner: Option<String>,
    #[serde(default)]
    workflow_ids: Vec<String>,
    rate_limit_per_hour: Option<i64>,
    /// USD, at most 6 decimals.
    cost_limit_per_month: Option<f64>,
    /// Percents of the cost limit; default `[80, 100]`.
    alert_thresholds: Option<Vec<i64>>,
    /// RFC 3339, in the future.
    expires_at: Option<String>,
    #[serde(default)]
    allowed_origins: Vec<String>,
    metadata: Option<Value>,
    /// Default true.
    active: Option<bool>,
    /// An existing customer's id.
    customer_id: Option<String>,
    /// At most one per metric and window; `{"requests","hour"}` is
    /// `rate_limit_per_hour` and `{"cost","month"}` is
    /// `cost_limit_per_month` (either spelling, not both differently).
    #[serde(default)]
    limits: Vec<LimitObject>,
    #[schema(minimum = 1, maximum = 100000)]
    max_concurrent: Option<i64>,
}

/// Fields present change; `null` clears an optional one.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    #[serde(default)]
    #[schema(value_type = String)]
    name: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    owner: Patch<String>,
    #[serde(default)]
    #[schema(value_type = bool)]
    active: Patch<bool>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    workflow_ids: Patch<Vec<String>>,
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    rate_limit_per_hour: Patch<i64>,
    #[serde(default)]
    #[schema(value_type = Option<f64>)]
    cost_limit_per_month: Patch<f64>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<i64>>)]
    alert_thresholds: Patch<Vec<i64>>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    expires_at: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    allowed_origins: Patch<Vec<String>>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    metadata: Patch<Value>,
    /// `null`: no customer.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    customer_id: Patch<String>,
    /// The complete new list (the two legacy fields included); `null` or
    /// `[]` removes every limit.
    #[serde(default)]
    #[schema(value_type = Option<Vec<LimitObject>>)]
    limits: Patch<Vec<LimitObject>>,
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    max_concurrent: Patch<i64>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// How long the old secret keeps validating; default 0 (stops at once), at most 30 days.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2592000)]
    grace_period_seconds: i64,
}

/// `id`, if a customer has it: 422 otherwise.
fn existing_customer(state: &AppState, id: &str) -> Result<String, ApiError> {
    match state.projection().customers.get(id) {
        Some(_) => Ok(id.to_owned()),
        None => Err(ApiError::validation(format!(
            "customer_id: no customer {id:?} (create it first: POST /api/v1/customers)"
        ))),
    }
}

/// Before a request naming customer `id` is checked: when this replica
/// does not have it, catches up with the stream, so that a customer just
/// created through another replica is found.
async fn find_customer(state: &AppState, id: Option<&str>) -> Result<(), ApiError> {
    let known = id.is_none_or(|id| state.projection().customers.get(id).is_some());
    match known {
        true => Ok(()),
        false => state.read_stream_head().await,
    }
}

/// Both spellings of a key's requests-per-hour and cost-per-month limits
/// sent at once must say the same.
fn agree(legacy: (Option<u64>, Option<ingest::Micros>), settings: &KeySettings) -> Result<(), ApiError> {
    if legacy.0.is_some() && legacy.0 != settings.rate_limit_per_hour {
        return Err(ApiError::validation(
            "rate_limit_per_hour and limits (requests per hour) disagree: send one of them",
        ));
    }
    if legacy.1.is_some() && legacy.1 != settings.cost_limit_per_month {
        return Err(ApiError::validation(
            "cost_limit_per_month and limits (cost per month) disagree: send one of them",
        ));
    }
    Ok(())
}

/// A fresh secret from the OS CSPRNG, and its hash.
fn new_secret() -> Result<(String, String), ApiError> {
    let bytes = crate::auth::random_bytes::<32>().map_err(ApiError::internal)?;
    let key = format!("nk_{}", hex::encode(bytes));
    let hash = hex::encode(Sha256::digest(key.as_bytes()));
    Ok((key, hash))
}

/// Before a request naming key `key_id` is answered: when this replica
/// does not have it, catches up with the stream, so that a key just
/// created through another replica is found.
async fn find_key(state: &AppState, key_id: &str) -> Result<(), ApiError> {
    let known = state.projection().keys.get(key_id).is_some();
    match known {
        true => Ok(()),
        false => state.read_stream_head().await,
    }
}

/// The key `key_id` as it stands, to be changed: a revoked one is kept for
/// billing but no longer changes.
fn live_key(state: &AppState, key_id: &str) -> Result<ApiKey, ApiError> {
    let key = state
        .projection()
        .keys
        .get(key_id)
        .cloned()
        .ok_or(ApiError::KeyNotFound)?;
    match key.is_revoked() {
        true => Err(ApiError::KeyRevoked),
        false => Ok(key),
    }
}

/// The key `key_id` as shown, revoked or not.
fn key_object(state: &AppState, key_id: &str) -> Result<KeyObject, ApiError> {
    let projection = state.projection();
    let key = projection.keys.get(key_id).ok_or(ApiError::KeyNotFound)?;
    Ok(KeyObject::new(key, &projection))
}

fn with_secret(state: &AppState, key_id: &str, key: String) -> Result<KeyWithSecret, ApiError> {
    Ok(KeyWithSecret {
        object: key_object(state, key_id)?,
        key,
    })
}

#[utoipa::path(post, path = "/api/v1/api-keys", operation_id = "create_api_key", tag = "api-keys", request_body = CreateKey,
    responses((status = 201, body = KeyWithSecret), (status = 401), (status = 422)), security(("admin" = [])))]
pub async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateKey>,
) -> Result<impl IntoResponse, ApiError> {
    find_customer(&state, body.customer_id.as_deref()).await?;
    let now = Utc::now();
    let mut settings = KeySettings {
        name: validate::name("name", &body.name)?,
        owner: body.owner.map(|o| validate::name("owner", &o)).transpose()?,
        active: body.active.unwrap_or(true),
        workflow_ids: validate::workflow_ids(&body.workflow_ids)?,
        rate_limit_per_hour: body.rate_limit_per_hour.map(validate::rate_limit).transpose()?,
        cost_limit_per_month: body
            .cost_limit_per_month
            .map(|v| usd::parse("cost_limit_per_month", v))
            .transpose()?,
        alert_thresholds: validate::thresholds(&body.alert_thresholds.unwrap_or_else(|| vec![80, 100]))?,
        expires_at: body.expires_at.map(|v| validate::expires_at(&v, now)).transpose()?,
        allowed_origins: validate::origins(&body.allowed_origins)?,
        metadata: body.metadata.as_ref().map(validate::metadata).transpose()?,
        customer_id: body
            .customer_id
            .as_deref()
            .map(|c| existing_customer(&state, c))
            .transpose()?,
        limits: Vec::new(),
        max_concurrent: body.max_concurrent.map(limits::max_concurrent).transpose()?,
    };
    if !body.limits.is_empty() {
        let legacy = (settings.rate_limit_per_hour, settings.cost_limit_per_month);
        limits::set_key_limits(&mut settings, limits::parse(&body.limits)?);
        agree(legacy, &settings)?;
    }
    let (key, key_hash) = new_secret()?;
    let key_id = format!("key_{}", uuid::Uuid::now_v7().simple());
    let prefix = key[..11].to_owned();
    state
        .write(
            Event::KeyCreated(KeyCreated {
                key_id: key_id.clone(),
                key_hash,
                prefix,
                settings,
            }),
            Some(0),
        )
        .await?;
    tracing::info!(key_id, "api key created");
    Ok((StatusCode::CREATED, Json(with_secret(&state, &key_id, key)?)))
}

/// `?q=`: the dashboard's search box; `?status=`: which keys.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct KeySearch {
    /// Only keys whose id, prefix, name or owner contains this, ignoring case.
    #[param(max_length = 128)]
    q: Option<String>,
    /// `live` (default: not revoked, active or not), `revoked` or `all`.
    #[param(value_type = Option<String>, pattern = "^(live|revoked|all)$")]
    status: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/api-keys", operation_id = "list_api_keys", tag = "api-keys", params(PageParams, KeySearch),
    responses((status = 200, body = Page<KeyObject>), (status = 401), (status = 422)), security(("admin" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Query(params): Query<PageParams>,
    Query(search): Query<KeySearch>,
) -> Result<Json<Page<KeyObject>>, ApiError> {
    let limit = params.limit()?;
    let query = validate::search(search.q.as_deref())?;
    let listed = match search.status.as_deref() {
        None | Some("live") => Listed::Live,
        Some("revoked") => Listed::Revoked,
        Some("all") => Listed::All,
        Some(_) => return Err(ApiError::validation("status must be live, revoked or all")),
    };
    state.read_own_writes().await?;
    let projection = state.projection();
    let found = projection.keys.search(params.cursor(), limit, &query, listed);
    Ok(Json(Page::of(
        found,
        |k| k.id.to_string(),
        |k| KeyObject::new(k, &projection),
    )))
}

#[utoipa::path(get, path = "/api/v1/api-keys/{key_id}", operation_id = "get_api_key", tag = "api-keys",
    responses((status = 200, body = KeyObject), (status = 401), (status = 404)), security(("admin" = [])))]
pub async fn get_one(State(state): State<AppState>, Path(key_id): Path<String>) -> Result<Json<KeyObject>, ApiError> {
    state.read_own_writes().await?;
    find_key(&state, &key_id).await?;
    Ok(Json(key_object(&state, &key_id)?))
}

/// Applies a change to the key's current settings with a conditional
/// append, re-reading and retrying when another change landed first.
async fn change(
    state: &AppState,
    key_id: &str,
    make: impl Fn(&ApiKey) -> Result<Event, ApiError>,
) -> Result<(), ApiError> {
    find_key(state, key_id).await?;
    for attempt in 1..=5u32 {
        let key = live_key(state, key_id)?;
        match state.write(make(&key)?, Some(key.seq)).await {
            Err(ApiError::Conflict) => {
                // The other change may not be applied here yet.
                tokio::time::sleep(std::time::Duration::from_millis(20 * attempt as u64)).await;
            }
            other => return other.map(drop),
        }
    }
    Err(ApiError::Conflict)
}

#[utoipa::path(put, path = "/api/v1/api-keys/{key_id}", operation_id = "update_api_key", tag = "api-keys", request_body = UpdateKey,
    responses((status = 200, body = KeyObject), (status = 401), (status = 404), (status = 409, description = "key_revoked; conflict (another change landed first, retry)"), (status = 422)), security(("admin" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Path(key_id): Path<String>,
    ApiJson(body): ApiJson<UpdateKey>,
) -> Result<Json<KeyObject>, ApiError> {
    let now = Utc::now();
    if let Patch::Value(id) = &body.customer_id {
        find_customer(&state, Some(id)).await?;
    }
    change(&state, &key_id, |key| {
        let mut s = key.settings.clone();
        body.name
            .apply_required("name", &mut s.name, |v| validate::name("name", v))?;
        body.owner
            .apply_optional(&mut s.owner, |v| validate::name("owner", v))?;
        body.active.apply_required("active", &mut s.active, |v| Ok(*v))?;
        body.workflow_ids
            .apply_list(&mut s.workflow_ids, |v| validate::workflow_ids(v))?;
        body.rate_limit_per_hour
            .apply_optional(&mut s.rate_limit_per_hour, |v| validate::rate_limit(*v))?;
        body.cost_limit_per_month
            .apply_optional(&mut s.cost_limit_per_month, |v| usd::parse("cost_limit_per_month", *v))?;
        body.alert_thresholds
            .apply_list(&mut s.alert_thresholds, |v| validate::thresholds(v))?;
        body.expires_at
            .apply_optional(&mut s.expires_at, |v| validate::expires_at(v, now))?;
        body.allowed_origins
            .apply_list(&mut s.allowed_origins, |v| validate::origins(v))?;
        body.metadata.apply_optional(&mut s.metadata, validate::metadata)?;
        if let Some(v) = body.customer_id.presence() {
            s.customer_id = v.map(|c| existing_customer(&state, c)).transpose()?;
        }
        body.max_concurrent
            .apply_optional(&mut s.max_concurrent, |v| limits::max_concurrent(*v))?;
        if !body.limits.is_absent() {
            let mut all = Vec::new();
            body.limits.apply_list(&mut all, |v| limits::parse(v))?;
            limits::set_key_limits(&mut s, all);
            // The legacy fields, if also sent, must say the same.
            let legacy = (
                match &body.rate_limit_per_hour {
                    Patch::Absent => s.rate_limit_per_hour,
                    Patch::Null => None,
                    Patch::Value(v) => Some(validate::rate_limit(*v)?),
                },
                match &body.cost_limit_per_month {
                    Patch::Absent => s.cost_limit_per_month,
                    Patch::Null => None,
                    Patch::Value(v) => Some(usd::parse("cost_limit_per_month", *v)?),
                },
            );
            agree(legacy, &s)?;
        }
        Ok(Event::KeyUpdated(KeyUpdated {
            key_id: key.id.to_string(),
            settings: s,
        }))
    })
    .await?;
    tracing::info!(key_id, "api key updated");
    state.read_own_writes().await?;
    Ok(Json(key_object(&state, &key_id)?))
}

#[utoipa::path(delete, path = "/api/v1/api-keys/{key_id}", operation_id = "revoke_api_key", tag = "api-keys",
    responses((status = 204, description = "revoked (also when it already was)"), (status = 401), (status = 404), (status = 409, description = "conflict (another change landed first, retry)")), security(("admin" = [])))]
pub async fn revoke(State(state): State<AppState>, Path(key_id): Path<String>) -> Result<StatusCode, ApiError> {
    let revoked = change(&state, &key_id, |key| {
        Ok(Event::KeyRevoked(KeyRevoked {
            key_id: key.id.to_string(),
        }))
    })
    .await;
    match revoked {
        // Revoking is idempotent: a retried DELETE succeeds.
        Err(ApiError::KeyRevoked) => return Ok(StatusCode::NO_CONTENT),
        other => other?,
    }
    tracing::info!(key_id, "api key revoked");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/api-keys/{key_id}/rotate", operation_id = "rotate_api_key", tag = "api-keys", request_body(content = Option<RotateKey>, description = "optional"),
    responses((status = 200, body = KeyWithSecret), (status = 401), (status = 404), (status = 409, description = "key_revoked; conflict (another change landed first, retry)"), (status = 422)), security(("admin" = [])))]
pub async fn rotate(
    State(state): State<AppState>,
    Path(key_id): Path<String>,
    Body(body): Body,
) -> Result<Json<KeyWithSecret>, ApiError> {
    // The body is optional, so it is parsed here rather than by ApiJson.
    let trimmed = body.trim_ascii();
    let body: RotateKey = if trimmed.is_empty() || trimmed == b"null" {
        RotateKey::default()
    } else {
        serde_json::from_slice(crate::extract::object(&body)?).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => ApiError::Validation(e.to_string()),
            _ => ApiError::BadJson(e.to_string()),
        })?
    };
    if !(0..=30 * 24 * 3600).contains(&body.grace_period_seconds) {
        return Err(ApiError::validation(
            "grace_period_seconds must be 0 to 2592000 (30 days)",
        ));
    }
    let (key, key_hash) = new_secret()?;
    let now = Utc::now();
    let grace = body.grace_period_seconds;
    change(&state, &key_id, |current| {
        Ok(Event::KeyRotated(KeyRotated {
            key_id: current.id.to_string(),
            key_hash: key_hash.clone(),
            prefix: key[..11].to_owned(),
            previous_key_hash: current.hash.to_hex(),
            previous_valid_until: (grace > 0).then(|| now + Duration::seconds(grace)),
        }))
    })
    .await?;
    tracing::info!(key_id, grace_period_seconds = grace, "api key rotated");
    Ok(Json(with_secret(&state, &key_id, key)?))
}
