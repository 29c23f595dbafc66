//! The worker's archiver: writes every `query.recorded` as a Parquet row
//! (see [`ledger::archive`] for how that stays exactly once through
//! crashes). It flushes every `--archive-flush-secs`, when a million rows
//! are pending, and at shutdown after catching up with the stream; closed
//! hours are compacted after each flush.
//!
//! Each record is decoded once: the follower, having folded it, hands the
//! archiver its row through a [`Feed`]. Whatever the feed does not carry
//! (the stretch between the archive's watermark and the snapshot the
//! follower started from, or records dropped while the archiver was busy
//! flushing and the feed was full) the archiver reads from the stream
//! itself, so the rows it takes are always contiguous.

use chrono::{DateTime, Utc};
use futures::StreamExt;
use ingest::events::QueryRecorded;
use ingest::{Event, EventId, EventStream};
use ledger::archive::{Archive, Row};
use ledger::Projection;
use std::sync::RwLock;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Rows held before a flush regardless of the interval.
const MAX_PENDING: usize = 1_000_000;
/// Events may arrive this late for an hour before it is compacted.
const COMPACT_GRACE: chrono::Duration = chrono::Duration::minutes(10);
/// How long the final flush waits to catch up with the stream.
const FINAL_CATCH_UP: Duration = Duration::from_secs(10);
/// Batches the feed holds while the archiver is busy (a batch is what the
/// follower folded under one lock, up to 1024 records); past that the
/// follower drops them and the archiver reads them from the stream.
const FEED_CAPACITY: usize = 256;

/// Cuts `archive` back to the stream's last event if the archive's newest
/// row at or before it is the stream's own (same sequence, same event id),
/// which it can be only at or after the stream's `first` sequence. False
/// when that cannot be shown: the caller sets the archive aside.
async fn cut_back_to_the_stream(
    archive: &mut Archive,
    stream: &Arc<dyn EventStream>,
    first: u64,
) -> Result<bool, ledger::Error> {
    let unreadable = |e: ingest::StreamError| ledger::Error::Io {
        path: PathBuf::from("watermark"),
        source: std::io::Error::other(format!("cannot read the stream: {e}")),
    };
    let last = stream.last_seq().await.map_err(unreadable)?;
    let Some((seq, id)) = archive.last_row_until(last)? else {
        return Ok(false);
    };
    if seq < first {
        return Ok(false);
    }
    let theirs = stream
        .record_at(seq)
        .await
        .map_err(unreadable)?
        .map(|r| r.id.to_string());
    if theirs.as_deref() != Some(id.as_str()) {
        return Ok(false);
    }
    let anchor = stream.record_at(last).await.map_err(unreadable)?.map(|r| r.id);
    let watermark = archive.watermark();
    archive.cut_back(last, anchor)?;
    tracing::warn!(
        watermark,
        stream_last_seq = last,
        "the stream lost the events after sequence {last} (an unsynced tail); the archive, which held them, is cut back to there and goes on from the stream"
    );
    Ok(true)
}

/// Records `first..=last` as the follower folded them: the rows of the
/// `query.recorded` among them that were applied for the first time.
#[derive(Debug)]
pub struct Fed {
    pub first: u64,
    pub last: u64,
    /// The id of the event at `last`, for the watermark.
    pub last_id: EventId,
    pub rows: Vec<Row>,
}

/// The follower's end of the feed. Never blocks it: a full feed drops the
/// batch, and the archiver fills the gap from the stream.
#[derive(Debug, Clone)]
pub struct FeedSender(mpsc::Sender<Fed>);

impl FeedSender {
    pub fn send(&self, fed: Fed) {
        let _ = self.0.try_send(fed);
    }
}

/// The archiver's end.
#[derive(Debug)]
pub struct Feed(mpsc::Receiver<Fed>);

pub fn feed() -> (FeedSender, Feed) {
    let (tx, rx) = mpsc::channel(FEED_CAPACITY);
    (FeedSender(tx), Feed(rx))
}

async fn open_archive(dir: PathBuf) -> Result<Archive, ledger::Error> {
    let at = dir.clone();
    tokio::task::spawn_blocking(move || Archive::open(&dir))
        .await
        .map_err(|e| ledger::Error::Io {
            path: at,
            source: std::io::Error::other(e),
        })?
}

pub struct Archiver {
    archive: Option<Archive>,
    /// The archive's durable watermark, shared with retention: the stream
    /// is deleted only up to what a power cut would leave archived.
    durable: Arc<std::sync::atomic::AtomicU64>,
    pending: Vec<Row>,
    /// The last sequence read: the next flush covers up to here.
    through: u64,
    /// The id of the event at `through`.
    through_id: Option<EventId>,
    /// The projection decides what is a duplicate of an earlier event
    /// (stored twice past the stream's own window). Fed rows come without
    /// them; rows read from the stream are checked against the sequences it
    /// marked (it has applied them: the follower feeds only what it folded).
    projection: Arc<RwLock<Projection>>,
    metrics: Arc<Metrics>,
    /// The last flush or compaction failed: the next failure is not logged again.
    flush_failing: bool,
    compact_failing: bool,
    read_failing: bool,
    /// Where flushed files go when the archive is on object storage (they
    /// are then not compacted, and not kept here).
    offsite: Option<crate::offsite::Offsite>,
    upload_failing: bool,
}

impl Archiver {
    /// The archive's durable watermark (see [`Archive::durable_watermark`]),
    /// as it moves.
    pub fn durable_watermark(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.durable.clone()
    }

    /// Opens the archive in `dir`, checked against `stream`: a watermark
    /// ahead of the stream, or naming another event than the one the
    /// stream holds at its sequence, is of another history of the stream
    /// (a log that lost its tail, a stream deleted and made again) and
    /// would skip this one's rows. That archive is set aside whole and a
    /// new one written from the stream's start.
    pub async fn open(
        dir: PathBuf,
        stream: &Arc<dyn EventStream>,
        projection: Arc<RwLock<Projection>>,
        metrics: Arc<Metrics>,
        offsite: Option<crate::offsite::Offsite>,
    ) -> Result<Archiver, ledger::Error> {
        let mut archive = open_archive(dir.clone()).await?;
        let (watermark, anchor) = (archive.watermark(), archive.anchor());
        let unreadable = |what: &str, e: ingest::StreamError| ledger::Error::Io {
            path: dir.join("watermark"),
            source: std::io::Error::other(format!("cannot read the stream to {what}: {e}")),
        };
        let first = stream
            .first_seq()
            .await
            .map_err(|e| unreadable("find its first event", e))?;
        if let Some(offsite) = &offsite {
            // On object storage the archive is what was uploaded, by
            // whichever worker: this one's data dir only stages flushes.
            let (seq, anchor) = offsite.mark().await.map_err(|e| ledger::Error::Io {
                path: dir.join("watermark"),
                source: std::io::Error::other(format!("cannot read the archive at {}: {e}", offsite.url)),
            })?;
            if seq > 0 && seq >= first {
                let found = stream
                    .record_at(seq)
                    .await
                    .map(|r| r.map(|r| r.id))
                    .map_err(|e| unreadable("check the archive's watermark", e))?;
                if found.is_none() || (anchor.is_some() && found != anchor) {
                    // Archiving the stream again would put its rows under
                    // other names beside the ones uploaded: refuse.
                    return Err(ledger::Error::InvalidArchive(format!(
                        "the archive at {} is of another history of the stream: its watermark, sequence {seq}, names {anchor:?} and the stream holds {found:?} there; move its objects away, then start again to archive this stream from its start",
                        offsite.url
                    )));
                }
            }
            if archive.watermark() != seq || archive.anchor() != anchor {
                tracing::info!(
                    staged = archive.watermark(),
                    uploaded = seq,
                    "the archive on object storage is at another sequence than this worker's staging; taking up from it"
                );
                let mut staging = archive;
                archive = tokio::task::spawn_blocking(move || staging.restart_at(seq, anchor).map(|()| staging))
                    .await
                    .map_err(|e| ledger::Error::InvalidArchive(format!("the staging task failed: {e}")))??;
            }
        }
        // A watermark before the stream's first event cannot be checked:
        // retention deleted its event (only after some archive took it).
        if offsite.is_none() && watermark > 0 && watermark >= first {
            let found = stream
                .record_at(watermark)
                .await
                .map(|r| r.map(|r| r.id))
                .map_err(|e| unreadable("check the archive's watermark", e))?;
            let why = match (anchor, found) {
                (_, None) => Some(format!(
                    "the stream holds no event at its watermark, sequence {watermark}"
                )),
                (Some(ours), Some(theirs)) if ours != theirs => Some(format!(
                    "the stream holds event {theirs} at its watermark, sequence {watermark}, not {ours}"
                )),
                // Written before watermarks named their event: this is
                // all there is to check; the next flush names it.
                _ => None,
            };
            // On a stream whose head retention deleted, rows before its
            // first event cannot be archived again: an archive that is of
            // this stream's history up to its end (a log that lost an
            // unsynced tail) is cut back to the end rather than set aside.
            let why = match why {
                Some(why) if first > 1 && found.is_none() => {
                    match cut_back_to_the_stream(&mut archive, stream, first).await {
                        Ok(true) => None,
                        Ok(false) => Some(why),
                        Err(error) => {
                            tracing::warn!(%error, "cannot cut the archive back to the stream's end");
                            Some(why)
                        }
                    }
                }
                other => other,
            };
            if let Some(why) = why {
                let moving = dir.clone();
                let aside = tokio::task::spawn_blocking(move || Archive::set_aside(&moving))
                    .await
                    .map_err(|e| ledger::Error::Io {
                        path: dir.clone(),
                        source: std::io::Error::other(e),
                    })??;
                tracing::warn!(
                    why,
                    set_aside = %aside.display(),
                    "the archive is of another history of the stream; set aside, archiving the stream again from its start"
                );
                archive = open_archive(dir.clone()).await?;
            }
        }
        // What retention deleted before this archive took it was taken
        // by the archive of the worker that let it be deleted.
        let through = archive.watermark().max(first - 1);
        if through > archive.watermark() {
            tracing::warn!(
                watermark = archive.watermark(),
                first_seq = first,
                "the stream no longer holds the events after this archive's watermark (retention deleted them); \
                 this archive goes on from the stream's first event, and the rows before it are in the archive of the worker that ran then"
            );
        }
        tracing::info!(watermark = archive.watermark(), "archive open");
        // On object storage, what is durable is what was uploaded; a
        // crash may have left files here that are not yet.
        let durable = match &offsite {
            None => archive.durable_watermark(),
            Some(offsite) => offsite.upload(&dir).await.map_err(|e| ledger::Error::Io {
                path: dir.clone(),
                source: std::io::Error::other(format!("cannot upload the archive to {}: {e}", offsite.url)),
            })?,
        };
        Ok(Archiver {
            durable: Arc::new(std::sync::atomic::AtomicU64::new(durable)),
            offsite,
            upload_failing: false,
            through,
            through_id: (through == archive.watermark()).then(|| archive.anchor()).flatten(),
            archive: Some(archive),
            pending: Vec::new(),
            projection,
            metrics,
            flush_failing: false,
            compact_failing: false,
            read_failing: false,
        })
    }

    /// Runs until `shutdown`, then takes what the follower folds until it
    /// stops, catches up with the stream and flushes.
    pub async fn run(self, stream: Arc<dyn EventStream>, mut feed: Feed, every: Duration, shutdown: CancellationToken) {
        self.run_on(stream, &mut feed, every, shutdown).await
    }

    /// Shares its durable watermark through `shared` (what retention reads)
    /// from now on.
    pub fn sharing(self, shared: Arc<std::sync::atomic::AtomicU64>) -> Archiver {
        shared.store(
            self.durable.load(std::sync::atomic::Ordering::Acquire),
            std::sync::atomic::Ordering::Release,
        );
        Archiver {
            durable: shared,
            ..self
        }
    }

    /// [`Self::run`] on a feed it borrows (the archive on object storage is
    /// run only while this worker holds the lease, again at each takeover).
    pub async fn run_on(
        mut self,
        stream: Arc<dyn EventStream>,
        feed: &mut Feed,
        every: Duration,
        shutdown: CancellationToken,
    ) {
        let mut next_flush = Instant::now() + every;
        // The follower starts from its snapshot: what lies between the
        // archive's watermark and there, it will never feed.
        let start = self.projection.read().unwrap_or_else(|e| e.into_inner()).seq;
        if start > self.through {
            self.fill(&stream, start, &shutdown).await;
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(next_flush) => {
                    self.flush().await;
                    next_flush = Instant::now() + every;
                }
                fed = feed.0.recv() => match fed {
                    Some(fed) => self.fed(&stream, fed, &shutdown).await,
                    None => break,
                },
            }
        }
        // The follower applies what is left, then ends and closes the feed.
        let never = CancellationToken::new();
        let drain = async {
            while let Some(fed) = feed.0.recv().await {
                self.fed(&stream, fed, &never).await;
            }
        };
        let _ = tokio::time::timeout(FINAL_CATCH_UP, drain).await;
        self.catch_up(&stream).await;
        self.flush().await;
    }

    /// Takes a fed batch, reading first from the stream what the feed
    /// skipped.
    async fn fed(&mut self, stream: &Arc<dyn EventStream>, fed: Fed, shutdown: &CancellationToken) {
        if fed.last <= self.through {
            return;
        }
        if fed.first > self.through + 1 && !self.fill(stream, fed.first - 1, shutdown).await {
            return;
        }
        let through = self.through;
        self.pending
            .extend(fed.rows.into_iter().filter(|row| row.seq > through));
        self.through = fed.last;
        self.through_id = Some(fed.last_id);
        if self.pending.len() >= MAX_PENDING {
            self.flush().await;
        }
    }

    /// Reads the stream from the watermark through `upto`, which the
    /// follower has applied; false if shut down first.
    async fn fill(&mut self, stream: &Arc<dyn EventStream>, upto: u64, shutdown: &CancellationToken) -> bool {
        // Applied through `upto`, so the projection knows every duplicate there.
        let duplicates: Vec<u64> = {
            let projection = self.projection.read().unwrap_or_else(|e| e.into_inner());
            projection.duplicates.range(self.through + 1..=upto).copied().collect()
        };
        let mut backoff = Duration::from_millis(100);
        while self.through < upto {
            let mut records = match stream.replay(self.through + 1).await {
                Ok(records) => records,
                Err(error) => {
                    tracing::warn!(%error, through = self.through, "archiver cannot read the stream; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            while self.through < upto {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return false,
                    next = records.next() => next,
                };
                match next {
                    Some(Ok(record)) => {
                        if self.read_failing {
                            tracing::info!(seq = record.seq, "archiver reads the stream again");
                            self.read_failing = false;
                        }
                        self.through = record.seq;
                        self.through_id = Some(record.id);
                        if duplicates.binary_search(&record.seq).is_err() {
                            self.pending.extend(row(&record));
                        }
                    }
                    Some(Err(ingest::StreamError::Trimmed { first, .. })) => {
                        // A standby's archiver that fell behind retention:
                        // the active worker's archive took what was deleted.
                        tracing::warn!(
                            through = self.through,
                            first_seq = first,
                            "the stream no longer holds the events after this archive's watermark (retention deleted them); \
                             this archive goes on from the stream's first event, and the rows before it are in the active worker's archive"
                        );
                        self.through = first - 1;
                        self.through_id = None;
                        break;
                    }
                    Some(Err(error)) => {
                        // A record that does not read (damage in a sealed
                        // segment, a broken connection): read again after
                        // a pause, never in a hot loop, logged once.
                        if !self.read_failing {
                            tracing::error!(%error, through = self.through, "archiver cannot read the stream; reading again with back-off");
                        }
                        self.read_failing = true;
                        self.metrics.archive_errors.inc();
                        tokio::select! {
                            _ = shutdown.cancelled() => return false,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        break;
                    }
                    None => break,
                }
            }
        }
        true
    }

    /// At shutdown, if the feed stopped short: reads on to what the
    /// projection applied, so the final flush holds every query answered
    /// before it.
    async fn catch_up(&mut self, stream: &Arc<dyn EventStream>) {
        let applied = self.projection.read().unwrap_or_else(|e| e.into_inner()).seq;
        if applied > self.through {
            let never = CancellationToken::new();
            let _ = tokio::time::timeout(FINAL_CATCH_UP, self.fill(stream, applied, &never)).await;
        }
    }

    /// Writes what is pending and compacts closed hours. On failure the rows
    /// stay pending and the next flush tries again.
    async fn flush(&mut self) {
        let Some(mut archive) = self.archive.take() else { return };
        if self.through <= archive.watermark() {
            // Nothing new; an upload that failed is tried again.
            if self.upload_failing {
                self.upload(archive.root()).await;
            }
            self.archive = Some(archive);
            return;
        }
        let (rows, through, through_id) = (std::mem::take(&mut self.pending), self.through, self.through_id);
        let started = std::time::Instant::now();
        let compacts = self.offsite.is_none();
        let flushed = tokio::task::spawn_blocking(move || {
            let written = archive.write(&rows, through, through_id);
            // Compaction is housekeeping: its failure neither fails the
            // flush nor keeps the flushed rows.
            let compacted = (written.is_ok() && compacts).then(|| archive.compact(chrono::Utc::now() - COMPACT_GRACE));
            let rows = if written.is_ok() { Vec::new() } else { rows };
            (archive, rows, written, compacted)
        })
        .await;
        let (archive, rows, written, compacted) = match flushed {
            Ok(flushed) => flushed,
            Err(error) => {
                tracing::error!(%error, "archive flush task failed; archiving stops until a restart");
                return;
            }
        };
        if self.offsite.is_none() {
            self.durable
                .store(archive.durable_watermark(), std::sync::atomic::Ordering::Release);
        }
        match written {
            Ok(written) => {
                self.metrics.archive_rows.inc_by(written.rows as u64);
                self.metrics.archive_watermark.set(through as i64);
                self.flush_failing = false;
                tracing::info!(
                    through,
                    rows = written.rows,
                    files = written.files,
                    bytes = written.bytes,
                    ms = started.elapsed().as_millis() as u64,
                    "archive flushed"
                );
            }
            Err(error) => {
                // Logged when it starts failing, not at every retry.
                if !self.flush_failing {
                    tracing::error!(%error, through, "archive flush failed; retrying at each flush");
                }
                self.flush_failing = true;
                self.metrics.archive_errors.inc();
                self.pending = rows;
            }
        }
        match compacted {
            Some(Ok(compacted)) => {
                self.metrics.archive_quarantined.inc_by(compacted.quarantined as u64);
                if compacted.files > 0 {
                    tracing::info!(
                        hours = compacted.files,
                        rows = compacted.rows,
                        "archive hours compacted"
                    );
                }
                self.compact_failing = false;
            }
            Some(Err(error)) => {
                if !self.compact_failing {
                    tracing::warn!(%error, "archive compaction failed; the hours stay uncompacted and it is tried at each flush");
                }
                self.compact_failing = true;
                self.metrics.archive_errors.inc();
            }
            None => {}
        }
        self.upload(archive.root()).await;
        self.archive = Some(archive);
    }

    /// On object storage: uploads what the last flushes wrote at `root`.
    async fn upload(&mut self, root: &std::path::Path) {
        let Some(offsite) = &self.offsite else { return };
        match offsite.upload(root).await {
            Ok(uploaded) => {
                self.durable.store(uploaded, std::sync::atomic::Ordering::Release);
                self.upload_failing = false;
            }
            Err(error) => {
                if !self.upload_failing {
                    tracing::error!(%error, url = offsite.url, "archive upload failed; the files stay here and are uploaded at the next flush");
                }
                self.upload_failing = true;
                self.metrics.archive_errors.inc();
            }
        }
    }
}

/// The row of a `query.recorded` record, decoded.
pub(crate) fn row(record: &ingest::Record) -> Option<Row> {
    let envelope = record.envelope().ok()?;
    match envelope.event() {
        Ok(Event::QueryRecorded(q)) => Some(query_row(record.seq, envelope.id, envelope.ts, q)),
        _ => None,
    }
}

/// The row of a `query.recorded` stored at `seq`.
pub fn query_row(seq: u64, event_id: EventId, ts: DateTime<Utc>, q: QueryRecorded) -> Row {
    Row {
        seq,
        event_id,
        ts,
        key_id: q.key_id,
        workflow_id: q.workflow_id,
        status_code: q.status_code,
        cost: q.cost,
        duration_ms: q.duration_ms,
        input_tokens: q.input_tokens,
        output_tokens: q.output_tokens,
        customer_id: q.customer_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingest::embedded::{EmbeddedLog, Options};
    use ingest::{Micros, Outgoing};

    fn query(n: u64) -> Event {
        Event::QueryRecorded(QueryRecorded {
            request_id: format!("req_{n}"),
            key_id: "key_a".into(),
            workflow_id: "echo".into(),
            status_code: 200,
            cost: Micros::new(1000),
            duration_ms: n,
            reported_cost: None,
            record_by: None,
            customer_id: None,
            input_tokens: 0,
            output_tokens: 0,
            authorization_id: None,
        })
    }

    /// The feed skipped some records (a full feed, or a watermark behind
    /// the snapshot): the archiver reads them from the stream, still skips
    /// what the projection found to be a duplicate, and writes each
    /// first-time query exactly once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn what_the_feed_skipped_is_read_from_the_stream() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = Options::new(dir.path().join("stream"));
        options.duplicate_window = Duration::ZERO;
        let log: Arc<dyn EventStream> = Arc::new(EmbeddedLog::open(options).await.unwrap());
        let mut outgoing: Vec<Outgoing> = (1..=10)
            .map(|n| Outgoing::new(&query(n), Utc::now()).unwrap())
            .collect();
        // Seq 11: seq 5's event stored again (past the stream's window); then seq 12.
        outgoing.push(outgoing[4].clone());
        outgoing.push(Outgoing::new(&query(11), Utc::now()).unwrap());
        for event in &outgoing {
            log.append(event).await.unwrap();
        }

        let mut projection = Projection::default();
        let mut records = log.replay(1).await.unwrap();
        let mut rows = Vec::new();
        while let Some(record) = records.next().await {
            let record = record.unwrap();
            let envelope = record.envelope().unwrap();
            let event = envelope.event().unwrap();
            let first_time = projection.apply(record.seq, envelope.id, envelope.ts, &event);
            let Event::QueryRecorded(q) = event else { unreachable!() };
            if first_time {
                rows.push(query_row(record.seq, envelope.id, envelope.ts, q));
            }
        }
        assert_eq!(projection.duplicates.iter().copied().collect::<Vec<_>>(), vec![11]);

        let projection = Arc::new(RwLock::new(projection));
        let archive_dir = dir.path().join("archive");
        let archiver = Archiver::open(archive_dir.clone(), &log, projection, Arc::new(Metrics::new()), None)
            .await
            .unwrap();
        let (tx, feed) = feed();
        // Fed: 1 and 2, then 12; 3 to 11 never reach the feed. Seq 1 comes
        // again in the second batch: taken once.
        let row = |seq: u64| rows.iter().find(|r| r.seq == seq).unwrap().clone();
        let id = |seq: usize| outgoing[seq - 1].id;
        tx.send(Fed {
            first: 1,
            last: 2,
            last_id: id(2),
            rows: vec![row(1), row(2)],
        });
        tx.send(Fed {
            first: 1,
            last: 1,
            last_id: id(1),
            rows: vec![row(1)],
        });
        tx.send(Fed {
            first: 12,
            last: 12,
            last_id: id(12),
            rows: vec![row(12)],
        });
        drop(tx);
        archiver
            .run(log.clone(), feed, Duration::from_secs(3600), CancellationToken::new())
            .await;

        let mut rows = ledger::archive::read_ids(&archive_dir).unwrap();
        rows.sort_by_key(|&(_, seq)| seq);
        let seqs: Vec<i64> = rows.iter().map(|&(_, seq)| seq).collect();
        let expected: Vec<i64> = (1..=10).chain([12]).collect();
        assert_eq!(seqs, expected, "each query once, the duplicate not at all");
        let ids: Vec<String> = outgoing[..10]
            .iter()
            .chain([&outgoing[11]])
            .map(|o| o.id.to_string())
            .collect();
        assert_eq!(rows.into_iter().map(|(id, _)| id).collect::<Vec<_>>(), ids);
        log.close().await;
    }

    /// Behind the snapshot the follower started from, with nothing new on
    /// the stream: the archiver catches up at once, not at the next event.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_archive_behind_the_snapshot_catches_up_without_new_events() {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventStream> = Arc::new(
            EmbeddedLog::open(Options::new(dir.path().join("stream")))
                .await
                .unwrap(),
        );
        let mut projection = Projection::default();
        for n in 1..=5 {
            let event = query(n);
            let outgoing = Outgoing::new(&event, Utc::now()).unwrap();
            let seq = log.append(&outgoing).await.unwrap().seq;
            projection.apply(seq, outgoing.id, Utc::now(), &event);
        }
        let archive_dir = dir.path().join("archive");
        let archiver = Archiver::open(
            archive_dir.clone(),
            &log,
            Arc::new(RwLock::new(projection)),
            Arc::new(Metrics::new()),
            None,
        )
        .await
        .unwrap();
        let (tx, feed) = feed();
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(archiver.run(log.clone(), feed, Duration::from_millis(20), shutdown.clone()));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let rows = ledger::archive::read_ids(&archive_dir).unwrap_or_default().len();
            if rows == 5 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{rows} of 5 rows archived while the feed stayed quiet"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // As the follower does at shutdown: stop, then close the feed.
        shutdown.cancel();
        drop(tx);
        running.await.unwrap();
        log.close().await;
    }

    /// An archive whose watermark names another event than the stream holds
    /// there (here: a stream made again, with other events) would skip this
    /// stream's rows: it is set aside and the stream archived from its start.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_archive_of_another_history_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let archive_dir = dir.path().join("archive");
        let mut histories = Vec::new();
        for (name, events) in [("first", 5), ("second", 8)] {
            let log: Arc<dyn EventStream> =
                Arc::new(EmbeddedLog::open(Options::new(dir.path().join(name))).await.unwrap());
            let mut projection = Projection::default();
            let mut ids = Vec::new();
            for n in 1..=events {
                let event = query(n);
                let outgoing = Outgoing::new(&event, Utc::now()).unwrap();
                let seq = log.append(&outgoing).await.unwrap().seq;
                projection.apply(seq, outgoing.id, Utc::now(), &event);
                ids.push(outgoing.id.to_string());
            }
            let archiver = Archiver::open(
                archive_dir.clone(),
                &log,
                Arc::new(RwLock::new(projection)),
                Arc::new(Metrics::new()),
                None,
            )
            .await
            .unwrap();
            let (tx, feed) = feed();
            drop(tx);
            // Nothing fed: the archiver reads the stream up to the projection.
            archiver
                .run(log.clone(), feed, Duration::from_secs(3600), CancellationToken::new())
                .await;
            log.close().await;
            let mut archived: Vec<String> = ledger::archive::read_ids(&archive_dir)
                .unwrap()
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            archived.sort();
            ids.sort();
            assert_eq!(archived, ids, "{name}: exactly this stream's rows");
            histories.push(name);
        }
        let set_aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("archive.set-aside-"))
            .collect();
        assert_eq!(set_aside.len(), 1, "the first history's archive, kept aside");
        assert_eq!(ledger::archive::read_ids(&set_aside[0].path()).unwrap().len(), 5);
    }
}
