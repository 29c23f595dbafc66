//! Retention: the worker deletes stream events older than `--retention`,
//! but never one that the snapshot every replica can load, or (for usage)
//! the archive's watermark, does not cover yet. Deletion goes up to, not
//! including, the first of:
//!
//! - the first event stored within the retention period;
//! - the snapshot every replica can load: on NATS the published one (this
//!   pass publishes the newest local snapshot first), on the embedded log
//!   the oldest of the snapshots kept in the data dir, so that a damaged
//!   newest one still leaves one to start from;
//! - the archive's watermark, as a power cut would leave it (the file
//!   renamed and its directory synced).
//!
//! The snapshot's and the watermark's own events stay, so both are still
//! checked against the stream at the next start. What these hold back is
//! visible: `nodai_retention_held_back_events`, and a warning while events
//! older than the retention period are kept. An API replica deletes
//! nothing; it shows the age of the oldest event and warns when no worker
//! seems to delete.

use ingest::{EventStream, StreamError};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::follower::Progress;
use crate::metrics::Metrics;

/// Old events kept this long past the retention period before a warning:
/// a worker that is merely restarting is not worth one.
const WARN_AFTER: Duration = Duration::from_secs(3600);

pub struct Retention {
    pub stream: Arc<dyn EventStream>,
    pub metrics: Arc<Metrics>,
    /// `--retention`.
    pub keep: Duration,
    /// This process's snapshots (`<data-dir>/snapshots`).
    pub snapshots: PathBuf,
    /// The stream the snapshots belong to, as they record it.
    pub stream_name: String,
    /// Publish snapshots for other replicas (NATS) rather than rely on the
    /// data dir's (embedded).
    pub publish: bool,
    /// The archive's durable watermark, from this process's archiver.
    pub archived: Arc<std::sync::atomic::AtomicU64>,
    /// How far this process has folded the stream: nothing is deleted
    /// before it has caught up, nor past what it has applied.
    pub progress: Arc<Progress>,
    /// Local snapshots already decoded, by sequence: whether they load.
    pub checked: std::sync::Mutex<std::collections::HashMap<u64, bool>>,
}

/// What one pass found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Events retention would delete but the snapshot or archive holds back.
    pub held_back: u64,
    /// What holds them back.
    pub held_by: Option<&'static str>,
    /// The oldest event is older than the retention period by more than
    /// [`WARN_AFTER`].
    pub overdue: bool,
}

impl Retention {
    /// Deletes what may go; runs every `every` until `stop`.
    pub async fn run(self, every: Duration, stop: CancellationToken) {
        let mut warned_at: Option<tokio::time::Instant> = None;
        loop {
            match self.step().await {
                Ok(pass) => {
                    if let (Some(held_by), true) = (pass.held_by, pass.overdue) {
                        if warned_at.is_none_or(|at| at.elapsed() >= WARN_AFTER) {
                            tracing::warn!(
                                held_back = pass.held_back,
                                held_by,
                                "events older than the retention period are kept: the {held_by} does not cover them yet"
                            );
                            warned_at = Some(tokio::time::Instant::now());
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "retention pass failed; trying again later"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// One pass: publish the newest snapshot (NATS), then delete what the
    /// snapshot, the archive and the retention period allow.
    pub async fn step(&self) -> Result<Pass, StreamError> {
        let first = self.stream.first_seq().await?;
        // Still replaying (a snapshot from an older build is not loadable,
        // say): deleting now could cut the replay short.
        if !self.progress.is_ready() {
            return Ok(Pass {
                held_back: 0,
                held_by: None,
                overdue: false,
            });
        }
        let last = self.stream.last_seq().await?;
        let covered = self.snapshot_covers().await?;
        self.metrics.snapshot_covered_seq.set(covered as i64);
        let watermark = self.watermark();
        let cutoff = chrono::Utc::now().timestamp_micros() - self.keep.as_micros() as i64;
        let old = first_stored_after(&*self.stream, first, last, cutoff).await?;
        let (allowed, held_by) = if covered <= watermark {
            (covered, "snapshot")
        } else {
            (watermark, "archive")
        };
        let upto = old.min(allowed).min(self.progress.applied() + 1);
        let first = if upto > first {
            self.stream.trim_before(upto).await?
        } else {
            first
        };
        let held_back = old.saturating_sub(allowed);
        self.metrics.first_seq.set(first as i64);
        self.metrics.retention_held_back.set(held_back as i64);
        Ok(Pass {
            held_back,
            held_by: (held_back > 0).then_some(held_by),
            overdue: oldest_event_age(&*self.stream, &self.metrics, first)
                .await
                .is_some_and(|age| age > self.keep + WARN_AFTER),
        })
    }

    /// The sequence of the snapshot every replica can load (0: none).
    async fn snapshot_covers(&self) -> Result<u64, StreamError> {
        let local = self.loadable_snapshots().await;
        if !self.publish {
            return Ok(local.iter().map(|(seq, _)| *seq).min().unwrap_or(0));
        }
        let published = self.stream.published_snapshot_seq().await?.unwrap_or(0);
        let Some((seq, path)) = local.into_iter().next().filter(|(seq, _)| *seq > published) else {
            return Ok(published);
        };
        // Only a snapshot that loads (checked above) is offered to every
        // replica: a damaged one published would keep them all from starting.
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "newest snapshot not published");
                return Ok(published);
            }
        };
        let size = bytes.len();
        self.stream.publish_snapshot(seq, bytes).await?;
        tracing::info!(seq, bytes = size, "snapshot published for other replicas");
        Ok(self.stream.published_snapshot_seq().await?.unwrap_or(0))
    }

    /// The local snapshots that load (this build's format, this stream),
    /// newest first: a file that does not (one from an older build after
    /// an upgrade, a damaged one) covers nothing. Each is decoded once.
    async fn loadable_snapshots(&self) -> Vec<(u64, PathBuf)> {
        let listed = ledger::snapshot::list(&self.snapshots).unwrap_or_default();
        let mut out = Vec::new();
        for (seq, path) in listed.iter().cloned() {
            let known = self
                .checked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&seq)
                .copied();
            let loads = match known {
                Some(loads) => loads,
                None => {
                    let (path, stream) = (path.clone(), self.stream_name.clone());
                    let loads = tokio::task::spawn_blocking(move || {
                        std::fs::read(&path)
                            .ok()
                            .is_some_and(|bytes| ledger::snapshot::decode(&bytes, &stream).is_ok_and(|p| p.seq == seq))
                    })
                    .await
                    .unwrap_or(false);
                    self.checked
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(seq, loads);
                    loads
                }
            };
            if loads {
                out.push((seq, path));
            }
        }
        // Forget the snapshots deleted since (two are kept).
        self.checked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|seq, _| listed.iter().any(|(s, _)| s == seq));
        out
    }

    fn watermark(&self) -> u64 {
        self.archived.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// On an API replica: shows the stream's first sequence and the age of its
/// oldest event, and warns when events stay past the retention period (no
/// worker deletes them: is it down?).
pub async fn watch(
    stream: Arc<dyn EventStream>,
    metrics: Arc<Metrics>,
    keep: Duration,
    every: Duration,
    stop: CancellationToken,
) {
    let mut warned_at: Option<tokio::time::Instant> = None;
    loop {
        if let Ok(first) = stream.first_seq().await {
            metrics.first_seq.set(first as i64);
            let age = oldest_event_age(&*stream, &metrics, first).await;
            if age.is_some_and(|age| age > keep + WARN_AFTER) && warned_at.is_none_or(|at| at.elapsed() >= WARN_AFTER) {
                tracing::warn!(
                    oldest_event_age_secs = age.unwrap_or_default().as_secs(),
                    retention_secs = keep.as_secs(),
                    "events older than the retention period are still on the stream: is the worker running?"
                );
                warned_at = Some(tokio::time::Instant::now());
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// How long ago the event at `first` (the oldest on the stream) was
/// stored, also set as `nodai_stream_oldest_event_age_seconds`.
async fn oldest_event_age(stream: &dyn EventStream, metrics: &Metrics, first: u64) -> Option<Duration> {
    let stored = stream.record_at(first).await.ok().flatten().map(|r| r.stored_micros);
    let age = stored.map(|at| Duration::from_micros((chrono::Utc::now().timestamp_micros() - at).max(0) as u64));
    metrics.oldest_event_age.set(age.map_or(0, |age| age.as_secs() as i64));
    age
}

/// The first sequence in `first..=last` stored at or after `cutoff`
/// (micros), or `last + 1` if none: stored times rise with the sequence
/// (the writer's clock, or the NATS leader's), so a binary search finds it
/// in a few dozen reads.
pub async fn first_stored_after(
    stream: &dyn EventStream,
    first: u64,
    last: u64,
    cutoff: i64,
) -> Result<u64, StreamError> {
    let (mut low, mut high) = (first, last + 1);
    while low < high {
        let middle = low + (high - low) / 2;
        match stream.record_at(middle).await? {
            Some(record) if record.stored_micros >= cutoff => high = middle,
            // Stored before the cutoff, or a gap (a message deleted by hand).
            _ => low = middle + 1,
        }
    }
    Ok(low)
}
