//! The browser's files: the dashboard at `/` (and its `/assets/…`) and the
//! embeddable widget at `/widget.js`. Built by `api/web` (`npm run build`)
//! into `api/assets`, committed, and embedded in release binaries, so a
//! fresh clone serves them with no Node.js. Debug builds read them from
//! disk on each request (rust-embed's default), so a front-end rebuild shows
//! without recompiling.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::RustEmbed;

use super::AppState;
use crate::error::ApiError;
use crate::extract::Path;

#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

/// The dashboard holds the admin token, so it runs only its own code, talks
/// only to its own origin and cannot be framed.
const DASHBOARD_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(|headers: HeaderMap| async move { serve("index.html", &headers, Page::Dashboard) }),
        )
        .route(
            "/assets/{file}",
            get(|Path(file): Path<String>, headers: HeaderMap| async move { serve(&file, &headers, Page::Asset) }),
        )
        .route(
            "/widget.js",
            get(|headers: HeaderMap| async move { serve("widget.js", &headers, Page::Widget) }),
        )
}

#[derive(Clone, Copy, PartialEq)]
enum Page {
    Dashboard,
    Asset,
    Widget,
}

fn serve(name: &str, headers: &HeaderMap, page: Page) -> Response {
    // `/assets/` serves the dashboard's bundle, not the page or the widget,
    // and only by a plain file name: a decoded `%2F` must not reach the
    // disk reads of debug builds (rust-embed refuses such paths too; the
    // test checks the answer, not which of the two refused).
    let plain = !name.starts_with('.') && !name.contains(['/', '\\']);
    if page == Page::Asset && !(plain && (name.ends_with(".js") || name.ends_with(".css"))) {
        return ApiError::NotFound.into_response();
    }
    let Some(file) = Assets::get(name) else {
        return ApiError::NotFound.into_response();
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    let content_type = match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        _ => "application/octet-stream",
    };
    // The names carry no content hash, so browsers revalidate (cheaply, by
    // ETag) rather than keep a stale bundle after an upgrade; the widget,
    // loaded by other sites' visitors, may be reused for five minutes.
    let cache = if page == Page::Widget {
        "public, max-age=300"
    } else {
        "no-cache"
    };
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], file.data.into_owned()).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, etag);
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if page == Page::Dashboard {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(DASHBOARD_CSP));
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    }
    response
}
