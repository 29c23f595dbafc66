//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the
//! handlers' and types' annotations, so it cannot drift from the code.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{health, keys, queries, usage, webhooks, workflows, AppState, Page};

#[derive(OpenApi)]
#[openapi(
    info(title = "nodai", description = "API keys, usage metering and webhooks"),
    paths(
        keys::create, keys::list, keys::get_one, keys::update, keys::revoke, keys::rotate,
        usage::key_usage,
        workflows::create, workflows::list, workflows::get_one, workflows::update, workflows::delete,
        queries::query,
        webhooks::create, webhooks::list, webhooks::get_one, webhooks::update, webhooks::delete,
        webhooks::deliveries, webhooks::retry, webhooks::test,
        health::healthz, health::readyz, health::metrics,
    ),
    components(schemas(
        keys::KeyObject, keys::KeyWithSecret, keys::CreateKey, keys::UpdateKey, keys::RotateKey,
        workflows::WorkflowObject, workflows::CreateWorkflow, workflows::UpdateWorkflow,
        queries::QueryRequest, queries::QueryResponse, queries::QueryUsage,
        usage::UsageObject, usage::Hourly, usage::Daily,
        webhooks::WebhookObject, webhooks::CreateWebhook, webhooks::UpdateWebhook,
        webhooks::DeliveryObject, webhooks::DeliveryList, webhooks::TestSent,
        Page<keys::KeyObject>, Page<workflows::WorkflowObject>, Page<webhooks::WebhookObject>, Problem,
    )),
    modifiers(&Security),
)]
pub struct ApiDoc;

/// RFC 9457 problem details, the body of every error.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Problem {
    r#type: String,
    title: String,
    status: u16,
    detail: String,
    /// Stable, machine-readable: `invalid_api_key`, `rate_limited`, …
    code: String,
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
}
