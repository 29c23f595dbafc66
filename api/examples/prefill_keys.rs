//! Writes N `key.created` events into an embedded log, for the memory
//! benchmark (`api/benches/gateway.sh`): `prefill_keys <data-dir> <n>`.

use ingest::embedded::{EmbeddedLog, Options};
use ingest::events::{KeyCreated, KeySettings};
use ingest::{Event, EventStream, Micros, Outgoing};
use sha2::{Digest, Sha256};
use std::sync::Arc;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(n)) = (args.get(1), args.get(2).and_then(|n| n.parse::<usize>().ok())) else {
        eprintln!("usage: prefill_keys <data-dir> <n>");
        std::process::exit(2);
    };
    let log = Arc::new(
        EmbeddedLog::open(Options::new(std::path::Path::new(dir).join("stream")))
            .await
            .unwrap(),
    );
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in (t..n).step_by(64) {
                    let key = format!("nk_{:064x}", i);
                    let event = Event::KeyCreated(KeyCreated {
                        key_id: format!("key_{}", uuid::Uuid::now_v7().simple()),
                        key_hash: hex::encode(Sha256::digest(key.as_bytes())),
                        prefix: key[..11].to_owned(),
                        settings: KeySettings {
                            name: format!("customer {i}"),
                            owner: Some(format!("org_{}", i % 1000)),
                            active: true,
                            workflow_ids: vec!["echo".into()],
                            rate_limit_per_hour: Some(1000),
                            cost_limit_per_month: Some(Micros::new(50_000_000)),
                            alert_thresholds: vec![80, 100],
                            expires_at: None,
                            allowed_origins: vec![],
                            metadata: None,
                            customer_id: None,
                            limits: vec![],
                            max_concurrent: None,
                        },
                    });
                    log.append(&Outgoing::new(&event, chrono::Utc::now()).unwrap())
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    log.close().await;
    println!("{n} keys written");
}
