//! Alert rules, evaluated as events are folded (never on a timer), and the
//! messages subscribers get.
//!
//! - `usage.threshold`: a query took a key's month-to-date cost to one of
//!   its `alert_thresholds` percents of its cost limit. Once per key, UTC
//!   month and threshold.
//! - `usage.rate_limited`: the first 429 of a key in a clock hour. Rejected
//!   queries are not on the stream, so the replica that answered the 429
//!   fires it ([`rate_limited`]).
//! - `key.created`, `key.updated`, `key.revoked`, `key.rotated`: every change
//!   ([`key_message`]).
//!
//! An alert's id is derived from what makes it unique, and `alert.fired` is
//! folded once per id: a replay, a restart or two workers firing the same
//! alert deliver it once. A rule that matches puts the alert in
//! [`Alerts::due`]; the worker appends it, and folding the `alert.fired`
//! moves it to the fired set.

use chrono::{DateTime, Duration, Utc};
use ingest::events::{AlertFired, QueryRecorded};
use ingest::{Event, EventId, Micros};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

use crate::hash::FastMap;
use crate::keys::Keys;
use crate::usage::{day_of, month_of};

/// Fired alert ids are remembered this long (from the newest event), longer
/// than the longest period an id names (a month).
const FIRED_KEPT_DAYS: i64 = 40;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alerts {
    /// Alert ids folded from `alert.fired`, with their time.
    fired: BTreeMap<String, DateTime<Utc>>,
    /// Matched by a rule, not yet on the stream.
    /// Shared with copies of the projection (a snapshot's), which then copy
    /// a pointer per alert rather than its JSON.
    due: BTreeMap<String, std::sync::Arc<AlertFired>>,
    /// The day `fired` was last pruned.
    pruned_day: i64,
    /// Per key: a month, and the month-to-date cost at which the key's next
    /// threshold is crossed in it (`i64::MAX`: none), so that a query below
    /// it needs neither the key's settings nor an alert id.
    #[serde(default)]
    next: FastMap<String, (i64, i64)>,
}

impl Alerts {
    pub fn is_fired(&self, alert_id: &str) -> bool {
        self.fired.contains_key(alert_id)
    }

    /// Alerts a rule matched that are not on the stream yet: the worker
    /// appends them.
    pub fn due(&self) -> impl Iterator<Item = &AlertFired> {
        self.due.values().map(|a| &**a)
    }

    /// Folds `alert.fired`; false if this alert was fired before.
    pub(crate) fn fired(&mut self, ts: DateTime<Utc>, alert: &AlertFired) -> bool {
        self.due.remove(&alert.alert_id);
        if self.fired.contains_key(&alert.alert_id) {
            return false;
        }
        self.fired.insert(alert.alert_id.clone(), ts);
        let today = day_of(ts);
        if today > self.pruned_day {
            self.pruned_day = today;
            let oldest = ts - Duration::days(FIRED_KEPT_DAYS);
            self.fired.retain(|_, at| *at >= oldest);
        }
        true
    }

    /// A key's settings changed: its next threshold is looked up again.
    pub(crate) fn key_changed(&mut self, key_id: &str) {
        self.next.remove(key_id);
    }

    /// After `q` was folded into the usage: the thresholds it crossed.
    /// `cost` is the key's month-to-date cost with `q`.
    /// `month_to_date` is the key's usage in its billing month: the UTC
    /// calendar month, or from its customer's `anchor_day`.
    pub(crate) fn query(
        &mut self,
        ts: DateTime<Utc>,
        q: &QueryRecorded,
        month_to_date: crate::Bucket,
        anchor_day: u8,
        keys: &Keys,
    ) {
        let cost = month_to_date.cost.get();
        // The period, as a number for `next` and as text for alert ids:
        // `YYYY-MM` for calendar months, the start date from an anchor day.
        let (month, label) = if anchor_day <= 1 {
            (month_of(ts), ts.format("%Y-%m").to_string())
        } else {
            let start = crate::usage::month_start(ts, anchor_day);
            ((1 << 40) + day_of(start), start.format("%Y-%m-%d").to_string())
        };
        // Nearly every query crosses nothing: known without the key's settings.
        if let Some(&(m, next)) = self.next.get(q.key_id.as_str()) {
            if m == month && cost < next {
                return;
            }
        }
        let mut next = i64::MAX;
        let limit = keys
            .get(&q.key_id)
            .and_then(|key| Some(key).zip(key.settings.cost_limit_per_month.filter(|l| l.get() > 0)));
        if let Some((key, limit)) = limit {
            for &percent in &key.settings.alert_thresholds {
                let boundary = i128::from(limit.get()) * i128::from(percent) / 100;
                let boundary = i64::try_from(boundary).unwrap_or(i64::MAX);
                if cost < boundary {
                    next = next.min(boundary);
                    continue;
                }
                let alert_id = format!("threshold:{}:{label}:{percent}", q.key_id);
                if self.fired.contains_key(&alert_id) || self.due.contains_key(&alert_id) {
                    continue;
                }
                let data = json!({
                    "key_id": q.key_id,
                    "threshold_percent": percent,
                    "cost_this_month": usd(Micros::new(cost)),
                    "cost_limit_per_month": usd(limit),
                    "input_tokens_this_month": month_to_date.input_tokens,
                    "output_tokens_this_month": month_to_date.output_tokens,
                    "month": label,
                });
                self.due.insert(
                    alert_id.clone(),
                    std::sync::Arc::new(AlertFired {
                        alert_id,
                        alert_type: "usage.threshold".into(),
                        key_id: q.key_id.clone(),
                        data,
                    }),
                );
            }
        }
        self.next.insert(q.key_id.clone(), (month, next));
    }
}

/// The `usage.rate_limited` alert for a 429 of `key_id` at `now`:
/// `rate_limit_per_hour` is the key's own (or null), `limit` the one that
/// refused (`{"scope","metric","window","max"}`, as the problem names it).
pub fn rate_limited(
    key_id: &str,
    rate_limit_per_hour: Option<u64>,
    limit: serde_json::Value,
    now: DateTime<Utc>,
) -> AlertFired {
    let hour = now.format("%Y-%m-%dT%H:00:00Z").to_string();
    AlertFired {
        alert_id: format!("rate_limited:{key_id}:{hour}"),
        alert_type: "usage.rate_limited".into(),
        key_id: key_id.to_owned(),
        data: json!({"key_id": key_id, "rate_limit_per_hour": rate_limit_per_hour, "limit": limit, "hour": hour}),
    }
}

/// The message id (`webhook-id`) of an alert.
pub fn message_id(alert_id: &str) -> String {
    format!("msg_{}", alert_id.replace(':', "_"))
}

/// The subscriber message for a key change: type, message id and data.
/// Never the secret: only its display prefix, as the API shows it. Called
/// after the event was folded into `keys`.
pub fn key_message(id: EventId, event: &Event, keys: &Keys) -> Option<(&'static str, String, serde_json::Value)> {
    let settings = |key_id: &str, s: &ingest::events::KeySettings| {
        let prefix = keys.get(key_id).map(|k| k.prefix.as_str());
        json!({
            "key_id": key_id,
            "prefix": prefix,
            "name": s.name,
            "owner": s.owner,
            "active": s.active,
            "workflow_ids": s.workflow_ids,
            "rate_limit_per_hour": s.rate_limit_per_hour,
            "cost_limit_per_month": s.cost_limit_per_month.map(usd),
            "alert_thresholds": s.alert_thresholds,
            "expires_at": s.expires_at,
            "metadata": s.metadata,
        })
    };
    let (event_type, data) = match event {
        Event::KeyCreated(e) => ("key.created", settings(&e.key_id, &e.settings)),
        Event::KeyUpdated(e) => ("key.updated", settings(&e.key_id, &e.settings)),
        Event::KeyRevoked(e) => ("key.revoked", json!({"key_id": e.key_id})),
        Event::KeyRotated(e) => (
            "key.rotated",
            json!({"key_id": e.key_id, "prefix": e.prefix, "previous_valid_until": e.previous_valid_until}),
        ),
        _ => return None,
    };
    let hex: String = id.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    Some((event_type, format!("msg_{hex}"), data))
}

/// USD as a JSON number, as the API shows money.
fn usd(amount: Micros) -> f64 {
    amount.get() as f64 / Micros::PER_DOLLAR as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Projection;
    use chrono::TimeZone;
    use ingest::events::{KeyCreated, KeySettings, WebhookCreated};

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
    }

    /// A key with a $10 monthly limit and the default thresholds, and a
    /// subscription to thresholds.
    fn given() -> (Projection, u64) {
        let mut p = Projection::default();
        let key = Event::KeyCreated(KeyCreated {
            key_id: "key_a".into(),
            key_hash: "00".repeat(32),
            prefix: "nk_00000000".into(),
            settings: KeySettings {
                name: "a".into(),
                owner: None,
                active: true,
                workflow_ids: vec![],
                rate_limit_per_hour: None,
                cost_limit_per_month: Some(Micros::new(10_000_000)),
                alert_thresholds: vec![80, 100],
                expires_at: None,
                allowed_origins: vec![],
                metadata: None,
                customer_id: None,
                limits: vec![],
                max_concurrent: None,
            },
        });
        let hook = Event::WebhookCreated(WebhookCreated {
            webhook_id: "wh_1".into(),
            url: "https://example.com/hook".into(),
            events: vec!["usage.threshold".into()],
            description: None,
            secret: "whsec_x".into(),
            active: true,
        });
        p.apply(1, EventId::new(), at(1, 0), &key);
        p.apply(2, EventId::new(), at(1, 0), &hook);
        (p, 3)
    }

    fn spend(p: &mut Projection, seq: &mut u64, ts: DateTime<Utc>, dollars: i64) {
        let q = Event::QueryRecorded(QueryRecorded {
            request_id: "r".into(),
            key_id: "key_a".into(),
            workflow_id: "wf".into(),
            status_code: 200,
            cost: Micros::new(dollars * 1_000_000),
            duration_ms: 1,
            reported_cost: None,
            record_by: None,
            customer_id: None,
            input_tokens: 0,
            output_tokens: 0,
            authorization_id: None,
        });
        p.apply(*seq, EventId::new(), ts, &q);
        *seq += 1;
    }

    fn due_ids(p: &Projection) -> Vec<String> {
        p.alerts.due().map(|a| a.alert_id.clone()).collect()
    }

    #[test]
    fn a_threshold_is_due_once_crossed_and_fires_once() {
        let (mut p, mut seq) = given();
        spend(&mut p, &mut seq, at(2, 0), 7);
        assert!(due_ids(&p).is_empty(), "70% crosses nothing");
        spend(&mut p, &mut seq, at(2, 1), 1);
        assert_eq!(due_ids(&p), ["threshold:key_a:2026-11:80"]);
        let alert = p.alerts.due().next().unwrap().clone();
        assert_eq!(alert.data["cost_this_month"], 8.0);
        assert_eq!(alert.data["cost_limit_per_month"], 10.0);

        // Fired twice (two workers, or a retried append): one delivery.
        for _ in 0..2 {
            p.apply(seq, EventId::new(), at(2, 1), &Event::AlertFired(alert.clone()));
            seq += 1;
        }
        assert!(due_ids(&p).is_empty());
        let hook = p.webhooks.get("wh_1").unwrap();
        assert_eq!(hook.deliveries.len(), 1);
        let delivery = hook.deliveries.values().next().unwrap();
        assert_eq!(delivery.id, "msg_threshold_key_a_2026-11_80");
        let body: serde_json::Value = serde_json::from_str(&delivery.body).unwrap();
        assert_eq!(body["type"], "usage.threshold");
        assert_eq!(body["data"]["threshold_percent"], 80);

        // More spending this month: 80 stays fired, 100 comes due.
        spend(&mut p, &mut seq, at(3, 0), 1);
        assert!(due_ids(&p).is_empty());
        spend(&mut p, &mut seq, at(3, 1), 2);
        assert_eq!(due_ids(&p), ["threshold:key_a:2026-11:100"]);
    }

    #[test]
    fn a_new_month_starts_over() {
        let (mut p, mut seq) = given();
        spend(&mut p, &mut seq, at(30, 23), 9);
        let fired: Vec<AlertFired> = p.alerts.due().cloned().collect();
        for alert in fired {
            p.apply(seq, EventId::new(), at(30, 23), &Event::AlertFired(alert));
            seq += 1;
        }
        let december = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 1).unwrap();
        spend(&mut p, &mut seq, december, 1);
        assert!(due_ids(&p).is_empty(), "$1 of $10 in December");
        spend(&mut p, &mut seq, december, 7);
        assert_eq!(due_ids(&p), ["threshold:key_a:2026-12:80"]);
    }

    #[test]
    fn a_rate_limit_alert_is_named_by_key_and_clock_hour() {
        let a = rate_limited(
            "key_a",
            Some(5),
            json!({}),
            Utc.with_ymd_and_hms(2026, 11, 25, 10, 59, 59).unwrap(),
        );
        let b = rate_limited(
            "key_a",
            Some(5),
            json!({}),
            Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap(),
        );
        let c = rate_limited(
            "key_a",
            Some(5),
            json!({}),
            Utc.with_ymd_and_hms(2026, 11, 25, 11, 0, 0).unwrap(),
        );
        assert_eq!(a.alert_id, b.alert_id);
        assert_ne!(a.alert_id, c.alert_id);
        assert_eq!(a.data["hour"], "2026-11-25T10:00:00Z");
    }
}
