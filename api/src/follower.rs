//! Tails the stream from this process's position and folds each event into
//! the [`ledger::Projection`] the API answers from.
//!
//! [`Progress`] is the bookkeeping around it: the sequence applied so far
//! (handlers wait on it for read-your-writes), and readiness: `/readyz`
//! turns 200 once the process has applied everything that was on the
//! stream when it started.

use futures::StreamExt;
use ingest::{Event, EventStream};
use ledger::Projection;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::limiter::Limiter;
use crate::metrics::Metrics;

/// How far this process has applied the stream.
#[derive(Debug)]
pub struct Progress {
    applied: watch::Sender<u64>,
    /// The stream's last sequence at start: caught up once applied reaches it.
    target: u64,
    /// The highest sequence this process appended: reads wait for it.
    own: AtomicU64,
}

impl Progress {
    /// `start`: the sequence already applied (from a snapshot), 0 if none.
    pub fn new(target: u64, start: u64) -> Progress {
        Progress {
            applied: watch::channel(start).0,
            target,
            own: AtomicU64::new(0),
        }
    }

    /// This process appended an event at `seq`.
    pub fn appended(&self, seq: u64) {
        self.own.fetch_max(seq, Ordering::Relaxed);
    }

    /// The highest sequence this process appended so far.
    pub fn own(&self) -> u64 {
        self.own.load(Ordering::Relaxed)
    }

    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Waits until `seq` has been applied; false if `timeout` passed first.
    pub async fn wait_for(&self, seq: u64, timeout: Duration) -> bool {
        if self.applied() >= seq {
            return true;
        }
        let mut applied = self.applied.subscribe();
        let reached = tokio::time::timeout(timeout, applied.wait_for(|a| *a >= seq)).await;
        matches!(reached, Ok(Ok(_)))
    }

    /// Changes whenever the applied sequence moves.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    pub fn target(&self) -> u64 {
        self.target
    }

    pub fn is_ready(&self) -> bool {
        self.applied() >= self.target
    }

    fn advance(&self, seq: u64) {
        self.applied.send_replace(seq);
    }
}

/// When and where the follower writes snapshots of the projection.
#[derive(Debug, Clone)]
pub struct Snapshots {
    pub dir: PathBuf,
    /// Which stream (`embedded`, `nats:NODAI`): a snapshot of another is not loaded.
    pub stream: String,
    /// After this many applied events…
    pub every_events: u64,
    /// …or this long, if anything was applied.
    pub every: Duration,
}

impl Snapshots {
    /// Writes one of `projection` if it is newer than `last`; returns the
    /// sequence the newest snapshot reflects. The follower waits for it,
    /// holding the read lock only: queries are answered meanwhile, and the
    /// limiter counts theirs as in flight until the follower applies them.
    async fn write(&self, projection: &Arc<RwLock<Projection>>, last: u64) -> u64 {
        let (this, projection) = (self.clone(), projection.clone());
        let written = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let projection = projection.read().unwrap_or_else(|e| e.into_inner());
            if projection.seq <= last {
                return Ok(last);
            }
            let bytes = ledger::snapshot::write(&this.dir, &projection, &this.stream)?;
            tracing::info!(
                seq = projection.seq,
                bytes,
                ms = started.elapsed().as_millis() as u64,
                "snapshot written"
            );
            Ok::<_, ledger::Error>(projection.seq)
        })
        .await;
        match written {
            Ok(Ok(seq)) => seq,
            Ok(Err(error)) => {
                tracing::error!(%error, "cannot write a snapshot; the next start replays more of the stream");
                last
            }
            Err(error) => {
                tracing::error!(%error, "snapshot task failed");
                last
            }
        }
    }
}

/// Follows the stream until `shutdown`, re-subscribing after errors, and
/// writes snapshots on the way and a last one at the end.
pub async fn run(
    stream: Arc<dyn EventStream>,
    projection: Arc<RwLock<Projection>>,
    limiter: Arc<Limiter>,
    progress: Arc<Progress>,
    metrics: Arc<Metrics>,
    snapshots: Snapshots,
    shutdown: CancellationToken,
) {
    let mut follower = Follower {
        stream,
        projection,
        limiter,
        progress: progress.clone(),
        metrics,
        snapshot_seq: progress.applied(),
        snapshot_at: Instant::now(),
        snapshots,
    };
    follower.follow(&shutdown).await;
    follower.catch_up().await;
    follower
        .snapshots
        .write(&follower.projection, follower.snapshot_seq)
        .await;
}

struct Follower {
    stream: Arc<dyn EventStream>,
    projection: Arc<RwLock<Projection>>,
    limiter: Arc<Limiter>,
    progress: Arc<Progress>,
    metrics: Arc<Metrics>,
    snapshots: Snapshots,
    /// The sequence the newest snapshot reflects, and when it was taken.
    snapshot_seq: u64,
    snapshot_at: Instant,
}

impl Follower {
    /// Folds one record into the projection and moves `applied` past it.
    fn apply(&self, record: &ingest::Record) {
        match record.envelope().map(|e| (e.event(), e)) {
            Ok((Ok(Event::Unknown(unknown)), _)) => {
                self.metrics.unknown_events.inc();
                tracing::debug!(seq = record.seq, event_type = %unknown.event_type, version = unknown.version, "skipped an event type this build does not know");
            }
            Ok((Ok(event), envelope)) => {
                let mut projection = self.projection.write().unwrap_or_else(|e| e.into_inner());
                projection.apply(record.seq, envelope.id, envelope.ts, &event);
                // Under the same write lock: counted here, no longer in flight.
                match &event {
                    Event::QueryRecorded(q) => self.limiter.settle(&q.key_id, envelope.id),
                    Event::QueryAdmitted(a) => self.limiter.settle(&a.key_id, envelope.id),
                    _ => {}
                }
            }
            Ok((Err(error), envelope)) => {
                self.metrics.unknown_events.inc();
                tracing::warn!(seq = record.seq, event_type = %envelope.event_type, %error, "skipped an event whose data does not decode");
            }
            Err(error) => {
                self.metrics.unknown_events.inc();
                tracing::warn!(seq = record.seq, %error, "skipped a record that is not an event envelope");
            }
        }
        self.progress.advance(record.seq);
        self.metrics.applied_seq.set(record.seq as i64);
    }

    /// At shutdown: applies what is on the stream up to its last sequence
    /// (appended by requests that finished meanwhile), so that the last
    /// snapshot and the archiver see all of it.
    async fn catch_up(&self) {
        let Ok(last) = self.stream.last_seq().await else { return };
        if last <= self.progress.applied() {
            return;
        }
        let Ok(mut records) = self.stream.replay(self.progress.applied() + 1).await else {
            return;
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.progress.applied() < last {
            match tokio::time::timeout_at(deadline, records.next()).await {
                Ok(Some(Ok(record))) => self.apply(&record),
                _ => break,
            }
        }
    }

    async fn follow(&mut self, shutdown: &CancellationToken) {
        let (stream, projection, progress) = (self.stream.clone(), self.projection.clone(), self.progress.clone());
        let mut backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            let from = progress.applied() + 1;
            let mut records = match stream.follow(from).await {
                Ok(records) => records,
                Err(error) => {
                    tracing::warn!(%error, from, "cannot follow the stream; retrying");
                    sleep_or_stop(backoff, shutdown).await;
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
                        sleep_or_stop(backoff, shutdown).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        break;
                    }
                    None => break,
                };
                backoff = Duration::from_millis(100);
                self.apply(&record);
                // While catching up at start, one snapshot at the end rather
                // than one per million events: each costs a pause.
                let due = record.seq - self.snapshot_seq >= self.snapshots.every_events
                    || self.snapshot_at.elapsed() >= self.snapshots.every;
                let caught_up = record.seq == progress.target();
                if due && (progress.is_ready() || caught_up) {
                    self.snapshot_seq = self.snapshots.write(&projection, self.snapshot_seq).await;
                    self.snapshot_at = Instant::now();
                }
            }
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
        let progress = Progress::new(3, 0);
        assert!(!progress.is_ready());
        progress.advance(2);
        assert!(!progress.is_ready());
        progress.advance(3);
        assert!(progress.is_ready());
        assert!(Progress::new(0, 0).is_ready(), "an empty stream is caught up at once");
        assert!(
            Progress::new(7, 7).is_ready(),
            "a snapshot at the stream's end is caught up"
        );
    }
}
