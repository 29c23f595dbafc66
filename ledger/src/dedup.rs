//! De-duplication with memory bounded by a window, not by traffic: **an
//! event stored twice within [`WINDOW`] of stored time is applied once.**
//! The streams de-duplicate only within their own window (2 minutes); this
//! catches what comes later: a producer retrying after it, a replayed
//! export, and the 24-hour idempotency that usage ingest (not built yet)
//! will promise.
//!
//! How long an id must be remembered depends on the event:
//! - An event with a deadline (`query.recorded`'s `record_by`,
//!   `query.admitted`'s `expires_at`) counts for nothing when stored after
//!   it (see [`crate::Projection::apply_stored`]), so its id is needed only
//!   until then, plus [`SKEW`] for clocks that disagree. Proxied queries,
//!   nearly all the traffic, are remembered for seconds.
//! - Any other event is remembered for [`WINDOW`] after it was stored.
//!
//! Time is the stored time of the newest event folded, never a clock, so
//! the fold stays pure. Every id is kept exactly (16 bytes and its expiry):
//! nothing probabilistic, so no real event can be taken for a duplicate.
//! Memory is the ids of the last [`WINDOW`] of events without a deadline
//! plus about a minute of queries (BENCHMARKS.md, "A month of traffic").

use ingest::EventId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::VecDeque;

use crate::hash::FastMap;

/// How long an id without a deadline is remembered, in microseconds of
/// stored time: the 24 hours of idempotency usage ingest will promise, and
/// an hour for a producer's clock and retries around it.
pub const WINDOW: i64 = 25 * 3600 * 1_000_000;

/// How long past its deadline an id is remembered: NATS's stored time
/// comes from the leader of the moment, and two leaders' clocks may differ.
pub const SKEW: i64 = 120 * 1_000_000;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Dedup {
    /// Each remembered id and when it may be forgotten (stored-time micros).
    ids: FastMap<u128, i64>,
    /// (forget at, id) in the order remembered, one queue per kind: each is
    /// nearly in time order, so expiry pops from the front.
    short: VecDeque<(i64, u128)>,
    long: VecDeque<(i64, u128)>,
    /// The newest stored time folded.
    now: i64,
}

impl Dedup {
    /// Records `id`, stored at `stored_micros`, with its deadline if it
    /// has one; false if it was applied before (within the window).
    pub fn first_time(&mut self, id: EventId, stored_micros: i64, deadline_micros: Option<i64>) -> bool {
        if stored_micros > self.now {
            self.now = stored_micros;
            self.expire();
        }
        let id = u128::from_be_bytes(*id.as_bytes());
        if self.ids.contains_key(&id) {
            return false;
        }
        let (forget_at, queue) = match deadline_micros {
            Some(deadline) => (deadline.max(stored_micros).saturating_add(SKEW), &mut self.short),
            None => (stored_micros.saturating_add(WINDOW), &mut self.long),
        };
        self.ids.insert(id, forget_at);
        queue.push_back((forget_at, id));
        true
    }

    fn expire(&mut self) {
        for queue in [&mut self.short, &mut self.long] {
            while let Some(&(forget_at, id)) = queue.front() {
                if forget_at >= self.now {
                    break;
                }
                queue.pop_front();
                self.ids.remove(&id);
            }
        }
    }

    /// Whether `id` was applied within the window.
    pub fn contains(&self, id: EventId) -> bool {
        self.ids.contains_key(&u128::from_be_bytes(*id.as_bytes()))
    }

    /// Ids remembered.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// In snapshots: the newest stored time, then each queue as one byte
/// string of 24-byte entries (id, forget-at), in queue order.
impl Serialize for Dedup {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bytes = |queue: &VecDeque<(i64, u128)>| {
            let mut out = Vec::with_capacity(queue.len() * 24);
            for (forget_at, id) in queue {
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&forget_at.to_be_bytes());
            }
            serde_bytes::ByteBuf::from(out)
        };
        (self.now, bytes(&self.short), bytes(&self.long)).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Dedup {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (now, short, long) = <(i64, serde_bytes::ByteBuf, serde_bytes::ByteBuf)>::deserialize(d)?;
        let queue = |bytes: &[u8]| -> Result<VecDeque<(i64, u128)>, D::Error> {
            if !bytes.len().is_multiple_of(24) {
                return Err(serde::de::Error::custom("dedup entries are not 24-byte aligned"));
            }
            Ok(bytes
                .chunks_exact(24)
                .map(|e| {
                    let (id, at) = e.split_at(16);
                    let id = u128::from_be_bytes(id.try_into().unwrap_or_default());
                    (i64::from_be_bytes(at.try_into().unwrap_or_default()), id)
                })
                .collect())
        };
        let (short, long) = (queue(&short)?, queue(&long)?);
        let ids = short.iter().chain(&long).map(|&(at, id)| (id, at)).collect();
        Ok(Dedup { ids, short, long, now })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn an_id_without_a_deadline_is_applied_once_within_the_window() {
        let t0 = 1_800_000_000 * S;
        let mut dedup = Dedup::default();
        let (a, b) = (EventId::new(), EventId::new());
        assert!(dedup.first_time(a, t0, None));
        assert!(!dedup.first_time(a, t0 + S, None), "the same event stored again");
        assert!(dedup.first_time(b, t0, None));
        // At the window's end it is still remembered…
        assert!(dedup.first_time(EventId::new(), t0 + WINDOW, None));
        assert!(!dedup.first_time(a, t0 + WINDOW, None));
        // …and forgotten once the stream has moved past it, memory with it.
        assert!(dedup.first_time(EventId::new(), t0 + WINDOW + 1, None));
        assert_eq!(dedup.len(), 2);
        assert!(
            dedup.first_time(a, t0 + WINDOW + 2, None),
            "beyond the window: cannot tell, applied"
        );
    }

    #[test]
    fn an_id_with_a_deadline_is_kept_until_its_deadline_and_the_skew() {
        let t0 = 1_800_000_000 * S;
        let mut dedup = Dedup::default();
        let a = EventId::new();
        let deadline = t0 + 15 * S;
        assert!(dedup.first_time(a, t0, Some(deadline)));
        assert!(dedup.first_time(EventId::new(), deadline + SKEW, None));
        assert!(
            !dedup.first_time(a, deadline + SKEW, Some(deadline)),
            "remembered through the skew"
        );
        assert!(dedup.first_time(EventId::new(), deadline + SKEW + 1, None));
        assert_eq!(
            dedup.len(),
            2,
            "then forgotten: a copy stored now is past its deadline anyway"
        );
    }

    /// Memory follows the window, not the traffic: a day of queries at a
    /// steady rate leaves about a minute of them remembered.
    #[test]
    fn memory_is_bounded_by_the_window_not_by_events() {
        let t0 = 1_800_000_000 * S;
        let mut dedup = Dedup::default();
        for i in 0..100_000i64 {
            let stored = t0 + i * S; // one a second for 28 hours
            assert!(dedup.first_time(EventId::new(), stored, Some(stored + 15 * S)));
        }
        assert!(dedup.len() <= 136, "{} ids kept", dedup.len());
    }

    #[test]
    fn a_snapshot_round_trips_and_forgets_on_time() {
        let t0 = 1_800_000_000 * S;
        let mut dedup = Dedup::default();
        let ids: Vec<EventId> = (0..50).map(|_| EventId::new()).collect();
        for (i, id) in ids.iter().enumerate() {
            let deadline = (i % 2 == 0).then_some(t0 + 10 * S);
            assert!(dedup.first_time(*id, t0 + i as i64, deadline));
        }
        let bytes = rmp_serde::to_vec(&dedup).unwrap();
        let mut back: Dedup = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, dedup);
        assert!(ids.iter().all(|id| !back.first_time(*id, t0 + 60 * S, None)));
        assert!(back.first_time(EventId::new(), t0 + 10 * S + SKEW + 100, None));
        assert_eq!(back.len(), 26, "the 25 with deadlines are forgotten");
    }
}
