//! The typed events of nodai, each past tense, named `aggregate.verb` and
//! versioned. A type's JSON is an interface read by other services and by
//! analytics: change it only by adding a new version (`docs/events.md`
//! documents every type, and a test checks every example there against
//! these structs).
//!
//! These structs are the wire shape only; domain types with their rules
//! live with the code that enforces them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::envelope::Subject;
use crate::error::{DecodeError, StreamError};
use crate::money::Micros;

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Admitted queries.
    Requests,
    /// Input plus output tokens.
    Tokens,
    /// Micro-dollars.
    Cost,
}

/// The period a limit counts over. `minute`, `hour` and `day` are rolling
/// for requests and tokens; for cost, `day` is the UTC day. `month` is the
/// calendar month, or the customer's billing month (`billing_anchor_day`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    Minute,
    Hour,
    Day,
    Month,
}

/// At most `max` of `metric` per `window` (for cost, `max` is in
/// micro-dollars).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Limit {
    pub metric: Metric,
    pub window: Window,
    pub max: u64,
}

/// How a customer pays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Billing {
    /// Billed for usage afterwards.
    #[default]
    Postpaid,
    /// Every query draws from credit grants.
    Prepaid,
}

/// What a caller may set on a customer; carried whole by create and update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerSettings {
    pub name: String,
    pub email: Option<String>,
    pub metadata: Option<serde_json::Value>,
    /// Shared by all the customer's keys; at most one per metric and window.
    pub limits: Vec<Limit>,
    /// Queries in flight at once, over all the customer's keys.
    pub max_concurrent: Option<u64>,
    pub billing: Billing,
    /// Micro-dollars: `credits.low` fires when the balance falls below it.
    pub low_balance_threshold: Option<Micros>,
    /// 1 to 28: the day of the month (UTC midnight) its monthly periods start.
    pub billing_anchor_day: u8,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerCreated {
    pub customer_id: String,
    #[serde(flatten)]
    pub settings: CustomerSettings,
}

/// A customer's settings changed; `settings` is the complete new state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerUpdated {
    pub customer_id: String,
    #[serde(flatten)]
    pub settings: CustomerSettings,
}

/// A customer was deleted (it had no live keys). Its usage is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerDeleted {
    pub customer_id: String,
}

/// Prepaid credits were granted to a customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreditsGranted {
    pub customer_id: String,
    /// `gr_…`; derived from the idempotency key when there is one, so a
    /// retry on any replica names the same grant (folded once).
    pub grant_id: String,
    /// Micro-dollars, more than 0.
    pub amount: Micros,
    /// Past this, what is left of it no longer counts (null: never).
    pub expires_at: Option<DateTime<Utc>>,
    pub description: Option<String>,
    /// The `Idempotency-Key` it was granted with, and the SHA-256 (hex) of
    /// the request's body: a retry with the same body answers this grant,
    /// another body is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_hash: Option<String>,
}

/// A grant was voided: what is left of it no longer counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreditsVoided {
    pub customer_id: String,
    pub grant_id: String,
}

/// The settings of a key that a caller may change; carried whole (a
/// post-image) by `key.created` and `key.updated`, so a fold never has to
/// merge partial updates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeySettings {
    pub name: String,
    pub owner: Option<String>,
    pub active: bool,
    /// Empty means any workflow.
    pub workflow_ids: Vec<String>,
    pub rate_limit_per_hour: Option<u64>,
    pub cost_limit_per_month: Option<Micros>,
    /// Percents of `cost_limit_per_month` that fire `usage.threshold`.
    pub alert_thresholds: Vec<u32>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Browser origins allowed to use the key; empty means no browser use.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    pub metadata: Option<serde_json::Value>,
    /// The customer whose shared limits the key's queries also count
    /// against. Absent in events written before customers existed.
    #[serde(default)]
    pub customer_id: Option<String>,
    /// Limits besides `rate_limit_per_hour` (requests per hour) and
    /// `cost_limit_per_month` (cost per month), which keep their own fields.
    #[serde(default)]
    pub limits: Vec<Limit>,
    #[serde(default)]
    pub max_concurrent: Option<u64>,
}

impl KeySettings {
    /// Every limit of the key, the two with fields of their own included.
    pub fn all_limits(&self) -> Vec<Limit> {
        let mut all = self.limits.clone();
        if let Some(max) = self.rate_limit_per_hour {
            all.push(Limit {
                metric: Metric::Requests,
                window: Window::Hour,
                max,
            });
        }
        if let Some(max) = self.cost_limit_per_month {
            all.push(Limit {
                metric: Metric::Cost,
                window: Window::Month,
                max: max.get().max(0) as u64,
            });
        }
        all.sort_by_key(|l| (l.metric, l.window));
        all
    }
}

/// A key was issued. Only the SHA-256 of the secret is here, never the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyCreated {
    pub key_id: String,
    /// Lowercase hex SHA-256 of the plaintext key.
    pub key_hash: String,
    /// The first 11 characters of the key (`nk_` and 8 hex), for display.
    pub prefix: String,
    #[serde(flatten)]
    pub settings: KeySettings,
}

/// A key's settings changed; `settings` is the complete new state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyUpdated {
    pub key_id: String,
    #[serde(flatten)]
    pub settings: KeySettings,
}

/// A key was revoked; it never validates again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRevoked {
    pub key_id: String,
}

/// A key got a new secret. The previous secret keeps validating until
/// `previous_valid_until` (null: not at all).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRotated {
    pub key_id: String,
    pub key_hash: String,
    pub prefix: String,
    pub previous_key_hash: String,
    pub previous_valid_until: Option<DateTime<Utc>>,
}

/// What a caller may set on a workflow; carried whole by register and update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowSettings {
    pub name: String,
    /// `http(s)://…` or `builtin:echo`.
    pub upstream_url: String,
    pub price_per_request: Micros,
    /// The most one query may cost (none: no maximum). In-flight queries
    /// count against cost limits at this hold; a reported cost above it is
    /// recorded as it. Absent in events written before it existed.
    #[serde(default)]
    pub max_cost_per_request: Option<Micros>,
    /// Micro-dollars per million input (prompt) tokens; absent in events
    /// written before tokens, which means 0.
    #[serde(default)]
    pub price_per_million_input_tokens: Micros,
    /// Micro-dollars per million output (completion) tokens.
    #[serde(default)]
    pub price_per_million_output_tokens: Micros,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRegistered {
    pub workflow_id: String,
    #[serde(flatten)]
    pub settings: WorkflowSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowUpdated {
    pub workflow_id: String,
    #[serde(flatten)]
    pub settings: WorkflowSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowDeleted {
    pub workflow_id: String,
}

/// One admitted query (answered, or failed upstream): the unit of metering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryRecorded {
    pub request_id: String,
    pub key_id: String,
    pub workflow_id: String,
    /// The HTTP status nodai answered with (200, 502, 504, …).
    pub status_code: u16,
    /// What the query costs: the upstream's reported cost, else the
    /// workflow's price, capped at the workflow's `max_cost_per_request`.
    pub cost: Micros,
    pub duration_ms: u64,
    /// What the upstream reported, when it reported a cost (it may be above
    /// `cost`, which is capped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_cost: Option<Micros>,
    /// Stored after this, it does not count: its query was answered 503
    /// (no usage, no archive row). Absent: it always counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_by: Option<DateTime<Utc>>,
    /// The key's customer when the query was admitted: its usage counts
    /// for that customer too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// Tokens the upstream reported (0: none reported).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub input_tokens: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub output_tokens: u64,
    /// The verification (`POST /api/v1/verify`) this usage settles: its
    /// hold stops counting, and the two are one request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_id: Option<String>,
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// A replica admitted a query of a key with limits, before calling its
/// upstream (NATS backend): a reservation that counts against the key's
/// limits until the query's `query.recorded` (event id `record_id`) is
/// folded or `expires_at` passes. It holds only if `after_seq` is the
/// key's previous admission on the stream (the fold decides, in stream
/// order), so two replicas cannot both take the last place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryAdmitted {
    pub request_id: String,
    pub key_id: String,
    pub workflow_id: String,
    /// What the query counts for against cost limits until recorded: its
    /// hold (the workflow's `max_cost_per_request`, else its price).
    pub cost: Micros,
    /// The id the query's `query.recorded` event will carry.
    pub record_id: crate::EventId,
    pub expires_at: DateTime<Utc>,
    /// The sequence of the last admission of the query's scope the
    /// replica knew of (0: none). If another admission came in between,
    /// this one is void.
    pub after_seq: u64,
    /// The key's customer: admissions of all its keys then share one
    /// subject (`admission.c:<customer>`), since they share its limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// A verification (`POST /api/v1/verify`) of work nodai does not
    /// proxy: it counts as a request from now on, settled or not, and its
    /// `cost` (the hold) until a usage event names it or `expires_at`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub verification: bool,
    /// Decided by the one process of an embedded log, whose limiter is
    /// exact alone: it holds whatever `after_seq` says.
    #[serde(default, skip_serializing_if = "is_false")]
    pub local: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl QueryAdmitted {
    /// The `authorization_id` a verification answers with: its
    /// `record_id`, which the usage event that settles it names.
    pub fn authorization_id(record_id: crate::EventId) -> String {
        format!("auth_{}", record_id.simple())
    }

    /// The `record_id` of an `authorization_id`, if it is one.
    pub fn record_id_of(authorization_id: &str) -> Option<crate::EventId> {
        let hex = authorization_id.strip_prefix("auth_")?;
        crate::EventId::parse_simple(hex)
    }

    /// What admissions are ordered by: the customer if any, else the key.
    pub fn scope(&self) -> String {
        scope(&self.key_id, self.customer_id.as_deref())
    }
}

/// The admission scope of a key: `c:<customer id>` for a key with a
/// customer (key ids never start with `c:`), else the key id.
pub fn scope(key_id: &str, customer_id: Option<&str>) -> String {
    match customer_id {
        Some(customer) => format!("c:{customer}"),
        None => key_id.to_owned(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookCreated {
    pub webhook_id: String,
    pub url: String,
    /// Event types delivered; empty means all.
    pub events: Vec<String>,
    pub description: Option<String>,
    /// The signing secret (`whsec_…`). The delivering worker needs it, so it
    /// is on the stream: guard the stream as you guard the secrets.
    pub secret: String,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookUpdated {
    pub webhook_id: String,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    pub active: bool,
    /// A new signing secret, present only when the secret was rotated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// On rotation: until when the previous secret signs too (both
    /// signatures are sent), so receivers can switch without a gap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_valid_until: Option<DateTime<Utc>>,
}

/// The worker stopped delivering to an endpoint that failed every attempt
/// for days; an update with `active: true` turns it on again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookDisabled {
    pub webhook_id: String,
    pub reason: String,
}

/// A `webhook.test` message was asked for, to this endpoint only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookTested {
    pub webhook_id: String,
    pub message_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookDeleted {
    pub webhook_id: String,
}

/// An alert rule matched. `alert_id` is derived from what makes the alert
/// unique (key, period, threshold), so folding the same usage twice fires once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertFired {
    pub alert_id: String,
    /// The webhook event type: `usage.threshold`, `usage.rate_limited`, …
    pub alert_type: String,
    pub key_id: String,
    /// The webhook payload's `data`.
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    Succeeded,
    /// Failed; another attempt is due at `next_attempt_at`.
    Retrying,
    /// Failed for good: the retry schedule is exhausted.
    Failed,
}

/// One attempt to deliver a webhook message to one endpoint. A delivery is
/// one message to one endpoint, named by the message's id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryAttempted {
    pub webhook_id: String,
    /// The `webhook-id` header: the same on every attempt of one message.
    pub message_id: String,
    pub event_type: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Attempts made before the retry schedule this one follows began
    /// (a manual retry starts a new one); absent means 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub schedule_from: u32,
    /// The endpoint's HTTP status; null when no response came.
    pub status_code: Option<u16>,
    pub outcome: DeliveryOutcome,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// An operator asked for a delivery to be attempted again now, with a
/// fresh retry schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRetryRequested {
    pub webhook_id: String,
    pub message_id: String,
}

/// An event whose type (or version of a known type) this build cannot read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownEvent {
    pub event_type: String,
    pub version: u32,
}

/// Declares the event enum from one table, so a type's name, version and
/// subject are written once.
macro_rules! events {
    ($($variant:ident => ($name:literal, $version:literal) on $aggregate:literal . $id:ident $(($($call:tt)*))?),* $(,)?) => {
        /// Every event nodai writes, plus [`Event::Unknown`] for what a newer
        /// build wrote.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Event {
            $($variant($variant),)*
            Unknown(UnknownEvent),
        }

        impl Event {
            /// Every type this build writes, with its current version.
            pub const TYPES: &'static [(&'static str, u32)] = &[$(($name, $version)),*];

            pub fn event_type(&self) -> &str {
                match self {
                    $(Event::$variant(_) => $name,)*
                    Event::Unknown(u) => &u.event_type,
                }
            }

            pub fn version(&self) -> u32 {
                match self {
                    $(Event::$variant(_) => $version,)*
                    Event::Unknown(u) => u.version,
                }
            }

            /// The subject the event belongs on: `<aggregate>.<id>`.
            pub fn subject(&self) -> Result<Subject, StreamError> {
                match self {
                    $(Event::$variant(e) => Subject::for_id($aggregate, &e.$id $(($($call)*))?),)*
                    Event::Unknown(u) => Err(StreamError::Invalid(format!(
                        "cannot re-publish unknown event type {}", u.event_type
                    ))),
                }
            }

            pub(crate) fn encode_data(&self) -> Result<Box<RawValue>, StreamError> {
                let encoded = match self {
                    $(Event::$variant(e) => serde_json::value::to_raw_value(e),)*
                    Event::Unknown(u) => return Err(StreamError::Invalid(format!(
                        "cannot encode unknown event type {}", u.event_type
                    ))),
                };
                encoded.map_err(|e| StreamError::Invalid(format!("cannot encode event: {e}")))
            }

            pub(crate) fn decode(event_type: &str, version: u32, data: &RawValue) -> Result<Event, DecodeError> {
                Ok(match (event_type, version) {
                    $(($name, $version) => Event::$variant(serde_json::from_str(data.get())?),)*
                    _ => Event::Unknown(UnknownEvent { event_type: event_type.to_owned(), version }),
                })
            }
        }
    };
}

events! {
    KeyCreated => ("key.created", 1) on "key".key_id,
    KeyUpdated => ("key.updated", 1) on "key".key_id,
    KeyRevoked => ("key.revoked", 1) on "key".key_id,
    KeyRotated => ("key.rotated", 1) on "key".key_id,
    WorkflowRegistered => ("workflow.registered", 1) on "workflow".workflow_id,
    WorkflowUpdated => ("workflow.updated", 1) on "workflow".workflow_id,
    WorkflowDeleted => ("workflow.deleted", 1) on "workflow".workflow_id,
    QueryRecorded => ("query.recorded", 1) on "usage".key_id,
    QueryAdmitted => ("query.admitted", 1) on "admission".scope(),
    CustomerCreated => ("customer.created", 1) on "customer".customer_id,
    CustomerUpdated => ("customer.updated", 1) on "customer".customer_id,
    CustomerDeleted => ("customer.deleted", 1) on "customer".customer_id,
    CreditsGranted => ("credits.granted", 1) on "credits".customer_id,
    CreditsVoided => ("credits.voided", 1) on "credits".customer_id,
    WebhookCreated => ("webhook.created", 1) on "webhook".webhook_id,
    WebhookUpdated => ("webhook.updated", 1) on "webhook".webhook_id,
    WebhookDeleted => ("webhook.deleted", 1) on "webhook".webhook_id,
    WebhookDisabled => ("webhook.disabled", 1) on "webhook".webhook_id,
    WebhookTested => ("webhook.tested", 1) on "webhook".webhook_id,
    AlertFired => ("alert.fired", 1) on "alert".key_id,
    DeliveryAttempted => ("delivery.attempted", 1) on "delivery".webhook_id,
    DeliveryRetryRequested => ("delivery.retry_requested", 1) on "delivery".webhook_id,
}
