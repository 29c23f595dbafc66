//! Extractors whose rejections are [`ApiError`]s, so a malformed request
//! gets the same problem+json as every other error.

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// How long a request's body may take to arrive (`--http-body-timeout-secs`),
/// a request extension set by the server.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub std::time::Duration);

/// `Json<T>` with problem+json rejections: 400 for malformed JSON, 422 for
/// well-formed JSON of the wrong shape, 413 over the body limit, 415
/// without a JSON content type, 408 when it arrives too slowly.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let Body(bytes) = Body::from_request(req, state).await?;
        let Json(value) = Json::<T>::from_bytes(object(&bytes)?)?;
        Ok(ApiJson(value))
    }
}

/// `application/json`, or a `+json` type (as axum's `Json` takes).
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Every body this API takes is a JSON object. serde would read an array
/// into a struct field by field, so anything but an object is refused
/// first: 422 if it is JSON, 400 if not.
pub fn object(bytes: &[u8]) -> Result<&[u8], ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(bytes),
        _ => match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Ok(_) => Err(ApiError::validation("the body must be a JSON object")),
            Err(e) => Err(ApiError::BadJson(e.to_string())),
        },
    }
}

/// `axum::extract::Path` with problem+json rejections: a segment that is not
/// valid UTF-8 or not of the expected shape is a 400 `invalid_path`.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(ApiError::InvalidPath(e.body_text())),
            Err(other) => Err(ApiError::internal(other.body_text())),
        }
    }
}

/// `axum::extract::Query` with problem+json rejections: a query string that
/// does not parse (a field given twice, say) is a 400 `invalid_query`.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(ApiError::InvalidQuery(e.body_text())),
            Err(other) => Err(ApiError::InvalidQuery(other.body_text())),
        }
    }
}

/// A raw body with problem+json rejections (413 over the limit).
pub struct Body(pub bytes::Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let limit = req.extensions().get::<BodyTimeout>().copied();
        let read = bytes::Bytes::from_request(req, state);
        let read = match limit {
            Some(BodyTimeout(limit)) => tokio::time::timeout(limit, read)
                .await
                .map_err(|_| ApiError::RequestTimeout)?,
            None => read.await,
        };
        match read {
            Ok(bytes) => Ok(Body(bytes)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::PayloadTooLarge),
            Err(e @ BytesRejection::FailedToBufferBody(_)) => Err(ApiError::BadJson(e.body_text())),
            Err(other) => Err(ApiError::internal(other.body_text())),
        }
    }
}
