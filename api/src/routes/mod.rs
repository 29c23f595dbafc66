//! The HTTP surface, one module per group of endpoints, each with its own
//! `router()`.

pub mod health;

use axum::Router;
use ingest::EventStream;
use std::sync::Arc;

use crate::error::ApiError;
use crate::follower::Progress;
use crate::metrics::Metrics;

/// What every handler may use.
#[derive(Clone)]
pub struct AppState {
    pub stream: Arc<dyn EventStream>,
    pub progress: Arc<Progress>,
    pub metrics: Arc<Metrics>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .fallback(|| async { ApiError::NotFound })
        .with_state(state)
}
