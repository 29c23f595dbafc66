//! The one operation set every backend offers. Callers hold an
//! `Arc<dyn EventStream>` and never learn which backend is behind it.
//!
//! Sequences start at 1 and have no gaps; 0 means "nothing yet" (an empty
//! stream, or a subject with no event). Retention deletes the oldest events
//! ([`EventStream::trim_before`]): the stream then starts at
//! [`EventStream::first_seq`], and reading before it is
//! [`StreamError::Trimmed`](crate::StreamError::Trimmed).

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::envelope::{Envelope, EventId, Outgoing, Subject};
use crate::error::{DecodeError, StreamError};

/// The result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Where the event is on the stream. For a duplicate, where the first
    /// copy is.
    pub seq: u64,
    /// The id was already on the stream (within the de-duplication window),
    /// so nothing was stored.
    pub duplicate: bool,
}

/// One stored event.
#[derive(Debug, Clone)]
pub struct Record {
    pub seq: u64,
    pub id: EventId,
    /// When the backend stored it, microseconds since the epoch, by the
    /// backend's clock (the NATS server's; the embedded log's writer's).
    pub stored_micros: i64,
    /// Relative to the stream, e.g. `key.key_1`.
    pub subject: Subject,
    /// The JSON envelope, exactly as appended.
    pub payload: Bytes,
}

impl Record {
    pub fn envelope(&self) -> Result<Envelope, DecodeError> {
        Envelope::from_json(&self.payload)
    }
}

/// How long a lease outlives its last renewal.
pub const LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// Records in sequence order, no gaps, no repeats.
pub type RecordStream = BoxStream<'static, Result<Record, StreamError>>;

#[async_trait]
pub trait EventStream: Send + Sync + 'static {
    /// Stores the event once per id: a repeat of an id seen within the
    /// de-duplication window (2 minutes by default) stores nothing and
    /// returns the first copy's sequence with `duplicate: true`. That is what
    /// makes a retried append safe.
    async fn append(&self, event: &Outgoing) -> Result<Appended, StreamError>;

    /// Appends only if the last event on `event.subject` has sequence
    /// `expected` (0: no event on it yet); otherwise [`StreamError::Conflict`]
    /// and nothing is stored. A duplicate id is answered as by [`append`]
    /// before the expectation is checked, so retries stay safe. An
    /// `expected` before [`first_seq`] (its event deleted by retention)
    /// means "no event on the subject since": exact for a caller that has
    /// read the stream up to its first sequence, as every replica has.
    ///
    /// [`first_seq`]: EventStream::first_seq
    ///
    /// [`append`]: EventStream::append
    async fn append_expecting(&self, event: &Outgoing, expected: u64) -> Result<Appended, StreamError>;

    /// [`append`]s each of `events`, some at once, so not necessarily
    /// stored in their order; one result each, in their order. A backend
    /// that can store many in one write overrides it (the embedded log: one
    /// batch of its group commit).
    ///
    /// [`append`]: EventStream::append
    async fn append_all(&self, events: Vec<Outgoing>) -> Vec<Result<Appended, StreamError>> {
        use futures::StreamExt;
        /// Appends in flight at once: enough to fill a NATS round trip.
        const IN_FLIGHT: usize = 256;
        let mut results = Vec::with_capacity(events.len());
        let mut in_flight = futures::stream::FuturesOrdered::new();
        for event in &events {
            if in_flight.len() == IN_FLIGHT {
                results.extend(in_flight.next().await);
            }
            in_flight.push_back(self.append(event));
        }
        while let Some(result) = in_flight.next().await {
            results.push(result);
        }
        results
    }

    /// The sequence of the newest event (0 when empty).
    async fn last_seq(&self) -> Result<u64, StreamError>;

    /// The sequence of the oldest event still held: 1 on a stream nothing
    /// was ever deleted from (even an empty one), `last_seq() + 1` once all
    /// of it was.
    async fn first_seq(&self) -> Result<u64, StreamError>;

    /// Deletes events before `seq` (retention). The embedded log deletes
    /// whole sealed segments only, so it may keep some; NATS purges exactly.
    /// Returns the stream's first sequence afterwards.
    async fn trim_before(&self, seq: u64) -> Result<u64, StreamError>;

    /// Publishes a snapshot of the projection taken at `seq` where every
    /// replica can fetch it (NATS: the JetStream Object Store), replacing
    /// the one before. The embedded log has one process, whose data dir
    /// holds its snapshots: there this does nothing.
    async fn publish_snapshot(&self, seq: u64, bytes: Vec<u8>) -> Result<(), StreamError>;

    /// The sequence of the published snapshot, if any.
    async fn published_snapshot_seq(&self) -> Result<Option<u64>, StreamError>;

    /// The published snapshot's bytes, if any.
    async fn fetch_snapshot(&self) -> Result<Option<Vec<u8>>, StreamError>;

    /// The sequence of the newest event on `subject` (0 when none, or when
    /// it was deleted by retention).
    async fn last_subject_seq(&self, subject: &Subject) -> Result<u64, StreamError>;

    /// Events from `from` up to the newest one at the time of the call; then
    /// the stream ends.
    async fn replay(&self, from: u64) -> Result<RecordStream, StreamError>;

    /// The record stored at `seq`, None if there is none (past the end, or
    /// deleted). Its id ties a snapshot or an archive watermark to this
    /// very stream rather than another with the same sequences; its stored
    /// time says whether a late usage event counts.
    async fn record_at(&self, seq: u64) -> Result<Option<Record>, StreamError> {
        use futures::StreamExt;
        if seq == 0 || seq < self.first_seq().await? {
            return Ok(None);
        }
        let mut records = self.replay(seq).await?;
        match records.next().await {
            Some(Ok(record)) => Ok((record.seq == seq).then_some(record)),
            Some(Err(error)) => Err(error),
            None => Ok(None),
        }
    }

    /// Events from `from` on, waiting for new ones as they are appended; the
    /// stream never ends on its own.
    async fn follow(&self, from: u64) -> Result<RecordStream, StreamError>;

    /// Takes the lease `name` for `holder`, or renews it if `holder` has it
    /// already; true while `holder` holds it. A lease lapses [`LEASE_TTL`]
    /// after its last renewal, so a holder that dies frees it. Only one
    /// process can open an embedded log, so there it is always held.
    async fn hold_lease(&self, _name: &str, _holder: &str) -> Result<bool, StreamError> {
        Ok(true)
    }

    /// Gives up the lease at once if `holder` has it (a clean shutdown), so
    /// a standby need not wait for it to lapse.
    async fn release_lease(&self, _name: &str, _holder: &str) -> Result<(), StreamError> {
        Ok(())
    }

    /// Finishes what is queued and releases what the backend holds (the
    /// embedded log's lock), even while other handles to it live on.
    /// Appends after it fail with `Unavailable`.
    async fn close(&self) {}
}
