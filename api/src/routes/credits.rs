//! `/api/v1/customers/{customer_id}/credits`: prepaid credit grants, their
//! balance, and voiding one. A grant made with an `Idempotency-Key` is
//! named by it (`gr_` and a hash of customer and key), so a retry, on any
//! replica, names the same grant and answers as the first request did; the
//! same key with another body is 409 `idempotency_conflict`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use ingest::events::{CreditsGranted, CreditsVoided};
use ingest::{Event, EventId, Micros, Outgoing};
use ledger::Grant;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, Path};
use crate::{usd, validate};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/customers/{customer_id}/credits", post(grant).get(balance))
        .route("/api/v1/customers/{customer_id}/credits/{grant_id}/void", post(void))
}

#[derive(Serialize, ToSchema)]
pub struct GrantObject {
    /// `gr_…`
    id: String,
    /// USD granted.
    amount: f64,
    /// USD not drawn yet.
    remaining: f64,
    expires_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    voided_at: Option<DateTime<Utc>>,
    description: Option<String>,
}

impl From<&Grant> for GrantObject {
    fn from(g: &Grant) -> Self {
        GrantObject {
            id: g.id.clone(),
            amount: usd::to_json(g.amount),
            remaining: usd::to_json(g.remaining),
            expires_at: g.expires_at,
            created_at: g.created_at,
            voided_at: g.voided_at,
            description: g.description.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CreditsObject {
    /// USD: what is left of the live grants, less what queries drew beyond
    /// them (at most one query's cost below zero).
    balance: f64,
    /// Every grant, in the order granted.
    grants: Vec<GrantObject>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGrant {
    /// USD, more than 0.
    amount: f64,
    /// RFC 3339, in the future; default: never.
    expires_at: Option<String>,
    /// At most 1000 characters.
    description: Option<String>,
}

/// The `Idempotency-Key` header, if sent: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(key.to_owned()))
        }
        _ => Err(ApiError::validation(
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )),
    }
}

fn customer_exists(state: &AppState, customer_id: &str) -> Result<(), ApiError> {
    match state.projection().customers.get(customer_id) {
        Some(_) => Ok(()),
        None => Err(ApiError::CustomerNotFound),
    }
}

/// The grant's object as the first request was answered (a replay).
fn as_first_answered(g: &Grant) -> GrantObject {
    GrantObject {
        remaining: usd::to_json(g.first_remaining),
        voided_at: None,
        ..GrantObject::from(g)
    }
}

#[utoipa::path(post, path = "/api/v1/customers/{customer_id}/credits", operation_id = "grant_credits", tag = "customers", request_body = CreateGrant,
    params(("Idempotency-Key" = Option<String>, Header, description = "a retry within 24 h (or later) answers the first response")),
    responses((status = 201, body = GrantObject), (status = 401), (status = 404), (status = 409, description = "idempotency_conflict"), (status = 422)),
    security(("admin" = [])))]
pub async fn grant(
    State(state): State<AppState>,
    Path(customer_id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateGrant>,
) -> Result<impl IntoResponse, ApiError> {
    let now = Utc::now();
    let key = idempotency_key(&headers)?;
    customer_exists(&state, &customer_id)?;
    // The body as sent, hashed before any rule that depends on the time:
    // a retry after the grant's expiry still answers the first response.
    let request_hash = hex::encode(Sha256::digest(
        format!("{}|{:?}|{:?}", body.amount, body.expires_at, body.description).as_bytes(),
    ));
    if let Some(key) = &key {
        if let Some(first) = replay(&state, &customer_id, key, &request_hash)? {
            return Ok((StatusCode::CREATED, Json(first)));
        }
    }
    let amount = usd::parse("amount", body.amount)?;
    if amount <= Micros::ZERO {
        return Err(ApiError::validation("amount must be more than 0"));
    }
    let expires_at = body
        .expires_at
        .as_deref()
        .map(|v| validate::expires_at(v, now))
        .transpose()?;
    if body.description.as_ref().is_some_and(|d| d.chars().count() > 1000) {
        return Err(ApiError::validation("description: at most 1000 characters"));
    }
    // The grant's id and event id: from the key when there is one, so that
    // concurrent retries on several replicas are one grant.
    let (grant_id, event_id) = match &key {
        Some(key) => {
            let digest = Sha256::digest(format!("{customer_id}\0{key}").as_bytes());
            let mut id = [0u8; 16];
            id.copy_from_slice(&digest[..16]);
            (format!("gr_{}", hex::encode(&digest[..13])), EventId::from_bytes(id))
        }
        None => (format!("gr_{}", uuid::Uuid::now_v7().simple()), EventId::new()),
    };
    let event = Event::CreditsGranted(CreditsGranted {
        customer_id: customer_id.clone(),
        grant_id: grant_id.clone(),
        amount,
        expires_at,
        description: body.description,
        idempotency_key: key.clone(),
        request_hash: key.as_ref().map(|_| request_hash.clone()),
    });
    let outgoing = Outgoing::with_id(event_id, &event, now).map_err(ApiError::internal)?;
    state.write_outgoing(outgoing).await?;
    if let Some(key) = &key {
        // Another request with this key but another body may have landed
        // first: then this one conflicts.
        if let Some(first) = replay(&state, &customer_id, key, &request_hash)? {
            tracing::info!(customer_id, grant_id, "credits granted");
            return Ok((StatusCode::CREATED, Json(first)));
        }
    }
    tracing::info!(customer_id, grant_id, "credits granted");
    let projection = state.projection();
    let grant = projection
        .credits
        .account(&customer_id)
        .and_then(|a| a.grant(&grant_id))
        .ok_or_else(|| ApiError::internal("a folded grant is missing"))?;
    Ok((StatusCode::CREATED, Json(as_first_answered(grant))))
}

/// The first answer to a request with `key`, if one was granted: the same
/// body replays it, another conflicts.
fn replay(state: &AppState, customer_id: &str, key: &str, request_hash: &str) -> Result<Option<GrantObject>, ApiError> {
    let projection = state.projection();
    let Some(first) = projection
        .credits
        .account(customer_id)
        .and_then(|a| a.by_idempotency_key(key))
    else {
        return Ok(None);
    };
    if first.request_hash.as_deref() != Some(request_hash) {
        return Err(ApiError::IdempotencyConflict);
    }
    Ok(Some(as_first_answered(first)))
}

#[utoipa::path(get, path = "/api/v1/customers/{customer_id}/credits", operation_id = "get_credits", tag = "customers",
    responses((status = 200, body = CreditsObject), (status = 401), (status = 404)), security(("admin" = [])))]
pub async fn balance(
    State(state): State<AppState>,
    Path(customer_id): Path<String>,
) -> Result<Json<CreditsObject>, ApiError> {
    state.read_own_writes().await?;
    customer_exists(&state, &customer_id)?;
    let projection = state.projection();
    let account = projection.credits.account(&customer_id);
    Ok(Json(CreditsObject {
        balance: usd::to_json(projection.credits.balance(&customer_id, Utc::now())),
        grants: account.map_or_else(Vec::new, |a| a.grants.iter().map(GrantObject::from).collect()),
    }))
}

#[utoipa::path(post, path = "/api/v1/customers/{customer_id}/credits/{grant_id}/void", operation_id = "void_credits", tag = "customers",
    responses((status = 200, body = GrantObject, description = "voided (also when it already was)"), (status = 401), (status = 404)),
    security(("admin" = [])))]
pub async fn void(
    State(state): State<AppState>,
    Path((customer_id, grant_id)): Path<(String, String)>,
) -> Result<Json<GrantObject>, ApiError> {
    customer_exists(&state, &customer_id)?;
    let voided = {
        let projection = state.projection();
        let grant = projection
            .credits
            .account(&customer_id)
            .and_then(|a| a.grant(&grant_id))
            .ok_or(ApiError::GrantNotFound)?;
        grant.voided_at.is_some()
    };
    if !voided {
        let event = Event::CreditsVoided(CreditsVoided {
            customer_id: customer_id.clone(),
            grant_id: grant_id.clone(),
        });
        state.write(event, None).await?;
        tracing::info!(customer_id, grant_id, "credit grant voided");
    }
    state.read_own_writes().await?;
    let projection = state.projection();
    let grant = projection
        .credits
        .account(&customer_id)
        .and_then(|a| a.grant(&grant_id))
        .ok_or(ApiError::GrantNotFound)?;
    Ok(Json(GrantObject::from(grant)))
}
