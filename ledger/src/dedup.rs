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

use chrono::{DateTime, Utc};
use ingest::EventId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, HashSet};
use std::hash::BuildHasherDefault;

use crate::hash::FastHasher;

/// Days of applied ids kept.
pub const DAYS_KEPT: i64 = 35;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Dedup {
    by_day: BTreeMap<i64, HashSet<u128, BuildHasherDefault<FastHasher>>>,
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
                return newest.get_mut().insert(id);
            }
        }
        self.by_day.entry(day).or_default().insert(id)
    }

    /// Ids remembered.
    pub fn len(&self) -> usize {
        self.by_day.values().map(HashSet::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_day.is_empty()
    }
}

/// In snapshots: per day, the ids as one byte string (16 bytes each).
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
            let mut ids = HashSet::with_capacity_and_hasher(bytes.len() / 16, BuildHasherDefault::default());
            for chunk in bytes.chunks_exact(16) {
                let mut id = [0u8; 16];
                id.copy_from_slice(chunk);
                ids.insert(u128::from_be_bytes(id));
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
}
