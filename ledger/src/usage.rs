//! Per-key usage, folded from `query.recorded` events: the rolling 60
//! minutes the rate limit reads (minute buckets), hourly buckets (the last
//! 48 hours), daily buckets (the last 31 days), UTC calendar months (all of
//! them), all-time totals and last use. Money is integer micro-dollars
//! throughout.
//!
//! Memory is bounded per key, not by traffic: at most 61 minutes, 48 hours,
//! 31 days and one bucket a month (about 5 KB for a key used every minute).
//! Older hours and days are read from the Parquet archive.
//!
//! Retention is measured from the newest event of the key, never from a
//! clock, so the fold stays pure: the same events give the same state.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use ingest::events::{QueryAdmitted, QueryRecorded, Window};
use ingest::{EventId, Micros};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::hash::FastMap;

/// Minutes in the rate limit's window.
pub const WINDOW_MINUTES: i64 = 60;
/// Hourly buckets kept, in hours, counted back from the key's newest
/// (the hour of its newest query and the 47 before it).
pub const HOURS_KEPT: i64 = 48;
/// Daily buckets kept, in days, counted back from the key's newest (its
/// day and the 30 before it: the default view).
pub const DAYS_KEPT: i64 = 31;

/// What a period of usage comes to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub requests: u64,
    pub cost: Micros,
    /// Queries whose upstream failed or timed out (status ≥ 500).
    pub errors: u64,
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    /// Verifications (`query.admitted` with `verification`) no usage event
    /// has settled: they count against request limits, not as usage.
    #[serde(default)]
    pub unsettled: u64,
}

impl std::ops::AddAssign for Bucket {
    fn add_assign(&mut self, other: Bucket) {
        self.requests += other.requests;
        self.cost += other.cost;
        self.errors += other.errors;
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.unsettled += other.unsettled;
    }
}

impl Bucket {
    fn add(&mut self, q: &QueryRecorded) {
        self.requests += 1;
        self.cost += q.cost;
        if q.status_code >= 500 {
            self.errors += 1;
        }
        self.input_tokens = self.input_tokens.saturating_add(q.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(q.output_tokens);
    }

    /// What request limits count: requests, and verifications not settled.
    pub fn admitted(&self) -> u64 {
        self.requests + self.unsettled
    }

    /// Input plus output tokens.
    pub fn tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// Buckets by period number (minutes, hours or days since the epoch, or
/// months since year 0), oldest first, only periods that had queries. Events
/// arrive in time order but for clock skew between replicas, so the newest
/// period takes nearly every query: it is kept inline, where adding to it
/// touches no memory beyond the key's own entry. Older periods are a ring
/// buffer, pushed at the back and pruned at the front, both O(1); a key used
/// once costs no allocation.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Series {
    past: VecDeque<(i64, Bucket)>,
    newest: Option<(i64, Bucket)>,
}

impl Series {
    /// Changes `period` by `f`; true if that period is new to the series.
    fn add(&mut self, period: i64, f: impl Fn(&mut Bucket)) -> bool {
        let mut bucket = Bucket::default();
        f(&mut bucket);
        match &mut self.newest {
            Some((newest, b)) if *newest == period => {
                f(b);
                false
            }
            Some((newest, _)) if *newest < period => {
                self.past.extend(self.newest.replace((period, bucket)));
                true
            }
            Some(_) => {
                let at = self.past.partition_point(|(p, _)| *p < period);
                match self.past.get_mut(at) {
                    Some((p, b)) if *p == period => {
                        f(b);
                        false
                    }
                    _ => {
                        self.past.insert(at, (period, bucket));
                        true
                    }
                }
            }
            None => {
                self.newest = Some((period, bucket));
                true
            }
        }
    }

    /// Changes `period` by `f` if the series still holds it.
    fn change(&mut self, period: i64, f: impl Fn(&mut Bucket)) {
        match &mut self.newest {
            Some((p, b)) if *p == period => f(b),
            _ => {
                if let Ok(i) = self.past.binary_search_by_key(&period, |(p, _)| *p) {
                    f(&mut self.past[i].1);
                }
            }
        }
    }

    /// Drops periods before `oldest`.
    fn keep_from(&mut self, oldest: i64) {
        // Usually nothing is stale: look at the front before searching.
        if self.past.front().is_some_and(|(p, _)| *p < oldest) {
            let stale = self.past.partition_point(|(p, _)| *p < oldest);
            self.past.drain(..stale);
        }
        if self.newest.is_some_and(|(p, _)| p < oldest) {
            self.newest = None;
        }
    }

    pub fn get(&self, period: i64) -> Bucket {
        match self.newest {
            Some((p, bucket)) if p == period => bucket,
            _ => match self.past.binary_search_by_key(&period, |(p, _)| *p) {
                Ok(i) => self.past[i].1,
                Err(_) => Bucket::default(),
            },
        }
    }

    /// Periods in `from..to` that had queries.
    pub fn range(&self, from: i64, to: i64) -> impl Iterator<Item = (i64, Bucket)> + '_ {
        let start = self.past.partition_point(|(p, _)| *p < from);
        self.past
            .range(start..)
            .copied()
            .chain(self.newest)
            .skip_while(move |(p, _)| *p < from)
            .take_while(move |(p, _)| *p < to)
    }

    fn sum_from(&self, from: i64) -> Bucket {
        self.range(from, i64::MAX).fold(Bucket::default(), |mut acc, (_, b)| {
            acc += b;
            acc
        })
    }
}

/// In snapshots: one list of periods, oldest first.
impl Serialize for Series {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.past.iter().chain(self.newest.as_ref()))
    }
}

impl<'de> Deserialize<'de> for Series {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut past = VecDeque::<(i64, Bucket)>::deserialize(d)?;
        if !past.iter().is_sorted_by(|a, b| a.0 < b.0) {
            return Err(serde::de::Error::custom("usage periods are not in order"));
        }
        let newest = past.pop_back();
        Ok(Series { past, newest })
    }
}

/// Period numbers of a moment.
pub fn minute_of(ts: DateTime<Utc>) -> i64 {
    ts.timestamp().div_euclid(60)
}

pub fn hour_of(ts: DateTime<Utc>) -> i64 {
    ts.timestamp().div_euclid(3600)
}

pub fn day_of(ts: DateTime<Utc>) -> i64 {
    ts.timestamp().div_euclid(86_400)
}

pub fn month_of(ts: DateTime<Utc>) -> i64 {
    ts.year() as i64 * 12 + ts.month0() as i64
}

/// The start (UTC midnight) of the month beginning on `anchor_day` (1 to
/// 28) that holds `now`.
pub fn month_start(now: DateTime<Utc>, anchor_day: u8) -> DateTime<Utc> {
    let anchor = u32::from(anchor_day.clamp(1, 28));
    let (mut year, mut month) = (now.year(), now.month());
    if now.day() < anchor {
        (year, month) = if month == 1 { (year - 1, 12) } else { (year, month - 1) };
    }
    NaiveDate::from_ymd_opt(year, month, anchor)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(now, |t| t.and_utc())
}

/// The UTC date of a day number.
pub fn date_of_day(day: i64) -> Option<NaiveDate> {
    DateTime::from_timestamp(day.checked_mul(86_400)?, 0).map(|t| t.date_naive())
}

/// The usage of one key or one customer (the sum of its keys').
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyUsage {
    minutes: Series,
    pub hours: Series,
    pub days: Series,
    pub months: Series,
    pub total: Bucket,
    pub last_used_at: Option<DateTime<Utc>>,
    /// The rolling minute's: seconds, kept 61. Last and defaulted, like
    /// every field added since: snapshots are positional, and a version 2
    /// snapshot (before customers and tokens) still loads.
    #[serde(default)]
    seconds: Series,
}

impl KeyUsage {
    fn record(&mut self, ts: DateTime<Utc>, q: &QueryRecorded) {
        self.touch(ts, |b| b.add(q));
        self.total.add(q);
    }

    /// A verification at `ts`: a request against limits until settled.
    fn verified(&mut self, ts: DateTime<Utc>) {
        self.touch(ts, |b| b.unsettled += 1);
    }

    /// The verification made at `at` was settled: its usage event counts
    /// it from now on.
    fn settled(&mut self, at: DateTime<Utc>) {
        let f = |b: &mut Bucket| b.unsettled = b.unsettled.saturating_sub(1);
        self.seconds.change(at.timestamp(), f);
        self.minutes.change(minute_of(at), f);
        self.hours.change(hour_of(at), f);
        self.days.change(day_of(at), f);
        self.months.change(month_of(at), f);
    }

    /// Changes every period holding `ts` by `f`.
    fn touch(&mut self, ts: DateTime<Utc>, f: impl Fn(&mut Bucket) + Copy) {
        let newest = self.last_used_at.map_or(ts, |at| at.max(ts));
        // Old periods can only fall out when a new one starts.
        if self.seconds.add(ts.timestamp(), f) {
            self.seconds.keep_from(newest.timestamp() - 60);
        }
        if self.minutes.add(minute_of(ts), f) {
            self.minutes.keep_from(minute_of(newest) - WINDOW_MINUTES);
        }
        if self.hours.add(hour_of(ts), f) {
            self.hours.keep_from(hour_of(newest) - HOURS_KEPT + 1);
        }
        if self.days.add(day_of(ts), f) {
            self.days.keep_from(day_of(newest) - DAYS_KEPT + 1);
        }
        self.months.add(month_of(ts), f);
        self.last_used_at = Some(newest);
    }

    /// Admitted queries (and verifications not settled yet) in the rolling
    /// hour before `now`: what a requests limit counts. Buckets are
    /// minutes, and a query counts until the end of the 60th minute after
    /// its own: for at least 60 full minutes (a query at 10:00:59 until
    /// 11:01:00), at most 61.
    pub fn requests_this_hour(&self, now: DateTime<Utc>) -> u64 {
        self.rolling(Window::Hour, now).0.admitted()
    }

    /// What the rolling `window` before `now` holds, and when its oldest
    /// query leaves it (epoch seconds). A query counts for at least the
    /// window's full length: a minute counts seconds (61 buckets), an hour
    /// minutes (61), a day hours (25).
    pub fn rolling(&self, window: Window, now: DateTime<Utc>) -> (Bucket, Option<i64>) {
        let (series, unit, span) = match window {
            Window::Minute => (&self.seconds, 1, 60),
            Window::Hour => (&self.minutes, 60, WINDOW_MINUTES),
            Window::Day | Window::Month => (&self.hours, 3600, 24),
        };
        let from = now.timestamp().div_euclid(unit) - span;
        let mut sum = Bucket::default();
        let mut oldest = None;
        for (period, bucket) in series.range(from, i64::MAX) {
            oldest.get_or_insert((period + span + 1) * unit);
            sum += bucket;
        }
        (sum, oldest)
    }

    /// The UTC day of `now` and the month starting on `anchor_day` (1 for
    /// the calendar month) that holds `now`, from the daily buckets (31
    /// kept: a month from any anchor day fits).
    pub fn day_and_month(&self, now: DateTime<Utc>, anchor_day: u8) -> (Bucket, Bucket) {
        let today = day_of(now);
        if anchor_day <= 1 {
            return (self.days.get(today), self.months.get(month_of(now)));
        }
        let start = day_of(month_start(now, anchor_day));
        (self.days.get(today), self.days.sum_from(start))
    }
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Shared with copies of the projection until changed (`make_mut`): a
    /// copy for a snapshot clones a pointer per key, not its buckets.
    by_key: FastMap<String, Arc<KeyUsage>>,
    /// Admissions (`query.admitted`, NATS only) whose query is not
    /// recorded yet, by scope (the customer, else the key: see
    /// `ingest::events::scope`).
    /// Keyed by ids a seller chooses (customers'): SipHash, not FastMap.
    #[serde(default)]
    admissions: HashMap<String, Admissions>,
    /// Each customer's usage: the queries of its keys made while they
    /// named it (`query.recorded.customer_id`).
    #[serde(default)]
    by_customer: HashMap<String, Arc<KeyUsage>>,
    /// The scope of each verification still pending, by its `record_id`:
    /// the usage event that settles it may come from anywhere.
    #[serde(default)]
    verifications: HashMap<EventId, String>,
}

/// A scope's admitted queries not yet recorded, and where its admission
/// subject stands.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Admissions {
    /// The sequence of the key's last `query.admitted` that holds: the
    /// next one must name it as `after_seq`.
    pub last_seq: u64,
    pending: Vec<Pending>,
    /// How many were pending after the last pruning of expired ones: the
    /// next waits until there are twice as many, so folding an admission
    /// costs O(1) amortised however many holds a scope keeps (the expired
    /// ones left meanwhile count for nothing: readers check `expires_at`).
    #[serde(default)]
    pruned_len: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pending {
    record_id: EventId,
    cost: Micros,
    expires_at: DateTime<Utc>,
    /// Its key (a customer's scope holds the admissions of all its keys);
    /// empty in a version 2 snapshot, whose scopes were all keys.
    #[serde(default)]
    key_id: String,
    /// A verification's, made at this time: it counts as a request in the
    /// usage buckets (`Bucket::unsettled`), so here only for its hold.
    #[serde(default)]
    verified_at: Option<DateTime<Utc>>,
}

/// A scope's admitted work not yet recorded.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    /// Queries admitted on any replica.
    pub queries: u64,
    /// Verifications whose hold has not expired.
    pub verifications: u64,
    /// What both count for against cost limits and credits.
    pub cost: Micros,
}

impl Admissions {
    /// Whether the admission naming `record_id` holds (it was folded, not
    /// void, and its query is not recorded yet).
    pub fn holds(&self, record_id: EventId) -> bool {
        self.pending.iter().any(|p| p.record_id == record_id)
    }

    /// Queries admitted and not yet recorded, and what they are expected to
    /// cost, leaving out those whose replica must have died (past
    /// `expires_at`).
    pub fn pending(&self, now: DateTime<Utc>) -> (u64, Micros) {
        self.pending_of(None, now)
    }

    /// [`Self::pending`] of one key of the scope (all of them: `None`).
    pub fn pending_of(&self, key_id: Option<&str>, now: DateTime<Utc>) -> (u64, Micros) {
        let f = self.in_flight(key_id, now);
        (f.queries, f.cost)
    }

    /// What of the scope (of one key of it: `Some`) is admitted and not
    /// recorded, leaving out what has expired.
    pub fn in_flight(&self, key_id: Option<&str>, now: DateTime<Utc>) -> InFlight {
        let mut f = InFlight::default();
        for p in &self.pending {
            if p.expires_at <= now || key_id.is_some_and(|k| !p.key_id.is_empty() && p.key_id != k) {
                continue;
            }
            match p.verified_at {
                Some(_) => f.verifications += 1,
                None => f.queries += 1,
            }
            f.cost += p.cost;
        }
        f
    }
}

impl Usage {
    pub fn get(&self, key_id: &str) -> Option<&KeyUsage> {
        self.by_key.get(key_id).map(|u| &**u)
    }

    pub fn customer(&self, customer_id: &str) -> Option<&KeyUsage> {
        self.by_customer.get(customer_id).map(|u| &**u)
    }

    /// The key of the verification that will be settled as `record_id`,
    /// while it is pending.
    pub fn verified_key(&self, record_id: EventId) -> Option<&str> {
        let scope = self.verifications.get(&record_id)?;
        let admissions = self.admissions.get(scope)?;
        admissions
            .pending
            .iter()
            .find(|p| p.record_id == record_id)
            .map(|p| p.key_id.as_str())
    }

    /// The admissions of `scope` (`ingest::events::scope`).
    pub fn admissions(&self, scope: &str) -> Option<&Admissions> {
        self.admissions.get(scope)
    }

    /// Folds a `query.admitted` stored at `seq`. One that did not know its
    /// scope's previous admission is void: its replica decided without it,
    /// and decides again once it has folded this.
    pub(crate) fn admitted(&mut self, seq: u64, ts: DateTime<Utc>, a: &QueryAdmitted) {
        let scope = a.scope();
        let admissions = self.admissions.entry(scope.clone()).or_default();
        if !a.local && a.after_seq != admissions.last_seq {
            return;
        }
        admissions.last_seq = seq;
        // Reservations of replicas that died, and holds that expired:
        // pruned by event time, so the fold stays pure.
        if admissions.pending.len() >= 2 * admissions.pruned_len.max(8) {
            let verifications = &mut self.verifications;
            admissions.pending.retain(|p| {
                let live = p.expires_at > ts;
                if !live && p.verified_at.is_some() {
                    verifications.remove(&p.record_id);
                }
                live
            });
            admissions.pruned_len = admissions.pending.len();
        }
        admissions.pending.push(Pending {
            key_id: a.key_id.clone(),
            record_id: a.record_id,
            cost: a.cost,
            expires_at: a.expires_at,
            verified_at: a.verification.then_some(ts),
        });
        if a.verification {
            self.verifications.insert(a.record_id, scope);
            if let Some(customer_id) = &a.customer_id {
                Arc::make_mut(entry(&mut self.by_customer, customer_id)).verified(ts);
            }
            Arc::make_mut(entry(&mut self.by_key, &a.key_id)).verified(ts);
        }
    }

    /// Frees the place of the admission whose query was recorded as `id`
    /// too late to count.
    pub(crate) fn unadmit(&mut self, q: &QueryRecorded, id: EventId) {
        let scope = ingest::events::scope(&q.key_id, q.customer_id.as_deref());
        if let Some(admissions) = self.admissions.get_mut(&scope) {
            admissions.pending.retain(|p| p.record_id != id);
        }
    }

    /// Folds `q` (event `id`), settling its admission if it had one; returns
    /// the key's usage in the UTC month of `ts`, for the alert rules.
    pub(crate) fn apply(&mut self, id: EventId, ts: DateTime<Utc>, q: &QueryRecorded) -> Bucket {
        let scope = ingest::events::scope(&q.key_id, q.customer_id.as_deref());
        if let Some(admissions) = self.admissions.get_mut(&scope) {
            if let Some(at) = admissions.pending.iter().position(|p| p.record_id == id) {
                admissions.pending.swap_remove(at);
            }
        }
        let settles = q.authorization_id.as_deref().and_then(QueryAdmitted::record_id_of);
        if let Some(record_id) = settles {
            self.settle(record_id, &q.key_id);
        }
        if let Some(customer_id) = &q.customer_id {
            Arc::make_mut(entry(&mut self.by_customer, customer_id)).record(ts, q);
        }
        let usage = Arc::make_mut(entry(&mut self.by_key, &q.key_id));
        usage.record(ts, q);
        usage.months.get(month_of(ts))
    }
}

impl Usage {
    /// The verification `record_id` was settled by a usage event: its hold
    /// is released, and its request moves from `unsettled` to the usage
    /// (a verification and its usage are one request).
    /// Only `key_id`'s own: the API refuses another key's, but may have
    /// decided from a projection that had not folded the verification yet.
    fn settle(&mut self, record_id: EventId, key_id: &str) {
        let Some(scope) = self.verifications.get(&record_id).cloned() else {
            return;
        };
        let Some(admissions) = self.admissions.get_mut(&scope) else {
            return;
        };
        let Some(at) = admissions.pending.iter().position(|p| p.record_id == record_id) else {
            return;
        };
        if admissions.pending[at].key_id != key_id {
            return;
        }
        self.verifications.remove(&record_id);
        let pending = admissions.pending.swap_remove(at);
        let Some(verified_at) = pending.verified_at else {
            return;
        };
        // A customer's scope is `c:<id>` (key ids never start so).
        if let Some(customer_id) = scope.strip_prefix("c:") {
            Arc::make_mut(entry(&mut self.by_customer, customer_id)).settled(verified_at);
        }
        Arc::make_mut(entry(&mut self.by_key, &pending.key_id)).settled(verified_at);
    }
}

/// The entry of `id`, made if new (without cloning the id when it is not).
fn entry<'a, S: std::hash::BuildHasher>(
    map: &'a mut HashMap<String, Arc<KeyUsage>, S>,
    id: &str,
) -> &'a mut Arc<KeyUsage> {
    if !map.contains_key(id) {
        map.insert(id.to_owned(), Arc::default());
    }
    map.get_mut(id).expect("inserted above")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn at(d: u32, h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, h, m, s).unwrap()
    }

    fn query(cost: i64, status: u16) -> QueryRecorded {
        QueryRecorded {
            request_id: "r".into(),
            key_id: "key_a".into(),
            workflow_id: "wf".into(),
            status_code: status,
            cost: Micros::new(cost),
            duration_ms: 1,
            reported_cost: None,
            record_by: None,
            customer_id: None,
            input_tokens: 0,
            output_tokens: 0,
            authorization_id: None,
        }
    }

    fn given(events: &[(DateTime<Utc>, QueryRecorded)]) -> Usage {
        let mut u = Usage::default();
        for (ts, q) in events {
            u.apply(EventId::new(), *ts, q);
        }
        u
    }

    #[test]
    fn an_admission_counts_until_its_record_or_its_expiry() {
        let mut u = Usage::default();
        let admit = |record_id, expires_at, after_seq| QueryAdmitted {
            request_id: "r".into(),
            key_id: "key_a".into(),
            workflow_id: "wf".into(),
            cost: Micros::new(7),
            record_id,
            expires_at,
            after_seq,
            customer_id: None,
            verification: false,
            local: false,
        };
        let (first, second, raced) = (EventId::new(), EventId::new(), EventId::new());
        u.admitted(10, at(25, 10, 0, 0), &admit(first, at(25, 10, 1, 0), 0));
        u.admitted(11, at(25, 10, 0, 0), &admit(raced, at(25, 10, 1, 0), 0));
        u.admitted(12, at(25, 10, 0, 1), &admit(second, at(25, 10, 1, 1), 10));
        let a = u.admissions("key_a").unwrap();
        assert!(!a.holds(raced), "decided without the admission at 10: void");
        assert!(a.holds(first) && a.holds(second));
        assert_eq!(a.last_seq, 12);
        assert_eq!(a.pending(at(25, 10, 0, 2)), (2, Micros::new(14)));
        assert_eq!(
            a.pending(at(25, 10, 1, 0)),
            (1, Micros::new(7)),
            "the first one's replica is presumed dead"
        );
        u.apply(EventId::new(), at(25, 10, 0, 3), &query(5, 200));
        assert_eq!(
            u.admissions("key_a").unwrap().pending(at(25, 10, 0, 3)).0,
            2,
            "another query's record settles nothing"
        );
        u.apply(second, at(25, 10, 0, 3), &query(5, 200));
        assert_eq!(
            u.admissions("key_a").unwrap().pending(at(25, 10, 0, 3)),
            (1, Micros::new(7))
        );
        // Expired ones count for nothing at once, and are pruned once
        // the list has doubled since the last pruning: it stays within
        // twice what is live (or 16), however many come and go.
        u.admitted(20, at(25, 10, 2, 0), &admit(EventId::new(), at(25, 10, 3, 0), 12));
        assert_eq!(
            u.admissions("key_a").unwrap().pending(at(25, 10, 2, 0)),
            (1, Micros::new(7))
        );
        for n in 0..1000 {
            let ts = at(25, 11, 0, 0) + chrono::Duration::seconds(n);
            let last = u.admissions("key_a").unwrap().last_seq;
            u.admitted(
                21 + n as u64,
                ts,
                &admit(EventId::new(), ts + chrono::Duration::seconds(2), last),
            );
            let kept = u.admissions("key_a").unwrap().pending.len();
            assert!(kept <= 2 * 8, "{kept} kept with at most 3 live");
        }
    }

    #[test]
    fn a_verification_is_one_request_whether_settled_or_not_and_holds_until_then() {
        let mut u = Usage::default();
        let verify = |record_id, after_seq| QueryAdmitted {
            request_id: QueryAdmitted::authorization_id(record_id),
            key_id: "key_a".into(),
            workflow_id: "wf".into(),
            cost: Micros::new(300),
            record_id,
            expires_at: at(25, 10, 5, 0),
            after_seq,
            customer_id: Some("acme".into()),
            verification: true,
            local: false,
        };
        let (settled, unsettled) = (EventId::new(), EventId::new());
        u.admitted(1, at(25, 10, 0, 0), &verify(settled, 0));
        u.admitted(2, at(25, 10, 0, 1), &verify(unsettled, 1));
        let now = at(25, 10, 1, 0);
        let counted = |u: &Usage, who: &str| {
            let usage = if who == "acme" { u.customer(who) } else { u.get(who) };
            let (hour, _) = usage.unwrap().rolling(Window::Hour, now);
            (hour.requests, hour.admitted())
        };
        assert_eq!(
            counted(&u, "key_a"),
            (0, 2),
            "requests limits count both, usage neither"
        );
        assert_eq!(counted(&u, "acme"), (0, 2));
        let in_flight = u.admissions("c:acme").unwrap().in_flight(None, now);
        assert_eq!(
            (in_flight.queries, in_flight.verifications, in_flight.cost),
            (0, 2, Micros::new(600))
        );
        // Its usage event names it: one request, its hold released.
        let mut q = query(120, 200);
        q.customer_id = Some("acme".into());
        q.authorization_id = Some(QueryAdmitted::authorization_id(settled));
        u.apply(EventId::new(), at(25, 10, 0, 30), &q);
        assert_eq!(counted(&u, "key_a"), (1, 2), "one request, not two");
        assert_eq!(counted(&u, "acme"), (1, 2));
        let in_flight = u.admissions("c:acme").unwrap().in_flight(None, now);
        assert_eq!((in_flight.verifications, in_flight.cost), (1, Micros::new(300)));
        // Past its expiry the other hold counts for nothing; its request stays.
        let later = at(25, 10, 6, 0);
        assert_eq!(
            u.admissions("c:acme").unwrap().in_flight(None, later),
            InFlight::default()
        );
        assert_eq!(u.get("key_a").unwrap().rolling(Window::Hour, later).0.admitted(), 2);
        assert_eq!(
            u.get("key_a").unwrap().total.requests,
            1,
            "usage holds the settled one only"
        );
    }

    /// Snapshots are positional MessagePack: usage written by version 2
    /// (before customers and tokens) loads, with tokens 0, no seconds, and
    /// pending admissions that count for their key.
    #[test]
    fn version_2_usage_still_loads() {
        #[derive(Serialize)]
        struct V2Bucket(u64, Micros, u64);
        #[derive(Serialize)]
        struct V2KeyUsage(
            Vec<(i64, V2Bucket)>,
            Vec<(i64, V2Bucket)>,
            Vec<(i64, V2Bucket)>,
            Vec<(i64, V2Bucket)>,
            V2Bucket,
            Option<DateTime<Utc>>,
        );
        #[derive(Serialize)]
        struct V2Pending(EventId, Micros, DateTime<Utc>);
        let t = at(25, 10, 0, 0);
        let old = V2KeyUsage(
            vec![(minute_of(t), V2Bucket(2, Micros::new(5), 1))],
            vec![(hour_of(t), V2Bucket(2, Micros::new(5), 1))],
            vec![],
            vec![],
            V2Bucket(2, Micros::new(5), 1),
            Some(t),
        );
        let usage: KeyUsage = rmp_serde::from_slice(&rmp_serde::to_vec(&old).unwrap()).unwrap();
        assert_eq!(usage.requests_this_hour(t), 2);
        assert_eq!((usage.total.requests, usage.total.input_tokens), (2, 0));
        assert_eq!(
            usage.rolling(Window::Minute, t).0.requests,
            0,
            "no seconds before tokens"
        );
        let pending: Pending =
            rmp_serde::from_slice(&rmp_serde::to_vec(&V2Pending(EventId::new(), Micros::new(7), t)).unwrap()).unwrap();
        let admissions = Admissions {
            last_seq: 1,
            pending: vec![pending],
            pruned_len: 0,
        };
        assert_eq!(
            admissions.pending_of(Some("key_a"), t - chrono::Duration::seconds(1)).0,
            1
        );
    }

    #[test]
    fn a_query_stays_in_the_rolling_hour_for_60_full_minutes() {
        let u = given(&[
            (at(25, 10, 0, 30), query(1, 200)),
            (at(25, 10, 0, 59), query(1, 200)),
            (at(25, 10, 30, 0), query(1, 502)),
        ]);
        let k = u.get("key_a").unwrap();
        assert_eq!(k.requests_this_hour(at(25, 10, 30, 1)), 3);
        // 60 full minutes after 10:00:59 is 11:00:59: still counted then.
        assert_eq!(k.requests_this_hour(at(25, 11, 0, 59)), 3);
        assert_eq!(
            k.rolling(Window::Hour, at(25, 11, 0, 59)).1,
            Some(at(25, 11, 1, 0).timestamp())
        );
        assert_eq!(
            k.requests_this_hour(at(25, 11, 1, 0)),
            1,
            "the 10:00 minute has left the window"
        );
        assert_eq!(
            k.rolling(Window::Hour, at(25, 11, 1, 0)).1,
            Some(at(25, 11, 31, 0).timestamp())
        );
        assert_eq!(k.requests_this_hour(at(25, 11, 30, 59)), 1);
        assert_eq!(k.requests_this_hour(at(25, 11, 31, 0)), 0);
        assert_eq!(k.rolling(Window::Hour, at(25, 11, 31, 0)).1, None);
        assert_eq!((k.total.requests, k.total.errors), (3, 1));
    }

    #[test]
    fn month_to_date_cost_resets_on_the_utc_month() {
        let dec = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        let u = given(&[(at(30, 23, 59, 59), query(2_000_000, 200))]);
        assert_eq!(
            u.get("key_a").unwrap().day_and_month(at(30, 23, 59, 59), 1).1.cost,
            Micros::new(2_000_000)
        );
        assert_eq!(u.get("key_a").unwrap().day_and_month(dec, 1).1.cost, Micros::ZERO);
        let u = given(&[
            (at(30, 23, 59, 59), query(2_000_000, 200)),
            (dec + Duration::seconds(1), query(500_000, 200)),
        ]);
        let k = u.get("key_a").unwrap();
        assert_eq!(
            k.day_and_month(dec + Duration::seconds(2), 1).1.cost,
            Micros::new(500_000)
        );
        assert_eq!(k.total.cost, Micros::new(2_500_000));
    }

    #[test]
    fn hours_and_days_split_on_utc_boundaries() {
        let u = given(&[
            (at(24, 23, 59, 59), query(100, 200)),
            (at(25, 0, 0, 0), query(200, 504)),
            (at(25, 0, 59, 59), query(300, 200)),
            (at(25, 1, 0, 0), query(400, 200)),
        ]);
        let k = u.get("key_a").unwrap();
        let hours: Vec<_> = k.hours.range(i64::MIN, i64::MAX).collect();
        assert_eq!(
            hours
                .iter()
                .map(|(h, b)| (*h, b.requests, b.cost.get(), b.errors))
                .collect::<Vec<_>>(),
            [
                (hour_of(at(24, 23, 0, 0)), 1, 100, 0),
                (hour_of(at(25, 0, 0, 0)), 2, 500, 1),
                (hour_of(at(25, 1, 0, 0)), 1, 400, 0),
            ]
        );
        assert_eq!(k.day_and_month(at(25, 12, 0, 0), 1).0.requests, 3);
        assert_eq!(k.day_and_month(at(24, 12, 0, 0), 1).0.cost, Micros::new(100));
        assert_eq!(date_of_day(day_of(at(25, 0, 0, 0))).unwrap().to_string(), "2026-11-25");
        assert_eq!(k.last_used_at, Some(at(25, 1, 0, 0)));
    }

    #[test]
    fn a_late_event_lands_in_its_own_period_and_old_periods_are_pruned() {
        let start = at(1, 0, 0, 0);
        let mut events = vec![(start, query(1, 200))];
        events.push((start + Duration::days(100), query(1, 200)));
        // Late (clock skew): earlier than the newest, still inside retention.
        events.push((start + Duration::days(99), query(1, 200)));
        let u = given(&events);
        let k = u.get("key_a").unwrap();
        let hours: Vec<_> = k.hours.range(i64::MIN, i64::MAX).map(|(h, _)| h).collect();
        assert_eq!(
            hours,
            [
                hour_of(start + Duration::days(99)),
                hour_of(start + Duration::days(100))
            ],
            "the first hour is past 48 hours and pruned; the late one is in order"
        );
        assert_eq!(
            k.days.range(i64::MIN, i64::MAX).map(|(d, _)| d).collect::<Vec<_>>(),
            [day_of(start + Duration::days(99)), day_of(start + Duration::days(100))],
            "days are kept 31 days"
        );
        assert_eq!(
            k.last_used_at,
            Some(start + Duration::days(100)),
            "the late event does not move it back"
        );
        assert_eq!(k.total.requests, 3);
    }
}
