//! Long-horizon de-duplication: every event id applied in the last
//! [`DAYS_KEPT`] days, so that an event stored twice (a producer retrying
//! after the stream's own duplicate window, a replayed export) is applied
//! once. The streams de-duplicate only within minutes.
//!
//! Ids are grouped by the UTC day of their envelope's `ts`. A duplicate is
//! the same envelope stored again, so it carries the same `ts` and is looked
//! up in that day alone; whole days are dropped once they are older than the
//! horizon, measured from the newest event seen (no clock: the fold stays
//! pure). An event older than the horizon cannot be checked and is applied.
//!
//! A day's ids are one sorted `Vec`: UUIDv7s begin with their producer's
//! clock, so they arrive nearly in order and nearly every insert is a push
//! at the end, which a hash set's random writes and rehashing cannot match.
//! Out-of-order ids (several producers in the same millisecond) are found by
//! searching back from the end, where they belong.

use chrono::{DateTime, Utc};
use ingest::EventId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

/// Days of applied ids kept.
pub const DAYS_KEPT: i64 = 35;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Dedup {
    /// Per UTC day, the ids applied, sorted.
    by_day: BTreeMap<i64, Vec<u128>>,
    newest_day: i64,
}

impl Dedup {
    /// Records `id`; false if it was applied before (within the horizon).
    pub fn first_time(&mut self, id: EventId, ts: DateTime<Utc>) -> bool {
        let day = crate::usage::day_of(ts);
        if day > self.newest_day {
            self.newest_day = day;
            let oldest = day - DAYS_KEPT + 1;
            while self.by_day.first_key_value().is_some_and(|(d, _)| *d < oldest) {
                self.by_day.pop_first();
            }
        }
        if day <= self.newest_day - DAYS_KEPT {
            return true;
        }
        let id = u128::from_be_bytes(*id.as_bytes());
        // Nearly every event is of the newest day: skip the tree walk.
        if let Some(mut newest) = self.by_day.last_entry() {
            if *newest.key() == day {
                return insert_sorted(newest.get_mut(), id);
            }
        }
        insert_sorted(self.by_day.entry(day).or_default(), id)
    }

    /// Ids remembered.
    pub fn len(&self) -> usize {
        self.by_day.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_day.is_empty()
    }
}

/// Inserts `id` into the sorted `ids`; false if it is there already.
fn insert_sorted(ids: &mut Vec<u128>, id: u128) -> bool {
    let len = ids.len();
    if ids.last().is_none_or(|&last| last < id) {
        ids.push(id);
        return true;
    }
    // Gallop back from the end to the stretch that holds `id`'s place.
    let mut step = 1;
    while step < len && ids[len - step] > id {
        step *= 2;
    }
    let from = len.saturating_sub(step);
    match ids[from..].binary_search(&id) {
        Ok(_) => false,
        Err(at) => {
            ids.insert(from + at, id);
            true
        }
    }
}

/// In snapshots: per day, the ids as one byte string (16 bytes each), sorted.
impl Serialize for Dedup {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let days: Vec<(i64, serde_bytes::ByteBuf)> = self
            .by_day
            .iter()
            .map(|(day, ids)| {
                let mut bytes = Vec::with_capacity(ids.len() * 16);
                for id in ids {
                    bytes.extend_from_slice(&id.to_be_bytes());
                }
                (*day, serde_bytes::ByteBuf::from(bytes))
            })
            .collect();
        (self.newest_day, days).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Dedup {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (newest_day, days) = <(i64, Vec<(i64, serde_bytes::ByteBuf)>)>::deserialize(d)?;
        let mut by_day = BTreeMap::new();
        for (day, bytes) in days {
            if bytes.len() % 16 != 0 {
                return Err(serde::de::Error::custom("dedup ids are not 16-byte aligned"));
            }
            let ids: Vec<u128> = bytes
                .chunks_exact(16)
                .map(|chunk| u128::from_be_bytes(chunk.try_into().expect("16-byte chunks")))
                .collect();
            if !ids.is_sorted_by(|a, b| a < b) {
                return Err(serde::de::Error::custom("dedup ids are not sorted"));
            }
            by_day.insert(day, ids);
        }
        Ok(Dedup { by_day, newest_day })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    #[test]
    fn an_id_is_applied_once_within_the_horizon() {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        let mut dedup = Dedup::default();
        let (a, b) = (EventId::new(), EventId::new());
        assert!(dedup.first_time(a, t0));
        assert!(!dedup.first_time(a, t0), "the same envelope again");
        assert!(dedup.first_time(b, t0));
        // 34 days later, a's day is still remembered.
        assert!(dedup.first_time(EventId::new(), t0 + Duration::days(34)));
        assert!(!dedup.first_time(a, t0));
        // Past the horizon the day is dropped, and memory with it.
        assert!(dedup.first_time(EventId::new(), t0 + Duration::days(35)));
        assert_eq!(dedup.len(), 2);
        assert!(dedup.first_time(a, t0), "beyond the horizon: cannot tell, applied");
        assert_eq!(dedup.len(), 2, "and not remembered");
    }

    #[test]
    fn ids_out_of_order_are_kept_sorted_and_found() {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        let mut dedup = Dedup::default();
        // Ids in a scrambled order, as several producers in one millisecond make them.
        let ids: Vec<EventId> = (0..200).map(|_| EventId::new()).collect();
        let scrambled: Vec<EventId> = (0..200).map(|i| ids[(i * 67) % 200]).collect();
        for id in &scrambled {
            assert!(dedup.first_time(*id, t0));
        }
        for id in ids.iter().rev() {
            assert!(!dedup.first_time(*id, t0), "every id is found again");
        }
        assert_eq!(dedup.len(), 200);
        let day = dedup.by_day.values().next().unwrap();
        assert!(day.is_sorted_by(|a, b| a < b));
        let bytes = rmp_serde::to_vec(&dedup).unwrap();
        assert_eq!(rmp_serde::from_slice::<Dedup>(&bytes).unwrap(), dedup);
    }
}
