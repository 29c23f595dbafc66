//! `GET /healthz` (the process lives), `GET /readyz` (caught up with the
//! stream), `GET /metrics` (Prometheus text).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::time::Duration;

use super::AppState;
use crate::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "the process lives")))]
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "caught up with the stream"), (status = 503, description = "not_ready")))]
pub async fn readyz(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let progress = &state.progress;
    if !progress.is_ready() {
        return Err(ApiError::NotReady(format!(
            "catching up with the stream: applied {} of {}",
            progress.applied(),
            progress.target()
        )));
    }
    Ok(Json(json!({"status": "ready", "applied_seq": progress.applied()})))
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // A scrape must answer even when the stream does not; then the last
    // known values stand.
    if let Ok(Ok(last)) = tokio::time::timeout(Duration::from_secs(2), state.stream.last_seq()).await {
        state.metrics.last_seq.set(last as i64);
        let applied = state.progress.applied();
        state.metrics.applied_seq.set(applied as i64);
        state.metrics.lag.set(last.saturating_sub(applied) as i64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.encode(),
    )
}
