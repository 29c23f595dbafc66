//! `GET /api/v1/api-keys/{key_id}/usage`: a key's usage, read from the same
//! projection the limiter enforces, after this replica applied its own
//! appends (a query answered here is in it). The projection keeps the last
//! 48 hours hour by hour and 31 days day by day; older periods of a chosen
//! range are read from the Parquet archive, where this process has one.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use ledger::usage::{self, Bucket};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use crate::error::ApiError;
use crate::extract::{Path, Query};
use crate::usd;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/api-keys/{key_id}/usage", get(key_usage))
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
}

#[derive(Serialize, ToSchema)]
pub struct UsageObject {
    key_id: String,
    total_requests: u64,
    /// USD.
    total_cost: f64,
    requests_today: u64,
    /// USD.
    cost_today: f64,
    /// Rolling 60 minutes: what the rate limit sees.
    requests_this_hour: u64,
    /// USD, UTC calendar month to date: what the cost limit sees.
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
    let now = Utc::now();
    let range = Range::parse(&params, now)?;
    state.read_own_writes().await?;
    // Hours and days before these are no longer in the projection: it
    // keeps them counted back from the key's newest query, which another
    // replica's clock may have put ahead of this one's.
    let newest = {
        let projection = state.projection();
        if projection.keys.get(&key_id).is_none() {
            return Err(ApiError::KeyNotFound);
        }
        let used = projection.usage.get(&key_id).and_then(|u| u.last_used_at);
        used.map_or(now, |at| at.max(now))
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
        let key = key_id.clone();
        tokio::task::spawn_blocking(move || ledger::archive::key_hours(&root, &key, from, to))
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
    let u = projection.usage.get(&key_id).unwrap_or(&empty);
    let today = u.today(now);
    Ok(Json(UsageObject {
        total_requests: u.total.requests,
        total_cost: usd::to_json(u.total.cost),
        requests_today: today.requests,
        cost_today: usd::to_json(today.cost),
        requests_this_hour: u.requests_this_hour(now),
        cost_this_month: usd::to_json(u.cost_this_month(now)),
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
            })
            .collect(),
        key_id,
    }))
}

/// Hour and day numbers to show, each `from..to`.
struct Range {
    hours: (i64, i64),
    days: (i64, i64),
}

impl Range {
    fn parse(params: &UsageParams, now: DateTime<Utc>) -> Result<Range, ApiError> {
        let time = |field: &str, value: &Option<String>| -> Result<Option<DateTime<Utc>>, ApiError> {
            value
                .as_deref()
                .map(|v| {
                    DateTime::parse_from_rfc3339(v)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|_| ApiError::Validation(format!("{field} must be an RFC 3339 time, got {v:?}")))
                })
                .transpose()
        };
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
