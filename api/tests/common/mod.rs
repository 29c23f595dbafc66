//! Shared by the integration tests that read what a server wrote.

pub mod app;
mod receiver;

#[allow(unused_imports)]
pub use receiver::FlakyReceiver;

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

/// The event ids in a Parquet archive, sorted; fails if one is there twice.
#[allow(dead_code)]
pub fn archived_once(archive: &Path) -> Vec<String> {
    let mut archived: Vec<String> = ledger::archive::read_ids(archive)
        .unwrap_or_default()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    archived.sort();
    let rows = archived.len();
    archived.dedup();
    assert_eq!(
        archived.len(),
        rows,
        "an event_id archived twice in {}",
        archive.display()
    );
    archived
}
