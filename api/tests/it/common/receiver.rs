//! A webhook endpoint for tests.

use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Records what it receives per `webhook-id` and answers 503 to the first
/// two attempts of each message.
#[derive(Clone, Default)]
pub struct FlakyReceiver(pub Arc<Mutex<Vec<(String, Value)>>>);

impl FlakyReceiver {
    /// Listens on a free port; returns its URL.
    pub async fn start(self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app =
            axum::Router::new()
                .route(
                    "/hook",
                    axum::routing::post(
                        |axum::extract::State(r): axum::extract::State<FlakyReceiver>,
                         headers: HeaderMap,
                         body: String| async move {
                            let id = headers["webhook-id"].to_str().unwrap().to_owned();
                            let mut got = r.0.lock().unwrap();
                            let earlier = got.iter().filter(|(i, _)| *i == id).count();
                            got.push((id, serde_json::from_str(&body).unwrap()));
                            if earlier < 2 {
                                StatusCode::SERVICE_UNAVAILABLE
                            } else {
                                StatusCode::OK
                            }
                        },
                    ),
                )
                .with_state(self);
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    /// Attempts per message id.
    pub fn attempts(&self) -> BTreeMap<String, usize> {
        self.count(|_| true)
    }

    /// Attempts per message id of messages of `event_type`.
    pub fn attempts_of(&self, event_type: &str) -> BTreeMap<String, usize> {
        self.count(|body| body["type"] == event_type)
    }

    fn count(&self, wanted: impl Fn(&Value) -> bool) -> BTreeMap<String, usize> {
        let mut per_id = BTreeMap::new();
        for (id, body) in self.0.lock().unwrap().iter() {
            if wanted(body) {
                *per_id.entry(id.clone()).or_default() += 1;
            }
        }
        per_id
    }
}
