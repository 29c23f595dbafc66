//! Tails the stream from this process's position and applies each event.
//!
//! Today "applying" is decoding: the key and usage projections of later
//! issues fold here. What is already real is the bookkeeping every fold
//! needs: the sequence applied so far, and readiness: `/readyz` turns 200
//! once the process has applied everything that was on the stream when it
//! started.

use futures::StreamExt;
use ingest::{Event, EventStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How far this process has applied the stream.
#[derive(Debug)]
pub struct Progress {
    applied: AtomicU64,
    /// The stream's last sequence at start: caught up once applied reaches it.
    target: u64,
}

impl Progress {
    pub fn new(target: u64) -> Progress {
        Progress {
            applied: AtomicU64::new(0),
            target,
        }
    }

    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    pub fn target(&self) -> u64 {
        self.target
    }

    pub fn is_ready(&self) -> bool {
        self.applied() >= self.target
    }

    fn advance(&self, seq: u64) {
        self.applied.store(seq, Ordering::Release);
    }
}

/// Follows the stream until `shutdown`, re-subscribing after errors.
pub async fn run(
    stream: Arc<dyn EventStream>,
    progress: Arc<Progress>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        let from = progress.applied() + 1;
        let mut records = match stream.follow(from).await {
            Ok(records) => records,
            Err(error) => {
                tracing::warn!(%error, from, "cannot follow the stream; retrying");
                sleep_or_stop(backoff, &shutdown).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = records.next() => next,
            };
            let record = match next {
                Some(Ok(record)) => record,
                Some(Err(error)) => {
                    tracing::error!(%error, applied = progress.applied(), "reading the stream failed; re-following");
                    sleep_or_stop(backoff, &shutdown).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    break;
                }
                None => break,
            };
            backoff = Duration::from_millis(100);
            match record.envelope().map(|e| (e.event(), e)) {
                Ok((Ok(Event::Unknown(unknown)), _)) => {
                    metrics.unknown_events.inc();
                    tracing::debug!(seq = record.seq, event_type = %unknown.event_type, version = unknown.version, "skipped an event type this build does not know");
                }
                Ok((Ok(_event), _)) => {}
                Ok((Err(error), envelope)) => {
                    metrics.unknown_events.inc();
                    tracing::warn!(seq = record.seq, event_type = %envelope.event_type, %error, "skipped an event whose data does not decode");
                }
                Err(error) => {
                    metrics.unknown_events.inc();
                    tracing::warn!(seq = record.seq, %error, "skipped a record that is not an event envelope");
                }
            }
            progress.advance(record.seq);
            metrics.applied_seq.set(record.seq as i64);
        }
    }
}

async fn sleep_or_stop(duration: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(duration) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_applied_reaches_the_start_target() {
        let progress = Progress::new(3);
        assert!(!progress.is_ready());
        progress.advance(2);
        assert!(!progress.is_ready());
        progress.advance(3);
        assert!(progress.is_ready());
        assert!(
            Progress::new(0).is_ready(),
            "an empty stream is caught up at once"
        );
    }
}
