//! Admissions put on the stream: exact limits across replicas (NATS), and
//! verifications on either backend ([`admit_here`] on the embedded log).
//!
//! On one process the [`Limiter`](crate::limiter::Limiter) is exact. Several
//! replicas each see the others' queries only once they are recorded and
//! applied, so before calling the upstream a replica appends a
//! `query.admitted` for a key with limits, naming the key's last admission
//! it has applied (`after_seq`), and waits until it has applied its own
//! admission. The fold keeps an admission only if `after_seq` is the key's
//! previous admission on the stream, so every admission that holds was
//! decided knowing every earlier one; one that does not hold is void and
//! this replica decides again, now knowing the one that won. Admissions that
//! hold count as pending until their `query.recorded` arrives (or, for a
//! replica that died, until they expire).
//!
//! Why not a conditional append (`Nats-Expected-Last-Subject-Sequence`)?
//! On a clustered nats-server 2.9 two conditional appends racing on one
//! subject can both be accepted, and the race stalls consumers of the
//! stream for seconds (measured: 5 s). Deciding in the fold, by stream
//! order, is exact on any server and costs one wait for this replica's own
//! follower (about a millisecond on loopback).
//!
//! Admissions of one key on one replica are serialised by a lock stripe, so
//! a replica does not race itself.

use chrono::{DateTime, Utc};
use ingest::events::QueryAdmitted;
use ingest::{Event, EventId, Micros, Outgoing, StreamError};
use std::time::Duration;
use tokio::time::Instant;

use crate::error::ApiError;
use crate::limiter::{Limits, Reservation, Verdict};
use crate::state::AppState;

const STRIPES: usize = 256;
/// How long a query may keep losing the race for a key before it gets 503.
const PATIENCE: Duration = Duration::from_secs(5);
/// How long past the upstream timeout an admission keeps its place if its
/// query is never recorded (its replica died).
const GRACE: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

#[derive(Debug)]
pub struct Admissions {
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl Default for Admissions {
    fn default() -> Self {
        Admissions {
            stripes: (0..STRIPES).map(|_| Default::default()).collect(),
        }
    }
}

/// One query asking for a place.
pub struct Ask<'a> {
    pub key_id: &'a str,
    pub workflow_id: &'a str,
    pub request_id: &'a str,
    pub limits: &'a Limits,
    /// What the query counts for against cost limits until recorded.
    pub hold: Micros,
    /// The id the query's `query.recorded` will carry.
    pub record_id: EventId,
    /// A verification, and when its hold expires (None: a query).
    pub verification: Option<DateTime<Utc>>,
}

impl Admissions {
    /// Decides `ask` against everything admitted on any replica. An
    /// admitted query's place is on the stream when this returns (its
    /// reservation is already stored).
    pub async fn admit(&self, state: &AppState, ask: Ask<'_>) -> Result<Verdict, ApiError> {
        // The whole decision, waiting for its turn included, is bounded.
        let deadline = Instant::now() + PATIENCE;
        // The keys of one customer share its limits, so its admissions
        // take turns here and on one subject of the stream.
        let scope = ask.limits.scope(ask.key_id);
        let stripe = &self.stripes[crate::limiter::shard_of(&scope, STRIPES)];
        let Ok(_turn) = tokio::time::timeout_at(deadline, stripe.lock()).await else {
            tracing::warn!(
                key_id = ask.key_id,
                "queries of this key queued too long to be admitted; answering 503"
            );
            return Err(ApiError::MeteringUnavailable);
        };
        loop {
            let now = Utc::now();
            let (verdict, after_seq) = {
                let projection = state.projection();
                let verdict = ask.place(state, now, &projection);
                (verdict, projection.usage.admissions(&scope).map_or(0, |a| a.last_seq))
            };
            let Verdict::Admitted(reservation, rate) = verdict else {
                return Ok(verdict);
            };
            let expires_at = ask.verification.unwrap_or_else(|| expiry(now, state.upstream_timeout));
            // Counted as in flight until folded, then as pending if it holds.
            let seq = store(state, reservation, ask.admitted(expires_at, after_seq, false), now).await?;
            if !wait(state, seq, deadline).await {
                return Err(ApiError::MeteringUnavailable);
            }
            let holds = state
                .projection()
                .usage
                .admissions(&scope)
                .is_some_and(|a| a.holds(ask.record_id));
            if holds {
                return Ok(Verdict::Stored(rate));
            }
            // Another replica admitted a query of this key in between; now
            // this replica knows it: decide again.
            tracing::debug!(
                key_id = ask.key_id,
                "an admission raced another replica's and is void; deciding again"
            );
        }
    }
}

impl Ask<'_> {
    /// The limiter's decision; a verification's place counts as a hold.
    fn place(&self, state: &AppState, now: DateTime<Utc>, projection: &ledger::Projection) -> Verdict {
        let holds = self.verification.is_some();
        state
            .limiter
            .place(self.key_id, self.limits, self.hold, holds, now, projection)
    }

    /// The `query.admitted` that holds this place, once folded.
    fn admitted(&self, expires_at: DateTime<Utc>, after_seq: u64, local: bool) -> Event {
        Event::QueryAdmitted(QueryAdmitted {
            request_id: self.request_id.to_owned(),
            key_id: self.key_id.to_owned(),
            workflow_id: self.workflow_id.to_owned(),
            cost: self.hold,
            record_id: self.record_id,
            expires_at,
            after_seq,
            customer_id: self.limits.customer_id().map(str::to_owned),
            verification: self.verification.is_some(),
            local,
        })
    }
}

/// A verification on one process (the embedded log): its limiter is exact
/// alone, as for a query there, so the admission is decided here and
/// appended marked `local`; its place counts in flight until the follower
/// folds it, then in the projection. No wait for the fold.
pub async fn admit_here(state: &AppState, ask: Ask<'_>, now: DateTime<Utc>) -> Result<Verdict, ApiError> {
    let verdict = {
        let projection = state.projection();
        ask.place(state, now, &projection)
    };
    let Verdict::Admitted(reservation, rate) = verdict else {
        return Ok(verdict);
    };
    store(
        state,
        reservation,
        ask.admitted(ask.verification.unwrap_or(now), 0, true),
        now,
    )
    .await?;
    Ok(Verdict::Stored(rate))
}

/// Appends the admission that holds `reservation`'s place; its sequence.
async fn store(state: &AppState, reservation: Reservation, event: Event, now: DateTime<Utc>) -> Result<u64, ApiError> {
    let outgoing = Outgoing::new(&event, now).map_err(ApiError::internal)?;
    let appended = reservation
        .append(outgoing.id, state.stream.append(&outgoing))
        .await
        .map_err(unavailable)?;
    state.appended(appended.seq);
    Ok(appended.seq)
}

/// Waits until this replica has applied `seq`, or says why not.
async fn wait(state: &AppState, seq: u64, deadline: Instant) -> bool {
    let left = deadline.saturating_duration_since(Instant::now());
    let applied = !left.is_zero() && state.progress.wait_for(seq, left).await;
    if !applied {
        tracing::warn!(
            seq,
            "this replica did not apply the stream in time to admit a query; answering 503"
        );
    }
    applied
}

fn expiry(now: DateTime<Utc>, upstream_timeout: Duration) -> DateTime<Utc> {
    now + chrono::TimeDelta::from_std(upstream_timeout).unwrap_or(chrono::TimeDelta::hours(1)) + GRACE
}

fn unavailable(error: StreamError) -> ApiError {
    tracing::error!(%error, "cannot admit a query; answering 503");
    ApiError::MeteringUnavailable
}
