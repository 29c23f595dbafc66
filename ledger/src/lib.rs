//! The ledger: folds the event stream into the state nodai answers from.
//!
//! - [`keys`]: API keys, indexed by id and by the SHA-256 of their secret.
//! - [`workflows`]: the workflow registry.
//! - [`usage`]: per-key usage: the rolling 60 minutes the rate limit reads,
//!   the UTC month the cost limit reads, totals, last use.
//! - [`Projection`]: all of them, folded together from one stream.
//!
//! Everything here is a pure fold, `apply(seq, ts, event)`, with no I/O and
//! no clock: questions that depend on the time take `now` as a parameter.
//! Rebuilding from sequence 1 gives the same state. Snapshots, the
//! long-horizon de-duplication set and the Parquet archive arrive with
//! issue 4; only this crate will know Parquet.

pub mod keys;
pub mod usage;
pub mod workflows;

use chrono::{DateTime, Utc};
use ingest::Event;

pub use keys::{ApiKey, KeyHash, KeyRejection, Keys};
pub use usage::{KeyUsage, Usage};
pub use workflows::{Workflow, Workflows};

/// Everything the API validates and answers from.
#[derive(Debug, Default)]
pub struct Projection {
    pub keys: Keys,
    pub workflows: Workflows,
    pub usage: Usage,
    /// The last stream sequence folded in.
    pub seq: u64,
}

impl Projection {
    /// Folds one event, which the stream stored at `seq`, made at `ts`.
    pub fn apply(&mut self, seq: u64, ts: DateTime<Utc>, event: &Event) {
        match event {
            Event::KeyCreated(_) | Event::KeyUpdated(_) | Event::KeyRevoked(_) | Event::KeyRotated(_) => {
                self.keys.apply(seq, ts, event)
            }
            Event::WorkflowRegistered(_) | Event::WorkflowUpdated(_) | Event::WorkflowDeleted(_) => {
                self.workflows.apply(seq, ts, event)
            }
            Event::QueryRecorded(q) => {
                self.usage.apply(ts, q);
                self.keys.touch(&q.key_id, ts);
            }
            _ => {}
        }
        self.seq = seq;
    }
}

/// Up to `limit` values after the key `after`, in key order, and whether
/// more follow: cursor pagination over an id-keyed map.
fn page<'a, K, V>(map: &'a std::collections::BTreeMap<K, V>, after: Option<&str>, limit: usize) -> (Vec<&'a V>, bool)
where
    K: std::borrow::Borrow<str> + Ord,
{
    use std::ops::Bound::{Excluded, Unbounded};
    let start = after.map_or(Unbounded, Excluded);
    let mut iter = map.range::<str, _>((start, Unbounded)).map(|(_, v)| v);
    let page: Vec<&V> = iter.by_ref().take(limit).collect();
    let more = iter.next().is_some();
    (page, more)
}
