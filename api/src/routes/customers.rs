//! `/api/v1/customers`: the seller's customers. A customer's keys share its
//! limits; its usage is the sum of theirs (`routes::usage`). Every change
//! is an event; every answer is read back from this replica's projection
//! after it applied that event.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use ingest::events::{Billing, CustomerCreated, CustomerDeleted, CustomerSettings, CustomerUpdated};
use ingest::Event;
use ledger::Customer;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::limits::{self, LimitObject};
use super::{AppState, Page, PageParams};
use crate::error::ApiError;
use crate::extract::{ApiJson, Path, Query};
use crate::patch::Patch;
use crate::{usd, validate};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/customers", post(create).get(list)).route(
        "/api/v1/customers/{customer_id}",
        get(get_one).put(update).delete(delete),
    )
}

#[derive(Serialize, ToSchema)]
pub struct CustomerObject {
    /// The seller's own id for the customer, `[A-Za-z0-9_.:@-]{1,128}`.
    id: String,
    name: String,
    email: Option<String>,
    metadata: Option<Value>,
    /// Shared by all the customer's keys.
    limits: Vec<LimitObject>,
    max_concurrent: Option<u64>,
    /// `postpaid` or `prepaid`.
    billing: &'static str,
    /// USD: `credits.low` fires when the balance falls below it.
    low_balance_threshold: Option<f64>,
    /// 1 to 28: the day (UTC midnight) the customer's monthly periods start.
    billing_anchor_day: u8,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<&Customer> for CustomerObject {
    fn from(c: &Customer) -> Self {
        let s = &c.settings;
        CustomerObject {
            id: c.id.clone(),
            name: s.name.clone(),
            email: s.email.clone(),
            metadata: s.metadata.clone(),
            limits: s.limits.iter().map(LimitObject::from).collect(),
            max_concurrent: s.max_concurrent,
            billing: billing_name(s.billing),
            low_balance_threshold: s.low_balance_threshold.map(usd::to_json),
            billing_anchor_day: s.billing_anchor_day,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

fn billing_name(billing: Billing) -> &'static str {
    match billing {
        Billing::Postpaid => "postpaid",
        Billing::Prepaid => "prepaid",
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCustomer {
    #[schema(pattern = "^[A-Za-z0-9_.:@-]{1,128}$")]
    id: String,
    /// 1 to 128 characters, not blank.
    #[schema(min_length = 1, max_length = 128, pattern = r"\S")]
    name: String,
    email: Option<String>,
    metadata: Option<Value>,
    #[serde(default)]
    limits: Vec<LimitObject>,
    #[schema(minimum = 1, maximum = 100000)]
    max_concurrent: Option<i64>,
    /// `postpaid` (default) or `prepaid`.
    #[schema(pattern = "^(postpaid|prepaid)$")]
    billing: Option<String>,
    /// USD.
    low_balance_threshold: Option<f64>,
    /// 1 to 28, default 1.
    #[schema(minimum = 1, maximum = 28)]
    billing_anchor_day: Option<i64>,
}

/// Fields present change; `null` clears an optional one.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCustomer {
    #[serde(default)]
    #[schema(value_type = String)]
    name: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    email: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    metadata: Patch<Value>,
    /// The complete new list; `null` or `[]` removes every limit.
    #[serde(default)]
    #[schema(value_type = Option<Vec<LimitObject>>)]
    limits: Patch<Vec<LimitObject>>,
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    max_concurrent: Patch<i64>,
    #[serde(default)]
    #[schema(value_type = String)]
    billing: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<f64>)]
    low_balance_threshold: Patch<f64>,
    #[serde(default)]
    #[schema(value_type = i64)]
    billing_anchor_day: Patch<i64>,
}

/// `[A-Za-z0-9_.:@-]{1,128}`.
pub fn customer_id(value: &str) -> Result<String, ApiError> {
    let ok = (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:@-".contains(&b));
    if !ok {
        return Err(ApiError::validation(format!(
            "customer id {value:?} must match [A-Za-z0-9_.:@-]{{1,128}}"
        )));
    }
    Ok(value.to_owned())
}

fn email(value: &str) -> Result<String, ApiError> {
    let ok = value.len() <= 254
        && value
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !value.chars().any(char::is_whitespace);
    if !ok {
        return Err(ApiError::validation(format!("email {value:?} is not an email address")));
    }
    Ok(value.to_owned())
}

fn billing(value: &str) -> Result<Billing, ApiError> {
    match value {
        "postpaid" => Ok(Billing::Postpaid),
        "prepaid" => Ok(Billing::Prepaid),
        other => Err(ApiError::validation(format!(
            "billing {other:?} is not postpaid or prepaid"
        ))),
    }
}

fn anchor_day(value: i64) -> Result<u8, ApiError> {
    u8::try_from(value)
        .ok()
        .filter(|d| (1..=28).contains(d))
        .ok_or_else(|| ApiError::validation("billing_anchor_day must be 1 to 28"))
}

/// The customer `id` as it stands, and the sequence a change expects.
fn current(state: &AppState, id: &str) -> Result<(Customer, u64), ApiError> {
    let projection = state.projection();
    let customer = projection
        .customers
        .get(id)
        .cloned()
        .ok_or(ApiError::CustomerNotFound)?;
    Ok((customer, projection.customers.last_seq(id)))
}

fn object(state: &AppState, id: &str) -> Result<CustomerObject, ApiError> {
    Ok(CustomerObject::from(&current(state, id)?.0))
}

#[utoipa::path(post, path = "/api/v1/customers", operation_id = "create_customer", tag = "customers", request_body = CreateCustomer,
    responses((status = 201, body = CustomerObject), (status = 401), (status = 409, description = "customer_exists"), (status = 422)),
    security(("admin" = [])))]
pub async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateCustomer>,
) -> Result<impl IntoResponse, ApiError> {
    let id = customer_id(&body.id)?;
    let settings = CustomerSettings {
        name: validate::name("name", &body.name)?,
        email: body.email.as_deref().map(email).transpose()?,
        metadata: body.metadata.as_ref().map(validate::metadata).transpose()?,
        limits: limits::parse(&body.limits)?,
        max_concurrent: body.max_concurrent.map(limits::max_concurrent).transpose()?,
        billing: body.billing.as_deref().map(billing).transpose()?.unwrap_or_default(),
        low_balance_threshold: body
            .low_balance_threshold
            .map(|v| usd::parse("low_balance_threshold", v))
            .transpose()?,
        billing_anchor_day: body.billing_anchor_day.map(anchor_day).transpose()?.unwrap_or(1),
    };
    let expected = {
        let projection = state.projection();
        if projection.customers.get(&id).is_some() {
            return Err(ApiError::CustomerExists);
        }
        projection.customers.last_seq(&id)
    };
    let event = Event::CustomerCreated(CustomerCreated {
        customer_id: id.clone(),
        settings,
    });
    match state.write(event, Some(expected)).await {
        // Another replica created the same id first.
        Err(ApiError::Conflict) => return Err(ApiError::CustomerExists),
        other => other?,
    };
    tracing::info!(customer_id = id, "customer created");
    Ok((StatusCode::CREATED, Json(object(&state, &id)?)))
}

/// `?q=`: a search box.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct CustomerSearch {
    /// Only customers whose id, name or email contains this, ignoring case.
    #[param(max_length = 128)]
    q: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/customers", operation_id = "list_customers", tag = "customers", params(PageParams, CustomerSearch),
    responses((status = 200, body = Page<CustomerObject>), (status = 401), (status = 422)), security(("admin" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Query(params): Query<PageParams>,
    Query(search): Query<CustomerSearch>,
) -> Result<Json<Page<CustomerObject>>, ApiError> {
    let limit = params.limit()?;
    let query = validate::search(search.q.as_deref())?;
    state.read_own_writes().await?;
    let projection = state.projection();
    let found = projection.customers.search(params.cursor(), limit, &query);
    Ok(Json(Page::of(found, |c| c.id.clone(), CustomerObject::from)))
}

#[utoipa::path(get, path = "/api/v1/customers/{customer_id}", operation_id = "get_customer", tag = "customers",
    responses((status = 200, body = CustomerObject), (status = 401), (status = 404)), security(("admin" = [])))]
pub async fn get_one(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<CustomerObject>, ApiError> {
    state.read_own_writes().await?;
    Ok(Json(object(&state, &id)?))
}

#[utoipa::path(put, path = "/api/v1/customers/{customer_id}", operation_id = "update_customer", tag = "customers", request_body = UpdateCustomer,
    responses((status = 200, body = CustomerObject), (status = 401), (status = 404), (status = 409, description = "conflict (another change landed first, retry)"), (status = 422)),
    security(("admin" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateCustomer>,
) -> Result<Json<CustomerObject>, ApiError> {
    let (customer, seq) = current(&state, &id)?;
    let mut s = customer.settings;
    body.name
        .apply_required("name", &mut s.name, |v| validate::name("name", v))?;
    body.email.apply_optional(&mut s.email, |v| email(v))?;
    body.metadata.apply_optional(&mut s.metadata, validate::metadata)?;
    body.limits.apply_list(&mut s.limits, |v| limits::parse(v))?;
    body.max_concurrent
        .apply_optional(&mut s.max_concurrent, |v| limits::max_concurrent(*v))?;
    body.billing.apply_required("billing", &mut s.billing, |v| billing(v))?;
    body.low_balance_threshold
        .apply_optional(&mut s.low_balance_threshold, |v| {
            usd::parse("low_balance_threshold", *v)
        })?;
    body.billing_anchor_day
        .apply_required("billing_anchor_day", &mut s.billing_anchor_day, |v| anchor_day(*v))?;
    let event = Event::CustomerUpdated(CustomerUpdated {
        customer_id: id.clone(),
        settings: s,
    });
    state.write(event, Some(seq)).await?;
    tracing::info!(customer_id = id, "customer updated");
    Ok(Json(object(&state, &id)?))
}

#[utoipa::path(delete, path = "/api/v1/customers/{customer_id}", operation_id = "delete_customer", tag = "customers",
    responses((status = 204), (status = 401), (status = 404), (status = 409, description = "customer_has_keys")),
    security(("admin" = [])))]
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let (_, seq) = current(&state, &id)?;
    if state.projection().keys.live_of_customer(&id) {
        return Err(ApiError::CustomerHasKeys);
    }
    // A key given this customer on another replica at this very moment
    // may still name it afterwards: such a key counts against its own
    // limits only (a deleted customer has none), and its usage stays
    // readable under the customer's id.
    let event = Event::CustomerDeleted(CustomerDeleted {
        customer_id: id.clone(),
    });
    state.write(event, Some(seq)).await?;
    tracing::info!(customer_id = id, "customer deleted");
    Ok(StatusCode::NO_CONTENT)
}
