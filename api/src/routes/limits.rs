//! `limits: [{"metric","window","max"}]`, as keys and customers take and
//! show them: parsed into `ingest::events::Limit` (cost in micro-dollars),
//! at most one per metric and window.

use ingest::events::{KeySettings, Limit, Metric, Window};
use ingest::Micros;
use serde::{Deserialize, Serialize};
use serde_json::Number;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::usd;

/// The most a count limit may be: far above any plan.
const MAX_COUNT: u64 = 1_000_000_000_000_000;

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitObject {
    /// `requests`, `tokens` or `cost`.
    #[schema(pattern = "^(requests|tokens|cost)$")]
    pub metric: String,
    /// `minute`, `hour`, `day` (rolling) or `month` for requests and
    /// tokens; `day` (UTC) or `month` for cost.
    #[schema(pattern = "^(minute|hour|day|month)$")]
    pub window: String,
    /// A count (requests, tokens) or USD (cost).
    #[schema(value_type = f64, minimum = 0)]
    pub max: Number,
}

impl From<&Limit> for LimitObject {
    fn from(limit: &Limit) -> Self {
        let max = match limit.metric {
            Metric::Cost => Number::from_f64(usd::to_json(Micros::new(limit.max as i64))).unwrap_or(Number::from(0)),
            _ => Number::from(limit.max),
        };
        LimitObject {
            metric: metric_name(limit.metric).to_owned(),
            window: window_name(limit.window).to_owned(),
            max,
        }
    }
}

pub fn metric_name(metric: Metric) -> &'static str {
    match metric {
        Metric::Requests => "requests",
        Metric::Tokens => "tokens",
        Metric::Cost => "cost",
    }
}

pub fn window_name(window: Window) -> &'static str {
    match window {
        Window::Minute => "minute",
        Window::Hour => "hour",
        Window::Day => "day",
        Window::Month => "month",
    }
}

/// Parses a `limits` list: 422 naming what is wrong.
pub fn parse(values: &[LimitObject]) -> Result<Vec<Limit>, ApiError> {
    if values.len() > 16 {
        return Err(ApiError::validation("limits holds at most 16 limits"));
    }
    let mut limits = Vec::with_capacity(values.len());
    for (i, v) in values.iter().enumerate() {
        let at = format!("limits[{i}]");
        let metric = match v.metric.as_str() {
            "requests" => Metric::Requests,
            "tokens" => Metric::Tokens,
            "cost" => Metric::Cost,
            other => {
                return Err(ApiError::validation(format!(
                    "{at}.metric {other:?} is not requests, tokens or cost"
                )))
            }
        };
        let window = match (metric, v.window.as_str()) {
            (Metric::Requests | Metric::Tokens, "minute") => Window::Minute,
            (_, "hour") if metric != Metric::Cost => Window::Hour,
            (_, "day") => Window::Day,
            (_, "month") => Window::Month,
            (_, other) => {
                return Err(ApiError::validation(format!(
                    "{at}.window {other:?} is not one of {} for {}",
                    if metric == Metric::Cost {
                        "day, month"
                    } else {
                        "minute, hour, day, month"
                    },
                    v.metric
                )))
            }
        };
        let max = match metric {
            Metric::Cost => {
                let usd = v.max.as_f64().unwrap_or(-1.0);
                usd::parse(&format!("{at}.max"), usd)?.get() as u64
            }
            _ => v
                .max
                .as_u64()
                .filter(|m| *m <= MAX_COUNT)
                .ok_or_else(|| ApiError::validation(format!("{at}.max must be a whole number from 0 to 1e15")))?,
        };
        if limits.iter().any(|l: &Limit| l.metric == metric && l.window == window) {
            return Err(ApiError::validation(format!(
                "{at}: only one limit per metric and window ({} per {})",
                v.metric, v.window
            )));
        }
        limits.push(Limit { metric, window, max });
    }
    limits.sort_by_key(|l| (l.metric, l.window));
    Ok(limits)
}

/// `max_concurrent`: 1 to 100,000.
pub fn max_concurrent(value: i64) -> Result<u64, ApiError> {
    u64::try_from(value)
        .ok()
        .filter(|v| (1..=100_000).contains(v))
        .ok_or_else(|| ApiError::validation("max_concurrent must be 1 to 100000"))
}

/// Puts a key's complete `limits` into its settings: requests per hour and
/// cost per month go to the fields that have always held them (both
/// spellings mean the same limit), the rest to `limits`.
pub fn set_key_limits(settings: &mut KeySettings, all: Vec<Limit>) {
    settings.rate_limit_per_hour = None;
    settings.cost_limit_per_month = None;
    settings.limits = Vec::new();
    for limit in all {
        match (limit.metric, limit.window) {
            (Metric::Requests, Window::Hour) => settings.rate_limit_per_hour = Some(limit.max),
            (Metric::Cost, Window::Month) => settings.cost_limit_per_month = Some(Micros::new(limit.max as i64)),
            _ => settings.limits.push(limit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(metric: &str, window: &str, max: serde_json::Value) -> LimitObject {
        serde_json::from_value(serde_json::json!({"metric": metric, "window": window, "max": max})).unwrap()
    }

    #[test]
    fn limits_parse_exactly_and_refuse_what_makes_no_sense() {
        let parsed = parse(&[
            limit("cost", "day", 1.25.into()),
            limit("tokens", "minute", 1000.into()),
        ])
        .unwrap();
        assert_eq!(
            parsed,
            [
                Limit {
                    metric: Metric::Tokens,
                    window: Window::Minute,
                    max: 1000
                },
                Limit {
                    metric: Metric::Cost,
                    window: Window::Day,
                    max: 1_250_000
                },
            ]
        );
        for bad in [
            vec![limit("cost", "minute", 1.into())],
            vec![limit("requests", "week", 1.into())],
            vec![limit("bytes", "day", 1.into())],
            vec![limit("requests", "day", 1.5.into())],
            vec![limit("requests", "day", (-1).into())],
            vec![limit("cost", "month", 0.0000001.into())],
            vec![limit("requests", "day", 1.into()), limit("requests", "day", 2.into())],
        ] {
            assert!(parse(&bad).is_err(), "{bad:?}");
        }
    }
}
