//! Webhook subscriptions and their deliveries, folded from the stream.
//!
//! A *message* is something to tell subscribers: a key change, a fired
//! alert, a test. When one is folded, every active subscription that wants
//! its type gets a *delivery* of it, pending from the message's time. The
//! worker attempts pending deliveries and records each attempt as an event,
//! which this fold turns into the delivery's state, so pending deliveries
//! survive restarts and every replica can list them.
//!
//! Like the rest of the projection this is a pure fold: the message bodies
//! are built from the events alone, so a replay builds the same bodies, and
//! the same `webhook-id` goes out on every attempt.

use chrono::{DateTime, Utc};
use ingest::events::{DeliveryAttempted, DeliveryOutcome, WebhookCreated, WebhookTested, WebhookUpdated};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Finished deliveries kept per subscription for the deliveries log
/// (pending ones are all kept).
pub const FINISHED_KEPT: usize = 1000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    /// Event types delivered; empty means all.
    pub events: Vec<String>,
    pub description: Option<String>,
    pub active: bool,
    pub secret: String,
    /// After a rotation with a grace period: the old secret and until when
    /// it signs too.
    pub previous_secret: Option<(String, DateTime<Utc>)>,
    /// Why and when the worker disabled it, if it did.
    pub disabled: Option<(DateTime<Utc>, String)>,
    /// The first failed attempt since the last success, and the latest:
    /// failures spanning five days disable the endpoint.
    pub failing_since: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_failure_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// By message id.
    pub deliveries: BTreeMap<String, Delivery>,
}

impl Webhook {
    pub fn wants(&self, event_type: &str) -> bool {
        self.active && (self.events.is_empty() || self.events.iter().any(|e| e == event_type))
    }

    /// The secrets that sign a message sent at `now`: the current one, and
    /// the previous one during its grace period.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let Some((previous, until)) = &self.previous_secret {
            if now < *until {
                secrets.push(previous);
            }
        }
        secrets
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Succeeded,
    Failed,
}

/// One message to one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The message id: the `webhook-id` header, and this delivery's id.
    pub id: String,
    pub event_type: String,
    /// The exact body sent on every attempt: `{"type","timestamp","data"}`.
    pub body: Arc<str>,
    pub created_at: DateTime<Utc>,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// Attempts before the current retry schedule began (a manual retry
    /// starts the schedule again).
    pub schedule_from: u32,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Webhooks {
    by_id: BTreeMap<String, Webhook>,
    /// Last stream sequence of each subscription's subject, live or deleted,
    /// for conditional appends.
    last_seq: BTreeMap<String, u64>,
}

impl Webhooks {
    pub fn get(&self, id: &str) -> Option<&Webhook> {
        self.by_id.get(id)
    }

    pub fn last_seq(&self, id: &str) -> u64 {
        self.last_seq.get(id).copied().unwrap_or(0)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Webhook> {
        self.by_id.values()
    }

    /// Up to `limit` subscriptions after `after`, and whether more follow.
    pub fn page(&self, after: Option<&str>, limit: usize) -> (Vec<&Webhook>, bool) {
        crate::page(&self.by_id, after, limit)
    }

    pub(crate) fn created(&mut self, seq: u64, ts: DateTime<Utc>, e: &WebhookCreated) {
        self.last_seq.insert(e.webhook_id.clone(), seq);
        self.by_id.insert(
            e.webhook_id.clone(),
            Webhook {
                id: e.webhook_id.clone(),
                url: e.url.clone(),
                events: e.events.clone(),
                description: e.description.clone(),
                active: e.active,
                secret: e.secret.clone(),
                previous_secret: None,
                disabled: None,
                failing_since: None,
                last_failure_at: None,
                created_at: ts,
                updated_at: ts,
                deliveries: BTreeMap::new(),
            },
        );
    }

    pub(crate) fn updated(&mut self, seq: u64, ts: DateTime<Utc>, e: &WebhookUpdated) {
        self.last_seq.insert(e.webhook_id.clone(), seq);
        let Some(w) = self.by_id.get_mut(&e.webhook_id) else {
            return;
        };
        w.url.clone_from(&e.url);
        w.events.clone_from(&e.events);
        w.description.clone_from(&e.description);
        if e.active && !w.active {
            // Turned on again: a fresh start, not the old failure streak.
            w.disabled = None;
            w.failing_since = None;
            w.last_failure_at = None;
        }
        w.active = e.active;
        if let Some(secret) = &e.secret {
            let previous = std::mem::replace(&mut w.secret, secret.clone());
            w.previous_secret = e.previous_secret_valid_until.map(|until| (previous, until));
        }
        w.updated_at = ts;
    }

    pub(crate) fn deleted(&mut self, seq: u64, id: &str) {
        self.last_seq.insert(id.to_owned(), seq);
        self.by_id.remove(id);
    }

    pub(crate) fn disabled(&mut self, seq: u64, ts: DateTime<Utc>, id: &str, reason: &str) {
        self.last_seq.insert(id.to_owned(), seq);
        if let Some(w) = self.by_id.get_mut(id) {
            w.active = false;
            w.disabled = Some((ts, reason.to_owned()));
            w.updated_at = ts;
            // What was still pending will not be sent: failed, and can be
            // retried by hand once the endpoint is turned on again.
            for d in w
                .deliveries
                .values_mut()
                .filter(|d| d.status == DeliveryStatus::Pending)
            {
                d.status = DeliveryStatus::Failed;
                d.next_attempt_at = None;
                d.last_error = Some("the endpoint was disabled".into());
            }
        }
    }

    pub(crate) fn tested(&mut self, seq: u64, ts: DateTime<Utc>, e: &WebhookTested) {
        self.last_seq.insert(e.webhook_id.clone(), seq);
        let data = serde_json::json!({"webhook_id": e.webhook_id});
        self.message(ts, &e.message_id, "webhook.test", &data, Some(&e.webhook_id));
    }

    /// A message for subscribers: a pending delivery for each that wants
    /// it (only `only`, if given). A message id seen before adds nothing.
    pub(crate) fn message(
        &mut self,
        ts: DateTime<Utc>,
        id: &str,
        event_type: &str,
        data: &serde_json::Value,
        only: Option<&str>,
    ) {
        let mut body: Option<Arc<str>> = None;
        for w in self.by_id.values_mut() {
            if only.is_some_and(|only| only != w.id) || (only.is_none() && !w.wants(event_type)) {
                continue;
            }
            if w.deliveries.contains_key(id) {
                continue;
            }
            let body = body
                .get_or_insert_with(|| {
                    let message = serde_json::json!({"type": event_type, "timestamp": ts, "data": data});
                    message.to_string().into()
                })
                .clone();
            w.deliveries.insert(
                id.to_owned(),
                Delivery {
                    id: id.to_owned(),
                    event_type: event_type.to_owned(),
                    body,
                    created_at: ts,
                    status: DeliveryStatus::Pending,
                    attempts: 0,
                    schedule_from: 0,
                    last_status_code: None,
                    last_error: None,
                    next_attempt_at: Some(ts),
                },
            );
            prune(&mut w.deliveries);
        }
    }

    pub(crate) fn attempted(&mut self, ts: DateTime<Utc>, e: &DeliveryAttempted) {
        let Some(w) = self.by_id.get_mut(&e.webhook_id) else {
            return;
        };
        let Some(d) = w.deliveries.get_mut(&e.message_id) else {
            return;
        };
        // An attempt recorded twice (a worker's retried append) counts once.
        if e.attempt <= d.attempts {
            return;
        }
        d.attempts = e.attempt;
        d.last_status_code = e.status_code;
        d.last_error.clone_from(&e.error);
        d.next_attempt_at = e.next_attempt_at;
        d.status = match e.outcome {
            DeliveryOutcome::Succeeded => DeliveryStatus::Succeeded,
            DeliveryOutcome::Retrying => DeliveryStatus::Pending,
            DeliveryOutcome::Failed => DeliveryStatus::Failed,
        };
        if e.outcome != DeliveryOutcome::Succeeded && e.schedule_from < d.schedule_from {
            // A manual retry was asked for while this attempt was on its
            // way: the retry stands, with a whole schedule after it.
            d.status = DeliveryStatus::Pending;
            d.next_attempt_at = Some(ts);
            d.schedule_from = e.attempt;
        }
        if e.outcome == DeliveryOutcome::Succeeded {
            w.failing_since = None;
            w.last_failure_at = None;
        } else {
            w.failing_since.get_or_insert(ts);
            w.last_failure_at = Some(ts);
        }
    }

    pub(crate) fn retry_requested(&mut self, ts: DateTime<Utc>, webhook_id: &str, message_id: &str) {
        let Some(d) = self
            .by_id
            .get_mut(webhook_id)
            .and_then(|w| w.deliveries.get_mut(message_id))
        else {
            return;
        };
        d.status = DeliveryStatus::Pending;
        d.schedule_from = d.attempts;
        d.next_attempt_at = Some(ts);
    }
}

/// Keeps every pending delivery and the newest finished ones.
fn prune(deliveries: &mut BTreeMap<String, Delivery>) {
    if deliveries.len() <= FINISHED_KEPT * 2 {
        return;
    }
    let mut finished: Vec<(DateTime<Utc>, String)> = deliveries
        .values()
        .filter(|d| d.status != DeliveryStatus::Pending)
        .map(|d| (d.created_at, d.id.clone()))
        .collect();
    finished.sort();
    let drop = finished.len().saturating_sub(FINISHED_KEPT);
    for (_, id) in finished.into_iter().take(drop) {
        deliveries.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap() + chrono::Duration::seconds(secs)
    }

    fn created(id: &str, events: &[&str]) -> WebhookCreated {
        WebhookCreated {
            webhook_id: id.into(),
            url: "https://example.com/hook".into(),
            events: events.iter().map(|e| e.to_string()).collect(),
            description: None,
            secret: format!("whsec_{id}"),
            active: true,
        }
    }

    fn attempt(n: u32, outcome: DeliveryOutcome, status: Option<u16>) -> DeliveryAttempted {
        DeliveryAttempted {
            webhook_id: "wh_all".into(),
            message_id: "msg_1".into(),
            event_type: "key.created".into(),
            attempt: n,
            schedule_from: 0,
            status_code: status,
            outcome,
            next_attempt_at: (outcome == DeliveryOutcome::Retrying).then(|| t(60)),
            error: None,
        }
    }

    #[test]
    fn messages_go_to_the_subscriptions_that_want_them() {
        let mut w = Webhooks::default();
        w.created(1, t(0), &created("wh_all", &[]));
        w.created(2, t(0), &created("wh_keys", &["key.created"]));
        w.created(3, t(0), &created("wh_alerts", &["usage.threshold"]));
        let data = serde_json::json!({"key_id": "key_a"});
        w.message(t(1), "msg_1", "key.created", &data, None);
        w.message(t(1), "msg_1", "key.created", &data, None);
        let count = |w: &Webhooks, id: &str| w.get(id).unwrap().deliveries.len();
        assert_eq!(
            (count(&w, "wh_all"), count(&w, "wh_keys"), count(&w, "wh_alerts")),
            (1, 1, 0)
        );
        w.message(t(2), "msg_2", "webhook.test", &data, Some("wh_alerts"));
        assert_eq!(
            (count(&w, "wh_all"), count(&w, "wh_alerts")),
            (1, 1),
            "a test goes to its endpoint only"
        );
    }

    #[test]
    fn attempts_move_a_delivery_and_a_retry_starts_the_schedule_again() {
        let mut w = Webhooks::default();
        w.created(1, t(0), &created("wh_all", &[]));
        w.message(t(1), "msg_1", "key.created", &serde_json::json!({}), None);
        let d = |w: &Webhooks| w.get("wh_all").unwrap().deliveries["msg_1"].clone();
        assert_eq!(
            (d(&w).status, d(&w).next_attempt_at),
            (DeliveryStatus::Pending, Some(t(1)))
        );

        w.attempted(t(2), &attempt(1, DeliveryOutcome::Retrying, Some(503)));
        w.attempted(t(2), &attempt(1, DeliveryOutcome::Retrying, Some(503)));
        assert_eq!(
            (d(&w).attempts, d(&w).last_status_code),
            (1, Some(503)),
            "recorded twice, counted once"
        );
        assert_eq!(w.get("wh_all").unwrap().failing_since, Some(t(2)));
        w.attempted(t(62), &attempt(2, DeliveryOutcome::Failed, None));
        assert_eq!(d(&w).status, DeliveryStatus::Failed);
        assert_eq!(
            w.get("wh_all").unwrap().failing_since,
            Some(t(2)),
            "still failing since the first"
        );

        // A retry asked for while attempt 3 is on its way, which then fails
        // for good by the old schedule: the retry stands.
        w.retry_requested(t(90), "wh_all", "msg_1");
        w.attempted(t(91), &attempt(3, DeliveryOutcome::Failed, Some(500)));
        assert_eq!(
            (d(&w).status, d(&w).schedule_from, d(&w).next_attempt_at),
            (DeliveryStatus::Pending, 3, Some(t(91)))
        );
        w.attempted(
            t(95),
            &DeliveryAttempted {
                schedule_from: 3,
                ..attempt(4, DeliveryOutcome::Failed, None)
            },
        );
        assert_eq!(
            d(&w).status,
            DeliveryStatus::Failed,
            "the new schedule runs out on its own"
        );

        w.retry_requested(t(100), "wh_all", "msg_1");
        assert_eq!(
            (d(&w).status, d(&w).schedule_from, d(&w).next_attempt_at),
            (DeliveryStatus::Pending, 4, Some(t(100)))
        );
        w.attempted(
            t(101),
            &DeliveryAttempted {
                schedule_from: 4,
                ..attempt(5, DeliveryOutcome::Succeeded, Some(200))
            },
        );
        assert_eq!(d(&w).status, DeliveryStatus::Succeeded);
        assert_eq!(
            w.get("wh_all").unwrap().failing_since,
            None,
            "a success ends the streak"
        );
        assert_eq!(w.get("wh_all").unwrap().last_failure_at, None);
    }

    #[test]
    fn a_disabled_endpoint_fails_what_was_pending() {
        let mut w = Webhooks::default();
        w.created(1, t(0), &created("wh_all", &[]));
        w.message(t(1), "msg_1", "key.created", &serde_json::json!({}), None);
        w.disabled(2, t(5), "wh_all", "every attempt failed");
        let hook = w.get("wh_all").unwrap();
        assert!(!hook.active && !hook.wants("key.created"));
        assert_eq!(hook.deliveries["msg_1"].status, DeliveryStatus::Failed);
        w.retry_requested(t(6), "wh_all", "msg_1");
        let retried = &w.get("wh_all").unwrap().deliveries["msg_1"];
        assert_eq!(retried.status, DeliveryStatus::Pending, "retried by hand");
    }

    #[test]
    fn a_rotation_signs_with_both_secrets_until_the_grace_ends() {
        let mut w = Webhooks::default();
        w.created(1, t(0), &created("wh_all", &[]));
        w.updated(
            2,
            t(10),
            &WebhookUpdated {
                webhook_id: "wh_all".into(),
                url: "https://example.com/v2".into(),
                events: vec![],
                description: None,
                active: true,
                secret: Some("whsec_new".into()),
                previous_secret_valid_until: Some(t(70)),
            },
        );
        let hook = w.get("wh_all").unwrap();
        assert_eq!(hook.signing_secrets(t(69)), ["whsec_new", "whsec_wh_all"]);
        assert_eq!(hook.signing_secrets(t(70)), ["whsec_new"]);
        assert_eq!(w.last_seq("wh_all"), 2);
    }

    #[test]
    fn finished_deliveries_are_pruned_pending_ones_kept() {
        let mut w = Webhooks::default();
        w.created(1, t(0), &created("wh_all", &[]));
        w.message(t(0), "msg_pending", "key.created", &serde_json::json!({}), None);
        for i in 0..FINISHED_KEPT * 2 + 10 {
            let id = format!("msg_{i:05}");
            w.message(t(i as i64 + 1), &id, "key.created", &serde_json::json!({}), None);
            w.attempted(
                t(i as i64 + 1),
                &DeliveryAttempted {
                    message_id: id,
                    ..attempt(1, DeliveryOutcome::Succeeded, Some(200))
                },
            );
        }
        let deliveries = &w.get("wh_all").unwrap().deliveries;
        assert!(deliveries.len() <= FINISHED_KEPT * 2 + 1);
        assert!(deliveries.contains_key("msg_pending"));
        assert!(
            deliveries.contains_key(&format!("msg_{:05}", FINISHED_KEPT * 2 + 9)),
            "the newest are kept"
        );
    }
}
