//! The embedded backend: a durable append-only log in `<data-dir>/stream/`.
//!
//! Appenders take turns leading group-committed batches ([`writer`]); any
//! number of readers replay and follow through their own file handles
//! ([`reader`]); [`format`] is the byte layout. On open the whole log is
//! scanned once: checksums are verified, a torn tail of the last segment (a
//! write a crash cut short: nothing intact after it) is cut off and logged,
//! damage anywhere else refuses the open ([`check`] says what it is and can
//! cut it by hand), and the per-subject sequences and recent ids are
//! rebuilt. A lock file keeps a second process out.

pub mod check;
mod format;
mod reader;
mod summary;
mod writer;

use async_trait::async_trait;
use futures::StreamExt;
use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

use crate::envelope::{Outgoing, Subject};
use crate::error::StreamError;
use crate::stream::{Appended, EventStream, Record, RecordStream};
use format::Decoded;
use writer::{Request, Writer};

/// One sparse index entry per this many records of a segment.
const INDEX_EVERY: u64 = 1024;
/// Records handed to a follower per read.
const READ_BATCH: usize = 4096;

/// When appended events reach the disk (not only the OS page cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before the append is acknowledged: survives power loss.
    Always,
    /// In the background this often. An acknowledged event survives a crash
    /// of the process (kill -9); a power cut may lose the last interval.
    Interval(Duration),
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "interval" => Ok(FsyncPolicy::Interval(Duration::from_secs(1))),
            other => Err(format!("fsync must be `always` or `interval`, not {other:?}")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// The log's own directory (nodai uses `<data-dir>/stream`).
    pub dir: PathBuf,
    pub fsync: FsyncPolicy,
    /// A new segment starts once the current one is this large.
    pub segment_bytes: u64,
    /// How long an id is remembered for de-duplication (NATS's default too).
    pub duplicate_window: Duration,
    /// The writer's clock, microseconds since the epoch: what each record's
    /// stored time says. The wall clock; a simulation (BENCHMARKS.md, "A
    /// month of traffic") runs a month of stored times in minutes.
    pub clock: fn() -> i64,
}

impl Options {
    pub fn new(dir: impl Into<PathBuf>) -> Options {
        Options {
            dir: dir.into(),
            fsync: FsyncPolicy::Interval(Duration::from_secs(1)),
            segment_bytes: 256 << 20,
            duplicate_window: Duration::from_secs(120),
            clock: writer::now_micros,
        }
    }
}

pub(crate) struct Segment {
    first_seq: u64,
    path: PathBuf,
    /// Sparse (sequence, byte offset) pairs, ascending.
    index: Vec<(u64, u64)>,
}

struct Queue {
    pending: Vec<Request>,
    closed: bool,
    /// An appender is leading (writing batches until the queue is empty).
    /// Requests are pending only while one is: the appender that queues
    /// onto an empty, leaderless queue leads.
    leader: bool,
}

/// What the writer, the syncer, readers and appenders share.
pub(crate) struct Shared {
    dir: PathBuf,
    queue: Mutex<Queue>,
    segments: RwLock<Vec<Segment>>,
    /// The first sequence of the oldest segment: older ones were deleted
    /// by retention. Changed under the `segments` write lock.
    first_seq: AtomicU64,
    /// The newest sequence that is fully written; readers read up to here.
    committed: watch::Sender<u64>,
    /// Whether anything was written since the last background sync.
    dirty: AtomicBool,
    /// A handle on the current segment for the background syncer.
    sync_file: Mutex<Option<File>>,
    closed: AtomicBool,
}

/// The embedded event log. Closing or dropping it finishes queued appends,
/// syncs the file and releases the lock.
pub struct EmbeddedLog {
    shared: Arc<Shared>,
    /// Locked by the leading appender only (and by close).
    writer: Arc<Mutex<Writer>>,
    fsync: FsyncPolicy,
    /// The background syncer, under `fsync=interval`.
    syncer: Mutex<Option<JoinHandle<()>>>,
    /// The OS lock keeps other processes out until close; `None` once closed.
    lock: Mutex<Option<File>>,
}

impl EmbeddedLog {
    pub async fn open(options: Options) -> Result<EmbeddedLog, StreamError> {
        tokio::task::spawn_blocking(move || Self::open_blocking(options))
            .await
            .map_err(|e| StreamError::Unavailable(format!("log open task failed: {e}")))?
    }

    fn open_blocking(options: Options) -> Result<EmbeddedLog, StreamError> {
        let dir = options.dir.clone();
        std::fs::create_dir_all(&dir).map_err(StreamError::io(&dir))?;
        let lock = lock_dir(&dir)?;
        let recovered = recover(&options)?;
        let (committed, _) = watch::channel(recovered.next_seq - 1);
        let first_seq = recovered.segments.first().map_or(1, |s| s.first_seq);
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            queue: Mutex::new(Queue {
                pending: Vec::new(),
                closed: false,
                leader: false,
            }),
            segments: RwLock::new(recovered.segments),
            first_seq: AtomicU64::new(first_seq),
            committed,
            dirty: AtomicBool::new(false),
            sync_file: Mutex::new(Some(
                recovered.file.try_clone().map_err(StreamError::io(&recovered.path))?,
            )),
            closed: AtomicBool::new(false),
        });
        let writer = Writer {
            shared: shared.clone(),
            file: recovered.file,
            path: recovered.path,
            segment_first_seq: recovered.segment_first_seq,
            len: recovered.len,
            next_seq: recovered.next_seq,
            segment_bytes: options.segment_bytes,
            fsync: options.fsync,
            clock: options.clock,
            subjects: recovered.subjects,
            recent_ids: recovered.recent_ids,
            recent_order: recovered.recent_order,
            window_micros: options.duplicate_window.as_micros() as i64,
            failed: None,
            previous_subject_seq: None,
            buf: Vec::with_capacity(1 << 20),
            spare: Vec::new(),
        };
        let syncer = match options.fsync {
            FsyncPolicy::Interval(every) => {
                let shared = shared.clone();
                let thread = std::thread::Builder::new()
                    .name("nodai-log-sync".into())
                    .spawn(move || sync_loop(&shared, every))
                    .map_err(StreamError::io(&dir))?;
                Some(thread)
            }
            FsyncPolicy::Always => None,
        };
        tracing::info!(dir = %dir.display(), last_seq = *shared.committed.borrow(), "embedded event log open");
        Ok(EmbeddedLog {
            shared,
            writer: Arc::new(Mutex::new(writer)),
            fsync: options.fsync,
            syncer: Mutex::new(syncer),
            lock: Mutex::new(Some(lock)),
        })
    }

    /// Queues `request`; true if no appender is leading, so the caller
    /// must lead (see [`Leading`]).
    fn submit(&self, request: Request) -> Result<bool, StreamError> {
        let mut queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.closed {
            return Err(StreamError::Unavailable("event log is closed".into()));
        }
        queue.pending.push(request);
        Ok(!std::mem::replace(&mut queue.leader, true))
    }

    /// Queues every request at once; true if the caller must lead.
    fn submit_all(&self, requests: Vec<Request>) -> Result<bool, StreamError> {
        let mut queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.closed {
            return Err(StreamError::Unavailable("event log is closed".into()));
        }
        queue.pending.extend(requests);
        Ok(!std::mem::replace(&mut queue.leader, true))
    }

    /// Leads until the queue is empty. Under `fsync=always` a blocking-pool
    /// thread leads instead: an `fdatasync` takes milliseconds, and the
    /// async workers meanwhile queue the next batch rather than wait.
    fn lead(&self) {
        let writer = self.writer.clone();
        let lead = move || writer.lock().unwrap_or_else(|e| e.into_inner()).lead();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if self.fsync == FsyncPolicy::Always => drop(runtime.spawn_blocking(lead)),
            _ => lead(),
        }
    }

    /// Queues `request` and, if it is to lead, lets the other ready tasks
    /// queue theirs first (one yield), so that a batch holds what arrived
    /// together rather than one event each.
    async fn submit_and_lead(&self, request: Request) -> Result<(), StreamError> {
        if self.submit(request)? {
            let leading = Leading(self);
            tokio::task::yield_now().await;
            drop(leading);
        }
        Ok(())
    }

    async fn append_inner(&self, event: &Outgoing, expected: Option<u64>) -> Result<Appended, StreamError> {
        let (reply, answer) = oneshot::channel();
        self.submit_and_lead(Request::Append {
            event: event.clone(),
            expected,
            reply: Some(reply),
        })
        .await?;
        answer
            .await
            .map_err(|_| StreamError::Unavailable("event log writer stopped".into()))?
    }

    /// Streams records from `from`, up to `until` or forever.
    fn read_from(&self, from: u64, until: Option<u64>) -> RecordStream {
        let shared = self.shared.clone();
        let (tx, rx) = mpsc::channel::<Result<Vec<Record>, StreamError>>(4);
        tokio::spawn(async move {
            let mut commits = shared.committed.subscribe();
            let mut cursor = reader::Cursor::new(from);
            loop {
                let committed = *commits.borrow_and_update();
                let upto = until.map_or(committed, |u| u.min(committed));
                let next = cursor.next_seq;
                if until.is_some_and(|u| next > u) {
                    return;
                }
                if next > upto {
                    if shared.closed.load(Ordering::Acquire) {
                        return;
                    }
                    tokio::select! {
                        // The reader went away: end now, not at the next commit.
                        _ = tx.closed() => return,
                        changed = commits.changed() => if changed.is_err() { return },
                    }
                    continue;
                }
                // Inline, not on the blocking pool: reads are bounded (at
                // most 1 MiB from the page cache), and at the tail they are a
                // few records, where a thread hand-off would cost more.
                let batch = cursor.read_batch(&shared, upto, READ_BATCH);
                let failed = batch.is_err();
                if tx.send(batch).await.is_err() || failed {
                    return;
                }
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
            .flat_map(|batch| {
                let items: Vec<Result<Record, StreamError>> = match batch {
                    Ok(records) => records.into_iter().map(Ok).collect(),
                    Err(e) => vec![Err(e)],
                };
                futures::stream::iter(items)
            })
            .boxed()
    }
}

impl Shared {
    pub(crate) fn first_seq(&self) -> u64 {
        self.first_seq.load(Ordering::Acquire)
    }

    /// Deletes the sealed segments whose every record is before `seq`,
    /// oldest first, so that a crash in the middle leaves a log that still
    /// starts at a segment and has no gap. The segment being written is
    /// never deleted. Readers already inside a deleted segment read on
    /// from their open file.
    fn trim_before(&self, seq: u64) -> Result<u64, StreamError> {
        let doomed: Vec<PathBuf> = {
            let mut segments = self.segments.write().unwrap_or_else(|e| e.into_inner());
            let n = segments.windows(2).take_while(|w| w[1].first_seq <= seq).count();
            if n == 0 {
                return Ok(self.first_seq());
            }
            let gone: Vec<PathBuf> = segments.drain(..n).map(|s| s.path).collect();
            self.first_seq.store(segments[0].first_seq, Ordering::Release);
            gone
        };
        for path in &doomed {
            // The summary first: a segment left without one is scanned at
            // open, a summary left without its segment would linger.
            let summary = summary::path_for(path);
            for file in [&summary, path] {
                match std::fs::remove_file(file) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(StreamError::Io {
                            path: file.clone(),
                            source: e,
                        })
                    }
                }
            }
        }
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(StreamError::io(&self.dir))?;
        let first = self.first_seq();
        tracing::info!(
            segments = doomed.len(),
            first_seq = first,
            "deleted old log segments (retention)"
        );
        Ok(first)
    }
}

impl EmbeddedLog {
    /// Refuses further appends, finishes the queued ones, syncs, ends the
    /// followers and releases the lock. Idempotent; blocks briefly.
    fn shut(&self) {
        let pending = {
            let mut queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.closed = true;
            !queue.pending.is_empty()
        };
        self.shared.closed.store(true, Ordering::Release);
        {
            // Waits for a leader still writing; writes what an appender
            // queued but has not led yet, so nothing is written after the sync.
            let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
            if pending {
                writer.lead();
            }
            writer.sync();
        }
        // Wake followers so they see `closed` and end.
        self.shared.committed.send_modify(|_| {});
        if let Some(thread) = self.syncer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// The duty to lead, done when dropped: also when the appender's future is
/// dropped while it yields, so queued requests never wait for no one.
struct Leading<'a>(&'a EmbeddedLog);

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        self.0.lead();
    }
}

impl Drop for EmbeddedLog {
    fn drop(&mut self) {
        self.shut();
    }
}

#[async_trait]
impl EventStream for EmbeddedLog {
    async fn append(&self, event: &Outgoing) -> Result<Appended, StreamError> {
        self.append_inner(event, None).await
    }

    /// One queue entry each, queued together: they land in one batch
    /// (one `write`) unless the batch grows past the queue's turn.
    async fn append_all(&self, events: Vec<Outgoing>) -> Vec<Result<Appended, StreamError>> {
        let mut answers = Vec::with_capacity(events.len());
        let requests = events
            .into_iter()
            .map(|event| {
                let (reply, answer) = oneshot::channel();
                answers.push(answer);
                Request::Append {
                    event,
                    expected: None,
                    reply: Some(reply),
                }
            })
            .collect();
        match self.submit_all(requests) {
            Ok(true) => {
                let leading = Leading(self);
                tokio::task::yield_now().await;
                drop(leading);
            }
            Ok(false) => {}
            Err(error) => {
                let why = error.to_string();
                return answers
                    .iter()
                    .map(|_| Err(StreamError::Unavailable(why.clone())))
                    .collect();
            }
        }
        let mut results = Vec::with_capacity(answers.len());
        for answer in answers {
            results.push(
                answer
                    .await
                    .unwrap_or_else(|_| Err(StreamError::Unavailable("event log writer stopped".into()))),
            );
        }
        results
    }

    async fn append_expecting(&self, event: &Outgoing, expected: u64) -> Result<Appended, StreamError> {
        self.append_inner(event, Some(expected)).await
    }

    async fn last_seq(&self) -> Result<u64, StreamError> {
        Ok(*self.shared.committed.borrow())
    }

    async fn first_seq(&self) -> Result<u64, StreamError> {
        Ok(self.shared.first_seq())
    }

    async fn trim_before(&self, seq: u64) -> Result<u64, StreamError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.trim_before(seq))
            .await
            .map_err(|e| StreamError::Unavailable(format!("log trim task failed: {e}")))?
    }

    async fn publish_snapshot(&self, _seq: u64, _bytes: Vec<u8>) -> Result<(), StreamError> {
        Ok(())
    }

    async fn published_snapshot_seq(&self) -> Result<Option<u64>, StreamError> {
        Ok(None)
    }

    async fn fetch_snapshot(&self) -> Result<Option<Vec<u8>>, StreamError> {
        Ok(None)
    }

    async fn last_subject_seq(&self, subject: &Subject) -> Result<u64, StreamError> {
        let (reply, answer) = oneshot::channel();
        self.submit_and_lead(Request::LastSubjectSeq {
            subject: subject.as_str().to_owned(),
            reply: Some(reply),
        })
        .await?;
        answer
            .await
            .map_err(|_| StreamError::Unavailable("event log writer stopped".into()))?
    }

    async fn replay(&self, from: u64) -> Result<RecordStream, StreamError> {
        let until = *self.shared.committed.borrow();
        Ok(self.read_from(from, Some(until)))
    }

    async fn follow(&self, from: u64) -> Result<RecordStream, StreamError> {
        Ok(self.read_from(from, None))
    }

    async fn close(&self) {
        tokio::task::block_in_place(|| self.shut());
    }
}

fn sync_loop(shared: &Shared, every: Duration) {
    // Parked between syncs; close unparks it, so shutdown does not wait out the interval.
    while !shared.closed.load(Ordering::Acquire) {
        std::thread::park_timeout(every);
        if shared.dirty.swap(false, Ordering::AcqRel) {
            if let Some(file) = shared.sync_file.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                if let Err(error) = file.sync_data() {
                    tracing::error!(%error, "background sync of the event log failed");
                    shared.dirty.store(true, Ordering::Release);
                }
            }
        }
    }
}

fn lock_dir(dir: &Path) -> Result<File, StreamError> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(StreamError::io(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StreamError::Locked { path: dir.to_owned() }),
        Err(std::fs::TryLockError::Error(e)) => Err(StreamError::Io { path, source: e }),
    }
}

/// A subject as the writer's map of last sequences knows it: 128 bits of
/// hash instead of the string, because that map holds every subject ever
/// written (a million keys are a million subjects). Two subjects would have
/// to collide in 128 bits to share an entry; the map is rebuilt at each open,
/// so the hash need not be stable across builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct SubjectKey(u128);

impl SubjectKey {
    pub(crate) fn of(subject: &str) -> SubjectKey {
        use std::hash::{Hash, Hasher};
        let half = |salt: u8| {
            let mut hasher = std::hash::DefaultHasher::new();
            salt.hash(&mut hasher);
            subject.hash(&mut hasher);
            hasher.finish() as u128
        };
        SubjectKey(half(1) << 64 | half(2))
    }
}

/// The state rebuilt by scanning the log on open.
struct Recovered {
    segments: Vec<Segment>,
    file: File,
    path: PathBuf,
    segment_first_seq: u64,
    len: u64,
    next_seq: u64,
    subjects: HashMap<SubjectKey, u64>,
    recent_ids: HashMap<crate::envelope::EventId, u64>,
    recent_order: VecDeque<(i64, crate::envelope::EventId)>,
}

/// The first sequences of the segment files in `dir`, in order.
fn segment_firsts(dir: &Path) -> Result<Vec<u64>, StreamError> {
    let mut firsts: Vec<u64> = std::fs::read_dir(dir)
        .map_err(StreamError::io(dir))?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| format::parse_segment_name(&entry.file_name().to_string_lossy()))
        .collect();
    firsts.sort_unstable();
    Ok(firsts)
}

fn recover(options: &Options) -> Result<Recovered, StreamError> {
    let dir = &options.dir;
    let mut firsts = segment_firsts(dir)?;
    if firsts.is_empty() {
        let path = dir.join(format::segment_name(1));
        writer::create_segment(&path).map_err(StreamError::io(&path))?;
        firsts.push(1);
    }
    let oldest_kept = (options.clock)() - options.duplicate_window.as_micros() as i64;
    let mut segments = Vec::with_capacity(firsts.len());
    let mut subjects = HashMap::new();
    let mut recent_ids = HashMap::new();
    let mut recent_order = VecDeque::new();
    let mut next_seq = firsts[0];
    let mut tail = None;
    for (i, &first_seq) in firsts.iter().enumerate() {
        let path = dir.join(format::segment_name(first_seq));
        let is_last = i + 1 == firsts.len();
        if first_seq != next_seq {
            return Err(StreamError::Corrupt(format!(
                "{} should start at sequence {next_seq}",
                path.display()
            )));
        }
        if !is_last {
            let summary = summary::read(&path, first_seq).filter(|s| s.newest_micros < oldest_kept);
            if let Some(summary) = summary {
                subjects.extend(summary.subjects.iter().map(|&(key, seq)| (SubjectKey(key), seq)));
                next_seq = summary.next_seq;
                segments.push(Segment {
                    first_seq,
                    path,
                    index: summary.index,
                });
                continue;
            }
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(StreamError::io(&path))?;
        let header = reader::read_chunk(&file, &path, 0, format::HEADER_LEN as usize)?;
        if header.len() < format::HEADER_LEN as usize && is_last {
            // Crashed while creating the segment: nothing can be in it yet.
            tracing::warn!(path = %path.display(), "rewriting the header of a half-created segment");
            file.set_len(0).map_err(StreamError::io(&path))?;
            std::io::Write::write_all(&mut &file, &format::header()).map_err(StreamError::io(&path))?;
        } else {
            format::check_header(&header).map_err(|e| StreamError::Corrupt(format!("{}: {e}", path.display())))?;
        }
        let mut index = Vec::new();
        let mut offset = format::HEADER_LEN;
        let mut buf = bytes::Bytes::new();
        let mut segment_subjects = HashMap::new();
        let mut newest_micros = i64::MIN;
        let damage = loop {
            match format::decode(&buf) {
                Decoded::Frame { frame, len } => {
                    if frame.seq != next_seq {
                        break Some(format!("sequence {} where {next_seq} was due", frame.seq));
                    }
                    if (frame.seq - first_seq).is_multiple_of(INDEX_EVERY) {
                        index.push((frame.seq, offset));
                    }
                    if frame.appended_at_micros >= oldest_kept {
                        recent_ids.insert(frame.id, frame.seq);
                        recent_order.push_back((frame.appended_at_micros, frame.id));
                    }
                    segment_subjects.insert(SubjectKey::of(&frame.subject), frame.seq);
                    newest_micros = newest_micros.max(frame.appended_at_micros);
                    next_seq += 1;
                    offset += len as u64;
                    let _ = buf.split_to(len);
                }
                Decoded::Incomplete { need } => {
                    let chunk = reader::read_chunk(&file, &path, offset, need.max(1 << 20))?;
                    if chunk.len() <= buf.len() {
                        // Nothing more on disk.
                        break (!buf.is_empty()).then(|| "torn record at the end".to_owned());
                    }
                    buf = chunk;
                }
                Decoded::Corrupt(reason) => break Some(reason),
            }
        };
        let file_len = file.metadata().map_err(StreamError::io(&path))?.len();
        if let Some(reason) = damage {
            if !is_last {
                return Err(StreamError::Corrupt(format!(
                    "{} is damaged at byte {offset} ({reason}); it is not the newest segment, so it cannot be cut off safely. \
                     `nodai check` on this data dir says what it finds",
                    path.display()
                )));
            }
            // A crash tears only the end: intact records after the damage
            // mean it is not that, and cutting would delete them.
            let rest = std::fs::read(&path).map_err(StreamError::io(&path))?;
            let after = usize::try_from(offset).ok().and_then(|at| rest.get(at..));
            if let Some((at, seq)) = after.and_then(|after| format::next_intact_frame(after, next_seq - 1)) {
                return Err(StreamError::Corrupt(format!(
                    "{} is damaged at byte {offset} ({reason}), and intact records follow it \
                     (sequence {seq} at byte {}): this is not a write torn by a crash, so nothing is cut. \
                     `nodai check --repair` on this data dir keeps a copy of the segment and cuts the log \
                     at byte {offset}, giving up every record from sequence {next_seq} on",
                    path.display(),
                    offset + at as u64
                )));
            }
            tracing::warn!(
                path = %path.display(),
                offset,
                dropped_bytes = file_len - offset,
                reason,
                last_good_seq = next_seq - 1,
                "cut off a damaged tail of the event log"
            );
            file.set_len(offset).map_err(StreamError::io(&path))?;
            file.sync_all().map_err(StreamError::io(&path))?;
        }
        if !is_last {
            // Sealed and whole: the next open need not scan it again.
            let summary = summary::Summary {
                first_seq,
                next_seq,
                len: file_len,
                newest_micros,
                index: index.clone(),
                subjects: segment_subjects.iter().map(|(key, seq)| (key.0, *seq)).collect(),
            };
            summary::write(&path, &summary);
        }
        subjects.extend(segment_subjects);
        segments.push(Segment {
            first_seq,
            path: path.clone(),
            index,
        });
        tail = Some((file, path, first_seq, offset));
    }
    let Some((file, path, segment_first_seq, len)) = tail else {
        return Err(StreamError::Corrupt(format!("{} holds no segment", dir.display())));
    };
    Ok(Recovered {
        segments,
        file,
        path,
        segment_first_seq,
        len,
        next_seq,
        subjects,
        recent_ids,
        recent_order,
    })
}
