//! Per-key usage, as the limits read it: admitted queries in the rolling 60
//! minutes (minute buckets) and cost in the current UTC calendar month, plus
//! totals and last use. Hourly and daily series arrive with issue 4.

use chrono::{DateTime, Datelike, Utc};
use ingest::events::QueryRecorded;
use ingest::Micros;
use std::collections::{HashMap, VecDeque};

/// Minutes in the rate limit's window.
pub const WINDOW_MINUTES: i64 = 60;

#[derive(Debug, Default, Clone)]
pub struct KeyUsage {
    /// (minute since the epoch, admitted queries in it), oldest first, only
    /// minutes that had queries, pruned as the window moves.
    minutes: VecDeque<(i64, u64)>,
    /// (year, month) the month-to-date cost belongs to.
    month: (i32, u32),
    month_cost: Micros,
    pub total_requests: u64,
    pub total_cost: Micros,
    pub errors: u64,
}

impl KeyUsage {
    fn record(&mut self, ts: DateTime<Utc>, q: &QueryRecorded) {
        let minute = ts.timestamp().div_euclid(60);
        match self.minutes.iter_mut().rev().find(|(m, _)| *m == minute) {
            Some((_, n)) => *n += 1,
            None => {
                // Events arrive in stream order, which is time order but for
                // clock skew between replicas: keep the deque sorted anyway.
                let at = self.minutes.partition_point(|(m, _)| *m < minute);
                self.minutes.insert(at, (minute, 1));
            }
        }
        while self.minutes.front().is_some_and(|(m, _)| *m < minute - WINDOW_MINUTES) {
            self.minutes.pop_front();
        }
        let month = (ts.year(), ts.month());
        if month > self.month {
            self.month = month;
            self.month_cost = Micros::ZERO;
        }
        if month == self.month {
            self.month_cost += q.cost;
        }
        self.total_requests += 1;
        self.total_cost += q.cost;
        if q.status_code >= 500 {
            self.errors += 1;
        }
    }

    /// Admitted queries in the 60 minutes before `now` (minute granularity:
    /// a query counts until the end of the 60th minute after its minute).
    pub fn requests_this_hour(&self, now: DateTime<Utc>) -> u64 {
        let oldest = now.timestamp().div_euclid(60) - WINDOW_MINUTES + 1;
        self.minutes.iter().filter(|(m, _)| *m >= oldest).map(|(_, n)| n).sum()
    }

    /// When the oldest query in the window leaves it (epoch seconds), if any.
    pub fn window_reset(&self, now: DateTime<Utc>) -> Option<i64> {
        let oldest = now.timestamp().div_euclid(60) - WINDOW_MINUTES + 1;
        self.minutes
            .iter()
            .find(|(m, _)| *m >= oldest)
            .map(|(m, _)| (m + WINDOW_MINUTES) * 60)
    }

    /// Cost in the UTC calendar month of `now`.
    pub fn cost_this_month(&self, now: DateTime<Utc>) -> Micros {
        if self.month == (now.year(), now.month()) {
            self.month_cost
        } else {
            Micros::ZERO
        }
    }
}

#[derive(Debug, Default)]
pub struct Usage {
    by_key: HashMap<String, KeyUsage>,
}

impl Usage {
    pub fn get(&self, key_id: &str) -> Option<&KeyUsage> {
        self.by_key.get(key_id)
    }

    pub(crate) fn apply(&mut self, ts: DateTime<Utc>, q: &QueryRecorded) {
        self.by_key.entry(q.key_id.clone()).or_default().record(ts, q);
    }
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
        }
    }

    #[test]
    fn the_rolling_hour_counts_by_minute_and_slides() {
        let mut u = Usage::default();
        u.apply(at(25, 10, 0, 30), &query(1, 200));
        u.apply(at(25, 10, 0, 59), &query(1, 200));
        u.apply(at(25, 10, 30, 0), &query(1, 502));
        let k = u.get("key_a").unwrap();
        assert_eq!(k.requests_this_hour(at(25, 10, 30, 1)), 3);
        assert_eq!(k.requests_this_hour(at(25, 10, 59, 59)), 3);
        assert_eq!(k.window_reset(at(25, 10, 59, 59)), Some(at(25, 11, 0, 0).timestamp()));
        assert_eq!(
            k.requests_this_hour(at(25, 11, 0, 0)),
            1,
            "the 10:00 minute has left the window"
        );
        assert_eq!(k.window_reset(at(25, 11, 0, 0)), Some(at(25, 11, 30, 0).timestamp()));
        assert_eq!(k.requests_this_hour(at(25, 11, 30, 0)), 0);
        assert_eq!(k.window_reset(at(25, 11, 30, 0)), None);
        assert_eq!((k.total_requests, k.errors), (3, 1));
    }

    #[test]
    fn month_to_date_cost_resets_on_the_utc_month() {
        let mut u = Usage::default();
        u.apply(at(30, 23, 59, 59), &query(2_000_000, 200));
        let dec = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        assert_eq!(
            u.get("key_a").unwrap().cost_this_month(at(30, 23, 59, 59)),
            Micros::new(2_000_000)
        );
        assert_eq!(u.get("key_a").unwrap().cost_this_month(dec), Micros::ZERO);
        u.apply(dec + Duration::seconds(1), &query(500_000, 200));
        let k = u.get("key_a").unwrap();
        assert_eq!(k.cost_this_month(dec + Duration::seconds(2)), Micros::new(500_000));
        assert_eq!(k.total_cost, Micros::new(2_500_000));
    }
}
