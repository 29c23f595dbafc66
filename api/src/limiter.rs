//! Exact rate and cost limits on one replica under concurrency.
//!
//! The projection counts queries once their usage events are applied; a
//! query between admission and that moment is *in flight*. Admission checks
//! `recorded + in flight` against the limits and reserves a place, all
//! under a lock for that key's shard only (no global lock). The reservation
//! is released when the handler is done: after the projection has applied
//! its usage event, or after the query failed before being recorded. So at
//! no instant can two queries both see the last free place.
//!
//! Across replicas each one only sees the others' queries once it has
//! applied them from the stream; see ARCHITECTURE.md for the guarantee.

use chrono::{DateTime, Utc};
use ingest::Micros;
use ledger::KeyUsage;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const SHARDS: usize = 64;

#[derive(Debug, Default, Clone, Copy)]
struct InFlight {
    queries: u64,
    /// What the in-flight queries will cost at the workflow's price.
    cost: Micros,
}

#[derive(Debug)]
pub struct Limiter {
    shards: Vec<Mutex<HashMap<String, InFlight>>>,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
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
    RateLimited(RateState),
    CostExceeded(Option<RateState>),
}

/// A place taken by an in-flight query; given back on drop.
#[derive(Debug)]
pub struct Reservation {
    limiter: Arc<Limiter>,
    key_id: String,
    cost: Micros,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut shard = self
            .limiter
            .shard(&self.key_id)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = shard.get_mut(&self.key_id) {
            entry.queries -= 1;
            entry.cost = Micros::new(entry.cost.get() - self.cost.get());
            if entry.queries == 0 {
                shard.remove(&self.key_id);
            }
        }
    }
}

impl Limiter {
    fn shard(&self, key_id: &str) -> &Mutex<HashMap<String, InFlight>> {
        &self.shards[(fnv1a(key_id) as usize) % SHARDS]
    }

    /// Admits a query of `key_id` or says which limit stops it.
    /// `usage` reads the key's recorded usage; it is called under the
    /// shard lock so that the count and the reservations agree.
    pub fn admit(
        self: &Arc<Self>,
        key_id: &str,
        limits: Limits,
        price: Micros,
        now: DateTime<Utc>,
        usage: impl FnOnce() -> Option<KeyUsage>,
    ) -> Verdict {
        let mut shard = self.shard(key_id).lock().unwrap_or_else(|e| e.into_inner());
        let in_flight = shard.get(key_id).copied().unwrap_or_default();
        let usage = usage().unwrap_or_default();
        let used = usage.requests_this_hour(now) + in_flight.queries;
        let reset = usage
            .window_reset(now)
            .unwrap_or(now.timestamp() - now.timestamp().rem_euclid(60) + 3600);
        let rate = |taken: u64| {
            limits.rate_per_hour.map(|limit| RateState {
                limit,
                remaining: limit.saturating_sub(taken),
                reset,
            })
        };
        if let Some(limit) = limits.rate_per_hour {
            if used >= limit {
                return Verdict::RateLimited(RateState {
                    limit,
                    remaining: 0,
                    reset,
                });
            }
        }
        if let Some(limit) = limits.cost_per_month {
            if usage.cost_this_month(now) + in_flight.cost >= limit {
                return Verdict::CostExceeded(rate(used));
            }
        }
        let entry = shard.entry(key_id.to_owned()).or_default();
        entry.queries += 1;
        entry.cost += price;
        Verdict::Admitted(
            Reservation {
                limiter: self.clone(),
                key_id: key_id.to_owned(),
                cost: price,
            },
            rate(used + 1),
        )
    }
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
    fn in_flight_queries_count_against_the_rate_limit_until_released() {
        let limiter = Arc::new(Limiter::default());
        let now = Utc::now();
        let mut held = Vec::new();
        for i in 0..3 {
            match limiter.admit("key_a", limits(Some(3), None), Micros::ZERO, now, || None) {
                Verdict::Admitted(r, Some(state)) => {
                    assert_eq!(state.remaining, 2 - i);
                    held.push(r)
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            limiter.admit("key_a", limits(Some(3), None), Micros::ZERO, now, || None),
            Verdict::RateLimited(_)
        ));
        assert!(
            matches!(
                limiter.admit("key_b", limits(Some(3), None), Micros::ZERO, now, || None),
                Verdict::Admitted(..)
            ),
            "keys are independent"
        );
        held.pop();
        assert!(matches!(
            limiter.admit("key_a", limits(Some(3), None), Micros::ZERO, now, || None),
            Verdict::Admitted(..)
        ));
    }

    #[test]
    fn in_flight_cost_counts_against_the_cost_limit() {
        let limiter = Arc::new(Limiter::default());
        let now = Utc::now();
        let first = limiter.admit("key_a", limits(None, Some(10)), Micros::new(6), now, || None);
        assert!(matches!(first, Verdict::Admitted(..)));
        // 6 in flight < 10: the query that crosses the limit is allowed.
        let second = limiter.admit("key_a", limits(None, Some(10)), Micros::new(6), now, || None);
        assert!(matches!(second, Verdict::Admitted(..)));
        assert!(matches!(
            limiter.admit("key_a", limits(None, Some(10)), Micros::new(6), now, || None),
            Verdict::CostExceeded(_)
        ));
        drop((first, second));
        assert!(matches!(
            limiter.admit("key_a", limits(None, Some(10)), Micros::new(6), now, || None),
            Verdict::Admitted(..)
        ));
    }
}
