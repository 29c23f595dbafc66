//! Shared by the integration tests that read what a server wrote.

pub mod app;

use futures::StreamExt;
use ingest::EventStream;
use std::path::Path;
use std::sync::Arc;

/// Every record on a server's stream: the embedded log in `data_dir`, or
/// the NATS stream `nats` = (url, stream name). The server must be stopped
/// for the embedded log (it holds the lock).
pub async fn records(data_dir: &Path, nats: Option<(String, &str)>) -> Vec<ingest::Record> {
    let stream: Arc<dyn EventStream> = match nats {
        None => Arc::new(
            ingest::embedded::EmbeddedLog::open(ingest::embedded::Options::new(data_dir.join("stream")))
                .await
                .unwrap(),
        ),
        Some((url, name)) => Arc::new(
            ingest::nats::NatsStream::connect(ingest::nats::Options::new(url, name))
                .await
                .unwrap(),
        ),
    };
    let records: Vec<_> = stream.replay(1).await.unwrap().map(|r| r.unwrap()).collect().await;
    stream.close().await;
    records
}
