//! Exact rate and cost limits on one replica under concurrency.
//!
//! The projection counts queries once their usage events are applied; a
//! query between admission and that moment is *in flight*. Admission reads
//! the key's recorded usage and its in-flight queries together (projection
//! read lock, then the key's shard lock: 64 shards, no global lock) and
//! takes a reservation if under the limits. The reservation names its usage
//! event's id before the append; the follower, while it applies that event
//! under the projection's write lock, settles the reservation. So a query
//! is counted as in flight or as recorded, never both and never neither,
//! and no lock is held across the append or the upstream call. A query that
//! fails before its event is stored gives its place back when the
//! reservation drops; one whose event is stored keeps its place until the
//! follower settles it, so the handler answers without waiting for the
//! follower. In-flight queries count against a cost limit at their hold
//! (the workflow's `max_cost_per_request`, else its price).
//!
//! Across replicas (NATS), [`crate::admission`] puts each admission on the
//! stream first; the queries it admitted elsewhere count here as pending.
//! See ARCHITECTURE.md for the guarantee.

use chrono::{DateTime, Utc};
use ingest::{Appended, EventId, Micros, StreamError};
use ledger::Projection;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const SHARDS: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Slot {
    id: u64,
    /// What the query counts for against a cost limit while in flight:
    /// its hold (the workflow's `max_cost_per_request`, else its price).
    cost: Micros,
    /// Its usage event, once named.
    event: Option<EventId>,
    /// The projection has applied that event: it counts the query now.
    settled: bool,
    /// The event is on the stream: the slot stays until settled.
    stored: bool,
}

type Shard = Mutex<HashMap<String, Vec<Slot>>>;

#[derive(Debug)]
pub struct Limiter {
    shards: Vec<Shard>,
    next_id: std::sync::atomic::AtomicU64,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            next_id: Default::default(),
        }
    }
}

/// The limits of one key.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub rate_per_hour: Option<u64>,
    pub cost_per_month: Option<Micros>,
}

/// Rate-limit state for the `X-RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateState {
    pub limit: u64,
    pub remaining: u64,
    /// Epoch seconds when the oldest query in the window leaves it.
    pub reset: i64,
}

#[derive(Debug)]
pub enum Verdict {
    Admitted(Reservation, Option<RateState>),
    /// Admitted, and its place is already on the stream (see
    /// [`crate::admission`]).
    Stored(Option<RateState>),
    RateLimited(RateState),
    CostExceeded(Option<RateState>),
}

/// A place taken by an admitted query, from admission to settlement.
///
/// Its one way forward is [`Reservation::append`]: the event that settles
/// it (the query's `query.recorded`, or on NATS its `query.admitted`) is
/// named first, then appended. Stored, the place stays counted until the
/// follower applies that event; refused by the stream, the place is given
/// back. Dropped before the append started (the query failed before it had
/// anything to record), the place is given back; dropped while the append
/// was under way (the task was cancelled: only at shutdown), it is kept as
/// stored, since the event may be on the stream: counting it twice for a
/// while is safe, counting it not at all is not.
#[derive(Debug)]
pub struct Reservation {
    limiter: Arc<Limiter>,
    key_id: String,
    id: u64,
    /// An append of its event started: never give the place back on drop.
    appending: bool,
}

impl Reservation {
    /// Runs `appending`, the append of `event`, the event whose folding
    /// settles this place.
    pub async fn append(
        mut self,
        event: EventId,
        appending: impl std::future::Future<Output = Result<Appended, StreamError>>,
    ) -> Result<Appended, StreamError> {
        self.expect(event);
        self.appending = true;
        let appended = appending.await;
        match &appended {
            Ok(_) => self.stored(),
            // Nothing to settle it: the place is free again.
            Err(_) => self.appending = false,
        }
        appended
    }

    /// Names the event that will settle this place.
    fn expect(&self, event: EventId) {
        self.limiter.with_slot(&self.key_id, |slots| {
            if let Some(slot) = slots.iter_mut().find(|s| s.id == self.id) {
                slot.event = Some(event);
            }
        });
    }

    /// The event is on the stream. The query stays counted as in flight
    /// until the follower applies it (at once, if it already has).
    fn stored(&self) {
        self.limiter.with_slot(&self.key_id, |slots| {
            if let Some(at) = slots.iter().position(|s| s.id == self.id) {
                if slots[at].settled {
                    slots.swap_remove(at);
                } else {
                    slots[at].stored = true;
                }
            }
        });
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.appending {
            // Settled by the fold if the event landed; see the type's doc.
            self.stored();
        } else {
            self.limiter
                .with_slot(&self.key_id, |slots| slots.retain(|s| s.id != self.id || s.stored));
        }
    }
}

impl Limiter {
    fn with_slot(&self, key_id: &str, f: impl FnOnce(&mut Vec<Slot>)) {
        let mut shard = self.shards[shard_index(key_id)]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(slots) = shard.get_mut(key_id) {
            f(slots);
            if slots.is_empty() {
                shard.remove(key_id);
            }
        }
    }

    /// Called by the follower as it applies a usage event, under the
    /// projection's write lock: from now on the projection counts it.
    pub fn settle(&self, key_id: &str, event: EventId) {
        self.with_slot(key_id, |slots| {
            if let Some(at) = slots.iter().position(|s| s.event == Some(event)) {
                if slots[at].stored {
                    slots.swap_remove(at);
                } else {
                    slots[at].settled = true;
                }
            }
        });
    }

    /// Admits a query of `key_id` or says which limit stops it, reading the
    /// key's recorded usage from `projection` (held by the caller, so the
    /// follower cannot apply anything meanwhile). An admitted query counts
    /// against a cost limit at `hold` until its usage is applied.
    pub fn admit(
        self: &Arc<Self>,
        key_id: &str,
        limits: Limits,
        hold: Micros,
        now: DateTime<Utc>,
        projection: &Projection,
    ) -> Verdict {
        let mut shard = self.shards[shard_index(key_id)]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let taken = Taken::read(shard.get(key_id), key_id, now, projection);
        if let Some(limit) = limits.rate_per_hour {
            if taken.requests >= limit {
                return Verdict::RateLimited(RateState {
                    limit,
                    remaining: 0,
                    reset: taken.reset,
                });
            }
        }
        if let Some(limit) = limits.cost_per_month {
            if taken.cost_this_month >= limit {
                return Verdict::CostExceeded(taken.rate(limits, 0));
            }
        }
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        shard.entry(key_id.to_owned()).or_default().push(Slot {
            id,
            cost: hold,
            event: None,
            settled: false,
            stored: false,
        });
        Verdict::Admitted(
            Reservation {
                limiter: self.clone(),
                key_id: key_id.to_owned(),
                id,
                appending: false,
            },
            taken.rate(limits, 1),
        )
    }

    /// The key's rate-limit state as it stands, for the headers of an
    /// answer that admits nothing (a refused or malformed query).
    pub fn rate_state(
        &self,
        key_id: &str,
        limits: Limits,
        now: DateTime<Utc>,
        projection: &Projection,
    ) -> Option<RateState> {
        limits.rate_per_hour?;
        let shard = self.shards[shard_index(key_id)]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        Taken::read(shard.get(key_id), key_id, now, projection).rate(limits, 0)
    }
}

/// What a key has used of its limits: recorded, plus in flight here and
/// admitted on other replicas.
struct Taken {
    requests: u64,
    cost_this_month: Micros,
    /// When the oldest query in the rolling window leaves it.
    reset: i64,
}

impl Taken {
    fn read(slots: Option<&Vec<Slot>>, key_id: &str, now: DateTime<Utc>, projection: &Projection) -> Taken {
        let (mut in_flight, mut in_flight_cost) = (0u64, Micros::ZERO);
        for slot in slots.into_iter().flatten().filter(|s| !s.settled) {
            in_flight += 1;
            in_flight_cost += slot.cost;
        }
        // Admitted on any replica (NATS), not yet recorded.
        let (pending, pending_cost) = projection
            .usage
            .admissions(key_id)
            .map_or((0, Micros::ZERO), |a| a.pending(now));
        let usage = projection.usage.get(key_id);
        let next_minute = now.timestamp() - now.timestamp().rem_euclid(60) + 60;
        Taken {
            requests: usage.map_or(0, |u| u.requests_this_hour(now)) + in_flight + pending,
            cost_this_month: usage.map_or(Micros::ZERO, |u| u.cost_this_month(now)) + in_flight_cost + pending_cost,
            // With nothing in the window, a query admitted now leaves it
            // once its own 60 full minutes have passed.
            reset: usage
                .and_then(|u| u.window_reset(now))
                .unwrap_or(next_minute + ledger::usage::WINDOW_MINUTES * 60),
        }
    }

    /// The rate-limit headers with `more` queries taken besides.
    fn rate(&self, limits: Limits, more: u64) -> Option<RateState> {
        limits.rate_per_hour.map(|limit| RateState {
            limit,
            remaining: limit.saturating_sub(self.requests + more),
            reset: self.reset,
        })
    }
}

fn shard_index(key_id: &str) -> usize {
    shard_of(key_id, SHARDS)
}

/// Which of `n` shards `key_id` belongs to.
pub fn shard_of(key_id: &str, n: usize) -> usize {
    (fnv1a(key_id) as usize) % n
}

/// FNV-1a: a fast, stable hash for picking a shard.
fn fnv1a(s: &str) -> u64 {
    s.bytes()
        .fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: Option<u64>, cost: Option<i64>) -> Limits {
        Limits {
            rate_per_hour: rate,
            cost_per_month: cost.map(Micros::new),
        }
    }

    #[test]
    fn in_flight_queries_count_until_released_or_settled() {
        let limiter = Arc::new(Limiter::default());
        let empty = Projection::default();
        let now = Utc::now();
        let admit = |key: &str| limiter.admit(key, limits(Some(3), None), Micros::ZERO, now, &empty);
        let mut held = Vec::new();
        for i in 0..3 {
            match admit("key_a") {
                Verdict::Admitted(r, Some(state)) => {
                    assert_eq!(state.remaining, 2 - i);
                    held.push(r)
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(admit("key_a"), Verdict::RateLimited(_)));
        assert!(matches!(admit("key_b"), Verdict::Admitted(..)), "keys are independent");
        held.pop();
        let third = admit("key_a");
        assert!(matches!(third, Verdict::Admitted(..)));
        assert!(matches!(admit("key_a"), Verdict::RateLimited(_)));
        // Settled: the projection counts it (here it is empty, so a place frees).
        let event = EventId::new();
        held[0].expect(event);
        limiter.settle("key_a", EventId::new());
        assert!(
            matches!(admit("key_a"), Verdict::RateLimited(_)),
            "another event settles nothing"
        );
        limiter.settle("key_a", event);
        assert!(matches!(admit("key_a"), Verdict::Admitted(..)));
    }

    #[test]
    fn a_stored_query_stays_in_flight_until_settled_in_either_order() {
        let limiter = Arc::new(Limiter::default());
        let empty = Projection::default();
        let now = Utc::now();
        let admit = || limiter.admit("key_a", limits(Some(2), None), Micros::ZERO, now, &empty);
        let (Verdict::Admitted(first, _), Verdict::Admitted(second, _)) = (admit(), admit()) else {
            panic!("two places under a limit of 2");
        };
        let (one, two) = (EventId::new(), EventId::new());
        first.expect(one);
        second.expect(two);
        // Stored, then settled: the place is held across the gap.
        first.stored();
        assert!(
            matches!(admit(), Verdict::RateLimited(_)),
            "stored but not applied: still counted"
        );
        limiter.settle("key_a", one);
        // Settled before the handler saw its append succeed.
        limiter.settle("key_a", two);
        second.stored();
        assert!(
            limiter.shards.iter().all(|s| s.lock().unwrap().is_empty()),
            "no slot left behind"
        );
        assert!(matches!(admit(), Verdict::Admitted(..)));
    }

    #[test]
    fn in_flight_cost_counts_against_the_cost_limit() {
        let limiter = Arc::new(Limiter::default());
        let empty = Projection::default();
        let now = Utc::now();
        let admit = || limiter.admit("key_a", limits(None, Some(10)), Micros::new(6), now, &empty);
        let first = admit();
        assert!(matches!(first, Verdict::Admitted(..)));
        // 6 in flight < 10: the query that crosses the limit is allowed.
        let second = admit();
        assert!(matches!(second, Verdict::Admitted(..)));
        assert!(matches!(admit(), Verdict::CostExceeded(_)));
        drop((first, second));
        assert!(matches!(admit(), Verdict::Admitted(..)));
    }
}
