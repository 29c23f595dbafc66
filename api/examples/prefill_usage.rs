//! Appends N `query.recorded` events (over 1000 keys) to an embedded log,
//! for the restart benchmark (`api/benches/restart.sh`):
//! `prefill_usage <data-dir> <n>`. Run it again to append more.

use ingest::embedded::{EmbeddedLog, Options};
use ingest::events::QueryRecorded;
use ingest::{Event, EventStream, Micros, Outgoing};
use std::sync::Arc;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(n)) = (args.get(1), args.get(2).and_then(|n| n.parse::<u64>().ok())) else {
        eprintln!("usage: prefill_usage <data-dir> <n>");
        std::process::exit(2);
    };
    let log = Arc::new(
        EmbeddedLog::open(Options::new(std::path::Path::new(dir).join("stream")))
            .await
            .expect("open the log"),
    );
    let tasks: Vec<_> = (0..64u64)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                // Batches of appends in flight per task keep the writer's group commit busy.
                for i in (t..n).step_by(64) {
                    let event = Event::QueryRecorded(QueryRecorded {
                        request_id: format!("req_{}", uuid::Uuid::now_v7().simple()),
                        key_id: format!("key_{:032x}", i % 1000),
                        workflow_id: "echo".into(),
                        status_code: 200,
                        cost: Micros::new(1_500),
                        duration_ms: 3,
                        reported_cost: None,
                        record_by: None,
                        customer_id: None,
                        input_tokens: 0,
                        output_tokens: 0,
                        authorization_id: None,
                    });
                    let outgoing = Outgoing::new(&event, chrono::Utc::now()).expect("encode");
                    log.append(&outgoing).await.expect("append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("appender");
    }
    log.close().await;
    println!("{n} usage events appended");
}
