//! API keys as the stream says they are. Validation looks a key up by the
//! SHA-256 of the presented secret; the plaintext is never here.

use chrono::{DateTime, Utc};
use ingest::events::KeySettings;
use ingest::Event;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The SHA-256 of a key's plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    pub fn from_digest(digest: [u8; 32]) -> KeyHash {
        KeyHash(digest)
    }

    /// Parses the lowercase hex form events carry.
    pub fn from_hex(hex: &str) -> Option<KeyHash> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex, &mut out).ok()?;
        Some(KeyHash(out))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ApiKey {
    /// Shared with both indexes: one allocation per key id.
    pub id: Arc<str>,
    pub prefix: String,
    pub settings: KeySettings,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub hash: KeyHash,
    /// A rotated-out secret and the end of its grace period (boxed: rare,
    /// and a million keys should not each carry its room).
    pub previous: Option<Box<(KeyHash, DateTime<Utc>)>>,
    /// The stream sequence of the key's last event: what a conditional
    /// append of the next change expects.
    pub seq: u64,
    /// When it was revoked: it opens nothing since, and is kept for its
    /// usage and billing. Last, and defaulted: older snapshots still load.
    #[serde(default)]
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}

/// Which keys a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Listed {
    /// Not revoked (whether or not `active`).
    #[default]
    Live,
    Revoked,
    All,
}

/// Why a presented secret does not open a key. The order of checks is the
/// spec's: unknown before inactive before expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRejection {
    /// Unknown, revoked, or a rotated-out secret past its grace.
    Invalid,
    Inactive,
    Expired,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Keys {
    /// Every key by id, revoked ones included (kept for billing: bounded by
    /// keys, not by events); ids are time-ordered, so this is creation
    /// order. Behind a pointer, because B-tree nodes filled in ascending
    /// order stay about half empty, and an empty slot should cost a
    /// pointer, not a whole key; shared (`Arc`, changed by `make_mut`), so
    /// that a copy of the projection for a snapshot copies pointers.
    by_id: BTreeMap<Arc<str>, Arc<ApiKey>>,
    /// Current and in-grace previous secrets of live keys, to the key id.
    by_hash: HashMap<KeyHash, Arc<str>>,
    /// How many live keys list each browser origin, for CORS preflights
    /// (which carry no key).
    origins: HashMap<String, u32>,
}

impl Keys {
    pub fn get(&self, id: &str) -> Option<&ApiKey> {
        self.by_id.get(id).map(|k| &**k)
    }

    /// Up to `limit` live keys after `cursor` (a key id), in creation order.
    pub fn page(&self, after: Option<&str>, limit: usize) -> (Vec<&ApiKey>, bool) {
        self.search(after, limit, "", Listed::Live)
    }

    /// [`Self::page`] over the keys whose id, prefix, name or owner holds
    /// `query`, ignoring case (all keys when it is empty). A scan: fine for
    /// a dashboard's search box over the keys one process holds anyway.
    pub fn search(&self, after: Option<&str>, limit: usize, query: &str, listed: Listed) -> (Vec<&ApiKey>, bool) {
        let query = query.to_lowercase();
        let holds = |text: &str| text.to_lowercase().contains(&query);
        let (keys, more) = crate::page_where(&self.by_id, after, limit, |k| {
            let shown = match listed {
                Listed::Live => !k.is_revoked(),
                Listed::Revoked => k.is_revoked(),
                Listed::All => true,
            };
            shown
                && (query.is_empty()
                    || holds(&k.id)
                    || holds(&k.prefix)
                    || holds(&k.settings.name)
                    || k.settings.owner.as_deref().is_some_and(holds))
        });
        (keys.into_iter().map(|k| &**k).collect(), more)
    }

    /// Whether some live key names `customer_id`. A scan: for deletes.
    pub fn live_of_customer(&self, customer_id: &str) -> bool {
        self.by_id
            .values()
            .any(|k| !k.is_revoked() && k.settings.customer_id.as_deref() == Some(customer_id))
    }

    /// Whether some live key lists `origin` in its `allowed_origins`.
    pub fn any_allows(&self, origin: &str) -> bool {
        self.origins.contains_key(origin)
    }

    fn count_origins(&mut self, settings: &KeySettings, up: bool) {
        for origin in &settings.allowed_origins {
            let count = self.origins.entry(origin.clone()).or_default();
            if up {
                *count += 1;
            } else {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.origins.remove(origin);
                }
            }
        }
    }

    /// The live key whose current (or in-grace previous) secret this is,
    /// whether or not it may be used now.
    pub fn named_by(&self, hash: &KeyHash, now: DateTime<Utc>) -> Option<&ApiKey> {
        let key = self.by_hash.get(hash).and_then(|id| self.by_id.get(id))?;
        if key.hash != *hash {
            match key.previous.as_deref() {
                Some(&(previous, until)) if previous == *hash && now < until => {}
                _ => return None,
            }
        }
        Some(key)
    }

    /// The key a presented secret opens at `now`, or why it does not.
    pub fn validate(&self, hash: &KeyHash, now: DateTime<Utc>) -> Result<&ApiKey, KeyRejection> {
        let key = self.named_by(hash, now).ok_or(KeyRejection::Invalid)?;
        if !key.settings.active {
            return Err(KeyRejection::Inactive);
        }
        if key.settings.expires_at.is_some_and(|at| now >= at) {
            return Err(KeyRejection::Expired);
        }
        Ok(key)
    }

    pub(crate) fn apply(&mut self, seq: u64, ts: DateTime<Utc>, event: &Event) {
        match event {
            Event::KeyCreated(e) => {
                let Some(hash) = KeyHash::from_hex(&e.key_hash) else {
                    return;
                };
                let id: Arc<str> = e.key_id.as_str().into();
                self.by_hash.insert(hash, id.clone());
                self.count_origins(&e.settings, true);
                self.by_id.insert(
                    id.clone(),
                    Arc::new(ApiKey {
                        id,
                        prefix: e.prefix.clone(),
                        settings: e.settings.clone(),
                        created_at: ts,
                        updated_at: ts,
                        hash,
                        previous: None,
                        seq,
                        revoked_at: None,
                    }),
                );
            }
            Event::KeyUpdated(e) => {
                if let Some(key) = self.by_id.get_mut(e.key_id.as_str()).filter(|k| !k.is_revoked()) {
                    let key = Arc::make_mut(key);
                    let old = std::mem::replace(&mut key.settings, e.settings.clone());
                    key.updated_at = ts;
                    key.seq = seq;
                    self.count_origins(&old, false);
                    self.count_origins(&e.settings, true);
                }
            }
            Event::KeyRevoked(e) => {
                let Some(key) = self.by_id.get_mut(e.key_id.as_str()).filter(|k| !k.is_revoked()) else {
                    return;
                };
                let key = Arc::make_mut(key);
                key.revoked_at = Some(ts);
                key.updated_at = ts;
                key.seq = seq;
                self.by_hash.remove(&key.hash);
                if let Some(&(previous, _)) = key.previous.take().as_deref() {
                    self.by_hash.remove(&previous);
                }
                let settings = key.settings.clone();
                self.count_origins(&settings, false);
            }
            Event::KeyRotated(e) => {
                let Some(key) = self.by_id.get_mut(e.key_id.as_str()).filter(|k| !k.is_revoked()) else {
                    return;
                };
                let key = Arc::make_mut(key);
                let Some(hash) = KeyHash::from_hex(&e.key_hash) else {
                    return;
                };
                // Only one secret is ever in grace: an older one goes now.
                if let Some(&(older, _)) = key.previous.take().as_deref() {
                    self.by_hash.remove(&older);
                }
                let old = std::mem::replace(&mut key.hash, hash);
                match e.previous_valid_until {
                    Some(until) if until > ts => key.previous = Some(Box::new((old, until))),
                    _ => drop(self.by_hash.remove(&old)),
                }
                key.prefix = e.prefix.clone();
                key.updated_at = ts;
                key.seq = seq;
                self.by_hash.insert(hash, key.id.clone());
            }
            _ => {}
        }
    }
}

/// In snapshots: every key in id order; the indexes of live keys are rebuilt.
impl serde::Serialize for Keys {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.by_id.values())
    }
}

impl<'de> serde::Deserialize<'de> for Keys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut keys = Keys::default();
        for key in Vec::<Arc<ApiKey>>::deserialize(d)? {
            if key.is_revoked() {
                keys.by_id.insert(key.id.clone(), key);
                continue;
            }
            keys.by_hash.insert(key.hash, key.id.clone());
            if let Some(&(previous, _)) = key.previous.as_deref() {
                keys.by_hash.insert(previous, key.id.clone());
            }
            keys.count_origins(&key.settings, true);
            keys.by_id.insert(key.id.clone(), key);
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use ingest::events::{KeyCreated, KeyRevoked, KeyRotated, KeyUpdated};

    fn t(minutes: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 0).unwrap() + Duration::minutes(minutes)
    }

    fn hash(n: u8) -> KeyHash {
        KeyHash([n; 32])
    }

    fn settings() -> KeySettings {
        KeySettings {
            name: "k".into(),
            owner: None,
            active: true,
            workflow_ids: vec![],
            rate_limit_per_hour: None,
            cost_limit_per_month: None,
            alert_thresholds: vec![80, 100],
            expires_at: None,
            allowed_origins: vec![],
            metadata: None,
            customer_id: None,
            limits: vec![],
            max_concurrent: None,
        }
    }

    fn given(events: &[(i64, Event)]) -> Keys {
        let mut keys = Keys::default();
        for (i, (at, event)) in events.iter().enumerate() {
            keys.apply(i as u64 + 1, t(*at), event);
        }
        keys
    }

    fn created(id: &str, h: u8, settings: KeySettings) -> Event {
        Event::KeyCreated(KeyCreated {
            key_id: id.into(),
            key_hash: hash(h).to_hex(),
            prefix: format!("nk_{h:08x}"),
            settings,
        })
    }

    #[test]
    fn a_created_key_validates_by_hash_and_nothing_else_does() {
        let keys = given(&[(0, created("key_a", 1, settings()))]);
        assert_eq!(keys.validate(&hash(1), t(1)).unwrap().id.as_ref(), "key_a");
        assert_eq!(keys.validate(&hash(2), t(1)), Err(KeyRejection::Invalid));
    }

    #[test]
    fn revoked_inactive_and_expired_keys_are_refused_in_that_order() {
        let mut inactive = settings();
        inactive.active = false;
        inactive.expires_at = Some(t(5));
        let keys = given(&[
            (0, created("key_a", 1, settings())),
            (1, Event::KeyRevoked(KeyRevoked { key_id: "key_a".into() })),
            (2, created("key_b", 2, settings())),
            (
                3,
                Event::KeyUpdated(KeyUpdated {
                    key_id: "key_b".into(),
                    settings: inactive.clone(),
                }),
            ),
        ]);
        assert_eq!(keys.validate(&hash(1), t(4)), Err(KeyRejection::Invalid));
        // Kept for billing: readable, revoked, out of the default list.
        let revoked = keys.get("key_a").unwrap();
        assert_eq!(revoked.revoked_at, Some(t(1)));
        assert_eq!(revoked.seq, 2, "its last event, the revocation");
        let ids = |listed| {
            let (page, _) = keys.search(None, 10, "", listed);
            page.iter().map(|k| k.id.to_string()).collect::<Vec<_>>()
        };
        assert_eq!(ids(Listed::Live), ["key_b"]);
        assert_eq!(ids(Listed::Revoked), ["key_a"]);
        assert_eq!(ids(Listed::All), ["key_a", "key_b"]);
        // A snapshot keeps it revoked: its secret still opens nothing.
        let reloaded: Keys = rmp_serde::from_slice(&rmp_serde::to_vec(&keys).unwrap()).unwrap();
        assert_eq!(reloaded.validate(&hash(1), t(4)), Err(KeyRejection::Invalid));
        assert_eq!(reloaded.get("key_a").unwrap().revoked_at, Some(t(1)));
        assert_eq!(keys.validate(&hash(2), t(10)), Err(KeyRejection::Inactive));
        inactive.active = true;
        let keys = given(&[(0, created("key_b", 2, inactive))]);
        assert!(keys.validate(&hash(2), t(4)).is_ok());
        assert_eq!(keys.validate(&hash(2), t(5)), Err(KeyRejection::Expired));
    }

    #[test]
    fn a_rotated_out_secret_works_until_its_grace_ends() {
        let rotate = |h: u8, prev: u8, until: Option<i64>| {
            Event::KeyRotated(KeyRotated {
                key_id: "key_a".into(),
                key_hash: hash(h).to_hex(),
                prefix: "nk_11111111".into(),
                previous_key_hash: hash(prev).to_hex(),
                previous_valid_until: until.map(t),
            })
        };
        let keys = given(&[(0, created("key_a", 1, settings())), (10, rotate(2, 1, Some(20)))]);
        assert!(keys.validate(&hash(2), t(11)).is_ok());
        assert!(keys.validate(&hash(1), t(19)).is_ok());
        assert_eq!(keys.validate(&hash(1), t(20)), Err(KeyRejection::Invalid));
        assert_eq!(keys.get("key_a").unwrap().prefix, "nk_11111111");
        // No grace: the old secret stops at once; a second rotation ends the first grace.
        let keys = given(&[(0, created("key_a", 1, settings())), (10, rotate(2, 1, None))]);
        assert_eq!(keys.validate(&hash(1), t(10)), Err(KeyRejection::Invalid));
        let keys = given(&[
            (0, created("key_a", 1, settings())),
            (10, rotate(2, 1, Some(60))),
            (11, rotate(3, 2, Some(60))),
        ]);
        assert_eq!(keys.validate(&hash(1), t(12)), Err(KeyRejection::Invalid));
        assert!(keys.validate(&hash(2), t(12)).is_ok());
        assert!(keys.validate(&hash(3), t(12)).is_ok());
    }

    #[test]
    fn pages_follow_creation_order() {
        let keys = given(&[
            (0, created("key_1", 1, settings())),
            (1, created("key_2", 2, settings())),
            (2, created("key_3", 3, settings())),
        ]);
        let (page, more) = keys.page(None, 2);
        assert_eq!(page.iter().map(|k| &*k.id).collect::<Vec<_>>(), ["key_1", "key_2"]);
        assert!(more);
        let (page, more) = keys.page(Some("key_2"), 2);
        assert_eq!(page.iter().map(|k| &*k.id).collect::<Vec<_>>(), ["key_3"]);
        assert!(!more);
    }

    #[test]
    fn search_matches_name_owner_or_prefix_ignoring_case_and_pages() {
        let named = |name: &str, owner: Option<&str>| KeySettings {
            name: name.into(),
            owner: owner.map(Into::into),
            ..settings()
        };
        let keys = given(&[
            (0, created("key_1", 1, named("Alpha bot", None))),
            (1, created("key_2", 2, named("beta", Some("ALPHA team")))),
            (2, created("key_3", 3, named("gamma", None))),
            (3, created("key_4", 4, named("alphabet", None))),
        ]);
        let ids =
            |(page, more): (Vec<&ApiKey>, bool)| (page.iter().map(|k| k.id.to_string()).collect::<Vec<_>>(), more);
        assert_eq!(
            ids(keys.search(None, 2, "alpha", Listed::Live)),
            (vec!["key_1".into(), "key_2".into()], true)
        );
        assert_eq!(
            ids(keys.search(Some("key_2"), 2, "alpha", Listed::Live)),
            (vec!["key_4".into()], false)
        );
        assert_eq!(
            ids(keys.search(None, 10, "GAMMA", Listed::Live)),
            (vec!["key_3".into()], false)
        );
        let prefix = keys.get("key_3").unwrap().prefix.clone();
        assert_eq!(ids(keys.search(None, 10, &prefix, Listed::Live)).0, ["key_3"]);
        assert_eq!(ids(keys.search(None, 10, "", Listed::Live)).0.len(), 4);
        assert_eq!(ids(keys.search(None, 10, "nothing", Listed::Live)), (vec![], false));
    }

    #[test]
    fn an_origin_is_allowed_while_a_live_key_lists_it() {
        let with = |origins: &[&str]| KeySettings {
            allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
            ..settings()
        };
        let (a, b) = ("https://a.test", "https://b.test");
        let mut keys = given(&[
            (0, created("key_1", 1, with(&[a]))),
            (1, created("key_2", 2, with(&[a, b]))),
        ]);
        assert!(keys.any_allows(a) && keys.any_allows(b));
        assert!(!keys.any_allows("https://c.test"));
        let update = Event::KeyUpdated(KeyUpdated {
            key_id: "key_2".into(),
            settings: with(&[a]),
        });
        keys.apply(3, t(3), &update);
        assert!(!keys.any_allows(b), "no longer listed");
        keys.apply(4, t(4), &Event::KeyRevoked(KeyRevoked { key_id: "key_1".into() }));
        assert!(keys.any_allows(a), "key_2 still lists it");
        let reloaded: Keys = rmp_serde::from_slice(&rmp_serde::to_vec(&keys).unwrap()).unwrap();
        assert!(
            reloaded.any_allows(a) && !reloaded.any_allows(b),
            "rebuilt from a snapshot"
        );
        keys.apply(5, t(5), &Event::KeyRevoked(KeyRevoked { key_id: "key_2".into() }));
        assert!(!keys.any_allows(a));
    }
}
