//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the
//! handlers' and types' annotations, so it cannot drift from the code.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{Modify, OpenApi};

use super::{
    credits, customers, events, health, keys, limits, queries, report, usage, verify, webhooks, workflows, AppState,
    Page,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "nodai", description = "API keys, usage metering and webhooks"),
    paths(
        keys::create, keys::list, keys::get_one, keys::update, keys::revoke, keys::rotate,
        usage::key_usage,
        customers::create, customers::list, customers::get_one, customers::update, customers::delete,
        usage::customer_usage,
        credits::grant, credits::balance, credits::void,
        workflows::create, workflows::list, workflows::get_one, workflows::update, workflows::delete,
        queries::query,
        verify::verify, events::ingest_events, report::report,
        webhooks::create, webhooks::list, webhooks::get_one, webhooks::update, webhooks::delete,
        webhooks::deliveries, webhooks::retry, webhooks::test,
        health::healthz, health::readyz, health::metrics,
    ),
    components(schemas(
        keys::KeyObject, keys::KeyWithSecret, keys::CreateKey, keys::UpdateKey, keys::RotateKey,
        customers::CustomerObject, customers::CreateCustomer, customers::UpdateCustomer, limits::LimitObject,
        credits::GrantObject, credits::CreditsObject, credits::CreateGrant,
        workflows::WorkflowObject, workflows::CreateWorkflow, workflows::UpdateWorkflow,
        queries::QueryRequest, queries::QueryResponse, queries::QueryUsage,
        usage::UsageObject, usage::Hourly, usage::Daily,
        verify::VerifyRequest, verify::VerifyResponse, verify::LimitStanding,
        report::Report, report::ReportRow,
        events::UsageEvent, events::UsageData, events::Ingested, events::Rejected,
        webhooks::WebhookObject, webhooks::CreateWebhook, webhooks::UpdateWebhook,
        webhooks::DeliveryObject, webhooks::DeliveryList, webhooks::TestSent,
        Page<keys::KeyObject>, Page<customers::CustomerObject>, Page<workflows::WorkflowObject>, Page<webhooks::WebhookObject>, Problem,
    )),
    modifiers(&Security, &EveryError),
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

/// Every status an operation can answer is in the document, each error as
/// problem+json: the ones every handler shares (a malformed path or query
/// string, the admin token, a body's size and type, a replica not caught
/// up) are added here rather than repeated on every handler.
struct EveryError;

impl Modify for EveryError {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                (false, &mut item.get),
                (true, &mut item.put),
                (true, &mut item.post),
                (true, &mut item.delete),
                (true, &mut item.patch),
                (false, &mut item.options),
            ];
            for (writes, operation) in operations {
                let Some(operation) = operation else { continue };
                let admin = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                let api = path.starts_with("/api/");
                let queried = operation
                    .parameters
                    .iter()
                    .flatten()
                    .any(|p| p.parameter_in == ParameterIn::Query);
                let shared = [
                    (api, "400", "invalid_path, invalid_query, invalid_json"),
                    (admin, "401", "unauthorized"),
                    (
                        admin && writes,
                        "409",
                        "conflict: another change to this object landed first; retry",
                    ),
                    (path.contains('{'), "404", "not_found"),
                    (
                        operation.request_body.is_some(),
                        "408",
                        "request_timeout: the body did not arrive in time",
                    ),
                    (operation.request_body.is_some(), "413", "payload_too_large"),
                    (operation.request_body.is_some(), "415", "unsupported_media_type"),
                    (operation.request_body.is_some() || queried, "422", "validation_error"),
                    (
                        admin,
                        "503",
                        "not_ready (Retry-After): this replica has not applied the stream far enough yet",
                    ),
                ];
                let responses = &mut operation.responses.responses;
                for (_, status, codes) in shared.into_iter().filter(|(applies, ..)| *applies) {
                    responses
                        .entry(status.to_owned())
                        .or_insert_with(|| problem(codes).into());
                }
                for (status, response) in responses.iter_mut() {
                    let RefOr::T(response) = response else { continue };
                    if status.as_str() >= "400" && response.content.is_empty() {
                        response.content.insert(
                            "application/problem+json".into(),
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("Problem")))
                                .build(),
                        );
                    }
                }
            }
        }
    }
}

fn problem(codes: &str) -> Response {
    ResponseBuilder::new()
        .description(codes)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
}
