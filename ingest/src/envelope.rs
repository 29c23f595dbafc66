//! The envelope every event travels in, and where on the stream it goes.
//!
//! On the wire an event is one JSON object:
//! `{"id","type","version","ts","data"}`. The `id` is a UUIDv7, so ids sort by
//! creation time, and it is the de-duplication key on both backends
//! (`Nats-Msg-Id` on NATS). This module does not know what `data` means; see
//! [`crate::events`].

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fmt;
use std::str::FromStr;

use crate::error::{DecodeError, StreamError};
use crate::events::Event;

/// A unique, time-ordered event id (UUIDv7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(uuid::Uuid);

impl EventId {
    /// A fresh id; ids made later sort after ids made earlier.
    pub fn new() -> Self {
        EventId(uuid::Uuid::now_v7())
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        EventId(uuid::Uuid::from_bytes(bytes))
    }

    /// The 32 lowercase hex digits, without hyphens.
    pub fn simple(&self) -> String {
        self.0.simple().to_string()
    }

    /// The inverse of [`Self::simple`]: exactly 32 hex digits.
    pub fn parse_simple(hex: &str) -> Option<EventId> {
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        uuid::Uuid::try_parse(hex).ok().map(EventId)
    }

    /// The hyphenated lowercase form, written into `buf` without allocating.
    pub fn encode<'a>(&self, buf: &'a mut [u8; 36]) -> &'a str {
        self.0.hyphenated().encode_lower(buf)
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for EventId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(EventId)
    }
}

/// Where an event goes: `<aggregate>.<id>`, e.g. `key.key_0193…` or
/// `usage.key_0193…`. Backends put their stream prefix in front
/// (`nodai.key.key_0193…` on NATS); the conditional append compares the last
/// sequence of one subject.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject(String);

/// Longest subject accepted; NATS allows more, but nothing of ours needs it.
const MAX_SUBJECT_LEN: usize = 256;

impl Subject {
    /// Builds `<aggregate>.<id>`. Both parts must be single NATS tokens: not
    /// empty, no `.`, `*`, `>` or white space.
    pub fn new(aggregate: &str, id: &str) -> Result<Subject, StreamError> {
        for token in [aggregate, id] {
            if !is_token(token) {
                return Err(StreamError::Invalid(format!(
                    "subject token {token:?} must be non-empty without '.', '*', '>' or white space"
                )));
            }
        }
        Self::parse(&format!("{aggregate}.{id}"))
    }

    /// [`Self::new`] for an id that may hold `.` (a customer's own id):
    /// written `~` in the subject, which no id holds.
    pub fn for_id(aggregate: &str, id: &str) -> Result<Subject, StreamError> {
        Self::new(aggregate, &id.replace('.', "~"))
    }

    /// Parses a relative subject as stored on the stream (one or more tokens).
    pub fn parse(subject: &str) -> Result<Subject, StreamError> {
        if subject.len() > MAX_SUBJECT_LEN || !subject.split('.').all(is_token) {
            return Err(StreamError::Invalid(format!("malformed subject {subject:?}")));
        }
        Ok(Subject(subject.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first token: `key`, `usage`, `workflow`, …
    pub fn aggregate(&self) -> &str {
        self.0.split('.').next().unwrap_or_default()
    }
}

fn is_token(token: &str) -> bool {
    !token.is_empty()
        && !token
            .chars()
            .any(|c| c == '.' || c == '*' || c == '>' || c.is_whitespace())
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An event as stored: type and version say how to read `data`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub id: EventId,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: u32,
    #[serde(deserialize_with = "ts::deserialize")]
    pub ts: DateTime<Utc>,
    pub data: Box<RawValue>,
}

/// Reading `ts`: the form nodai writes (`2026-11-25T09:56:41.240227Z`) is
/// parsed by hand, since chrono's general RFC 3339 parser was a twentieth of
/// a replay; anything else goes to chrono.
mod ts {
    use chrono::{DateTime, NaiveDate, Utc};
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        match parse_utc(&text) {
            Some(ts) => Ok(ts),
            None => DateTime::parse_from_rfc3339(&text)
                .map(|ts| ts.with_timezone(&Utc))
                .map_err(serde::de::Error::custom),
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, or None.
    pub(super) fn parse_utc(text: &str) -> Option<DateTime<Utc>> {
        let b = text.as_bytes();
        let num = |range: std::ops::Range<usize>| -> Option<u32> {
            b.get(range)?
                .iter()
                .try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
        };
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
            return None;
        }
        let nanos = match (b.get(19), b.last()) {
            (Some(b'Z'), _) if b.len() == 20 => 0,
            (Some(b'.'), Some(b'Z')) if (22..=30).contains(&b.len()) => {
                let digits = b.len() - 21;
                num(20..b.len() - 1)? * 10u32.pow(9 - digits as u32)
            }
            _ => return None,
        };
        NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?
            .and_hms_nano_opt(num(11..13)?, num(14..16)?, num(17..19)?, nanos)
            .map(|t| t.and_utc())
    }
}

impl Envelope {
    /// Wraps a typed event with a fresh id; `ts` is kept to the microsecond,
    /// the precision of the archive.
    pub fn new(event: &Event, ts: DateTime<Utc>) -> Result<Envelope, StreamError> {
        Envelope::with_id(EventId::new(), event, ts)
    }

    fn with_id(id: EventId, event: &Event, ts: DateTime<Utc>) -> Result<Envelope, StreamError> {
        use chrono::SubsecRound;
        Ok(Envelope {
            id,
            event_type: event.event_type().to_owned(),
            version: event.version(),
            ts: ts.trunc_subsecs(6),
            data: event.encode_data()?,
        })
    }

    pub fn from_json(bytes: &[u8]) -> Result<Envelope, DecodeError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// The typed event inside. A type or version this build does not know is
    /// [`Event::Unknown`], never an error: newer producers must not crash
    /// older readers.
    pub fn event(&self) -> Result<Event, DecodeError> {
        Event::decode(&self.event_type, self.version, &self.data)
    }
}

/// An event ready to append: serialised once, so a retried append sends the
/// very same bytes with the very same id.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub id: EventId,
    pub subject: Subject,
    pub payload: Bytes,
}

impl Outgoing {
    /// Envelopes `event` with a fresh id and time `ts`, on the event's own subject.
    pub fn new(event: &Event, ts: DateTime<Utc>) -> Result<Outgoing, StreamError> {
        Outgoing::with_id(EventId::new(), event, ts)
    }

    /// As [`Outgoing::new`], with an id chosen earlier (so that another
    /// event could name it).
    pub fn with_id(id: EventId, event: &Event, ts: DateTime<Utc>) -> Result<Outgoing, StreamError> {
        Outgoing::from_envelope(event.subject()?, &Envelope::with_id(id, event, ts)?)
    }

    pub fn from_envelope(subject: Subject, envelope: &Envelope) -> Result<Outgoing, StreamError> {
        let payload = serde_json::to_vec(envelope)
            .map_err(|e| StreamError::Invalid(format!("cannot serialise envelope: {e}")))?;
        Ok(Outgoing {
            id: envelope.id,
            subject,
            payload: payload.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_as_chrono_parses_them() {
        for text in [
            "2026-11-25T09:56:41.240227Z",
            "2026-11-25T09:56:41Z",
            "2026-11-25T09:56:41.2Z",
            "2026-11-25T09:56:41.123456789Z",
            "2024-02-29T23:59:59.999999Z",
            "1970-01-01T00:00:00Z",
        ] {
            let expected = DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc);
            assert_eq!(ts::parse_utc(text), Some(expected), "{text}");
        }
        // Not the written form: left to chrono, which reads the offset.
        for text in [
            "2026-11-25T09:56:41+01:00",
            "2026-11-25 09:56:41Z",
            "2026-11-25T09:56:41.Z",
            "2026-13-25T09:56:41Z",
            "2023-02-29T00:00:00Z",
            "2026-11-25T24:00:00Z",
            "2026-11-25T09:56:41.1234567890Z",
            "2026-11-2ST09:56:41Z",
            "",
        ] {
            assert_eq!(ts::parse_utc(text), None, "{text}");
        }
        let envelope: Envelope = serde_json::from_str(
            r#"{"id":"01a21222-d098-76ca-a149-428dc9b656c4","type":"t","version":1,"ts":"2026-11-25T10:56:41.5+01:00","data":{}}"#,
        )
        .unwrap();
        assert_eq!(envelope.ts, ts::parse_utc("2026-11-25T09:56:41.5Z").unwrap());
    }

    #[test]
    fn subjects_are_single_tokens() {
        assert_eq!(Subject::new("key", "key_1").unwrap().as_str(), "key.key_1");
        assert_eq!(Subject::new("usage", "key_1").unwrap().aggregate(), "usage");
        for bad in ["", "a.b", "a*", "a>", "a b"] {
            assert!(Subject::new("key", bad).is_err(), "{bad:?} accepted");
        }
        assert!(Subject::parse("key..x").is_err());
    }

    #[test]
    fn event_ids_sort_by_creation() {
        let ids: Vec<EventId> = (0..1000).map(|_| EventId::new()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        let id = ids[0];
        assert_eq!(EventId::from_bytes(*id.as_bytes()), id);
        assert_eq!(id.to_string().parse::<EventId>().unwrap(), id);
    }
}
