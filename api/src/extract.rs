//! Extractors whose rejections are [`ApiError`]s, so a malformed request
//! gets the same problem+json as every other error.

use axum::extract::{FromRequest, Request};
use axum::Json;
use serde::de::{Deserialize, DeserializeOwned, Deserializer};

use crate::error::ApiError;

/// `Json<T>` with problem+json rejections: 400 for malformed JSON, 422 for
/// well-formed JSON of the wrong shape, 413 over the body limit, 415
/// without a JSON content type.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let Json(value) = Json::<T>::from_request(req, state).await?;
        Ok(ApiJson(value))
    }
}

/// For `Option<Option<T>>` fields of partial updates: absent is `None`,
/// `null` is `Some(None)`, a value is `Some(Some(v))`. Use with
/// `#[serde(default, deserialize_with = "present")]`.
pub fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}
