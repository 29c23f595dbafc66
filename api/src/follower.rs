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

use crate::archiver::{self, Fed, FeedSender};
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
    /// The highest sequence of usage this process appended that no limiter
    /// counts in flight (`POST /api/v1/events`): admissions wait for it.
    recorded: AtomicU64,
    /// Retention deleted events this process had not applied yet: its
    /// state can never be complete again, so it is not ready until restarted.
    fell_behind: std::sync::atomic::AtomicBool,
}

impl Progress {
    /// `start`: the sequence already applied (from a snapshot), 0 if none.
    pub fn new(target: u64, start: u64) -> Progress {
        Progress {
            applied: watch::channel(start).0,
            target,
            own: AtomicU64::new(0),
            recorded: AtomicU64::new(0),
            fell_behind: std::sync::atomic::AtomicBool::new(false),
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

    /// This process appended usage at `seq` that counts against limits
    /// only once applied.
    pub fn recorded(&self, seq: u64) {
        self.appended(seq);
        self.recorded.fetch_max(seq, Ordering::Relaxed);
    }

    /// The highest sequence passed to [`Self::recorded`].
    pub fn last_recorded(&self) -> u64 {
        self.recorded.load(Ordering::Relaxed)
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
        self.applied() >= self.target && !self.fell_behind.load(Ordering::Relaxed)
    }

    /// Whether this process missed events retention deleted.
    pub fn has_fallen_behind(&self) -> bool {
        self.fell_behind.load(Ordering::Relaxed)
    }

    /// This process missed events retention deleted: never ready again.
    /// True the first time.
    fn fell_behind(&self) -> bool {
        !self.fell_behind.swap(true, Ordering::Relaxed)
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
    /// A copy of `projection` to write, if it is newer than `last`. The
    /// copy is all the fold waits for (the read lock is held for it alone);
    /// encoding and writing it happen beside the fold. BENCHMARKS.md,
    /// "Snapshots beside the fold", has the pause at 10M events.
    fn copy(projection: &RwLock<Projection>, last: u64) -> Option<Projection> {
        let started = Instant::now();
        let copy = {
            let projection = projection.read().unwrap_or_else(|e| e.into_inner());
            (projection.seq > last).then(|| projection.clone())
        };
        if let Some(copy) = &copy {
            tracing::debug!(
                seq = copy.seq,
                pause_ms = started.elapsed().as_millis() as u64,
                "projection copied for a snapshot"
            );
        }
        copy
    }

    /// Writes `copy` on the blocking pool; returns the sequence the newest
    /// snapshot now reflects (`last` if the write failed).
    async fn write(&self, copy: Projection, last: u64) -> u64 {
        let this = self.clone();
        let written = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let bytes = ledger::snapshot::write(&this.dir, &copy, &this.stream)?;
            tracing::info!(
                seq = copy.seq,
                bytes,
                ms = started.elapsed().as_millis() as u64,
                "snapshot written"
            );
            Ok::<_, ledger::Error>(copy.seq)
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
#[allow(clippy::too_many_arguments)] // shared handles, each wired once in `server`
pub async fn run(
    stream: Arc<dyn EventStream>,
    projection: Arc<RwLock<Projection>>,
    limiter: Arc<Limiter>,
    progress: Arc<Progress>,
    metrics: Arc<Metrics>,
    snapshots: Snapshots,
    archive: Option<FeedSender>,
    shutdown: CancellationToken,
    stop_serving: CancellationToken,
) {
    let mut follower = Follower {
        stop_serving,
        archive,
        stream,
        projection,
        limiter,
        progress: progress.clone(),
        metrics,
        snapshot_seq: progress.applied(),
        snapshot_at: Instant::now(),
        snapshots,
        writing: None,
    };
    follower.follow(&shutdown).await;
    follower.catch_up().await;
    // The archiver has all there is: it flushes while the snapshot is written.
    follower.archive = None;
    follower.snapshot_written().await;
    if let Some(copy) = Snapshots::copy(&follower.projection, follower.snapshot_seq) {
        follower.snapshots.write(copy, follower.snapshot_seq).await;
    }
}

struct Follower {
    /// Cancelled when this process falls behind retention: it stops, so
    /// that a restart loads a snapshot that reaches the stream.
    stop_serving: CancellationToken,
    stream: Arc<dyn EventStream>,
    projection: Arc<RwLock<Projection>>,
    limiter: Arc<Limiter>,
    progress: Arc<Progress>,
    metrics: Arc<Metrics>,
    snapshots: Snapshots,
    /// Where the archiver, if this process runs one, takes each record.
    archive: Option<FeedSender>,
    /// The sequence the newest snapshot reflects, and when it was taken.
    snapshot_seq: u64,
    snapshot_at: Instant,
    /// A snapshot being written beside the fold: at most one at a time.
    writing: Option<tokio::task::JoinHandle<u64>>,
}

impl Follower {
    /// Events this process has not applied were deleted by retention: it
    /// answers nothing more (`/readyz` and queries 503) rather than from a
    /// state that can never be complete, and stops (exit 1), so that its
    /// supervisor restarts it and the start loads a snapshot.
    fn note_trimmed(&self, error: &ingest::StreamError) {
        if let ingest::StreamError::Trimmed { seq, first } = error {
            if self.progress.fell_behind() {
                tracing::error!(
                    next = seq,
                    first_seq = first,
                    "this process fell behind the stream's retention: events it has not applied were deleted; \
                     it stops (a restart loads a snapshot that reaches the stream)"
                );
                self.stop_serving.cancel();
            }
        }
    }

    /// Waits for the snapshot being written, if any, and notes how far it got.
    async fn snapshot_written(&mut self) {
        if let Some(writing) = self.writing.take() {
            match writing.await {
                Ok(seq) => self.snapshot_seq = self.snapshot_seq.max(seq),
                Err(error) => tracing::error!(%error, "snapshot task failed"),
            }
        }
    }

    /// Folds records into the projection under one write lock, moves
    /// `applied` past them and hands them to the archiver.
    fn apply(&self, records: &[ingest::Record]) {
        let Some(last) = records.last() else { return };
        // Decoded before the lock: queries read the projection meanwhile.
        let decoded: Vec<_> = records
            .iter()
            .map(|r| (r.seq, r.stored_micros, self.decode(r)))
            .collect();
        let mut rows = Vec::new();
        {
            let mut projection = self.projection.write().unwrap_or_else(|e| e.into_inner());
            for (seq, stored_micros, decoded) in decoded {
                let Some((envelope, event)) = decoded else { continue };
                let first_time = projection.apply_stored(seq, envelope.id, envelope.ts, stored_micros, &event);
                // Under the same write lock: counted here, no longer in flight.
                match event {
                    Event::QueryRecorded(q) => {
                        self.limiter
                            .settle(&ingest::events::scope(&q.key_id, q.customer_id.as_deref()), envelope.id);
                        if self.archive.is_some() && first_time {
                            rows.push(archiver::query_row(seq, envelope.id, envelope.ts, q));
                        }
                    }
                    Event::QueryAdmitted(a) => self.limiter.settle(&a.scope(), envelope.id),
                    _ => {}
                }
            }
        }
        self.progress.advance(last.seq);
        self.metrics.applied_seq.set(last.seq as i64);
        if let Some(archive) = &self.archive {
            archive.send(Fed {
                first: records[0].seq,
                last: last.seq,
                last_id: last.id,
                rows,
            });
        }
    }

    /// The event in a record, or None (logged and counted) if this build
    /// cannot fold it.
    fn decode(&self, record: &ingest::Record) -> Option<(ingest::Envelope, Event)> {
        match record.envelope().map(|e| (e.event(), e)) {
            Ok((Ok(Event::Unknown(unknown)), _)) => {
                self.metrics.unknown_events.inc();
                tracing::debug!(seq = record.seq, event_type = %unknown.event_type, version = unknown.version, "skipped an event type this build does not know");
                None
            }
            Ok((Ok(event), envelope)) => Some((envelope, event)),
            Ok((Err(error), envelope)) => {
                self.metrics.unknown_events.inc();
                tracing::warn!(seq = record.seq, event_type = %envelope.event_type, %error, "skipped an event whose data does not decode");
                None
            }
            Err(error) => {
                self.metrics.unknown_events.inc();
                tracing::warn!(seq = record.seq, %error, "skipped a record that is not an event envelope");
                None
            }
        }
    }

    /// At shutdown: applies what is on the stream up to its last sequence
    /// (appended by requests that finished meanwhile), so that the last
    /// snapshot and the archiver see all of it.
    async fn catch_up(&self) {
        let Ok(last) = self.stream.last_seq().await else { return };
        if last <= self.progress.applied() {
            return;
        }
        let Ok(records) = self.stream.replay(self.progress.applied() + 1).await else {
            return;
        };
        let mut chunks = records.ready_chunks(CHUNK);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.progress.applied() < last {
            let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, chunks.next()).await else {
                break;
            };
            let (records, failed) = split(chunk);
            self.apply(&records);
            if failed.is_some() {
                break;
            }
        }
    }

    async fn follow(&mut self, shutdown: &CancellationToken) {
        let (stream, projection, progress) = (self.stream.clone(), self.projection.clone(), self.progress.clone());
        let mut backoff = Duration::from_millis(100);
        let mut failing = false;
        while !shutdown.is_cancelled() {
            let from = progress.applied() + 1;
            let mut chunks = match stream.follow(from).await {
                Ok(records) => records.ready_chunks(CHUNK),
                Err(error) => {
                    self.note_trimmed(&error);
                    // Logged when it starts failing; then at debug until it works.
                    if !failing {
                        tracing::warn!(%error, from, "cannot follow the stream; retrying with back-off");
                    } else {
                        tracing::debug!(%error, from, "cannot follow the stream; retrying");
                    }
                    failing = true;
                    self.metrics.follow_errors.inc();
                    sleep_or_stop(backoff, shutdown).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    next = chunks.next() => next,
                };
                let Some(chunk) = next else { break };
                let (records, failed) = split(chunk);
                self.apply(&records);
                if let Some(error) = failed {
                    self.note_trimmed(&error);
                    if !failing {
                        tracing::error!(%error, applied = progress.applied(), "reading the stream failed; re-following with back-off");
                    } else {
                        tracing::debug!(%error, applied = progress.applied(), "reading the stream failed again");
                    }
                    failing = true;
                    self.metrics.follow_errors.inc();
                    sleep_or_stop(backoff, shutdown).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    break;
                }
                if failing && !records.is_empty() {
                    tracing::info!(applied = progress.applied(), "following the stream again");
                    failing = false;
                }
                backoff = Duration::from_millis(100);
                // While catching up at start, one snapshot at the end rather
                // than one per million events: each costs a pause.
                let due = progress.applied() - self.snapshot_seq >= self.snapshots.every_events
                    || self.snapshot_at.elapsed() >= self.snapshots.every;
                if self.writing.as_ref().is_some_and(|w| w.is_finished()) {
                    self.snapshot_written().await;
                }
                if due && progress.is_ready() && self.writing.is_none() {
                    if let Some(copy) = Snapshots::copy(&projection, self.snapshot_seq) {
                        let (snapshots, last) = (self.snapshots.clone(), self.snapshot_seq);
                        self.writing = Some(tokio::spawn(async move { snapshots.write(copy, last).await }));
                    }
                    self.snapshot_at = Instant::now();
                }
            }
        }
    }
}

/// Records folded under one lock at most: whatever the stream has ready.
const CHUNK: usize = 1024;

/// The records of a chunk up to its first error, and that error.
fn split(
    chunk: Vec<Result<ingest::Record, ingest::StreamError>>,
) -> (Vec<ingest::Record>, Option<ingest::StreamError>) {
    let mut records = Vec::with_capacity(chunk.len());
    for item in chunk {
        match item {
            Ok(record) => records.push(record),
            Err(error) => return (records, Some(error)),
        }
    }
    (records, None)
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
        let behind = Progress::new(3, 3);
        assert!(behind.fell_behind() && !behind.fell_behind(), "true the first time");
        assert!(
            !behind.is_ready(),
            "a process that missed deleted events is never ready again"
        );
    }
}
