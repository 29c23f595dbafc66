//! Exact rate and cost limits on one replica under concurrency.
//!
//! The projection counts queries once their usage events are applied; a
//! query between admission and that moment is *in flight*. Admission checks
//! `recorded + in flight` against the limits and reserves a place, all
//! under a lock for that key's shard only (no global lock). A reservation
//! learns its usage event's sequence once appended; from the moment the
//! projection has applied that sequence the query counts as recorded and
//! no longer as in flight (both read under one projection lock), so it is
//! never counted twice nor not at all. The reservation is dropped when the
//! handler is done, or when the query failed before being recorded. So at
//! no instant can two queries both see the last free place, and no place
//! is wasted.
//!
//! Across replicas each one only sees the others' queries once it has
//! applied them from the stream; see ARCHITECTURE.md for the guarantee.

use chrono::{DateTime, Utc};
use ingest::Micros;
use ledger::KeyUsage;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const SHARDS: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Slot {
    id: u64,
    /// What the query will cost at the workflow's price.
    cost: Micros,
    /// Its usage event's sequence, once appended.
    seq: Option<u64>,
}

type Shard = Mutex<HashMap<String, Vec<Slot>>>;

#[derive(Debug)]
pub struct Limiter {
    shards: Vec<Shard>,
    /// Per shard: held by an admission, and by an append until its
    /// reservation knows its sequence, so no admission ever sees an event
    /// the projection counts while its reservation still counts it too.
    gates: Vec<tokio::sync::Mutex<()>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            gates: (0..SHARDS).map(|_| tokio::sync::Mutex::new(())).collect(),
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
    RateLimited(RateState),
    CostExceeded(Option<RateState>),
}

/// A place taken by an in-flight query; given back on drop.
#[derive(Debug)]
pub struct Reservation {
    limiter: Arc<Limiter>,
    key_id: String,
    id: u64,
}

impl Reservation {
    /// Runs `append` (of this query's usage event) and notes the sequence
    /// it got, with admissions of the shard held off meanwhile: once the
    /// projection has applied that sequence, it counts the query instead.
    pub async fn record<E>(&self, append: impl std::future::Future<Output = Result<u64, E>>) -> Result<u64, E> {
        let _gate = self.limiter.gates[shard_index(&self.key_id)].lock().await;
        let seq = append.await?;
        self.recorded_at(seq);
        Ok(seq)
    }

    fn recorded_at(&self, seq: u64) {
        let mut shard = self
            .limiter
            .shard(&self.key_id)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = shard
            .get_mut(&self.key_id)
            .and_then(|slots| slots.iter_mut().find(|s| s.id == self.id))
        {
            slot.seq = Some(seq);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut shard = self
            .limiter
            .shard(&self.key_id)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(slots) = shard.get_mut(&self.key_id) {
            slots.retain(|s| s.id != self.id);
            if slots.is_empty() {
                shard.remove(&self.key_id);
            }
        }
    }
}

impl Limiter {
    fn shard(&self, key_id: &str) -> &Shard {
        &self.shards[shard_index(key_id)]
    }

    /// Admits a query of `key_id` or says which limit stops it.
    /// `recorded` reads the key's recorded usage and the sequence the
    /// projection has applied, together; it is called under the shard lock
    /// so that the count and the reservations agree.
    pub async fn admit(
        self: &Arc<Self>,
        key_id: &str,
        limits: Limits,
        price: Micros,
        now: DateTime<Utc>,
        recorded: impl FnOnce() -> (Option<KeyUsage>, u64),
    ) -> Verdict {
        let _gate = self.gates[shard_index(key_id)].lock().await;
        let mut shard = self.shard(key_id).lock().unwrap_or_else(|e| e.into_inner());
        let (usage, applied) = recorded();
        let usage = usage.unwrap_or_default();
        let (mut in_flight, mut in_flight_cost) = (0u64, Micros::ZERO);
        for slot in shard.get(key_id).into_iter().flatten() {
            if slot.seq.is_none_or(|seq| seq > applied) {
                in_flight += 1;
                in_flight_cost += slot.cost;
            }
        }
        let used = usage.requests_this_hour(now) + in_flight;
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
            if usage.cost_this_month(now) + in_flight_cost >= limit {
                return Verdict::CostExceeded(rate(used));
            }
        }
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        shard.entry(key_id.to_owned()).or_default().push(Slot {
            id,
            cost: price,
            seq: None,
        });
        Verdict::Admitted(
            Reservation {
                limiter: self.clone(),
                key_id: key_id.to_owned(),
                id,
            },
            rate(used + 1),
        )
    }
}

fn shard_index(key_id: &str) -> usize {
    (fnv1a(key_id) as usize) % SHARDS
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

    #[tokio::test]
    async fn in_flight_queries_count_against_the_rate_limit_until_released() {
        let limiter = Arc::new(Limiter::default());
        let now = Utc::now();
        let mut held = Vec::new();
        for i in 0..3 {
            match limiter
                .admit("key_a", limits(Some(3), None), Micros::ZERO, now, || (None, 0))
                .await
            {
                Verdict::Admitted(r, Some(state)) => {
                    assert_eq!(state.remaining, 2 - i);
                    held.push(r)
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            limiter
                .admit("key_a", limits(Some(3), None), Micros::ZERO, now, || (None, 0))
                .await,
            Verdict::RateLimited(_)
        ));
        assert!(
            matches!(
                limiter
                    .admit("key_b", limits(Some(3), None), Micros::ZERO, now, || (None, 0))
                    .await,
                Verdict::Admitted(..)
            ),
            "keys are independent"
        );
        held.pop();
        let admit = |applied: u64| {
            limiter.admit("key_a", limits(Some(3), None), Micros::ZERO, now, move || {
                (None, applied)
            })
        };
        let third = admit(0).await;
        assert!(matches!(third, Verdict::Admitted(..)));
        assert!(matches!(admit(6).await, Verdict::RateLimited(_)));
        // A reservation whose event the projection has applied (7 ≤ 7) counts
        // there, not as in flight; the projection here is empty, so a place frees.
        held[0].record(async { Ok::<_, ()>(7) }).await.unwrap();
        assert!(matches!(admit(6).await, Verdict::RateLimited(_)));
        assert!(matches!(admit(7).await, Verdict::Admitted(..)));
    }

    #[tokio::test]
    async fn in_flight_cost_counts_against_the_cost_limit() {
        let limiter = Arc::new(Limiter::default());
        let now = Utc::now();
        let first = limiter
            .admit("key_a", limits(None, Some(10)), Micros::new(6), now, || (None, 0))
            .await;
        assert!(matches!(first, Verdict::Admitted(..)));
        // 6 in flight < 10: the query that crosses the limit is allowed.
        let second = limiter
            .admit("key_a", limits(None, Some(10)), Micros::new(6), now, || (None, 0))
            .await;
        assert!(matches!(second, Verdict::Admitted(..)));
        assert!(matches!(
            limiter
                .admit("key_a", limits(None, Some(10)), Micros::new(6), now, || (None, 0))
                .await,
            Verdict::CostExceeded(_)
        ));
        drop((first, second));
        assert!(matches!(
            limiter
                .admit("key_a", limits(None, Some(10)), Micros::new(6), now, || (None, 0))
                .await,
            Verdict::Admitted(..)
        ));
    }
}
