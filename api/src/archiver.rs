//! The worker's archiver: follows the stream from the archive's watermark
//! and writes every `query.recorded` as a Parquet row (see
//! [`ledger::archive`] for how that stays exactly once through crashes).
//! It flushes every `--archive-flush-secs`, when a million rows are
//! pending, and at shutdown after catching up with the stream; closed hours
//! are compacted after each flush.

use futures::StreamExt;
use ingest::{Event, EventStream};
use ledger::archive::{Archive, Row};
use ledger::Projection;
use std::sync::RwLock;

use crate::follower::Progress;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Rows held before a flush regardless of the interval.
const MAX_PENDING: usize = 1_000_000;
/// Events may arrive this late for an hour before it is compacted.
const COMPACT_GRACE: chrono::Duration = chrono::Duration::minutes(10);
/// How long the final flush waits to catch up with the stream.
const FINAL_CATCH_UP: Duration = Duration::from_secs(10);

pub struct Archiver {
    archive: Option<Archive>,
    pending: Vec<Row>,
    /// The last sequence read: the next flush covers up to here.
    through: u64,
    /// The projection decides what is a duplicate of an earlier event
    /// (stored twice past the stream's own window): the archiver skips the
    /// sequences it marked, once it has applied them.
    projection: Arc<RwLock<Projection>>,
    progress: Arc<Progress>,
    metrics: Arc<Metrics>,
}

impl Archiver {
    pub async fn open(
        dir: PathBuf,
        projection: Arc<RwLock<Projection>>,
        progress: Arc<Progress>,
        metrics: Arc<Metrics>,
    ) -> Result<Archiver, ledger::Error> {
        let archive = tokio::task::spawn_blocking(move || Archive::open(&dir))
            .await
            .map_err(|e| ledger::Error::Io {
                path: PathBuf::new(),
                source: std::io::Error::other(e),
            })??;
        tracing::info!(watermark = archive.watermark(), "archive open");
        Ok(Archiver {
            through: archive.watermark(),
            archive: Some(archive),
            pending: Vec::new(),
            projection,
            progress,
            metrics,
        })
    }

    /// Runs until `shutdown`, then catches up with the stream and flushes.
    pub async fn run(mut self, stream: Arc<dyn EventStream>, every: Duration, shutdown: CancellationToken) {
        let mut next_flush = Instant::now() + every;
        let mut backoff = Duration::from_millis(100);
        'follow: while !shutdown.is_cancelled() {
            let mut records = match stream.follow(self.through + 1).await {
                Ok(records) => records,
                Err(error) => {
                    tracing::warn!(%error, "archiver cannot follow the stream; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break 'follow,
                    _ = tokio::time::sleep_until(next_flush) => {
                        self.flush().await;
                        next_flush = Instant::now() + every;
                    }
                    next = records.next() => match next {
                        Some(Ok(record)) => {
                            backoff = Duration::from_millis(100);
                            self.take(&record);
                            if self.pending.len() >= MAX_PENDING {
                                self.flush().await;
                            }
                        }
                        Some(Err(error)) => {
                            tracing::error!(%error, through = self.through, "archiver lost the stream; re-following");
                            continue 'follow;
                        }
                        None => continue 'follow,
                    }
                }
            }
        }
        self.catch_up(&stream).await;
        self.flush().await;
    }

    /// Reads on to the stream's last sequence at shutdown, so the final
    /// flush holds every query answered before it.
    async fn catch_up(&mut self, stream: &Arc<dyn EventStream>) {
        let Ok(last) = stream.last_seq().await else { return };
        if last <= self.through {
            return;
        }
        let Ok(mut records) = stream.replay(self.through + 1).await else {
            return;
        };
        let deadline = Instant::now() + FINAL_CATCH_UP;
        while self.through < last {
            match tokio::time::timeout_at(deadline, records.next()).await {
                Ok(Some(Ok(record))) => self.take(&record),
                _ => break,
            }
        }
    }

    fn take(&mut self, record: &ingest::Record) {
        self.through = record.seq;
        let Ok(envelope) = record.envelope() else { return };
        if let Ok(Event::QueryRecorded(q)) = envelope.event() {
            self.pending.push(Row {
                seq: record.seq,
                event_id: envelope.id,
                ts: envelope.ts,
                key_id: q.key_id,
                workflow_id: q.workflow_id,
                status_code: q.status_code,
                cost: q.cost,
                duration_ms: q.duration_ms,
            });
        }
    }

    /// Drops the pending rows the projection found to be duplicates, once
    /// it has applied everything pending; false if it has not within a few
    /// seconds (the flush waits for the next turn then).
    async fn drop_duplicates(&mut self) -> bool {
        if !self.progress.wait_for(self.through, Duration::from_secs(5)).await {
            tracing::warn!(
                through = self.through,
                applied = self.progress.applied(),
                "archive flush waits for the projection to catch up"
            );
            return false;
        }
        let projection = self.projection.read().unwrap_or_else(|e| e.into_inner());
        let Some(first) = self.pending.first().map(|r| r.seq) else {
            return true;
        };
        if projection.duplicates.range(first..=self.through).next().is_some() {
            self.pending.retain(|r| !projection.duplicates.contains(&r.seq));
        }
        true
    }

    /// Writes what is pending and compacts closed hours. On failure the rows
    /// stay pending and the next flush tries again.
    async fn flush(&mut self) {
        if !self.drop_duplicates().await {
            return;
        }
        let Some(mut archive) = self.archive.take() else { return };
        if self.through <= archive.watermark() {
            self.archive = Some(archive);
            return;
        }
        let (rows, through) = (std::mem::take(&mut self.pending), self.through);
        let started = std::time::Instant::now();
        let flushed = tokio::task::spawn_blocking(move || {
            let result = archive.write(&rows, through).and_then(|written| {
                let compacted = archive.compact(chrono::Utc::now() - COMPACT_GRACE)?;
                Ok((written, compacted))
            });
            (archive, rows, result)
        })
        .await;
        let (archive, rows, result) = match flushed {
            Ok(flushed) => flushed,
            Err(error) => {
                tracing::error!(%error, "archive flush task failed; archiving stops until a restart");
                return;
            }
        };
        match result {
            Ok((written, compacted)) => {
                self.metrics.archive_rows.inc_by(written.rows as u64);
                self.metrics.archive_watermark.set(through as i64);
                tracing::info!(
                    through,
                    rows = written.rows,
                    files = written.files,
                    bytes = written.bytes,
                    compacted_hours = compacted.files,
                    ms = started.elapsed().as_millis() as u64,
                    "archive flushed"
                );
            }
            Err(error) => {
                tracing::error!(%error, through, "archive flush failed; retrying at the next flush");
                self.pending = rows;
            }
        }
        self.archive = Some(archive);
    }
}
