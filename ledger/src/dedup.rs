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
//! A day's ids are sorted: UUIDv7s begin with their producer's clock, so
//! they arrive nearly in order and nearly every insert is a push at the
//! end, which a hash set's random writes and rehashing cannot match.
//! Out-of-order ids (several producers in the same millisecond) are found
//! in the block where they belong. The sorted ids are cut into blocks of at
//! most [`BLOCK`] that are shared with copies of the projection until
//! written (`Arc::make_mut`): a copy for a snapshot clones a pointer per
//! block, and the fold then copies only the block it writes, nearly always
//! the newest.

use chrono::{DateTime, Utc};
use ingest::EventId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Days of applied ids kept.
pub const DAYS_KEPT: i64 = 35;

/// Ids in a block at most, but for a block split only past twice this.
const BLOCK: usize = 1 << 15;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Dedup {
    /// Per UTC day, the ids applied, sorted.
    by_day: BTreeMap<i64, Day>,
    newest_day: i64,
}

/// One day's ids, sorted, in non-empty blocks: every id of a block is
/// below every id of the next.
#[derive(Debug, Default, Clone)]
struct Day {
    blocks: Vec<Arc<Vec<u128>>>,
}

impl PartialEq for Day {
    fn eq(&self, other: &Day) -> bool {
        self.ids().eq(other.ids())
    }
}

impl Day {
    fn ids(&self) -> impl Iterator<Item = &u128> {
        self.blocks.iter().flat_map(|b| b.iter())
    }

    fn len(&self) -> usize {
        self.blocks.iter().map(|b| b.len()).sum()
    }

    /// Inserts `id`; false if it is there already.
    fn insert(&mut self, id: u128) -> bool {
        let last = self.blocks.last().and_then(|b| b.last().copied());
        if last.is_none_or(|last| last < id) {
            match self.blocks.last_mut() {
                Some(block) if block.len() < BLOCK => Arc::make_mut(block).push(id),
                _ => {
                    let mut block = Vec::with_capacity(BLOCK);
                    block.push(id);
                    self.blocks.push(Arc::new(block));
                }
            }
            return true;
        }
        // The block whose last id is the first at or above `id`; the last
        // block's is, so there is one.
        let at = self.blocks.partition_point(|b| b.last().is_some_and(|&last| last < id));
        let Some(block) = self.blocks.get_mut(at) else {
            return true;
        };
        let Err(place) = block.binary_search(&id) else {
            return false;
        };
        let block = Arc::make_mut(block);
        block.insert(place, id);
        if block.len() > 2 * BLOCK {
            let upper = block.split_off(BLOCK);
            self.blocks.insert(at + 1, Arc::new(upper));
        }
        true
    }

    fn from_sorted(ids: Vec<u128>) -> Day {
        Day {
            blocks: ids.chunks(BLOCK).map(|c| Arc::new(c.to_vec())).collect(),
        }
    }
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
        self.by_day.values().map(Day::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_day.is_empty()
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
                for id in ids.ids() {
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
            by_day.insert(day, Day::from_sorted(ids));
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
        assert!(day.ids().is_sorted_by(|a, b| a < b));
        let bytes = rmp_serde::to_vec(&dedup).unwrap();
        assert_eq!(rmp_serde::from_slice::<Dedup>(&bytes).unwrap(), dedup);
    }

    #[test]
    fn blocks_split_and_copies_share_what_is_not_written() {
        let mut day = Day::default();
        // In order past a block, then out of order into the first.
        let ids: Vec<u128> = (0..(BLOCK as u128 * 3)).map(|i| i * 2).collect();
        for id in &ids {
            assert!(day.insert(*id));
        }
        assert_eq!(day.blocks.len(), 3);
        let copy = day.clone();
        for odd in (1..(BLOCK as u128 * 2 + 10)).step_by(2) {
            assert!(day.insert(odd));
        }
        assert!(!day.insert(1) && !day.insert(0), "found again");
        assert!(day.ids().is_sorted_by(|a, b| a < b));
        assert!(day.blocks.iter().all(|b| !b.is_empty() && b.len() <= 2 * BLOCK));
        assert_eq!(day.len(), ids.len() + BLOCK + 5);
        // The copy saw none of it, and still shares the block never written.
        assert_eq!(copy.len(), ids.len());
        assert!(Arc::ptr_eq(copy.blocks.last().unwrap(), day.blocks.last().unwrap()));
        let reloaded = Day::from_sorted(day.ids().copied().collect());
        assert_eq!(reloaded, day);
    }
}
