//! `GET /api/v1/api-keys/{key_id}/usage` and
//! `GET /api/v1/customers/{customer_id}/usage`: a key's or a customer's
//! usage (the sum of its keys', revoked ones included), read from the same
//! projection the limiter enforces, after this replica applied its own
//! appends (a query answered here is in it). The projection keeps the last
//! 48 hours hour by hour and 31 days day by day; older periods of a chosen
//! range are read from the Parquet archive, where this process has one.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use ledger::archive::Whose;
use ledger::usage::{self, Bucket};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use crate::error::ApiError;
use crate::extract::{Path, Query};
use crate::usd;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/api-keys/{key_id}/usage", get(key_usage))
        .route("/api/v1/customers/{customer_id}/usage", get(customer_usage))
}

/// Hourly series shown by default, in hours.
const DEFAULT_HOURS: i64 = 48;
/// Daily series shown by default, in days.
const DEFAULT_DAYS: i64 = 31;
/// A chosen range spans this many hours at most.
const MAX_RANGE_HOURS: i64 = 90 * 24;

#[derive(Deserialize, IntoParams)]
pub struct UsageParams {
    /// RFC 3339; start of the series (default: the last 48 hours, the
    /// current one included, and the last 31 days).
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<String>,
    /// RFC 3339; end of the series, exclusive (default: now).
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Hourly {
    /// Start of the UTC hour.
    hour: DateTime<Utc>,
    requests: u64,
    /// USD.
    cost: f64,
    errors: u64,
    input_tokens: u64,
    output_tokens: u64,
}

#[derive(Serialize, ToSchema)]
pub struct Daily {
    /// The UTC date, `YYYY-MM-DD`.
    #[schema(value_type = String)]
    date: NaiveDate,
    requests: u64,
    /// USD.
    cost: f64,
    errors: u64,
    input_tokens: u64,
    output_tokens: u64,
}

#[derive(Serialize, ToSchema)]
pub struct UsageObject {
    /// On a key's usage.
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
    /// On a customer's usage.
    #[serde(skip_serializing_if = "Option::is_none")]
    customer_id: Option<String>,
    total_requests: u64,
    /// USD.
    total_cost: f64,
    total_input_tokens: u64,
    total_output_tokens: u64,
    requests_today: u64,
    /// USD.
    cost_today: f64,
    /// Rolling 60 minutes: what the rate limit sees (verifications not
    /// settled yet included).
    requests_this_hour: u64,
    /// USD, month to date (the UTC calendar month, or the customer's
    /// billing month from its `billing_anchor_day`): what a monthly cost
    /// limit sees.
    cost_this_month: f64,
    last_used_at: Option<DateTime<Utc>>,
    /// Every UTC hour of the range, oldest first, zeros included.
    hourly: Vec<Hourly>,
    /// Every UTC day of the range (default: the last 31 days), oldest first.
    daily: Vec<Daily>,
}

#[utoipa::path(get, path = "/api/v1/api-keys/{key_id}/usage", operation_id = "get_api_key_usage", tag = "api-keys", params(UsageParams),
    responses((status = 200, body = UsageObject), (status = 401), (status = 404), (status = 422)),
    security(("admin" = [])))]
pub async fn key_usage(
    State(state): State<AppState>,
    Path(key_id): Path<String>,
    Query(params): Query<UsageParams>,
) -> Result<Json<UsageObject>, ApiError> {
    usage_of(&state, Whose::Key(&key_id), &params).await.map(Json)
}

#[utoipa::path(get, path = "/api/v1/customers/{customer_id}/usage", operation_id = "get_customer_usage", tag = "customers", params(UsageParams),
    responses((status = 200, body = UsageObject), (status = 401), (status = 404), (status = 422)),
    security(("admin" = [])))]
pub async fn customer_usage(
    State(state): State<AppState>,
    Path(customer_id): Path<String>,
    Query(params): Query<UsageParams>,
) -> Result<Json<UsageObject>, ApiError> {
    usage_of(&state, Whose::Customer(&customer_id), &params).await.map(Json)
}

async fn usage_of(state: &AppState, whose: Whose<'_>, params: &UsageParams) -> Result<UsageObject, ApiError> {
    let now = Utc::now();
    let range = Range::parse(params, now)?;
    state.read_own_writes().await?;
    // Hours and days before these are no longer in the projection: it
    // keeps them counted back from the newest query, which another
    // replica's clock may have put ahead of this one's.
    let (newest, anchor_day) = {
        let projection = state.projection();
        let anchor_day = match whose {
            Whose::Key(id) => {
                let key = projection.keys.get(id).ok_or(ApiError::KeyNotFound)?;
                let customer = key.settings.customer_id.as_deref();
                customer
                    .and_then(|c| projection.customers.get(c))
                    .map_or(1, |c| c.settings.billing_anchor_day)
            }
            Whose::Customer(id) => {
                // A deleted customer's usage is kept; one never seen is 404.
                let customer = projection.customers.get(id);
                if customer.is_none() && projection.usage.customer(id).is_none() {
                    return Err(ApiError::CustomerNotFound);
                }
                customer.map_or(1, |c| c.settings.billing_anchor_day)
            }
        };
        let used = usage_in(&projection, whose).and_then(|u| u.last_used_at);
        (used.map_or(now, |at| at.max(now)), anchor_day)
    };
    let kept_hours = usage::hour_of(newest) - usage::HOURS_KEPT + 1;
    let kept_days = usage::day_of(newest) - usage::DAYS_KEPT + 1;
    let old_hours = (range.hours.0, range.hours.1.min(kept_hours));
    let old_days = (range.days.0, range.days.1.min(kept_days));
    let archived = if old_hours.0 < old_hours.1 || old_days.0 < old_days.1 {
        let Some(root) = state.archive.clone() else {
            return Err(ApiError::Validation(format!(
                "usage older than {} hours (hourly) or {} days (daily) is read from the Parquet archive, which this replica \
                 (role api) does not hold; choose a newer range, ask a replica running with --role all, or query the worker's archive",
                usage::HOURS_KEPT,
                usage::DAYS_KEPT
            )));
        };
        // One read of the archive's hours for both series.
        let from = old_hours.0.min(old_days.0 * 24);
        let to = old_hours.1.max(old_days.1 * 24);
        let owned = Owned::from(whose);
        tokio::task::spawn_blocking(move || ledger::archive::hours_of(&root, owned.whose(), from, to))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?
    } else {
        Default::default()
    };
    let archived_day = |day: i64| {
        archived
            .range(day * 24..(day + 1) * 24)
            .fold(Bucket::default(), |mut acc, (_, b)| {
                acc += *b;
                acc
            })
    };
    let projection = state.projection();
    let empty = ledger::KeyUsage::default();
    let u = usage_in(&projection, whose).unwrap_or(&empty);
    let (today, month) = u.day_and_month(now, anchor_day);
    let (key_id, customer_id) = match whose {
        Whose::Key(id) => (Some(id.to_owned()), None),
        Whose::Customer(id) => (None, Some(id.to_owned())),
    };
    Ok(UsageObject {
        key_id,
        customer_id,
        total_requests: u.total.requests,
        total_cost: usd::to_json(u.total.cost),
        total_input_tokens: u.total.input_tokens,
        total_output_tokens: u.total.output_tokens,
        requests_today: today.requests,
        cost_today: usd::to_json(today.cost),
        requests_this_hour: u.requests_this_hour(now),
        cost_this_month: usd::to_json(month.cost),
        last_used_at: u.last_used_at,
        hourly: (range.hours.0..range.hours.1)
            .map(|hour| {
                let bucket = if hour < kept_hours {
                    archived.get(&hour).copied().unwrap_or_default()
                } else {
                    u.hours.get(hour)
                };
                (hour, bucket)
            })
            .map(|(hour, b)| Hourly {
                hour: DateTime::from_timestamp(hour * 3600, 0).unwrap_or_default(),
                requests: b.requests,
                cost: usd::to_json(b.cost),
                errors: b.errors,
                input_tokens: b.input_tokens,
                output_tokens: b.output_tokens,
            })
            .collect(),
        daily: (range.days.0..range.days.1)
            .map(|day| {
                let bucket = if day < kept_days {
                    archived_day(day)
                } else {
                    u.days.get(day)
                };
                (day, bucket)
            })
            .map(|(day, b)| Daily {
                date: usage::date_of_day(day).unwrap_or_default(),
                requests: b.requests,
                cost: usd::to_json(b.cost),
                errors: b.errors,
                input_tokens: b.input_tokens,
                output_tokens: b.output_tokens,
            })
            .collect(),
    })
}

fn usage_in<'a>(projection: &'a ledger::Projection, whose: Whose<'_>) -> Option<&'a ledger::KeyUsage> {
    match whose {
        Whose::Key(id) => projection.usage.get(id),
        Whose::Customer(id) => projection.usage.customer(id),
    }
}

/// [`Whose`] with its id owned, to move onto the blocking pool.
enum Owned {
    Key(String),
    Customer(String),
}

impl Owned {
    fn from(whose: Whose<'_>) -> Owned {
        match whose {
            Whose::Key(id) => Owned::Key(id.to_owned()),
            Whose::Customer(id) => Owned::Customer(id.to_owned()),
        }
    }

    fn whose(&self) -> Whose<'_> {
        match self {
            Owned::Key(id) => Whose::Key(id),
            Owned::Customer(id) => Whose::Customer(id),
        }
    }
}

/// An optional RFC 3339 query parameter.
pub(crate) fn time(field: &str, value: &Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .as_deref()
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| ApiError::Validation(format!("{field} must be an RFC 3339 time, got {v:?}")))
        })
        .transpose()
}

/// Hour and day numbers to show, each `from..to`.
struct Range {
    hours: (i64, i64),
    days: (i64, i64),
}

impl Range {
    fn parse(params: &UsageParams, now: DateTime<Utc>) -> Result<Range, ApiError> {
        let (from, to) = (time("from", &params.from)?, time("to", &params.to)?);
        let chosen = from.is_some() || to.is_some();
        let to = to.unwrap_or(now);
        let from = from.unwrap_or(to - Duration::hours(DEFAULT_HOURS));
        if from >= to {
            return Err(ApiError::Validation("from must be before to".into()));
        }
        // An hour or day counts if any of it is in [from, to).
        let ceil = |t: DateTime<Utc>, period: i64| (t.timestamp() + period - 1).div_euclid(period);
        let hours = if chosen {
            (usage::hour_of(from), ceil(to, 3600))
        } else {
            // The last 48 hours: the current, partial one and 47 before it.
            let this_hour = usage::hour_of(now);
            (this_hour - DEFAULT_HOURS + 1, this_hour + 1)
        };
        if hours.1 - hours.0 > MAX_RANGE_HOURS {
            return Err(ApiError::Validation(format!(
                "from and to may span at most {} days",
                MAX_RANGE_HOURS / 24
            )));
        }
        let days = if chosen {
            (usage::day_of(from), ceil(to, 86_400))
        } else {
            let today = usage::day_of(now);
            (today - DEFAULT_DAYS + 1, today + 1)
        };
        Ok(Range { hours, days })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn params(from: Option<&str>, to: Option<&str>) -> UsageParams {
        UsageParams {
            from: from.map(Into::into),
            to: to.map(Into::into),
        }
    }

    #[test]
    fn default_range_is_the_last_48_hours_and_31_days() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 10, 30, 0).unwrap();
        let r = Range::parse(&params(None, None), now).unwrap();
        assert_eq!(r.hours.1 - r.hours.0, 48, "the current, partial hour and 47 before it");
        assert_eq!(r.hours.1, usage::hour_of(now) + 1);
        assert_eq!(r.days, (usage::day_of(now) - 30, usage::day_of(now) + 1));
    }

    #[test]
    fn chosen_ranges_cover_every_touched_period_and_bad_ones_are_422() {
        let now = Utc::now();
        let r = Range::parse(&params(Some("2026-11-24T23:30:00Z"), Some("2026-11-25T01:00:00Z")), now).unwrap();
        let hour = |h| usage::hour_of(Utc.with_ymd_and_hms(2026, 11, 25, h, 0, 0).unwrap());
        assert_eq!(r.hours, (hour(0) - 1, hour(1)));
        assert_eq!(r.days.1 - r.days.0, 2);
        for (from, to) in [
            (Some("yesterday"), None),
            (Some("2026-11-25T00:00:00Z"), Some("2026-11-25T00:00:00Z")),
            (Some("2026-01-01T00:00:00Z"), Some("2026-11-25T00:00:00Z")),
        ] {
            assert!(
                matches!(Range::parse(&params(from, to), now), Err(ApiError::Validation(_))),
                "{from:?} {to:?}"
            );
        }
    }
}
