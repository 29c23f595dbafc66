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
use ingest::events::{Limit, Metric, Window};
use ingest::{Appended, EventId, Micros, StreamError};
use ledger::usage::{self, KeyUsage};
use ledger::Projection;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const SHARDS: usize = 64;
/// Verifications of one key, or of one customer, holding at once (not yet
/// settled, not expired; folded or not), at most: past it,
/// `concurrency_limited`.
pub const MAX_HOLDS: u64 = 10_000;

#[derive(Debug, Clone)]
struct Slot {
    id: u64,
    /// The query's key: a customer's scope holds the slots of all its keys.
    key_id: Arc<str>,
    /// What the query counts for against a cost limit while in flight:
    /// its hold (the workflow's `max_cost_per_request`, else its price).
    cost: Micros,
    /// Its usage event, once named.
    event: Option<EventId>,
    /// The projection has applied that event: it counts the query now.
    settled: bool,
    /// The event is on the stream: the slot stays until settled.
    stored: bool,
    /// A verification's: it will hold once folded.
    holds: bool,
    /// Whether the append stored the event is unknown (the stream
    /// stalled): the slot counts until settled or until then, when a late
    /// copy could no longer count.
    lapse_at: Option<std::time::Instant>,
}

/// How long a place whose append's outcome is unknown stays counted: past
/// any usage event's deadline (15 s) and the follower's lag.
const UNKNOWN_LAPSE: std::time::Duration = std::time::Duration::from_secs(120);

impl Slot {
    /// Counted as in flight: not yet in the projection, not lapsed.
    fn counts(&self, now: std::time::Instant) -> bool {
        !self.settled && self.lapse_at.is_none_or(|at| at > now)
    }
}

/// Slots by scope (`ingest::events::scope`: the customer, else the key).
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

/// The limits of one key or one customer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    pub limits: Vec<Limit>,
    pub max_concurrent: Option<u64>,
    /// A prepaid customer: queries are admitted while its credit balance,
    /// less the holds of its queries in flight, is above zero.
    pub prepaid: bool,
}

impl Rules {
    fn is_empty(&self) -> bool {
        self.limits.is_empty() && self.max_concurrent.is_none() && !self.prepaid
    }
}

/// Everything a query of one key is held to: the key's own limits and its
/// customer's, which all the customer's keys share.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub key: Rules,
    /// The customer's id and limits.
    pub customer: Option<(String, Rules)>,
    /// The day monthly periods start on (the customer's; 1 otherwise).
    pub anchor_day: u8,
}

impl Limits {
    /// A key's limits without a customer.
    pub fn of_key(key: Rules) -> Limits {
        Limits {
            key,
            customer: None,
            anchor_day: 1,
        }
    }

    pub fn customer_id(&self) -> Option<&str> {
        self.customer.as_ref().map(|(id, _)| id.as_str())
    }

    /// Whether anything limits the query: else it needs no place.
    pub fn any(&self) -> bool {
        !self.key.is_empty() || self.customer.as_ref().is_some_and(|(_, r)| !r.is_empty())
    }

    /// What the query's place is kept under (see `ingest::events::scope`).
    pub fn scope(&self, key_id: &str) -> String {
        ingest::events::scope(key_id, self.customer_id())
    }
}

/// One limit and what is used of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub level: Level,
    pub limit: Limit,
    /// Requests, tokens or micro-dollars.
    pub used: u64,
    /// When what is used of it next falls (epoch seconds).
    pub reset: Option<i64>,
}

/// Whose limit refused a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Key,
    Customer,
}

/// What refused a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Limit(Limit),
    /// `max_concurrent` queries in flight.
    Concurrent(u64),
    /// A prepaid customer's balance, less its holds, is at or below zero.
    Credits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub level: Level,
    pub refused: Refused,
    /// Epoch seconds when a place frees, where that is known (the oldest
    /// query leaving a rolling window, the next period).
    pub retry_at: Option<i64>,
}

/// Rate-limit state for the `X-RateLimit-*` headers: the `requests` limit,
/// the key's or its customer's, with the fewest remaining.
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
    Refused(Refusal, Option<RateState>),
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
    scope: String,
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
            // It may have landed (an acknowledgement lost in a stall):
            // counted until the fold settles it or it lapses, so a query
            // is never counted neither as in flight nor as recorded.
            Err(StreamError::Unavailable(_)) => self.unknown(),
            // Refused by the stream: the place is free again.
            Err(_) => self.appending = false,
        }
        appended
    }

    /// The append's outcome is unknown: see [`UNKNOWN_LAPSE`].
    fn unknown(&mut self) {
        self.limiter.with_slot(&self.scope, |slots| {
            if let Some(slot) = slots.iter_mut().find(|s| s.id == self.id) {
                slot.lapse_at = Some(std::time::Instant::now() + UNKNOWN_LAPSE);
            }
        });
        self.stored();
    }

    /// Names the event that will settle this place.
    fn expect(&self, event: EventId) {
        self.limiter.with_slot(&self.scope, |slots| {
            if let Some(slot) = slots.iter_mut().find(|s| s.id == self.id) {
                slot.event = Some(event);
            }
        });
    }

    /// The event is on the stream. The query stays counted as in flight
    /// until the follower applies it (at once, if it already has).
    fn stored(&self) {
        self.limiter.with_slot(&self.scope, |slots| {
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
                .with_slot(&self.scope, |slots| slots.retain(|s| s.id != self.id || s.stored));
        }
    }
}

impl Limiter {
    fn with_slot(&self, scope: &str, f: impl FnOnce(&mut Vec<Slot>)) {
        let mut shard = self.shards[shard_index(scope)]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(slots) = shard.get_mut(scope) {
            f(slots);
            if slots.is_empty() {
                shard.remove(scope);
            }
        }
    }

    /// Called by the follower as it applies a usage event (of `scope`),
    /// under the projection's write lock: from now on the projection
    /// counts it.
    pub fn settle(&self, scope: &str, event: EventId) {
        self.with_slot(scope, |slots| {
            if let Some(at) = slots.iter().position(|s| s.event == Some(event)) {
                if slots[at].stored {
                    slots.swap_remove(at);
                } else {
                    slots[at].settled = true;
                }
            }
        });
    }

    /// Admits a query of `key_id` or says which limit stops it, reading
    /// the recorded usage of the key and its customer from `projection`
    /// (held by the caller, so the follower cannot apply anything
    /// meanwhile). An admitted query counts against cost limits at `hold`
    /// until its usage is applied.
    pub fn admit(
        self: &Arc<Self>,
        key_id: &str,
        limits: &Limits,
        hold: Micros,
        now: DateTime<Utc>,
        projection: &Projection,
    ) -> Verdict {
        self.place(key_id, limits, hold, false, now, projection)
    }

    /// [`Self::admit`], saying whether the place is a verification's: it
    /// then counts against [`MAX_HOLDS`] before it is folded too.
    pub fn place(
        self: &Arc<Self>,
        key_id: &str,
        limits: &Limits,
        hold: Micros,
        holds: bool,
        now: DateTime<Utc>,
        projection: &Projection,
    ) -> Verdict {
        let scope = limits.scope(key_id);
        let mut shard = self.shards[shard_index(&scope)]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(slots) = shard.get_mut(&scope) {
            let now = std::time::Instant::now();
            slots.retain(|s| s.lapse_at.is_none_or(|at| at > now));
        }
        let taken = Taken::read(shard.get(&scope), &scope, key_id, limits, now, projection);
        let rate = taken.rate(1);
        if let Some(refusal) = taken.refusal() {
            return Verdict::Refused(refusal, taken.rate(0));
        }
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        shard.entry(scope.clone()).or_default().push(Slot {
            id,
            key_id: Arc::from(key_id),
            cost: hold,
            event: None,
            settled: false,
            stored: false,
            holds,
            lapse_at: None,
        });
        Verdict::Admitted(
            Reservation {
                limiter: self.clone(),
                scope,
                id,
                appending: false,
            },
            rate,
        )
    }

    /// Every limit of the key and of its customer, with what is used of it
    /// (recorded and in flight) and when it resets, as it stands.
    pub fn standing(
        &self,
        key_id: &str,
        limits: &Limits,
        now: DateTime<Utc>,
        projection: &Projection,
    ) -> Vec<Standing> {
        let scope = limits.scope(key_id);
        let shard = self.shards[shard_index(&scope)]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let taken = Taken::read(shard.get(&scope), &scope, key_id, limits, now, projection);
        taken
            .levels
            .iter()
            .flat_map(|used| used.rules.limits.iter().map(move |l| (used, l)))
            .map(|(used, limit)| {
                let (amount, reset) = taken.amount(used, limit);
                Standing {
                    level: used.level,
                    limit: *limit,
                    used: amount,
                    reset,
                }
            })
            .collect()
    }

    /// The rate-limit state as it stands, for the headers of an answer
    /// that admits nothing (a refused or malformed query).
    pub fn rate_state(
        &self,
        key_id: &str,
        limits: &Limits,
        now: DateTime<Utc>,
        projection: &Projection,
    ) -> Option<RateState> {
        let scope = limits.scope(key_id);
        let shard = self.shards[shard_index(&scope)]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        Taken::read(shard.get(&scope), &scope, key_id, limits, now, projection).rate(0)
    }
}

/// What one key, or one customer, has used: recorded, plus in flight here
/// and admitted on other replicas (pending).
struct Used<'a> {
    level: Level,
    rules: &'a Rules,
    recorded: Option<&'a KeyUsage>,
    in_flight: u64,
    /// Verifications whose hold has not expired: work in progress
    /// elsewhere (their request is in the recorded usage already).
    holding: u64,
    /// Of `in_flight`, verifications not folded yet.
    in_flight_holds: u64,
    in_flight_cost: Micros,
    /// A prepaid customer's credit balance.
    balance: Option<Micros>,
}

/// Everything a decision reads, for the key and its customer.
struct Taken<'a> {
    levels: Vec<Used<'a>>,
    now: DateTime<Utc>,
    anchor_day: u8,
}

impl<'a> Taken<'a> {
    fn read(
        slots: Option<&Vec<Slot>>,
        scope: &str,
        key_id: &str,
        limits: &'a Limits,
        now: DateTime<Utc>,
        projection: &'a Projection,
    ) -> Taken<'a> {
        let admissions = projection.usage.admissions(scope);
        let used = |level, rules, recorded, key: Option<&str>| {
            let (mut in_flight, mut in_flight_holds, mut in_flight_cost) = (0u64, 0u64, Micros::ZERO);
            let instant = std::time::Instant::now();
            for slot in slots.into_iter().flatten().filter(|s| s.counts(instant)) {
                if key.is_none_or(|k| *slot.key_id == *k) {
                    in_flight += 1;
                    in_flight_holds += u64::from(slot.holds);
                    in_flight_cost += slot.cost;
                }
            }
            // Admitted on any replica (NATS), not yet recorded.
            let pending = admissions.map_or_else(Default::default, |a| a.in_flight(key, now));
            Used {
                level,
                rules,
                recorded,
                in_flight: in_flight + pending.queries,
                holding: pending.verifications,
                in_flight_holds,
                in_flight_cost: in_flight_cost + pending.cost,
                balance: None,
            }
        };
        let mut levels = vec![used(
            Level::Key,
            &limits.key,
            projection.usage.get(key_id),
            Some(key_id),
        )];
        if let Some((customer_id, rules)) = &limits.customer {
            let mut customer = used(Level::Customer, rules, projection.usage.customer(customer_id), None);
            customer.balance = rules.prepaid.then(|| projection.credits.balance(customer_id, now));
            levels.push(customer);
        }
        Taken {
            levels,
            now,
            anchor_day: limits.anchor_day,
        }
    }

    /// How much of `limit` `used` has taken, and when a place frees.
    fn amount(&self, used: &Used<'_>, limit: &Limit) -> (u64, Option<i64>) {
        let now = self.now;
        let recorded = |f: &dyn Fn(&KeyUsage) -> (u64, Option<i64>)| used.recorded.map_or((0, None), f);
        let next_period = |window: Window| match window {
            Window::Minute => now.timestamp() + 61,
            Window::Hour => (usage::minute_of(now) + usage::WINDOW_MINUTES + 1) * 60,
            Window::Day => (usage::hour_of(now) + 25) * 3600,
            Window::Month => next_month(now, self.anchor_day),
        };
        let (amount, reset) = match (limit.metric, limit.window) {
            (Metric::Requests | Metric::Tokens, Window::Month) => recorded(&|u| {
                let month = u.day_and_month(now, self.anchor_day).1;
                (count(limit.metric, &month), None)
            }),
            (Metric::Requests | Metric::Tokens, window) => recorded(&|u| {
                let (bucket, reset) = u.rolling(window, now);
                (count(limit.metric, &bucket), reset)
            }),
            (Metric::Cost, Window::Month) => {
                recorded(&|u| (u.day_and_month(now, self.anchor_day).1.cost.get().max(0) as u64, None))
            }
            (Metric::Cost, _) => {
                recorded(&|u| (u.day_and_month(now, self.anchor_day).0.cost.get().max(0) as u64, None))
            }
        };
        // In-flight queries count as requests and at their hold as cost;
        // their tokens are not known until recorded.
        let amount = match limit.metric {
            Metric::Requests => amount + used.in_flight,
            Metric::Tokens => amount,
            Metric::Cost => amount + used.in_flight_cost.get().max(0) as u64,
        };
        let reset = match (limit.metric, limit.window) {
            (Metric::Cost, Window::Day) => (usage::day_of(now) + 1) * 86_400,
            (_, window) => reset.unwrap_or_else(|| next_period(window)),
        };
        (amount, Some(reset))
    }

    /// The first limit, the key's before its customer's, that refuses one
    /// more query: a query is admitted while every count is below its max.
    fn refusal(&self) -> Option<Refusal> {
        for used in &self.levels {
            // Holds are state kept until settled or expired: bounded per
            // key and customer, not by traffic. A verification answered but
            // not yet folded is only in flight here (the embedded log does
            // not wait for the fold), so it counts too.
            if used.holding + used.in_flight_holds >= MAX_HOLDS {
                return Some(Refusal {
                    level: used.level,
                    refused: Refused::Concurrent(MAX_HOLDS),
                    retry_at: None,
                });
            }
            if let Some(max) = used.rules.max_concurrent {
                if used.in_flight + used.holding >= max {
                    return Some(Refusal {
                        level: used.level,
                        refused: Refused::Concurrent(max),
                        retry_at: None,
                    });
                }
            }
            for limit in &used.rules.limits {
                let (amount, reset) = self.amount(used, limit);
                if amount >= limit.max {
                    return Some(Refusal {
                        level: used.level,
                        refused: Refused::Limit(*limit),
                        retry_at: reset,
                    });
                }
            }
            // Like a limit: admitted while above zero, so the crossing
            // query may take the balance below it by its own cost.
            if used.balance.is_some_and(|b| b - used.in_flight_cost <= Micros::ZERO) {
                return Some(Refusal {
                    level: used.level,
                    refused: Refused::Credits,
                    retry_at: None,
                });
            }
        }
        None
    }

    /// The headers' state with `more` queries taken besides: the requests
    /// limit with the fewest remaining.
    fn rate(&self, more: u64) -> Option<RateState> {
        self.levels
            .iter()
            .flat_map(|used| used.rules.limits.iter().map(move |l| (used, l)))
            .filter(|(_, l)| l.metric == Metric::Requests)
            .map(|(used, l)| {
                let (amount, reset) = self.amount(used, l);
                RateState {
                    limit: l.max,
                    remaining: l.max.saturating_sub(amount + more),
                    reset: reset.unwrap_or_default(),
                }
            })
            .min_by_key(|r| r.remaining)
    }
}

fn count(metric: Metric, bucket: &ledger::Bucket) -> u64 {
    match metric {
        Metric::Tokens => bucket.tokens(),
        _ => bucket.admitted(),
    }
}

/// Epoch seconds of the start of the month after the one (from
/// `anchor_day`) that holds `now`.
fn next_month(now: DateTime<Utc>, anchor_day: u8) -> i64 {
    let start = usage::month_start(now, anchor_day);
    usage::month_start(start + chrono::Duration::days(32), anchor_day).timestamp()
}

fn shard_index(scope: &str) -> usize {
    shard_of(scope, SHARDS)
}

/// Which of `n` shards `scope` belongs to.
pub fn shard_of(scope: &str, n: usize) -> usize {
    (fnv1a(scope) as usize) % n
}

/// FNV-1a: a fast, stable hash for picking a shard.
fn fnv1a(s: &str) -> u64 {
    s.bytes()
        .fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use ingest::events::QueryRecorded;

    fn rule(metric: Metric, window: Window, max: u64) -> Limit {
        Limit { metric, window, max }
    }

    fn limits(rate: Option<u64>, cost: Option<u64>) -> Limits {
        let mut rules = Rules::default();
        rules
            .limits
            .extend(rate.map(|max| rule(Metric::Requests, Window::Hour, max)));
        rules
            .limits
            .extend(cost.map(|max| rule(Metric::Cost, Window::Month, max)));
        Limits::of_key(rules)
    }

    fn refused(verdict: &Verdict) -> Option<Refused> {
        match verdict {
            Verdict::Refused(r, _) => Some(r.refused),
            _ => None,
        }
    }

    #[test]
    fn in_flight_queries_count_until_released_or_settled() {
        let limiter = Arc::new(Limiter::default());
        let empty = Projection::default();
        let now = Utc::now();
        let admit = |key: &str| limiter.admit(key, &limits(Some(3), None), Micros::ZERO, now, &empty);
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
        assert!(refused(&admit("key_a")).is_some());
        assert!(matches!(admit("key_b"), Verdict::Admitted(..)), "keys are independent");
        held.pop();
        let third = admit("key_a");
        assert!(matches!(third, Verdict::Admitted(..)));
        assert!(refused(&admit("key_a")).is_some());
        // Settled: the projection counts it (here it is empty, so a place frees).
        let event = EventId::new();
        held[0].expect(event);
        limiter.settle("key_a", EventId::new());
        assert!(refused(&admit("key_a")).is_some(), "another event settles nothing");
        limiter.settle("key_a", event);
        assert!(matches!(admit("key_a"), Verdict::Admitted(..)));
    }

    #[test]
    fn a_stored_query_stays_in_flight_until_settled_in_either_order() {
        let limiter = Arc::new(Limiter::default());
        let empty = Projection::default();
        let now = Utc::now();
        let admit = || limiter.admit("key_a", &limits(Some(2), None), Micros::ZERO, now, &empty);
        let (Verdict::Admitted(first, _), Verdict::Admitted(second, _)) = (admit(), admit()) else {
            panic!("two places under a limit of 2");
        };
        let (one, two) = (EventId::new(), EventId::new());
        first.expect(one);
        second.expect(two);
        // Stored, then settled: the place is held across the gap.
        first.stored();
        assert!(refused(&admit()).is_some(), "stored but not applied: still counted");
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

    /// An append whose outcome is unknown keeps its place (the event may
    /// have landed) until the fold settles it; one the stream refused
    /// gives it back.
    #[tokio::test]
    async fn an_unknown_outcome_keeps_its_place_until_settled() {
        let limiter = Arc::new(Limiter::default());
        let empty = Projection::default();
        let now = Utc::now();
        let admit = || limiter.admit("key_a", &limits(Some(1), None), Micros::ZERO, now, &empty);
        let Verdict::Admitted(first, _) = admit() else { panic!() };
        let event = EventId::new();
        let stalled = async { Err(StreamError::Unavailable("stalled".into())) };
        assert!(first.append(event, stalled).await.is_err());
        assert!(refused(&admit()).is_some(), "it may be on the stream: still counted");
        limiter.settle("key_a", event);
        let Verdict::Admitted(second, _) = admit() else {
            panic!("settled: the place is free")
        };
        let refused_by_stream = async { Err(StreamError::Invalid("too large".into())) };
        assert!(second.append(EventId::new(), refused_by_stream).await.is_err());
        assert!(matches!(admit(), Verdict::Admitted(..)), "refused: given back");
    }

    #[test]
    fn in_flight_cost_counts_against_the_cost_limit() {
        let limiter = Arc::new(Limiter::default());
        let empty = Projection::default();
        let now = Utc::now();
        let admit = || limiter.admit("key_a", &limits(None, Some(10)), Micros::new(6), now, &empty);
        let first = admit();
        assert!(matches!(first, Verdict::Admitted(..)));
        // 6 in flight < 10: the query that crosses the limit is allowed.
        let second = admit();
        assert!(matches!(second, Verdict::Admitted(..)));
        assert_eq!(
            refused(&admit()),
            Some(Refused::Limit(rule(Metric::Cost, Window::Month, 10)))
        );
        drop((first, second));
        assert!(matches!(admit(), Verdict::Admitted(..)));
    }

    /// The keys of one customer share its limits and its `max_concurrent`;
    /// each key still has its own.
    #[test]
    fn a_customers_keys_share_its_limits() {
        let limiter = Arc::new(Limiter::default());
        let empty = Projection::default();
        let now = Utc::now();
        let of = |key_max: u64| Limits {
            key: Rules {
                limits: vec![rule(Metric::Requests, Window::Minute, key_max)],
                ..Rules::default()
            },
            customer: Some((
                "acme".into(),
                Rules {
                    limits: vec![rule(Metric::Requests, Window::Day, 5)],
                    max_concurrent: Some(4),
                    prepaid: false,
                },
            )),
            anchor_day: 1,
        };
        let admit = |key: &str, key_max| limiter.admit(key, &of(key_max), Micros::ZERO, now, &empty);
        let mut held: Vec<Verdict> = (0..2).map(|_| admit("key_a", 2)).collect();
        let refusal = match admit("key_a", 2) {
            Verdict::Refused(r, _) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(refusal.level, Level::Key, "the key's own limit comes first");
        held.extend((0..2).map(|_| admit("key_b", 10)));
        assert!(held.iter().all(|v| matches!(v, Verdict::Admitted(..))));
        assert_eq!(
            refused(&admit("key_c", 10)),
            Some(Refused::Concurrent(4)),
            "4 in flight across the customer's keys"
        );
        held.pop();
        assert!(matches!(admit("key_c", 10), Verdict::Admitted(..)));
    }

    /// Tokens count once recorded (a query in flight has none yet), so the
    /// query that crosses a tokens limit is allowed and the next refused,
    /// until the oldest leaves the rolling minute.
    #[test]
    fn a_tokens_limit_counts_recorded_tokens_in_its_window() {
        let limiter = Arc::new(Limiter::default());
        let t = Utc.with_ymd_and_hms(2026, 12, 6, 10, 0, 0).unwrap();
        let mut projection = Projection::default();
        let recorded = |tokens| {
            ingest::Event::QueryRecorded(QueryRecorded {
                request_id: "r".into(),
                key_id: "key_a".into(),
                workflow_id: "w".into(),
                status_code: 200,
                cost: Micros::ZERO,
                duration_ms: 1,
                reported_cost: None,
                record_by: None,
                customer_id: None,
                input_tokens: tokens,
                output_tokens: tokens,
                authorization_id: None,
            })
        };
        projection.apply(1, EventId::new(), t, &recorded(300));
        let limits = Limits::of_key(Rules {
            limits: vec![rule(Metric::Tokens, Window::Minute, 1000)],
            ..Rules::default()
        });
        let admit = |now, p: &Projection| limiter.admit("key_a", &limits, Micros::ZERO, now, p);
        assert!(matches!(admit(t, &projection), Verdict::Admitted(..)), "600 < 1000");
        projection.apply(2, EventId::new(), t, &recorded(300));
        let Verdict::Refused(refusal, _) = admit(t + chrono::Duration::seconds(30), &projection) else {
            panic!("1200 tokens in the minute");
        };
        assert_eq!(
            refusal.retry_at,
            Some(t.timestamp() + 61),
            "when the 10:00:00 second leaves"
        );
        assert!(matches!(
            admit(t + chrono::Duration::seconds(61), &projection),
            Verdict::Admitted(..)
        ));
    }
}
