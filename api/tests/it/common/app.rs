//! The test server: a real `nodai` on a free port, on the embedded log or a
//! NATS server of its own, and helpers to talk to it.

use api::auth::AdminToken;
use api::config::{Backend, Config};
use ingest::testkit::{unique_stream_name, NatsServer};
use ingest::{Event, EventStream};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "test-admin-token-0123456789";

pub enum Store {
    Embedded,
    Nats(NatsServer, String),
}

pub struct App {
    pub base: String,
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
    pub server: Option<tokio::task::JoinHandle<Result<(), api::server::ServeError>>>,
    pub dir: tempfile::TempDir,
    pub store: Store,
    /// Changes to the test configuration, applied on every (re)start.
    pub configure: fn(&mut Config),
}

/// The test config unchanged: for [`App::start_with`].
pub fn as_is(_: &mut Config) {}

impl App {
    pub async fn start(nats: bool) -> Option<App> {
        App::start_with(nats, as_is).await
    }

    pub async fn start_with(nats: bool, configure: fn(&mut Config)) -> Option<App> {
        let store = if nats {
            let server = NatsServer::start().await?;
            Store::Nats(server, unique_stream_name())
        } else {
            Store::Embedded
        };
        let dir = tempfile::tempdir().unwrap();
        let mut app = App {
            base: String::new(),
            http: reqwest::Client::new(),
            shutdown: CancellationToken::new(),
            server: None,
            dir,
            store,
            configure,
        };
        app.spawn().await;
        Some(app)
    }

    pub async fn spawn(&mut self) {
        self.spawn_unready().await;
        self.ready().await;
    }

    /// Starts the server without waiting for it to be ready.
    pub async fn spawn_unready(&mut self) {
        let mut config = Config::embedded(self.dir.path());
        config.admin_token = Some(AdminToken::new(TOKEN.into()));
        config.upstream_timeout = Duration::from_secs(1);
        (self.configure)(&mut config);
        if let Store::Nats(server, name) = &self.store {
            config.backend = Backend::Nats {
                url: server.url(),
                stream: name.clone(),
                replicas: 1,
                auth: Default::default(),
            };
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.base = format!("http://{}", listener.local_addr().unwrap());
        self.shutdown = CancellationToken::new();
        self.server = Some(tokio::spawn(api::server::run(config, listener, self.shutdown.clone())));
    }

    /// Waits until `/readyz` answers 200.
    pub async fn ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self
            .http
            .get(format!("{}/readyz", self.base))
            .send()
            .await
            .ok()
            .map(|r| r.status())
            != Some(StatusCode::OK)
        {
            assert!(Instant::now() < deadline, "server never became ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(30), server)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
    }

    /// Every event on the stream with its raw bytes (the server must be
    /// stopped for the embedded log).
    pub async fn events(&self) -> Vec<(Event, Vec<u8>)> {
        self.records()
            .await
            .into_iter()
            .map(|r| (r.envelope().unwrap().event().unwrap(), r.payload.to_vec()))
            .collect()
    }

    /// Every record on the stream as (sequence, envelope) (the server must
    /// be stopped for the embedded log).
    pub async fn records(&self) -> Vec<ingest::Record> {
        let nats = match &self.store {
            Store::Embedded => None,
            Store::Nats(server, name) => Some((server.url(), name.as_str())),
        };
        super::records(self.dir.path(), nats).await
    }

    /// Stores an event's exact bytes once more, bypassing the stream's own
    /// duplicate window (the server must be stopped for the embedded log).
    pub async fn store_again(&self, key_id: &str, payload: Vec<u8>) {
        match &self.store {
            Store::Embedded => {
                let mut options = ingest::embedded::Options::new(self.dir.path().join("stream"));
                options.duplicate_window = Duration::ZERO;
                let log = ingest::embedded::EmbeddedLog::open(options).await.unwrap();
                let envelope = ingest::Envelope::from_json(&payload).unwrap();
                let outgoing = ingest::Outgoing {
                    id: envelope.id,
                    subject: ingest::Subject::new("usage", key_id).unwrap(),
                    payload: payload.into(),
                };
                assert!(!log.append(&outgoing).await.unwrap().duplicate);
                log.close().await;
            }
            Store::Nats(server, name) => {
                let client = async_nats::connect(server.url()).await.unwrap();
                let js = async_nats::jetstream::new(client);
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", ingest::EventId::new().to_string().as_str());
                let subject = format!("{}.usage.{key_id}", name.to_lowercase());
                let ack = js.publish_with_headers(subject, headers, payload.into()).await.unwrap();
                assert!(!ack.await.unwrap().duplicate);
            }
        }
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A metric's value from `/metrics` (0 if absent).
    pub async fn metric(&self, name: &str) -> f64 {
        super::metric(&self.base, name).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.admin(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn create_key(&self, body: Value) -> (String, String) {
        let (status, key) = self.post("/api/v1/api-keys", body).await;
        assert_eq!(status, 201, "{key}");
        (
            key["id"].as_str().unwrap().to_owned(),
            key["key"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn workflow(&self, id: &str, upstream: &str, price: f64) {
        let (status, body) = self
            .post(
                "/api/v1/workflows",
                json!({"id": id, "name": id, "upstream_url": upstream, "price_per_request": price}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    pub async fn query(&self, workflow: &str, key: Option<&str>, input: Value) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/api/v1/workflows/{workflow}/query", self.base))
            .json(&json!({"input": input}));
        if let Some(key) = key {
            request = request.header("X-API-Key", key);
        }
        request.send().await.unwrap()
    }
}

pub async fn problem(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    (status, body["code"].as_str().unwrap().to_owned())
}

pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
