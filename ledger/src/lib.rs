//! The ledger: folds the event stream into the state nodai answers from.
//!
//! - [`keys`]: API keys, indexed by id and by the SHA-256 of their secret.
//! - [`workflows`]: the workflow registry.
//! - [`customers`]: the seller's customers, whose keys share their limits.
//! - [`usage`]: per-key usage: the rolling 60 minutes the rate limit reads,
//!   the UTC month the cost limit reads, totals, last use.
//! - [`Projection`]: all of them, folded together from one stream.
//!
//! - [`archive`]: every admitted query as a Parquet row, exactly once.
//! - [`snapshot`]: the projection on disk, to start without replaying it all.
//! - [`dedup`]: the ids of recently stored events, so that an event stored
//!   twice within a window is applied once.
//!
//! The projection is a pure fold, `apply(seq, id, ts, event)`, with no I/O
//! and no clock: questions that depend on the time take `now` as a
//! parameter. Rebuilding from sequence 1 gives the same state, and so does
//! loading a snapshot and folding the rest. Only [`snapshot`] and [`archive`] touch files.

pub mod alerts;
pub mod archive;
pub mod credits;
pub mod customers;
pub mod dedup;
mod error;
mod hash;
pub mod keys;
pub mod snapshot;
pub mod summary;
pub mod usage;
pub mod webhooks;
pub mod workflows;

use chrono::{DateTime, Utc};
use ingest::{Event, EventId};

pub use alerts::Alerts;
pub use credits::{Account, Credits, Grant};
pub use customers::{Customer, Customers};
pub use dedup::Dedup;
pub use error::Error;
pub use keys::{ApiKey, KeyHash, KeyRejection, Keys, Listed};
pub use usage::{Bucket, KeyUsage, Usage};
pub use webhooks::{Delivery, DeliveryStatus, Webhook, Webhooks};
pub use workflows::{Workflow, Workflows};

/// Everything the API validates and answers from.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Projection {
    pub keys: Keys,
    pub workflows: Workflows,
    pub usage: Usage,
    pub dedup: Dedup,
    /// Sequences that count for nothing (rare): a duplicate of an earlier
    /// event, or a `query.recorded` stored after its `record_by`; the
    /// archiver, which reads the same stream, skips them too.
    pub duplicates: std::collections::BTreeSet<u64>,
    /// The last stream sequence folded in.
    pub seq: u64,
    /// Last, and defaulted: snapshots written before webhooks still load.
    #[serde(default)]
    pub webhooks: Webhooks,
    #[serde(default)]
    pub alerts: Alerts,
    /// The id of the event at `seq`: checked against the stream before a
    /// snapshot is loaded, so one from another stream's history (a log
    /// that lost its tail, a NATS stream deleted and made again) is never
    /// taken for this one's.
    #[serde(default)]
    pub last_id: Option<EventId>,
    #[serde(default)]
    pub customers: Customers,
    #[serde(default)]
    pub credits: Credits,
}

impl Projection {
    /// Folds one event, which the stream stored at `seq`, made at `ts`, as
    /// if stored at once (see [`Self::apply_stored`]).
    pub fn apply(&mut self, seq: u64, id: EventId, ts: DateTime<Utc>, event: &Event) -> bool {
        self.apply_stored(seq, id, ts, ts.timestamp_micros(), event)
    }

    /// Folds one event, which the stream stored at `seq` at `stored_micros`
    /// (the backend's clock), made at `ts`. False if it changes nothing but
    /// the sequence: its id was applied before (a duplicate), or it is a
    /// `query.recorded` stored after its `record_by` (its query was
    /// answered 503, so it is not billed; its admission's place is freed).
    /// Either is marked in [`Self::duplicates`] for the archiver.
    pub fn apply_stored(
        &mut self,
        seq: u64,
        id: EventId,
        ts: DateTime<Utc>,
        stored_micros: i64,
        event: &Event,
    ) -> bool {
        self.seq = seq;
        self.last_id = Some(id);
        let deadline = match event {
            Event::QueryRecorded(q) => q.record_by.map(|by| by.timestamp_micros()),
            Event::QueryAdmitted(a) => Some(a.expires_at.timestamp_micros()),
            _ => None,
        };
        if !self.dedup.first_time(id, stored_micros, deadline) {
            self.duplicates.insert(seq);
            return false;
        }
        if let Event::QueryRecorded(q) = event {
            if q.record_by.is_some_and(|by| stored_micros > by.timestamp_micros()) {
                self.duplicates.insert(seq);
                self.usage.unadmit(q, id);
                return false;
            }
        }
        match event {
            Event::KeyCreated(_) | Event::KeyUpdated(_) | Event::KeyRevoked(_) | Event::KeyRotated(_) => {
                self.keys.apply(seq, ts, event);
                if let Some(key_id) = changed_key(event) {
                    self.alerts.key_changed(key_id);
                }
                if let Some((event_type, message_id, data)) = alerts::key_message(id, event, &self.keys) {
                    self.webhooks.message(ts, &message_id, event_type, &data, None);
                }
            }
            Event::WorkflowRegistered(_) | Event::WorkflowUpdated(_) | Event::WorkflowDeleted(_) => {
                self.workflows.apply(seq, ts, event)
            }
            Event::CustomerCreated(_) | Event::CustomerUpdated(_) | Event::CustomerDeleted(_) => {
                self.customers.apply(seq, ts, event);
                if let Event::CustomerDeleted(e) = event {
                    self.credits.closed(&e.customer_id);
                }
            }
            Event::QueryRecorded(q) => {
                let calendar_month = self.usage.apply(id, ts, q);
                // A customer's keys count their cost limit, and so their
                // thresholds, over its billing month.
                let anchor_day = q
                    .customer_id
                    .as_deref()
                    .and_then(|c| self.customers.get(c))
                    .map_or(1, |c| c.settings.billing_anchor_day);
                let month = match self.usage.get(&q.key_id) {
                    Some(usage) if anchor_day > 1 => usage.day_and_month(ts, anchor_day).1,
                    _ => calendar_month,
                };
                self.alerts.query(ts, q, month, anchor_day, &self.keys);
                let prepaid = q
                    .customer_id
                    .as_deref()
                    .and_then(|c| self.customers.get(c))
                    .filter(|c| c.settings.billing == ingest::events::Billing::Prepaid);
                if let Some(customer) = prepaid {
                    let threshold = customer.settings.low_balance_threshold;
                    let told = self.credits.drawn(&customer.id, ts, q.cost, threshold);
                    self.tell(ts, told);
                }
            }
            Event::CreditsGranted(e) => {
                let threshold = self.threshold(&e.customer_id);
                let told = self.credits.granted(ts, e, threshold);
                self.tell(ts, told);
            }
            Event::CreditsVoided(e) => {
                let threshold = self.threshold(&e.customer_id);
                let told = self.credits.voided(ts, e, threshold);
                self.tell(ts, told);
            }
            Event::QueryAdmitted(a) => self.usage.admitted(seq, ts, a),
            Event::AlertFired(alert) => {
                if self.alerts.fired(ts, alert) {
                    let message_id = alerts::message_id(&alert.alert_id);
                    self.webhooks
                        .message(ts, &message_id, &alert.alert_type, &alert.data, None);
                }
            }
            Event::WebhookCreated(e) => self.webhooks.created(seq, ts, e),
            Event::WebhookUpdated(e) => self.webhooks.updated(seq, ts, e),
            Event::WebhookDeleted(e) => self.webhooks.deleted(seq, &e.webhook_id),
            Event::WebhookDisabled(e) => self.webhooks.disabled(seq, ts, &e.webhook_id, &e.reason),
            Event::WebhookTested(e) => self.webhooks.tested(seq, ts, e),
            Event::DeliveryAttempted(e) => self.webhooks.attempted(ts, e),
            Event::DeliveryRetryRequested(e) => self.webhooks.retry_requested(ts, &e.webhook_id, &e.message_id),
            Event::Unknown(_) => {}
        }
        true
    }
}

impl Projection {
    fn threshold(&self, customer_id: &str) -> Option<ingest::Micros> {
        self.customers
            .get(customer_id)
            .and_then(|c| c.settings.low_balance_threshold)
    }

    /// Queues the credit webhooks the fold decided.
    fn tell(&mut self, ts: DateTime<Utc>, messages: Vec<credits::Message>) {
        for (event_type, message_id, data) in messages {
            self.webhooks.message(ts, &message_id, event_type, &data, None);
        }
    }
}

/// The key a key event is about.
fn changed_key(event: &Event) -> Option<&str> {
    match event {
        Event::KeyCreated(e) => Some(&e.key_id),
        Event::KeyUpdated(e) => Some(&e.key_id),
        Event::KeyRevoked(e) => Some(&e.key_id),
        Event::KeyRotated(e) => Some(&e.key_id),
        _ => None,
    }
}

/// Up to `limit` values after the key `after`, in key order, and whether
/// more follow: cursor pagination over an id-keyed map.
fn page<'a, K, V>(map: &'a std::collections::BTreeMap<K, V>, after: Option<&str>, limit: usize) -> (Vec<&'a V>, bool)
where
    K: std::borrow::Borrow<str> + Ord,
{
    page_where(map, after, limit, |_| true)
}

/// [`page`] over the values that `keep` accepts.
fn page_where<'a, K, V>(
    map: &'a std::collections::BTreeMap<K, V>,
    after: Option<&str>,
    limit: usize,
    keep: impl Fn(&V) -> bool,
) -> (Vec<&'a V>, bool)
where
    K: std::borrow::Borrow<str> + Ord,
{
    use std::ops::Bound::{Excluded, Unbounded};
    let start = after.map_or(Unbounded, Excluded);
    let mut iter = map
        .range::<str, _>((start, Unbounded))
        .map(|(_, v)| v)
        .filter(|v| keep(v));
    let page: Vec<&V> = iter.by_ref().take(limit).collect();
    let more = iter.next().is_some();
    (page, more)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use ingest::events::{QueryAdmitted, QueryRecorded};
    use ingest::Micros;

    /// A key of a customer with a billing anchor day crosses its
    /// thresholds in the billing month its cost limit counts, not in the
    /// calendar month.
    #[test]
    fn thresholds_follow_the_billing_month() {
        use ingest::events::{Billing, CustomerCreated, CustomerSettings, KeyCreated, KeySettings};
        let day = |d| Utc.with_ymd_and_hms(2026, 11, d, 12, 0, 0).unwrap();
        let mut p = Projection::default();
        let customer = CustomerSettings {
            name: "c".into(),
            email: None,
            metadata: None,
            limits: vec![],
            max_concurrent: None,
            billing: Billing::Postpaid,
            low_balance_threshold: None,
            billing_anchor_day: 15,
        };
        p.apply(
            1,
            EventId::new(),
            day(1),
            &Event::CustomerCreated(CustomerCreated {
                customer_id: "acme".into(),
                settings: customer,
            }),
        );
        let settings = KeySettings {
            name: "k".into(),
            owner: None,
            active: true,
            workflow_ids: vec![],
            rate_limit_per_hour: None,
            cost_limit_per_month: Some(Micros::new(1_000_000)),
            alert_thresholds: vec![50],
            expires_at: None,
            allowed_origins: vec![],
            metadata: None,
            customer_id: Some("acme".into()),
            limits: vec![],
            max_concurrent: None,
        };
        let key = KeyCreated {
            key_id: "key_a".into(),
            key_hash: "00".repeat(32),
            prefix: "nk_00000000".into(),
            settings,
        };
        p.apply(2, EventId::new(), day(1), &Event::KeyCreated(key));
        let query = |cost| {
            Event::QueryRecorded(QueryRecorded {
                request_id: "r".into(),
                key_id: "key_a".into(),
                workflow_id: "w".into(),
                status_code: 200,
                cost: Micros::new(cost),
                duration_ms: 1,
                reported_cost: None,
                record_by: None,
                customer_id: Some("acme".into()),
                input_tokens: 0,
                output_tokens: 0,
                authorization_id: None,
            })
        };
        p.apply(3, EventId::new(), day(14), &query(400_000));
        p.apply(4, EventId::new(), day(15), &query(400_000));
        assert_eq!(
            p.alerts.due().count(),
            0,
            "40 % of each billing month (80 % of November)"
        );
        p.apply(5, EventId::new(), day(16), &query(200_000));
        let due: Vec<_> = p.alerts.due().map(|a| a.alert_id.clone()).collect();
        assert_eq!(due, ["threshold:key_a:2026-11-15:50"]);
    }

    /// A `query.recorded` stored after its `record_by` (its query was
    /// answered 503) counts for nothing: no usage, marked for the archiver
    /// to skip, its admission's place freed. In time, it counts.
    #[test]
    fn a_usage_event_stored_after_its_deadline_does_not_count() {
        let t = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        let by = t + chrono::Duration::seconds(15);
        let recorded = |record_by| {
            Event::QueryRecorded(QueryRecorded {
                request_id: "r".into(),
                key_id: "key_a".into(),
                workflow_id: "w".into(),
                status_code: 200,
                cost: Micros::new(100),
                duration_ms: 1,
                reported_cost: None,
                record_by,
                customer_id: None,
                input_tokens: 0,
                output_tokens: 0,
                authorization_id: None,
            })
        };
        let mut p = Projection::default();
        let (late, in_time) = (EventId::new(), EventId::new());
        let admitted = Event::QueryAdmitted(QueryAdmitted {
            request_id: "r".into(),
            key_id: "key_a".into(),
            workflow_id: "w".into(),
            cost: Micros::new(100),
            record_id: late,
            expires_at: t + chrono::Duration::hours(1),
            after_seq: 0,
            customer_id: None,
            verification: false,
            local: false,
        });
        p.apply(1, EventId::new(), t, &admitted);
        assert_eq!(p.usage.admissions("key_a").unwrap().pending(t).0, 1);
        let stored_late = (by + chrono::Duration::microseconds(1)).timestamp_micros();
        assert!(!p.apply_stored(2, late, t, stored_late, &recorded(Some(by))));
        assert!(p.usage.get("key_a").is_none(), "not billed");
        assert_eq!(p.usage.admissions("key_a").unwrap().pending(t).0, 0, "place freed");
        assert!(p.duplicates.contains(&2), "the archiver skips it");
        assert_eq!((p.seq, p.last_id), (2, Some(late)));

        assert!(p.apply_stored(3, in_time, t, by.timestamp_micros(), &recorded(Some(by))));
        assert!(
            p.apply_stored(4, EventId::new(), t, i64::MAX, &recorded(None)),
            "no deadline: counts"
        );
        assert_eq!(p.usage.get("key_a").unwrap().total.requests, 2);
    }
}
