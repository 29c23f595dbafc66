//! Prometheus metrics, served as text at `GET /metrics`, and
//! [`MeteredStream`], which counts every append this process makes.

use async_trait::async_trait;
use ingest::{Appended, EventStream, Outgoing, RecordStream, StreamError, Subject};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};
use std::sync::Arc;

pub struct Metrics {
    registry: Registry,
    /// Events this process stored (duplicates not counted).
    pub appended: Counter,
    pub append_errors: Counter,
    /// Events skipped because this build cannot read them.
    pub unknown_events: Counter,
    pub applied_seq: Gauge,
    pub last_seq: Gauge,
    pub lag: Gauge,
    /// Rows the archiver wrote to Parquet.
    pub archive_rows: Counter,
    /// The last stream sequence the archive holds.
    pub archive_watermark: Gauge,
    /// Archive flushes, compactions and stream reads that failed.
    pub archive_errors: Counter,
    /// Times the follower could not read the stream (it retries with back-off).
    pub follow_errors: Counter,
    /// Times the worker lease could not be asked for or renewed.
    pub lease_errors: Counter,
    /// Times the webhook worker could not record an attempt or an alert
    /// (it retries with back-off).
    pub webhook_record_errors: Counter,
    /// Archive files that could not be read, moved to `archive/quarantine/`.
    pub archive_quarantined: Counter,
    /// 1 while this process is the active worker (holds the lease).
    pub worker_active: Gauge,
    /// HTTP connections open now.
    pub open_connections: Gauge,
    /// Times the connection cap was reached (new ones then wait).
    pub connection_limit_reached: Counter,
    /// The oldest sequence still on the stream (retention deletes before it).
    pub first_seq: Gauge,
    /// How old the oldest event on the stream is.
    pub oldest_event_age: Gauge,
    /// Events past the retention period that are kept because the
    /// snapshot or the archive does not cover them yet (a worker that is
    /// down or behind holds deletion back).
    pub retention_held_back: Gauge,
    /// The sequence of the snapshot every replica can load (NATS: the
    /// published one; embedded: the oldest kept in the data dir).
    pub snapshot_covered_seq: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("nodai");
        Metrics {
            appended: register(&mut r, "events_appended", "Events this process appended to the stream"),
            append_errors: register(&mut r, "append_errors", "Appends that failed"),
            unknown_events: register(&mut r, "events_unknown", "Events skipped as unreadable by this build"),
            applied_seq: register(
                &mut r,
                "projection_applied_seq",
                "Last stream sequence this process applied",
            ),
            last_seq: register(&mut r, "stream_last_seq", "Last sequence on the stream"),
            lag: register(
                &mut r,
                "stream_lag",
                "Events on the stream not yet applied by this process",
            ),
            archive_rows: register(&mut r, "archive_rows", "Rows written to the Parquet archive"),
            archive_watermark: register(
                &mut r,
                "archive_watermark_seq",
                "Last stream sequence the Parquet archive holds",
            ),
            archive_errors: register(
                &mut r,
                "archive_errors",
                "Archive flushes, compactions and stream reads that failed",
            ),
            lease_errors: register(
                &mut r,
                "lease_errors",
                "Times the worker lease could not be asked for or renewed",
            ),
            webhook_record_errors: register(
                &mut r,
                "webhook_record_errors",
                "Times the webhook worker could not record a delivery attempt or an alert (it retries)",
            ),
            follow_errors: register(
                &mut r,
                "follow_errors",
                "Times the follower could not read the stream (it retries with back-off)",
            ),
            archive_quarantined: register(
                &mut r,
                "archive_quarantined_files",
                "Archive files that could not be read, moved to archive/quarantine/",
            ),
            worker_active: register(
                &mut r,
                "worker_active",
                "1 while this process is the active worker (evaluates alerts, delivers webhooks)",
            ),
            open_connections: register(&mut r, "http_connections", "HTTP connections open now"),
            connection_limit_reached: register(
                &mut r,
                "http_connection_limit_reached",
                "Times the cap on open HTTP connections was reached (new connections then wait)",
            ),
            first_seq: register(&mut r, "stream_first_seq", "Oldest sequence still on the stream"),
            oldest_event_age: register(
                &mut r,
                "stream_oldest_event_age_seconds",
                "Age of the oldest event still on the stream",
            ),
            retention_held_back: register(
                &mut r,
                "retention_held_back_events",
                "Events older than the retention period kept because the snapshot or the archive does not cover them yet",
            ),
            snapshot_covered_seq: register(
                &mut r,
                "snapshot_covered_seq",
                "Sequence of the snapshot every replica can load; retention deletes nothing after it",
            ),
            registry: r,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// A new metric, registered under `name`.
fn register<M: Metric + Clone + Default>(registry: &mut Registry, name: &str, help: &str) -> M {
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}

/// Wraps a stream so every append shows in the metrics.
pub struct MeteredStream {
    inner: Arc<dyn EventStream>,
    metrics: Arc<Metrics>,
}

impl MeteredStream {
    pub fn new(inner: Arc<dyn EventStream>, metrics: Arc<Metrics>) -> MeteredStream {
        MeteredStream { inner, metrics }
    }

    fn count(&self, result: Result<Appended, StreamError>) -> Result<Appended, StreamError> {
        match &result {
            Ok(Appended { duplicate: false, .. }) => drop(self.metrics.appended.inc()),
            Ok(_) | Err(StreamError::Conflict { .. }) => {}
            Err(_) => drop(self.metrics.append_errors.inc()),
        }
        result
    }
}

#[async_trait]
impl EventStream for MeteredStream {
    async fn append(&self, event: &Outgoing) -> Result<Appended, StreamError> {
        self.count(self.inner.append(event).await)
    }

    async fn append_expecting(&self, event: &Outgoing, expected: u64) -> Result<Appended, StreamError> {
        self.count(self.inner.append_expecting(event, expected).await)
    }

    async fn append_all(&self, events: Vec<Outgoing>) -> Vec<Result<Appended, StreamError>> {
        let results = self.inner.append_all(events).await;
        results.into_iter().map(|r| self.count(r)).collect()
    }

    async fn last_seq(&self) -> Result<u64, StreamError> {
        self.inner.last_seq().await
    }

    async fn last_subject_seq(&self, subject: &Subject) -> Result<u64, StreamError> {
        self.inner.last_subject_seq(subject).await
    }

    async fn first_seq(&self) -> Result<u64, StreamError> {
        self.inner.first_seq().await
    }

    async fn trim_before(&self, seq: u64) -> Result<u64, StreamError> {
        self.inner.trim_before(seq).await
    }

    async fn publish_snapshot(&self, seq: u64, bytes: Vec<u8>) -> Result<(), StreamError> {
        self.inner.publish_snapshot(seq, bytes).await
    }

    async fn published_snapshot_seq(&self) -> Result<Option<u64>, StreamError> {
        self.inner.published_snapshot_seq().await
    }

    async fn fetch_snapshot(&self) -> Result<Option<Vec<u8>>, StreamError> {
        self.inner.fetch_snapshot().await
    }

    async fn replay(&self, from: u64) -> Result<RecordStream, StreamError> {
        self.inner.replay(from).await
    }

    async fn follow(&self, from: u64) -> Result<RecordStream, StreamError> {
        self.inner.follow(from).await
    }

    async fn hold_lease(&self, name: &str, holder: &str) -> Result<bool, StreamError> {
        self.inner.hold_lease(name, holder).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StreamError> {
        self.inner.release_lease(name, holder).await
    }

    async fn close(&self) {
        self.inner.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingest::events::{Event, KeyRevoked};

    #[tokio::test]
    async fn counts_stored_appends_not_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let log = ingest::embedded::EmbeddedLog::open(ingest::embedded::Options::new(dir.path()))
            .await
            .unwrap();
        let metrics = Arc::new(Metrics::new());
        let stream = MeteredStream::new(Arc::new(log), metrics.clone());
        let revoke = || {
            Outgoing::new(
                &Event::KeyRevoked(KeyRevoked { key_id: "key_1".into() }),
                chrono::Utc::now(),
            )
            .unwrap()
        };
        let event = revoke();
        stream.append(&event).await.unwrap();
        stream.append(&event).await.unwrap();
        // Expecting an empty subject when it is not: another event, refused.
        let conflict = stream.append_expecting(&revoke(), 0).await;
        assert!(matches!(conflict, Err(StreamError::Conflict { .. })));
        assert_eq!(metrics.appended.get(), 1);
        assert_eq!(metrics.append_errors.get(), 0, "a conflict is an answer, not an error");
        assert!(metrics.encode().contains("nodai_events_appended_total 1"));
    }
}
