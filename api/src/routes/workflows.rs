//! `/api/v1/workflows`: the registry of upstreams that queries go to.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use ingest::events::{WorkflowDeleted, WorkflowRegistered, WorkflowSettings, WorkflowUpdated};
use ingest::{Event, Micros};
use ledger::Workflow;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{AppState, Page, PageParams};
use crate::error::ApiError;
use crate::extract::{ApiJson, Path, Query};
use crate::patch::Patch;
use crate::{usd, validate};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/workflows", post(create).get(list))
        .route("/api/v1/workflows/{id}", get(get_one).put(update).delete(delete))
}

#[derive(Serialize, ToSchema)]
pub struct WorkflowObject {
    /// `[a-z0-9_-]{1,64}`, chosen by the caller.
    id: String,
    name: String,
    /// `http(s)://…` or `builtin:echo`.
    upstream_url: String,
    /// USD charged per query when the upstream reports no cost.
    price_per_request: f64,
    /// USD: the most one query may cost, or null. In-flight queries count
    /// against cost limits at this hold (else at `price_per_request`); an
    /// upstream's reported cost above it is recorded as it.
    max_cost_per_request: Option<f64>,
    /// USD per million input (prompt) tokens the upstream reports.
    price_per_million_input_tokens: f64,
    /// USD per million output (completion) tokens.
    price_per_million_output_tokens: f64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<&Workflow> for WorkflowObject {
    fn from(w: &Workflow) -> WorkflowObject {
        WorkflowObject {
            id: w.id.clone(),
            name: w.settings.name.clone(),
            upstream_url: w.settings.upstream_url.clone(),
            price_per_request: usd::to_json(w.settings.price_per_request),
            max_cost_per_request: w.settings.max_cost_per_request.map(usd::to_json),
            price_per_million_input_tokens: usd::to_json(w.settings.price_per_million_input_tokens),
            price_per_million_output_tokens: usd::to_json(w.settings.price_per_million_output_tokens),
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkflow {
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    id: String,
    /// 1 to 128 characters, not blank.
    #[schema(min_length = 1, max_length = 128, pattern = r"\S")]
    name: String,
    upstream_url: String,
    /// USD, default 0.
    price_per_request: Option<f64>,
    /// USD, default none: the most one query may cost (at least `price_per_request`).
    max_cost_per_request: Option<f64>,
    /// USD per million input tokens, default 0.
    price_per_million_input_tokens: Option<f64>,
    /// USD per million output tokens, default 0.
    price_per_million_output_tokens: Option<f64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWorkflow {
    #[serde(default)]
    #[schema(value_type = String)]
    name: Patch<String>,
    #[serde(default)]
    #[schema(value_type = String)]
    upstream_url: Patch<String>,
    #[serde(default)]
    #[schema(value_type = f64)]
    price_per_request: Patch<f64>,
    /// null clears the maximum.
    #[serde(default)]
    #[schema(value_type = Option<f64>)]
    max_cost_per_request: Patch<f64>,
    #[serde(default)]
    #[schema(value_type = f64)]
    price_per_million_input_tokens: Patch<f64>,
    #[serde(default)]
    #[schema(value_type = f64)]
    price_per_million_output_tokens: Patch<f64>,
}

/// A maximum below the price would cap every unreported cost: refused.
fn check_max_cost(settings: &WorkflowSettings) -> Result<(), ApiError> {
    match settings.max_cost_per_request {
        Some(max) if max < settings.price_per_request => Err(ApiError::validation(
            "max_cost_per_request must be at least price_per_request",
        )),
        _ => Ok(()),
    }
}

fn current(state: &AppState, id: &str) -> Result<(Workflow, u64), ApiError> {
    let projection = state.projection();
    let workflow = projection
        .workflows
        .get(id)
        .cloned()
        .ok_or(ApiError::WorkflowNotFound)?;
    Ok((workflow, projection.workflows.last_seq(id)))
}

#[utoipa::path(post, path = "/api/v1/workflows", operation_id = "create_workflow", tag = "workflows", request_body = CreateWorkflow,
    responses((status = 201, body = WorkflowObject), (status = 401), (status = 409), (status = 422)), security(("admin" = [])))]
pub async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateWorkflow>,
) -> Result<impl IntoResponse, ApiError> {
    let id = validate::workflow_id(&body.id)?;
    let settings = WorkflowSettings {
        name: validate::name("name", &body.name)?,
        upstream_url: validate::upstream_url(&body.upstream_url)?,
        price_per_request: body
            .price_per_request
            .map(|p| usd::parse("price_per_request", p))
            .transpose()?
            .unwrap_or(Micros::ZERO),
        max_cost_per_request: body
            .max_cost_per_request
            .map(|p| usd::parse("max_cost_per_request", p))
            .transpose()?,
        price_per_million_input_tokens: body
            .price_per_million_input_tokens
            .map(|p| usd::parse("price_per_million_input_tokens", p))
            .transpose()?
            .unwrap_or(Micros::ZERO),
        price_per_million_output_tokens: body
            .price_per_million_output_tokens
            .map(|p| usd::parse("price_per_million_output_tokens", p))
            .transpose()?
            .unwrap_or(Micros::ZERO),
    };
    check_max_cost(&settings)?;
    let expected = {
        let projection = state.projection();
        if projection.workflows.get(&id).is_some() {
            return Err(ApiError::WorkflowExists);
        }
        projection.workflows.last_seq(&id)
    };
    let event = Event::WorkflowRegistered(WorkflowRegistered {
        workflow_id: id.clone(),
        settings,
    });
    match state.write(event, Some(expected)).await {
        // Another replica registered the same id first.
        Err(ApiError::Conflict) => return Err(ApiError::WorkflowExists),
        other => other?,
    };
    tracing::info!(workflow_id = id, "workflow registered");
    let (workflow, _) = current(&state, &id)?;
    Ok((StatusCode::CREATED, Json(WorkflowObject::from(&workflow))))
}

#[utoipa::path(get, path = "/api/v1/workflows", operation_id = "list_workflows", tag = "workflows", params(PageParams),
    responses((status = 200, body = Page<WorkflowObject>), (status = 401)), security(("admin" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Query(params): Query<PageParams>,
) -> Result<Json<Page<WorkflowObject>>, ApiError> {
    let limit = params.limit()?;
    let projection = state.projection();
    let found = projection.workflows.page(params.cursor(), limit);
    Ok(Json(Page::of(found, |w| w.id.clone(), WorkflowObject::from)))
}

#[utoipa::path(get, path = "/api/v1/workflows/{id}", operation_id = "get_workflow", tag = "workflows",
    responses((status = 200, body = WorkflowObject), (status = 401), (status = 404)), security(("admin" = [])))]
pub async fn get_one(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<WorkflowObject>, ApiError> {
    Ok(Json(WorkflowObject::from(&current(&state, &id)?.0)))
}

#[utoipa::path(put, path = "/api/v1/workflows/{id}", operation_id = "update_workflow", tag = "workflows", request_body = UpdateWorkflow,
    responses((status = 200, body = WorkflowObject), (status = 401), (status = 404), (status = 422)), security(("admin" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateWorkflow>,
) -> Result<Json<WorkflowObject>, ApiError> {
    let (workflow, seq) = current(&state, &id)?;
    let mut s = workflow.settings;
    body.name
        .apply_required("name", &mut s.name, |v| validate::name("name", v))?;
    body.upstream_url
        .apply_required("upstream_url", &mut s.upstream_url, |v| validate::upstream_url(v))?;
    body.price_per_request
        .apply_required("price_per_request", &mut s.price_per_request, |v| {
            usd::parse("price_per_request", *v)
        })?;
    body.max_cost_per_request
        .apply_optional(&mut s.max_cost_per_request, |v| usd::parse("max_cost_per_request", *v))?;
    for (patch, field, name) in [
        (
            &body.price_per_million_input_tokens,
            &mut s.price_per_million_input_tokens,
            "price_per_million_input_tokens",
        ),
        (
            &body.price_per_million_output_tokens,
            &mut s.price_per_million_output_tokens,
            "price_per_million_output_tokens",
        ),
    ] {
        patch.apply_required(name, field, |v| usd::parse(name, *v))?;
    }
    check_max_cost(&s)?;
    state
        .write(
            Event::WorkflowUpdated(WorkflowUpdated {
                workflow_id: id.clone(),
                settings: s,
            }),
            Some(seq),
        )
        .await?;
    tracing::info!(workflow_id = id, "workflow updated");
    Ok(Json(WorkflowObject::from(&current(&state, &id)?.0)))
}

#[utoipa::path(delete, path = "/api/v1/workflows/{id}", operation_id = "delete_workflow", tag = "workflows",
    responses((status = 204), (status = 401), (status = 404)), security(("admin" = [])))]
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let (_, seq) = current(&state, &id)?;
    state
        .write(
            Event::WorkflowDeleted(WorkflowDeleted {
                workflow_id: id.clone(),
            }),
            Some(seq),
        )
        .await?;
    tracing::info!(workflow_id = id, "workflow deleted");
    Ok(StatusCode::NO_CONTENT)
}
