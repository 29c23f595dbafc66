//! Webhooks: subscriptions, alert rules and signed delivery.
//!
//! Its job: evaluate alert rules as usage events are folded
//! (`usage.threshold`, `usage.rate_limited`, key changes), and deliver each
//! alert to the matching subscriptions as Standard Webhooks v1 (HMAC-SHA256
//! signatures, the same `webhook-id` on every retry), retried on the
//! configured schedule, with every attempt recorded as an event.
//!
//! Status: the crate is laid out but holds no code yet; it arrives with the
//! webhooks issue (5). The event types it will write (`alert.fired`,
//! `delivery.attempted`, `webhook.*`) are already defined in `ingest`.
