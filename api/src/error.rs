//! [`ApiError`]: every error the HTTP API answers with, mapped once to RFC
//! 9457 problem details with a stable `code`.

use axum::extract::rejection::JsonRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::limiter::{Level, Refusal, Refused};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no such endpoint")]
    NotFound,
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    #[error("no API key with this id")]
    KeyNotFound,
    #[error("this API key is revoked: it is kept for its usage, and can no longer change")]
    KeyRevoked,
    #[error("no workflow with this id")]
    WorkflowNotFound,
    #[error("a workflow with this id exists already")]
    WorkflowExists,
    #[error("no customer with this id")]
    CustomerNotFound,
    #[error("a customer with this id exists already")]
    CustomerExists,
    #[error("this customer still has live API keys: revoke them or move them to another customer first")]
    CustomerHasKeys,
    #[error("no webhook with this id")]
    WebhookNotFound,
    #[error("no delivery with this id for this webhook")]
    DeliveryNotFound,
    /// The URL reaches, or resolves to, an address webhooks may not call.
    #[error("url: {0}")]
    WebhookUrlForbidden(String),
    #[error("another change to this object landed first; retry")]
    Conflict,
    #[error("{0}")]
    NotReady(String),
    #[error("malformed JSON: {0}")]
    BadJson(String),
    #[error("malformed path: {0}")]
    InvalidPath(String),
    #[error("malformed query string: {0}")]
    InvalidQuery(String),
    #[error("request body larger than 1 MiB")]
    PayloadTooLarge,
    #[error("{0}")]
    ArchiveUnavailable(String),
    #[error("a batch holds at most 1,000 events")]
    BatchTooLarge,
    /// A usage event that cannot be accepted, with its own code.
    #[error("{detail}")]
    InvalidEvent { code: &'static str, detail: String },
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    #[error("expected a JSON body with Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("{0}")]
    Validation(String),
    #[error("missing admin token (Authorization: Bearer <token>)")]
    Unauthorized,
    #[error("wrong admin token")]
    InvalidToken,
    #[error("more than one Authorization header")]
    AmbiguousAuthorization,
    #[error("missing X-API-Key header")]
    MissingApiKey,
    #[error("unknown or revoked API key")]
    InvalidApiKey,
    #[error("this API key is inactive")]
    KeyInactive,
    #[error("this API key has expired")]
    KeyExpired,
    #[error("this API key may not use this workflow")]
    WorkflowNotAllowed,
    #[error("this API key may not be used from this origin (add it to the key's allowed_origins)")]
    OriginNotAllowed,
    #[error("{}", refusal_text(.refusal))]
    RateLimited { refusal: Refusal, retry_after_secs: u64 },
    #[error("{}", refusal_text(.refusal))]
    ConcurrencyLimited { refusal: Refusal },
    #[error("{}", refusal_text(.refusal))]
    CostLimitExceeded { refusal: Refusal },
    #[error("the customer's prepaid credits are used up: grant more to go on")]
    InsufficientCredits,
    #[error("this Idempotency-Key was used with another request body")]
    IdempotencyConflict,
    #[error("no credit grant with this id for this customer")]
    GrantNotFound,
    #[error("the upstream failed: {0}")]
    UpstreamError(String),
    #[error("the upstream did not answer in time")]
    UpstreamTimeout,
    #[error("usage cannot be recorded right now; nothing was charged, retry later")]
    MeteringUnavailable,
    /// An error answered by a layer below our handlers (the HTTP server,
    /// a router rejection) in its own words, re-said as a problem.
    #[error("{}", .0.canonical_reason().unwrap_or("error"))]
    Http(StatusCode),
    /// A failure that is ours, not the caller's: logged with its cause, opaque to the client.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    problem_type: &'static str,
    title: &'static str,
    status: u16,
    detail: &'a str,
    code: &'static str,
    /// On a refusal by a limit: which one.
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<LimitRefused>,
}

/// `"limit":{"scope","metric","window","max"}` of a refusal's problem
/// (`max_concurrent`: metric `concurrent`, no window).
#[derive(Serialize)]
struct LimitRefused {
    scope: &'static str,
    metric: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    window: Option<&'static str>,
    max: serde_json::Value,
}

impl LimitRefused {
    fn of(refusal: &Refusal) -> LimitRefused {
        let scope = match refusal.level {
            Level::Key => "key",
            Level::Customer => "customer",
        };
        match refusal.refused {
            Refused::Limit(limit) => {
                let shown = crate::routes::limits::LimitObject::from(&limit);
                LimitRefused {
                    scope,
                    metric: crate::routes::limits::metric_name(limit.metric),
                    window: Some(crate::routes::limits::window_name(limit.window)),
                    max: serde_json::Value::Number(shown.max),
                }
            }
            Refused::Concurrent(max) => LimitRefused {
                scope,
                metric: "concurrent",
                window: None,
                max: max.into(),
            },
            // Answered as `InsufficientCredits`, which names no limit.
            Refused::Credits => LimitRefused {
                scope,
                metric: "credits",
                window: None,
                max: 0.into(),
            },
        }
    }
}

/// The `limit` object of a refusal, as its problem names it.
pub fn limit_json(refusal: &Refusal) -> serde_json::Value {
    serde_json::to_value(LimitRefused::of(refusal)).unwrap_or_default()
}

fn refusal_text(refusal: &Refusal) -> String {
    let shown = LimitRefused::of(refusal);
    match shown.window {
        Some(window) => format!(
            "the {}'s limit of {} {} per {window} is reached",
            shown.scope,
            shown.max,
            if shown.metric == "cost" { "USD" } else { shown.metric }
        ),
        None => format!(
            "the {}'s limit of {} queries in flight is reached",
            shown.scope, shown.max
        ),
    }
}

impl ApiError {
    pub fn internal(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> ApiError {
        ApiError::Internal(error.into())
    }

    pub fn validation(message: impl Into<String>) -> ApiError {
        ApiError::Validation(message.into())
    }

    /// Status, stable code, title.
    /// The stable machine `code` of this error.
    pub fn code(&self) -> &'static str {
        self.parts().1
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use ApiError::*;
        match self {
            NotFound => (StatusCode::NOT_FOUND, "not_found", "Not Found"),
            MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method Not Allowed",
            ),
            KeyNotFound => (StatusCode::NOT_FOUND, "key_not_found", "Not Found"),
            KeyRevoked => (StatusCode::CONFLICT, "key_revoked", "Conflict"),
            WorkflowNotFound => (StatusCode::NOT_FOUND, "workflow_not_found", "Not Found"),
            WorkflowExists => (StatusCode::CONFLICT, "workflow_exists", "Conflict"),
            CustomerNotFound => (StatusCode::NOT_FOUND, "customer_not_found", "Not Found"),
            CustomerExists => (StatusCode::CONFLICT, "customer_exists", "Conflict"),
            CustomerHasKeys => (StatusCode::CONFLICT, "customer_has_keys", "Conflict"),
            WebhookNotFound => (StatusCode::NOT_FOUND, "webhook_not_found", "Not Found"),
            DeliveryNotFound => (StatusCode::NOT_FOUND, "delivery_not_found", "Not Found"),
            WebhookUrlForbidden(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "webhook_url_forbidden",
                "Unprocessable Entity",
            ),
            Conflict => (StatusCode::CONFLICT, "conflict", "Conflict"),
            NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready", "Not Ready"),
            BadJson(_) => (StatusCode::BAD_REQUEST, "invalid_json", "Bad Request"),
            InvalidPath(_) => (StatusCode::BAD_REQUEST, "invalid_path", "Bad Request"),
            InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query", "Bad Request"),
            PayloadTooLarge | BatchTooLarge => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "Payload Too Large")
            }
            InvalidEvent { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code, "Unprocessable Entity"),
            RequestTimeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout", "Request Timeout"),
            UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported Media Type",
            ),
            Validation(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_error",
                "Unprocessable Entity",
            ),
            Unauthorized | InvalidToken => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            AmbiguousAuthorization => (StatusCode::BAD_REQUEST, "invalid_authorization", "Bad Request"),
            MissingApiKey => (StatusCode::UNAUTHORIZED, "missing_api_key", "Unauthorized"),
            InvalidApiKey => (StatusCode::FORBIDDEN, "invalid_api_key", "Forbidden"),
            KeyInactive => (StatusCode::FORBIDDEN, "key_inactive", "Forbidden"),
            KeyExpired => (StatusCode::FORBIDDEN, "key_expired", "Forbidden"),
            WorkflowNotAllowed => (StatusCode::FORBIDDEN, "workflow_not_allowed", "Forbidden"),
            OriginNotAllowed => (StatusCode::FORBIDDEN, "origin_not_allowed", "Forbidden"),
            RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", "Too Many Requests"),
            ConcurrencyLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "concurrency_limited",
                "Too Many Requests",
            ),
            CostLimitExceeded { .. } => (StatusCode::PAYMENT_REQUIRED, "cost_limit_exceeded", "Payment Required"),
            InsufficientCredits => (StatusCode::PAYMENT_REQUIRED, "insufficient_credits", "Payment Required"),
            IdempotencyConflict => (StatusCode::CONFLICT, "idempotency_conflict", "Conflict"),
            GrantNotFound => (StatusCode::NOT_FOUND, "grant_not_found", "Not Found"),
            UpstreamError(_) => (StatusCode::BAD_GATEWAY, "upstream_error", "Bad Gateway"),
            UpstreamTimeout => (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", "Gateway Timeout"),
            ArchiveUnavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "archive_unavailable",
                "Service Unavailable",
            ),
            MeteringUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "metering_unavailable",
                "Service Unavailable",
            ),
            Http(status) => (
                *status,
                http_code(*status),
                status.canonical_reason().unwrap_or("Error"),
            ),
            Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Internal Server Error",
            ),
        }
    }
}

/// The stable `code` of an error some layer answered with a bare status.
fn http_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        431 => "request_header_fields_too_large",
        500..=599 => "internal_error",
        _ => "http_error",
    }
}

/// Every error answer is problem+json: one that a layer below the handlers
/// made in plain text is re-said through [`ApiError`], keeping its headers
/// (`Allow`, `Retry-After`).
pub async fn problems_only(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (parts, _) = response.into_parts();
    let mut problem = ApiError::Http(status).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().insert(name, value.clone());
        }
    }
    problem
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, title) = self.parts();
        if let ApiError::Internal(cause) = &self {
            tracing::error!(error = %cause, "internal error");
        }
        let detail = self.to_string();
        let limit = match &self {
            ApiError::RateLimited { refusal, .. }
            | ApiError::ConcurrencyLimited { refusal }
            | ApiError::CostLimitExceeded { refusal } => Some(LimitRefused::of(refusal)),
            _ => None,
        };
        let body = Problem {
            problem_type: "about:blank",
            title,
            status: status.as_u16(),
            detail: &detail,
            code,
            limit,
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (status, [(header::CONTENT_TYPE, "application/problem+json")], json).into_response();
        // RFC 6750: a 401 (and a malformed credential) says which scheme
        // the admin endpoints take.
        let challenge = match self {
            ApiError::Unauthorized => Some(r#"Bearer realm="nodai""#),
            ApiError::InvalidToken => Some(r#"Bearer realm="nodai", error="invalid_token""#),
            ApiError::AmbiguousAuthorization => Some(r#"Bearer realm="nodai", error="invalid_request""#),
            ApiError::MissingApiKey => Some(r#"ApiKey realm="nodai", header="X-API-Key""#),
            _ => None,
        };
        if let Some(challenge) = challenge {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        let retry_after = match self {
            ApiError::RateLimited { retry_after_secs, .. } => Some(retry_after_secs),
            // A place frees as soon as a query in flight ends.
            ApiError::ConcurrencyLimited { .. } => Some(1),
            // A replica catching up is ready within seconds.
            ApiError::NotReady(_) => Some(1),
            _ => None,
        };
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        match rejection {
            JsonRejection::JsonDataError(e) => ApiError::Validation(e.body_text()),
            JsonRejection::JsonSyntaxError(e) => ApiError::BadJson(e.body_text()),
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            other => ApiError::BadJson(other.body_text()),
        }
    }
}
