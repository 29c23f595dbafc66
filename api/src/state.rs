//! [`AppState`]: what every handler may use (the stream, the projection,
//! the limiter, the upstream client), and how a handler writes and reads:
//! [`AppState::write`] (append, then wait until this replica applied it),
//! [`AppState::append_in_time`] (a usage event that counts only if stored
//! by its deadline) and [`AppState::read_own_writes`]. Below the HTTP layer (admission,
//! auth) this is all that is shared; nothing here knows a route.

use chrono::{DateTime, Utc};
use ingest::{Appended, Event, EventStream, Outgoing, StreamError};
use ledger::Projection;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use crate::auth::AdminToken;
use crate::error::ApiError;
use crate::follower::Progress;
use crate::limiter::Limiter;
use crate::metrics::Metrics;

/// How long a handler waits for this replica to apply its own write.
const APPLY_WAIT: Duration = Duration::from_secs(10);
/// How far this replica's clock and the stream's may disagree.
const CLOCK_SKEW: Duration = Duration::from_secs(2);
/// How long a late acknowledgement's stored time is looked for.
const OUTCOME_WAIT: Duration = Duration::from_secs(10);
/// How long the append that asks where an event of unknown outcome is may take.
const CONFIRM_WAIT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct AppState {
    pub stream: Arc<dyn EventStream>,
    pub projection: Arc<RwLock<Projection>>,
    pub progress: Arc<Progress>,
    pub metrics: Arc<Metrics>,
    pub admin_token: AdminToken,
    pub limiter: Arc<Limiter>,
    /// Pooled connections to upstreams.
    pub http: reqwest::Client,
    pub upstream_timeout: Duration,
    /// Which webhook URLs are allowed.
    pub webhook_guard: ::webhooks::Guard,
    /// `usage.rate_limited` alerts this replica has appended, so that a
    /// storm of 429s appends each once (the fold de-duplicates the rest).
    pub rate_alerts: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// Admissions put on the stream first: every verification, and on
    /// NATS every limited query, for limits exact across replicas.
    pub admissions: Arc<crate::admission::Admissions>,
    /// Whether limited queries take their place on the stream (NATS; an
    /// embedded log has one process, whose limiter is exact alone).
    pub admit_on_stream: bool,
    /// A failed append may still have been stored (NATS: the acknowledgement
    /// can be lost), so it is tried again with the same id while there is
    /// time. The embedded log's failures are final.
    pub outcome_can_be_unknown: bool,
    /// This process's Parquet archive, where usage older than the
    /// projection keeps is read (role `all` only: an API replica has none).
    pub archive: Option<std::path::PathBuf>,
    /// The archive on object storage (`--archive-url`), read by every role.
    pub offsite: Option<crate::offsite::Offsite>,
    /// The archive's files already summed, for `GET /api/v1/usage`.
    pub summaries: Arc<ledger::summary::Cache>,
}

impl AppState {
    pub fn projection(&self) -> RwLockReadGuard<'_, Projection> {
        self.projection.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `event` (only if its subject's last sequence is `expected`,
    /// when given) and waits until this replica has applied it, so the
    /// caller reads its own write. Returns the event's sequence.
    pub async fn write(&self, event: Event, expected: Option<u64>) -> Result<u64, ApiError> {
        let outgoing = Outgoing::new(&event, Utc::now()).map_err(ApiError::internal)?;
        self.write_expecting(&outgoing, expected).await
    }

    /// [`Self::write`] of an event whose id the caller chose (the stream
    /// stores one id once: a retry of an idempotent request).
    pub async fn write_outgoing(&self, outgoing: Outgoing) -> Result<u64, ApiError> {
        self.write_expecting(&outgoing, None).await
    }

    async fn write_expecting(&self, outgoing: &Outgoing, expected: Option<u64>) -> Result<u64, ApiError> {
        let appended = match expected {
            Some(expected) => self.stream.append_expecting(outgoing, expected).await,
            None => self.stream.append(outgoing).await,
        };
        let seq = match appended {
            Ok(appended) => appended.seq,
            Err(StreamError::Conflict { .. }) => return Err(ApiError::Conflict),
            Err(StreamError::Unavailable(reason)) => {
                tracing::warn!(%reason, "stream unavailable for an admin write");
                return Err(ApiError::NotReady(
                    "the event stream is unavailable; nothing was changed, retry later".into(),
                ));
            }
            Err(e) => return Err(ApiError::internal(e)),
        };
        self.appended(seq);
        self.applied(seq).await?;
        Ok(seq)
    }

    /// Appends a query's usage event so that it counts: it must be stored
    /// by `record_by` (the event says so, and the fold drops one stored
    /// later, `ledger::Projection::apply_stored`). Ok only when it was
    /// stored in time; an error means it does not count, so the query may
    /// be answered 503 without being billed. An append that fails while
    /// time is left (NATS stalled, a leader election) is tried again with
    /// the same id (the stream stores it once); an acknowledgement that
    /// comes near the deadline is checked against the stored time.
    pub async fn append_in_time(&self, outgoing: &Outgoing, record_by: DateTime<Utc>) -> Result<Appended, StreamError> {
        let skew = chrono::TimeDelta::from_std(CLOCK_SKEW).unwrap_or_default();
        // Past `record_by` + skew a store no longer counts, so no attempt
        // runs longer: the query's answer waits on metering for a bounded
        // time however long the stream stalls.
        let give_up = tokio::time::Instant::now() + (record_by + skew - Utc::now()).to_std().unwrap_or_default();
        loop {
            let attempt = tokio::time::timeout_at(give_up, self.stream.append(outgoing)).await;
            let appended = match attempt {
                Ok(Ok(appended)) => appended,
                Ok(Err(StreamError::Unavailable(_)))
                    if self.outcome_can_be_unknown && Utc::now() < record_by + skew =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Ok(Err(StreamError::Unavailable(_))) | Err(_) if self.outcome_can_be_unknown => {
                    // Whether it was stored is unknown: an acknowledgement
                    // lost, or a publish the client buffered through an
                    // outage and sent at the reconnect. The stream stores
                    // an id once and answers another append of it with the
                    // first one's sequence, so one more, short, tells.
                    match tokio::time::timeout(CONFIRM_WAIT, self.stream.append(outgoing)).await {
                        Ok(Ok(appended)) => appended,
                        _ => {
                            return Err(StreamError::Unavailable(
                                "not acknowledged by its deadline; whether it was stored in time is unknown".into(),
                            ))
                        }
                    }
                }
                Ok(Err(error)) => return Err(error),
                Err(_) => {
                    return Err(StreamError::Unavailable(
                        "not acknowledged by its deadline: it does not count".into(),
                    ))
                }
            };
            // Acknowledged in good time: stored before now, before the deadline.
            if Utc::now() + skew < record_by {
                return Ok(appended);
            }
            let deadline = tokio::time::Instant::now() + OUTCOME_WAIT;
            let mut backoff = Duration::from_millis(50);
            loop {
                match self
                    .stream
                    .record_at(appended.seq)
                    .await
                    .map(|r| r.map(|r| r.stored_micros))
                {
                    Ok(Some(at)) if at <= record_by.timestamp_micros() => return Ok(appended),
                    Ok(Some(_)) => {
                        return Err(StreamError::Unavailable(
                            "stored after its deadline: it does not count".into(),
                        ))
                    }
                    Ok(None) | Err(_) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                    Ok(None) | Err(_) => {
                        return Err(StreamError::Unavailable(format!(
                            "stored at sequence {} but its time cannot be read: whether it counts is unknown",
                            appended.seq
                        )))
                    }
                }
            }
        }
    }

    /// Notes that this process appended `seq`, for [`Self::read_own_writes`].
    pub fn appended(&self, seq: u64) {
        self.progress.appended(seq);
    }

    /// Waits until this replica has applied everything it appended itself,
    /// so that a read after a write (a query, say) sees it. Before the
    /// replica has caught up with the stream as it was at start, a read
    /// would show partial numbers as if complete: 503 `not_ready` instead.
    pub async fn read_own_writes(&self) -> Result<(), ApiError> {
        if !self.progress.is_ready() {
            return Err(ApiError::NotReady(
                "this replica is still replaying the stream; its numbers are not complete yet, retry shortly".into(),
            ));
        }
        self.applied(self.progress.own()).await
    }

    /// Before an admission: waits until this replica has applied the usage
    /// events it took (`POST /api/v1/events`), so that they count against
    /// limits from their 202 on, as a proxied query counts from its
    /// admission. Usually already so: the wait is the fold's lag.
    pub async fn count_recorded(&self) -> Result<(), ApiError> {
        self.applied(self.progress.last_recorded()).await
    }

    /// Waits until this replica has applied everything on the stream now,
    /// whoever appended it. Asked before answering that something a client
    /// names does not exist: another replica may have just created it (a
    /// customer made through one replica, then a key for it through the
    /// next), and "unknown" decided from a replica that is behind would be
    /// a guess. One round trip to the stream, paid only on a miss.
    pub async fn read_stream_head(&self) -> Result<(), ApiError> {
        self.read_own_writes().await?;
        let head = self.stream.last_seq().await.map_err(|e| {
            tracing::warn!(error = %e, "stream unavailable to confirm a missing reference");
            ApiError::NotReady("the event stream is unavailable; nothing was changed, retry later".into())
        })?;
        self.applied(head).await
    }

    /// Waits until this replica has applied `seq`.
    pub async fn applied(&self, seq: u64) -> Result<(), ApiError> {
        if self.progress.wait_for(seq, APPLY_WAIT).await {
            Ok(())
        } else {
            Err(ApiError::NotReady(format!(
                "the change is stored (sequence {seq}) but this replica has not applied it yet; retry"
            )))
        }
    }
}
