//! The single writer of the embedded log. Appenders queue requests; the
//! first appender to find no leader becomes the leader: it takes
//! everything queued at once, encodes the batch into one buffer, writes it
//! with one `write` (and, under `fsync=always`, one `fdatasync`), answers
//! every request of the batch, and goes on until the queue is empty. Under
//! load a batch holds many events, so the per-event cost of the syscalls
//! nearly vanishes: this is the group commit. The leader is whichever
//! request task got there first, on its own thread: no hand-off to a
//! writer thread and back, which on two busy cores cost a fifth of a
//! query's CPU in context switches.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::oneshot;

use super::format;
use super::{FsyncPolicy, Segment, Shared, SubjectKey, INDEX_EVERY};
use crate::envelope::{EventId, Outgoing};
use crate::error::StreamError;
use crate::stream::Appended;

pub(super) enum Request {
    Append {
        event: Outgoing,
        expected: Option<u64>,
        /// Taken when the batch is answered.
        reply: Option<oneshot::Sender<Result<Appended, StreamError>>>,
    },
    LastSubjectSeq {
        subject: String,
        reply: Option<oneshot::Sender<Result<u64, StreamError>>>,
    },
}

/// Everything the writer alone owns.
pub(super) struct Writer {
    pub shared: Arc<Shared>,
    pub file: File,
    pub path: PathBuf,
    pub segment_first_seq: u64,
    /// Bytes in the current segment, header included.
    pub len: u64,
    pub next_seq: u64,
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
    /// The last sequence on each subject, for conditional appends.
    pub subjects: HashMap<SubjectKey, u64>,
    /// Stored times come from here (see `Options::clock`).
    pub clock: fn() -> i64,
    /// Ids appended within the duplicate window, with their sequences.
    pub recent_ids: HashMap<EventId, u64>,
    /// The same ids in append order with their append time (µs), to expire them.
    pub recent_order: VecDeque<(i64, EventId)>,
    pub window_micros: i64,
    /// Set after an i/o error the writer could not undo: the file may hold a
    /// partial batch, so nothing more is appended until a restart recovers it.
    pub failed: Option<String>,
    /// Scratch: the subject's sequence before the event just encoded.
    pub previous_subject_seq: Option<u64>,
    /// Scratch, kept across batches: the encoded batch, and an empty queue.
    pub buf: Vec<u8>,
    pub spare: Vec<Request>,
}

/// What one request of a batch comes to, answered after the batch is written.
enum Outcome {
    Appended(
        Option<oneshot::Sender<Result<Appended, StreamError>>>,
        Result<Appended, StreamError>,
    ),
    SubjectSeq(Option<oneshot::Sender<Result<u64, StreamError>>>, u64),
}

impl Writer {
    /// Leads until the queue is empty: takes every queued request, writes
    /// them as one batch and answers them, then looks again. Called by the
    /// appender that found no leader; the caller holds the writer's lock.
    pub fn lead(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        loop {
            let batch = {
                let mut queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
                if queue.pending.is_empty() {
                    queue.leader = false;
                    break;
                }
                let spare = std::mem::take(&mut self.spare);
                std::mem::replace(&mut queue.pending, spare)
            };
            self.spare = self.process(batch, &mut buf);
        }
        self.buf = buf;
    }

    /// At close: the last sync, whatever the policy.
    pub fn sync(&self) {
        if let Err(error) = self.file.sync_data() {
            tracing::error!(%error, path = %self.path.display(), "final sync of the event log failed");
        }
    }

    /// Handles one batch; returns the emptied vector for reuse.
    fn process(&mut self, mut batch: Vec<Request>, buf: &mut Vec<u8>) -> Vec<Request> {
        buf.clear();
        let now = (self.clock)();
        self.expire_ids(now);
        // A failed roll (disk full, too many files) refuses this batch only;
        // the next batch tries again.
        let roll_failed = self.failed.is_none() && {
            let result = self.roll_if_full();
            if let Err(error) = &result {
                tracing::error!(%error, "cannot start a new log segment; batch refused");
                self.failed = Some(format!("cannot start a new segment: {error}"));
            }
            result.is_err()
        };
        let first_seq = self.next_seq;
        // For each stored event, the subject's previous sequence, to undo a failed write.
        let mut undo: Vec<(usize, Option<u64>)> = Vec::new();
        let mut new_index: Vec<(u64, u64)> = Vec::new();
        let mut outcomes = Vec::with_capacity(batch.len());
        for (i, request) in batch.iter_mut().enumerate() {
            match request {
                Request::LastSubjectSeq { subject, reply } => {
                    let seq = self.since_trim(self.subjects.get(&SubjectKey::of(subject)).copied().unwrap_or(0));
                    outcomes.push(Outcome::SubjectSeq(reply.take(), seq));
                }
                Request::Append { event, expected, reply } => {
                    let result = self.encode_one(event, *expected, now, buf, &mut new_index);
                    if let Ok(Appended { duplicate: false, .. }) = &result {
                        undo.push((i, self.previous_subject_seq));
                    }
                    outcomes.push(Outcome::Appended(reply.take(), result));
                }
            }
        }
        if self.next_seq > first_seq {
            if let Err(error) = self.write(buf) {
                self.undo(first_seq, &batch, undo, buf.len() as u64, &error);
                let message = format!("event log write failed: {error}");
                for outcome in &mut outcomes {
                    if let Outcome::Appended(_, result) = outcome {
                        if result.as_ref().is_ok_and(|a| a.seq >= first_seq) {
                            *result = Err(StreamError::Unavailable(message.clone()));
                        }
                    }
                }
                new_index.clear();
            } else {
                self.len += buf.len() as u64;
                self.publish(new_index);
            }
        }
        for outcome in outcomes {
            // A dropped receiver is an appender that gave up; the event is stored regardless.
            match outcome {
                Outcome::Appended(Some(reply), result) => drop(reply.send(result)),
                Outcome::SubjectSeq(Some(reply), seq) => drop(reply.send(Ok(seq))),
                _ => {}
            }
        }
        if roll_failed {
            self.failed = None;
        }
        batch.clear();
        batch
    }

    /// A subject's last sequence as seen now: 0 if retention deleted it.
    fn since_trim(&self, seq: u64) -> u64 {
        if seq < self.shared.first_seq() {
            0
        } else {
            seq
        }
    }

    fn encode_one(
        &mut self,
        event: &Outgoing,
        expected: Option<u64>,
        now: i64,
        buf: &mut Vec<u8>,
        new_index: &mut Vec<(u64, u64)>,
    ) -> Result<Appended, StreamError> {
        if let Some(reason) = &self.failed {
            return Err(StreamError::Unavailable(reason.clone()));
        }
        if let Some(&seq) = self.recent_ids.get(&event.id) {
            return Ok(Appended { seq, duplicate: true });
        }
        let subject = event.subject.as_str();
        let subject_key = SubjectKey::of(subject);
        let current = self.subjects.get(&subject_key).copied();
        if let Some(expected) = expected {
            if self.since_trim(current.unwrap_or(0)) != self.since_trim(expected) {
                return Err(StreamError::Conflict {
                    subject: subject.to_owned(),
                    expected,
                });
            }
        }
        let size = format::body_len(subject, &event.payload);
        if size > format::MAX_BODY_LEN {
            return Err(StreamError::TooLarge {
                size,
                max: format::MAX_BODY_LEN,
            });
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        if (seq - self.segment_first_seq).is_multiple_of(INDEX_EVERY) {
            new_index.push((seq, self.len + buf.len() as u64));
        }
        format::encode(buf, seq, now, &event.id, subject, &event.payload);
        self.previous_subject_seq = current;
        self.subjects.insert(subject_key, seq);
        self.recent_ids.insert(event.id, seq);
        self.recent_order.push_back((now, event.id));
        Ok(Appended { seq, duplicate: false })
    }

    fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.file.write_all(buf)?;
        match self.fsync {
            FsyncPolicy::Always => self.file.sync_data()?,
            FsyncPolicy::Interval(_) => self.shared.dirty.store(true, Ordering::Release),
        }
        Ok(())
    }

    /// Takes back a batch whose write failed, so the log and the maps agree again.
    fn undo(
        &mut self,
        first_seq: u64,
        batch: &[Request],
        undo: Vec<(usize, Option<u64>)>,
        attempted: u64,
        error: &std::io::Error,
    ) {
        tracing::error!(%error, path = %self.path.display(), events = self.next_seq - first_seq, "event log write failed; batch refused");
        for (i, previous) in undo.into_iter().rev() {
            let Request::Append { event, .. } = &batch[i] else {
                continue;
            };
            let subject = SubjectKey::of(event.subject.as_str());
            match previous {
                Some(seq) => drop(self.subjects.insert(subject, seq)),
                None => drop(self.subjects.remove(&subject)),
            }
        }
        while let Some(&(_, id)) = self.recent_order.back() {
            if self.recent_ids.get(&id).is_some_and(|&seq| seq >= first_seq) {
                self.recent_ids.remove(&id);
                self.recent_order.pop_back();
            } else {
                break;
            }
        }
        self.next_seq = first_seq;
        // Cut off whatever part of the batch reached the file.
        if let Err(error) = self.file.set_len(self.len) {
            self.failed = Some(format!(
                "cannot cut back a failed write of {attempted} bytes ({error}); restart to recover the log"
            ));
        }
    }

    /// Makes a batch visible to readers: index entries first, then the sequence.
    fn publish(&self, new_index: Vec<(u64, u64)>) {
        if !new_index.is_empty() {
            let mut segments = self.shared.segments.write().unwrap_or_else(|e| e.into_inner());
            if let Some(segment) = segments.last_mut() {
                segment.index.extend(new_index);
            }
        }
        self.shared.committed.send_replace(self.next_seq - 1);
    }

    fn expire_ids(&mut self, now: i64) {
        while let Some(&(at, id)) = self.recent_order.front() {
            if now - at < self.window_micros {
                break;
            }
            self.recent_order.pop_front();
            self.recent_ids.remove(&id);
        }
    }

    /// Starts a new segment once the current one has reached its size.
    fn roll_if_full(&mut self) -> std::io::Result<()> {
        if self.len < self.segment_bytes || self.next_seq == self.segment_first_seq {
            return Ok(());
        }
        // Older segments are always durable, whatever the fsync policy.
        self.file.sync_data()?;
        let path = self.shared.dir.join(format::segment_name(self.next_seq));
        let file = create_segment(&path)?;
        let sync_clone = file.try_clone()?;
        self.file = file;
        self.path = path.clone();
        self.segment_first_seq = self.next_seq;
        self.len = format::HEADER_LEN;
        *self.shared.sync_file.lock().unwrap_or_else(|e| e.into_inner()) = Some(sync_clone);
        self.shared
            .segments
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Segment {
                first_seq: self.next_seq,
                path,
                index: Vec::new(),
            });
        tracing::debug!(first_seq = self.next_seq, "started a new log segment");
        Ok(())
    }
}

/// Creates a segment with its header, durably (file and directory entry).
/// A half-created file is removed, so that a retry can create it again.
pub(super) fn create_segment(path: &std::path::Path) -> std::io::Result<File> {
    let mut file = OpenOptions::new().create_new(true).append(true).open(path)?;
    let written = file
        .write_all(&format::header())
        .and_then(|()| file.sync_all())
        .and_then(|()| match path.parent() {
            Some(dir) => File::open(dir)?.sync_all(),
            None => Ok(()),
        });
    if let Err(error) = written {
        let _ = std::fs::remove_file(path);
        return Err(error);
    }
    Ok(file)
}

pub(crate) fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}
