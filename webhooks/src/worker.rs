//! The delivery worker: appends the alerts the fold found due, sends pending
//! deliveries, records every attempt on the stream, and disables endpoints
//! that failed every attempt for five days.
//!
//! What is due comes from the projection, never from the worker's memory,
//! so a restarted worker resumes where the stream says it stopped. The only
//! memory is what is in flight right now: an attempt is sent, recorded, and
//! only once this process has folded the record is the delivery considered
//! again. A crash between sending and recording sends that attempt again
//! with the same `webhook-id` (delivery is at least once; receivers
//! de-duplicate on the id).

use chrono::{DateTime, Duration, Utc};
use ingest::events::{AlertFired, DeliveryAttempted, DeliveryOutcome, WebhookDisabled};
use ingest::{Event, EventStream, Outgoing};
use ledger::{Delivery, Projection};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::guard::{Guard, GuardedResolver};
use crate::schedule::{parse_retry_after, Schedule};
use crate::signature;

/// 2xx within this long is success.
pub const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Attempts in flight to one endpoint at once: a slow endpoint ties up
/// only its own slots, and a fast one is not held to one at a time.
pub const PER_ENDPOINT: usize = 16;
/// An endpoint failing every attempt this long is disabled.
pub const DISABLE_AFTER: Duration = Duration::days(5);
/// An alert or disable appended but not seen folded is appended again after this.
const APPEND_AGAIN: std::time::Duration = std::time::Duration::from_secs(60);
/// Longest sleep between looks at the projection when nothing is due.
const IDLE: std::time::Duration = std::time::Duration::from_secs(30);

pub struct Worker {
    projection: Arc<RwLock<Projection>>,
    /// The sequence this process has folded up to.
    applied: watch::Receiver<u64>,
    /// The stream's last sequence at start: nothing is sent or appended
    /// until the fold has caught up with it, so a replay that will still
    /// meet an attempt's record, or an alert's `alert.fired`, does not act
    /// on state that is already stale.
    ready_at: u64,
    shared: Arc<Shared>,
}

impl Worker {
    pub fn new(
        stream: Arc<dyn EventStream>,
        projection: Arc<RwLock<Projection>>,
        applied: watch::Receiver<u64>,
        ready_at: u64,
        schedule: Schedule,
        guard: Guard,
        shutdown: CancellationToken,
    ) -> Result<Worker, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the host itself, past the guard.
            .no_proxy()
            .timeout(ATTEMPT_TIMEOUT)
            .dns_resolver(GuardedResolver::shared(guard))
            .user_agent(concat!("nodai-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let shared = Arc::new(Shared {
            stream,
            applied: applied.clone(),
            schedule,
            http,
            guard,
            in_flight: Mutex::default(),
            done: tokio::sync::Notify::new(),
            shutdown,
            on_record_failure: None,
        });
        Ok(Worker {
            projection,
            applied,
            ready_at,
            shared,
        })
    }

    /// Calls `f` at each failed try to record an attempt or an alert on the
    /// stream (the worker retries with back-off and logs once per event).
    pub fn on_record_failure(mut self, f: impl Fn() + std::marker::Send + Sync + 'static) -> Worker {
        // Only just made: nothing else holds it yet.
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.on_record_failure = Some(Box::new(f));
        }
        self
    }

    /// Delivers until `shutdown`; attempts in flight then finish and are
    /// recorded (they are bounded by the attempt timeout).
    pub async fn run(mut self) {
        let attempts = TaskTracker::new();
        let this = self.shared.clone();
        let shutdown = this.shutdown.clone();
        // Alerts and disables appended and not yet seen folded, with when:
        // not appended again meanwhile, and again if a minute passes (the
        // append may have failed; the fold keeps one of each anyway).
        let mut appending: HashMap<String, std::time::Instant> = HashMap::new();
        loop {
            let ready = *self.applied.borrow() >= self.ready_at;
            let now = Utc::now();
            appending.retain(|_, at| at.elapsed() < APPEND_AGAIN);
            let (alerts, sends, disables, wake) = self.plan(now, ready, &appending);
            for alert in alerts {
                appending.insert(alert.alert_id.clone(), std::time::Instant::now());
                let shared = this.clone();
                attempts.spawn(async move { shared.record(Event::AlertFired(alert)).await });
            }
            for (webhook_id, reason) in disables {
                appending.insert(webhook_id.clone(), std::time::Instant::now());
                tracing::warn!(webhook_id, %reason, "webhook endpoint disabled");
                let shared = this.clone();
                attempts.spawn(async move {
                    shared
                        .record(Event::WebhookDisabled(WebhookDisabled { webhook_id, reason }))
                        .await
                });
            }
            for send in sends {
                this.in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(send.webhook_id.clone())
                    .or_default()
                    .insert(send.delivery.id.clone());
                let shared = this.clone();
                attempts.spawn(async move { shared.attempt(send).await });
            }
            let sleep = (wake - Utc::now()).to_std().unwrap_or_default().min(IDLE);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                // An attempt finished: its endpoint has room for the next.
                _ = this.done.notified() => {}
                changed = self.applied.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    // Under a stream of queries the fold moves constantly:
                    // for that, look at most fifty times a second.
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = this.done.notified() => {}
                        _ = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
                    }
                }
                _ = tokio::time::sleep(sleep) => {}
            }
        }
        attempts.close();
        attempts.wait().await;
    }

    /// What to do now: alerts to append, attempts to send, endpoints to
    /// disable, and when to look again.
    #[allow(clippy::type_complexity)]
    fn plan(
        &self,
        now: DateTime<Utc>,
        ready: bool,
        appending: &HashMap<String, std::time::Instant>,
    ) -> (Vec<AlertFired>, Vec<Send>, Vec<(String, String)>, DateTime<Utc>) {
        let projection = self.projection.read().unwrap_or_else(|e| e.into_inner());
        let in_flight = self.shared.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        // Until the fold has caught up with the stream, what looks pending
        // may have been delivered in events not yet folded: wait.
        if !ready {
            return (
                Vec::new(),
                Vec::new(),
                Vec::new(),
                now + Duration::from_std(IDLE).unwrap_or_default(),
            );
        }
        let alerts = {
            projection
                .alerts
                .due()
                .filter(|a| !appending.contains_key(&a.alert_id))
                .cloned()
                .collect()
        };
        let no_attempts = HashSet::new();
        let mut sends = Vec::new();
        let mut disables = Vec::new();
        let mut wake = now + Duration::from_std(IDLE).unwrap_or_default();
        for webhook in projection.webhooks.iter().filter(|w| w.active) {
            if let (Some(since), Some(last)) = (webhook.failing_since, webhook.last_failure_at) {
                if should_disable(since, last) {
                    if !appending.contains_key(&webhook.id) {
                        disables.push((
                            webhook.id.clone(),
                            format!("every attempt failed since {}", since.to_rfc3339()),
                        ));
                    }
                    continue;
                }
            }
            let flying = in_flight.get(&webhook.id).unwrap_or(&no_attempts);
            let room = PER_ENDPOINT.saturating_sub(flying.len());
            if room == 0 {
                continue; // looked at again when one of its attempts ends
            }
            let mut pending: Vec<&Delivery> = webhook
                .deliveries
                .values()
                .filter(|d| d.status == ledger::DeliveryStatus::Pending && !flying.contains(&d.id))
                .collect();
            pending.sort_by_key(|d| d.next_attempt_at);
            for delivery in pending.into_iter().take(room) {
                let at = delivery.next_attempt_at.unwrap_or(now);
                if at > now {
                    wake = wake.min(at);
                    break;
                }
                sends.push(Send {
                    webhook_id: webhook.id.clone(),
                    url: webhook.url.clone(),
                    secrets: webhook.signing_secrets(now).into_iter().map(str::to_owned).collect(),
                    delivery: delivery.clone(),
                });
            }
        }
        (alerts, sends, disables, wake)
    }
}

/// True once an endpoint's unbroken run of failed attempts, from the first
/// to the latest, spans [`DISABLE_AFTER`]: days without any attempt do not
/// count against it.
pub fn should_disable(failing_since: DateTime<Utc>, last_failure_at: DateTime<Utc>) -> bool {
    last_failure_at - failing_since >= DISABLE_AFTER
}

/// One attempt to make.
struct Send {
    webhook_id: String,
    url: String,
    /// The secrets that sign it (two during a rotation's grace period).
    secrets: Vec<String>,
    delivery: Delivery,
}

/// What attempt tasks share.
struct Shared {
    stream: Arc<dyn EventStream>,
    applied: watch::Receiver<u64>,
    schedule: Schedule,
    http: reqwest::Client,
    guard: Guard,
    /// Message ids of the attempts in flight, per webhook id.
    in_flight: Mutex<HashMap<String, HashSet<String>>>,
    /// Signalled when an attempt ends.
    done: tokio::sync::Notify,
    shutdown: CancellationToken,
    /// Called at each failed try to record an attempt or an alert (a metric).
    on_record_failure: Option<Box<dyn Fn() + std::marker::Send + Sync>>,
}

impl Shared {
    async fn attempt(&self, send: Send) {
        let now = Utc::now();
        let attempt = send.delivery.attempts + 1;
        let (status_code, error, retry_after) = self.post(&send, now).await;
        let Send {
            webhook_id, delivery, ..
        } = send;
        let ok = status_code.is_some_and(|s| (200..300).contains(&s));
        let next = if ok {
            None
        } else {
            let jitter: f64 = {
                let mut b = [0u8; 8];
                let _ = getrandom::fill(&mut b);
                (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
            };
            self.schedule
                .next_attempt(attempt - delivery.schedule_from, Utc::now(), jitter, retry_after)
        };
        let outcome = match (ok, next) {
            (true, _) => DeliveryOutcome::Succeeded,
            (false, Some(_)) => DeliveryOutcome::Retrying,
            (false, None) => DeliveryOutcome::Failed,
        };
        tracing::info!(
            webhook_id,
            message_id = delivery.id,
            event_type = delivery.event_type,
            attempt,
            status_code,
            ?outcome,
            error = error.as_deref(),
            "webhook delivery attempted"
        );
        let event = Event::DeliveryAttempted(DeliveryAttempted {
            webhook_id: webhook_id.clone(),
            message_id: delivery.id.clone(),
            event_type: delivery.event_type.clone(),
            attempt,
            schedule_from: delivery.schedule_from,
            status_code,
            outcome,
            next_attempt_at: next,
            error,
        });
        if !self.record(event).await {
            // Not recorded, so still due in the projection: hold its slot a
            // while rather than sending it again at once.
            tokio::select! {
                _ = self.shutdown.cancelled() => {}
                _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {}
            }
        }
        {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(flying) = in_flight.get_mut(&webhook_id) {
                flying.remove(&delivery.id);
                if flying.is_empty() {
                    in_flight.remove(&webhook_id);
                }
            }
        }
        self.done.notify_one();
    }

    /// Sends the delivery once: the status code, what went wrong, and how
    /// long the endpoint asked us to wait.
    async fn post(&self, send: &Send, now: DateTime<Utc>) -> (Option<u16>, Option<String>, Option<Duration>) {
        // The resolver guards host names; an address literal is checked here.
        if let Err(e) = self.guard_literal(&send.url) {
            return (None, Some(e.to_string()), None);
        }
        let delivery = &send.delivery;
        let timestamp = now.timestamp();
        let body = delivery.body.as_bytes();
        let secrets: Vec<&str> = send.secrets.iter().map(String::as_str).collect();
        let signature = signature::header(&secrets, &delivery.id, timestamp, body);
        let sent = self
            .http
            .post(&send.url)
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(delivery.body.to_string())
            .send()
            .await;
        match sent {
            Ok(response) => {
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, Utc::now()));
                let error = (!status.is_success()).then(|| format!("endpoint answered {}", status.as_u16()));
                (Some(status.as_u16()), error, retry_after)
            }
            Err(e) if e.is_timeout() => (None, Some("no answer within 10 s".into()), None),
            Err(e) => (None, Some(error_chain(&e)), None),
        }
    }

    fn guard_literal(&self, url: &str) -> Result<(), crate::Error> {
        let parsed = crate::guard::syntax(url)?;
        if let Some(host) = parsed.host_str() {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
                if !self.guard.allow_private && crate::guard::forbidden(ip) {
                    return Err(crate::Error::Forbidden(format!(
                        "{ip} is a loopback, private, link-local, multicast or unspecified address"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Appends `event`, retrying for a while if the stream is unavailable,
    /// and waits until this process has folded it. Given up, an attempt is
    /// made again later (at least once); an alert or a disable is derived
    /// again from the projection.
    async fn record(&self, event: Event) -> bool {
        let outgoing = match Outgoing::new(&event, Utc::now()) {
            Ok(outgoing) => outgoing,
            Err(error) => {
                tracing::error!(%error, "cannot encode a webhook event");
                return false;
            }
        };
        let mut backoff = std::time::Duration::from_millis(100);
        let give_up = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        let seq = loop {
            match self.stream.append(&outgoing).await {
                Ok(appended) => break appended.seq,
                Err(error) if tokio::time::Instant::now() >= give_up || self.shutdown.is_cancelled() => {
                    if let Some(f) = &self.on_record_failure {
                        f();
                    }
                    tracing::error!(%error, "cannot record a webhook event; giving up for now");
                    return false;
                }
                Err(error) => {
                    if let Some(f) = &self.on_record_failure {
                        f();
                    }
                    // Once per event, then quietly: a stream that is down
                    // fails every delivery's record at once.
                    if backoff == std::time::Duration::from_millis(100) {
                        tracing::warn!(%error, "cannot record a webhook event; retrying with back-off");
                    } else {
                        tracing::debug!(%error, "cannot record a webhook event; retrying");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
                }
            }
        };
        // At shutdown the fold stops too: the record is stored, enough.
        let mut applied = self.applied.clone();
        tokio::select! {
            folded = tokio::time::timeout(std::time::Duration::from_secs(30), applied.wait_for(|a| *a >= seq)) => {
                matches!(folded, Ok(Ok(_)))
            }
            _ = self.shutdown.cancelled() => true,
        }
    }
}

/// An error and its causes, for the deliveries log.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn five_days_of_failures_disable() {
        let since = Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap();
        assert!(!should_disable(since, since + Duration::days(5) - Duration::seconds(1)));
        assert!(should_disable(since, since + Duration::days(5)));
    }
}
