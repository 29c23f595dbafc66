//! The HTTP surface, one module per group of endpoints, each with its own
//! `router()`. What every handler may use is [`AppState`] (`crate::state`).

pub mod credits;
pub mod customers;
pub mod events;
pub mod health;
pub mod keys;
pub mod limits;
pub mod openapi;
pub mod queries;
pub mod report;
pub mod usage;
pub mod verify;
pub mod web;
pub mod webhooks;
pub mod workflows;

use axum::extract::DefaultBodyLimit;
use axum::Router;

use crate::error::ApiError;
pub use crate::state::AppState;

/// Bodies over this are refused with 413.
pub const BODY_LIMIT: usize = 1 << 20;

pub fn router(state: AppState) -> Router {
    let admin = Router::new()
        .merge(keys::router())
        .merge(customers::router())
        .merge(credits::router())
        .merge(workflows::router())
        .merge(usage::router())
        .merge(verify::router())
        .merge(events::router())
        .merge(report::router())
        .merge(webhooks::router())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::require_admin,
        ));
    Router::new()
        .merge(health::router())
        .merge(openapi::router())
        .merge(queries::router())
        .merge(web::router())
        .merge(admin)
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::map_response(crate::error::problems_only))
        .with_state(state)
}

/// What a worker serves: health, readiness and metrics.
pub fn health_router(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::map_response(crate::error::problems_only))
        .with_state(state)
}

/// `{"data":[…],"next_cursor":…}`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    /// Pass as `?cursor=` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page of `found`: the items of one page of a list, in its order,
    /// and whether more follow. The next cursor is the last item's `id`.
    pub fn of<I>(found: (Vec<I>, bool), id: impl Fn(&I) -> String, show: impl FnMut(I) -> T) -> Page<T> {
        let (items, more) = found;
        let next_cursor = if more { items.last().map(id) } else { None };
        Page {
            data: items.into_iter().map(show).collect(),
            next_cursor,
        }
    }
}

/// `?limit=&cursor=` of list endpoints, as text so that bad values get our 422.
#[derive(serde::Deserialize, utoipa::IntoParams)]
pub struct PageParams {
    /// 1 to 1000, default 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

impl PageParams {
    /// The page size asked for: 422 outside 1 to 1000.
    pub fn limit(&self) -> Result<usize, ApiError> {
        crate::validate::page_limit(self.limit.as_deref())
    }

    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }
}
