//! `GET /api/v1/usage`: usage across keys, per hour, day or month, grouped
//! by any of key, customer, workflow and status, filtered by any of the
//! first three; JSON, or CSV with `Accept: text/csv`.
//!
//! Read from the Parquet archive (`ledger::summary`: what DuckDB sums over
//! the same files) plus the events after the archive's watermark, read
//! from the stream, which the archive will hold once it flushes them. So
//! any range the archive holds is answered, up to this replica's own
//! writes, and a range fully archived equals DuckDB's sums.

use axum::extract::State;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use futures::StreamExt;
use ingest::Micros;
use ledger::summary::HourGroup;
use ledger::Bucket;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

use super::usage::time;
use super::AppState;
use crate::error::ApiError;
use crate::extract::Query;
use crate::usd;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/usage", get(report))
}

/// The widest range, in days, and for hourly periods.
const MAX_DAYS: i64 = 1100;
const MAX_HOURLY_DAYS: i64 = 90;
/// The default range: the last 30 days.
const DEFAULT_DAYS: i64 = 30;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportParams {
    /// RFC 3339; start of the range, rounded down to its period (default:
    /// 30 days before `to`).
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<String>,
    /// RFC 3339; end of the range, exclusive, rounded up to its period
    /// (default: now).
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<String>,
    /// `hour`, `day` (default) or `month`: UTC periods. Hourly ranges span at
    /// most 90 days, others 1,100.
    #[param(value_type = Option<String>, pattern = "^(hour|day|month)$")]
    granularity: Option<String>,
    /// Comma-separated: any of `key_id`, `customer_id`, `workflow_id`,
    /// `status_code`.
    #[param(value_type = Option<String>)]
    group_by: Option<String>,
    /// Only this key's usage.
    #[param(value_type = Option<String>, min_length = 1, max_length = 256)]
    key_id: Option<String>,
    /// Only usage counted for this customer.
    #[param(value_type = Option<String>, min_length = 1, max_length = 256)]
    customer_id: Option<String>,
    /// Only this workflow's usage.
    #[param(value_type = Option<String>, min_length = 1, max_length = 256)]
    workflow_id: Option<String>,
}

/// One period of one group. Group fields are present when grouped by.
#[derive(Serialize, ToSchema)]
pub struct ReportRow {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    key_id: Option<Arc<str>>,
    /// Grouped by customer: null for usage of keys without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    customer_id: Option<Option<Arc<str>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    workflow_id: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_code: Option<u16>,
    requests: u64,
    /// Requests whose status was 500 or more.
    errors: u64,
    /// USD.
    cost: f64,
    input_tokens: u64,
    output_tokens: u64,
    /// The cost exactly, for CSV.
    #[serde(skip)]
    micros: Micros,
}

#[derive(Serialize, ToSchema)]
pub struct Report {
    /// Periods and groups with usage, by start, then group.
    data: Vec<ReportRow>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Granularity {
    Hour,
    Day,
    Month,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dim {
    Key,
    Customer,
    Workflow,
    Status,
}

impl Dim {
    fn name(self) -> &'static str {
        match self {
            Dim::Key => "key_id",
            Dim::Customer => "customer_id",
            Dim::Workflow => "workflow_id",
            Dim::Status => "status_code",
        }
    }
}

/// A parsed, checked request.
struct Ask {
    granularity: Granularity,
    /// Hours since the epoch, `from..to`, whole periods.
    hours: (i64, i64),
    group_by: Vec<Dim>,
    key_id: Option<String>,
    customer_id: Option<String>,
    workflow_id: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/usage", operation_id = "query_usage", tag = "usage", params(ReportParams),
    responses(
        (status = 200, body = Report, description = "JSON, or CSV (`start,end,<group fields>,requests,errors,cost,input_tokens,output_tokens`) with `Accept: text/csv`"),
        (status = 401), (status = 422),
        (status = 503, description = "not_ready; archive_unavailable: this replica (role api) holds no archive"),
    ),
    security(("admin" = [])))]
pub async fn report(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<ReportParams>,
) -> Result<Response, ApiError> {
    let ask = parse(&params, Utc::now())?;
    if state.archive.is_none() && state.offsite.is_none() {
        return Err(no_archive());
    }
    state.read_own_writes().await?;
    // Everything this replica has applied counts: the archive up to its
    // watermark, the stream after it.
    let upto = state.projection().seq;
    let (from, to) = ask.hours;
    let summary = archived(&state, from, to, false).await?;
    let duplicates: std::collections::HashSet<u64> = {
        let projection = state.projection();
        projection.duplicates.range(summary.watermark + 1..).copied().collect()
    };
    let mut sums: BTreeMap<Group, Bucket> = BTreeMap::new();
    for g in summary.groups() {
        add(&ask, &mut sums, g);
    }
    if upto > summary.watermark {
        let mut records = state
            .stream
            .replay(summary.watermark + 1)
            .await
            .map_err(|e| ApiError::NotReady(format!("the stream cannot be read: {e}")))?;
        while let Some(record) = records.next().await {
            let record = record.map_err(|e| ApiError::NotReady(format!("the stream cannot be read: {e}")))?;
            if record.seq > upto {
                break;
            }
            if duplicates.contains(&record.seq) {
                continue;
            }
            let Some(row) = crate::archiver::row(&record) else {
                continue;
            };
            let hour = row.ts.timestamp().div_euclid(3600);
            if hour < from || hour >= to {
                continue;
            }
            let usage = Bucket {
                requests: 1,
                cost: row.cost,
                errors: u64::from(row.status_code >= 500),
                input_tokens: row.input_tokens,
                output_tokens: row.output_tokens,
                unsettled: 0,
            };
            let g = HourGroup {
                hour,
                key_id: row.key_id.into(),
                customer_id: row.customer_id.map(Into::into),
                workflow_id: row.workflow_id.into(),
                status_code: row.status_code,
                usage,
            };
            add(&ask, &mut sums, &g);
        }
    }
    let rows: Vec<ReportRow> = sums.into_iter().map(|(g, b)| g.row(&ask, b)).collect();
    let wants_csv = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv"));
    if wants_csv {
        let body = csv(&ask.group_by, &rows);
        return Ok(([(CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response());
    }
    Ok(Json(Report { data: rows }).into_response())
}

/// The archive's sums for hours `from..to` and the watermark they are
/// exact up to, read from the local archive or the one in object storage.
async fn archived(state: &AppState, from: i64, to: i64, warming: bool) -> Result<ledger::summary::Summary, ApiError> {
    let cache = state.summaries.clone();
    // Warming meets an archive mid-catch-up, changing under it: not news.
    let failed = |error: &dyn std::fmt::Display| match warming {
        true => tracing::debug!(%error, "the archive could not be read ahead of queries"),
        false => tracing::error!(%error, "cannot read the archive"),
    };
    match (&state.offsite, state.archive.clone()) {
        (Some(offsite), _) => offsite.hours(from, to, &cache).await.map_err(|e| {
            failed(&format_args!("{}: {e}", offsite.url));
            ApiError::ArchiveUnavailable(format!(
                "the archive at {} cannot be read right now; retry",
                offsite.url
            ))
        }),
        (None, Some(root)) => tokio::task::spawn_blocking(move || ledger::summary::hours(&root, from, to, &cache))
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| {
                failed(&e);
                ApiError::ArchiveUnavailable(format!("the archive cannot be read right now ({e}); retry"))
            }),
        (None, None) => Err(no_archive()),
    }
}

/// How far back [`keep_warm`] reads: a month and a day, unless their sums
/// would take more than half the cache.
const WARM_HOURS: i64 = 32 * 24;

/// Keeps the sums of the last month's part files read, so that a usage
/// query over them reads no Parquet: after a start, and after each flush or
/// compaction (a new file name), the new files are read here rather than
/// by the next query. A file read before costs one `stat`; object storage
/// is listed once a minute rather than every few seconds. Each round
/// forgets the sums of files gone since (a flush's parts, once compacted),
/// so the cache holds what exists.
pub async fn keep_warm(state: AppState, stop: tokio_util::sync::CancellationToken) {
    let every = match state.offsite {
        Some(_) => std::time::Duration::from_secs(60),
        None => std::time::Duration::from_secs(5),
    };
    let mut hours = WARM_HOURS;
    loop {
        if state.progress.is_ready() {
            let to = Utc::now().timestamp().div_euclid(3600) + 1;
            let round = state.summaries.next_round();
            // A failure was logged; a query would meet it too, and the
            // next round tries again.
            if let Ok(summary) = archived(&state, to - hours, to, true).await {
                // Files of these hours compacted away since.
                state.summaries.sweep(round, to - hours..to);
                // Sums near the cache's size would push out what queries
                // read and, past it, make each round read every file
                // again: half as far back, down to a day; back out again
                // once they take little room.
                let held: usize = summary.files.iter().map(|f| f.len()).sum();
                let limit = state.summaries.limit();
                let before = hours;
                if held > limit / 2 {
                    hours = (hours / 2).max(24);
                } else if held < limit / 8 {
                    hours = (hours * 2).min(WARM_HOURS);
                }
                if hours != before {
                    tracing::info!(hours, groups = held, "usage query read-ahead now covers the last hours");
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

fn no_archive() -> ApiError {
    ApiError::ArchiveUnavailable(
        "this replica (role api) holds no archive to read usage from: ask one running with --role all, or archive to object storage (--archive-url) which every role reads".into(),
    )
}

/// A period's start (epoch seconds) and the group's fields, None where not
/// grouped by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Group {
    start: i64,
    fields: [Option<Field>; 4],
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Field {
    Id(Option<Arc<str>>),
    Status(u16),
}

impl Group {
    fn row(self, ask: &Ask, b: Bucket) -> ReportRow {
        let end = period_end(ask.granularity, self.start);
        let [key, customer, workflow, status] = self.fields;
        let id = |f: Option<Field>| match f {
            Some(Field::Id(id)) => Some(id),
            _ => None,
        };
        ReportRow {
            start: DateTime::from_timestamp(self.start, 0).unwrap_or_default(),
            end: DateTime::from_timestamp(end, 0).unwrap_or_default(),
            key_id: id(key).flatten(),
            customer_id: id(customer),
            workflow_id: id(workflow).flatten(),
            status_code: match status {
                Some(Field::Status(s)) => Some(s),
                _ => None,
            },
            requests: b.requests,
            errors: b.errors,
            cost: usd::to_json(b.cost),
            input_tokens: b.input_tokens,
            output_tokens: b.output_tokens,
            micros: b.cost,
        }
    }
}

fn add(ask: &Ask, sums: &mut BTreeMap<Group, Bucket>, g: &HourGroup) {
    let wanted = |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| have == Some(w));
    if !wanted(&ask.key_id, Some(&g.key_id))
        || !wanted(&ask.customer_id, g.customer_id.as_deref())
        || !wanted(&ask.workflow_id, Some(&g.workflow_id))
    {
        return;
    }
    let mut fields: [Option<Field>; 4] = Default::default();
    for dim in &ask.group_by {
        let (at, field) = match dim {
            Dim::Key => (0, Field::Id(Some(g.key_id.clone()))),
            Dim::Customer => (1, Field::Id(g.customer_id.clone())),
            Dim::Workflow => (2, Field::Id(Some(g.workflow_id.clone()))),
            Dim::Status => (3, Field::Status(g.status_code)),
        };
        fields[at] = Some(field);
    }
    let group = Group {
        start: period_start(ask.granularity, g.hour),
        fields,
    };
    *sums.entry(group).or_default() += g.usage;
}

/// The start (epoch seconds) of the period holding hour `hour`.
fn period_start(granularity: Granularity, hour: i64) -> i64 {
    match granularity {
        Granularity::Hour => hour * 3600,
        Granularity::Day => hour.div_euclid(24) * 86_400,
        Granularity::Month => {
            let t = DateTime::from_timestamp(hour * 3600, 0).unwrap_or_default();
            month_start(t.year(), t.month())
        }
    }
}

fn period_end(granularity: Granularity, start: i64) -> i64 {
    match granularity {
        Granularity::Hour => start + 3600,
        Granularity::Day => start + 86_400,
        Granularity::Month => {
            let t = DateTime::from_timestamp(start, 0).unwrap_or_default();
            let (y, m) = if t.month() == 12 {
                (t.year() + 1, 1)
            } else {
                (t.year(), t.month() + 1)
            };
            month_start(y, m)
        }
    }
}

fn month_start(year: i32, month: u32) -> i64 {
    NaiveDate::from_ymd_opt(year, month, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(0, |t| t.and_utc().timestamp())
}

fn parse(params: &ReportParams, now: DateTime<Utc>) -> Result<Ask, ApiError> {
    let granularity = match params.granularity.as_deref() {
        None | Some("day") => Granularity::Day,
        Some("hour") => Granularity::Hour,
        Some("month") => Granularity::Month,
        Some(other) => {
            return Err(ApiError::validation(format!(
                "granularity must be hour, day or month, not {other:?}"
            )))
        }
    };
    let to = time("to", &params.to)?.unwrap_or(now);
    let from = time("from", &params.from)?.unwrap_or(to - chrono::TimeDelta::days(DEFAULT_DAYS));
    if from >= to {
        return Err(ApiError::validation("from must be before to"));
    }
    let max_days = match granularity {
        Granularity::Hour => MAX_HOURLY_DAYS,
        _ => MAX_DAYS,
    };
    if to - from > chrono::TimeDelta::days(max_days) {
        return Err(ApiError::validation(format!(
            "from and to may span at most {max_days} days at this granularity"
        )));
    }
    // Whole periods: from rounded down, to rounded up.
    let first = period_start(granularity, from.timestamp().div_euclid(3600));
    let last_hour = (to.timestamp() - 1).div_euclid(3600);
    let end = period_end(granularity, period_start(granularity, last_hour));
    let mut group_by = Vec::new();
    for name in params.group_by.as_deref().unwrap_or("").split(',').map(str::trim) {
        let dim = match name {
            "" => continue,
            "key_id" => Dim::Key,
            "customer_id" => Dim::Customer,
            "workflow_id" => Dim::Workflow,
            "status_code" => Dim::Status,
            other => {
                return Err(ApiError::validation(format!(
                    "group_by takes key_id, customer_id, workflow_id and status_code, not {other:?}"
                )))
            }
        };
        if !group_by.contains(&dim) {
            group_by.push(dim);
        }
    }
    let id = |field: &str, value: &Option<String>| -> Result<Option<String>, ApiError> {
        match value {
            Some(v) if v.is_empty() || v.len() > 256 => {
                Err(ApiError::validation(format!("{field} must be 1 to 256 characters")))
            }
            other => Ok(other.clone()),
        }
    };
    Ok(Ask {
        granularity,
        hours: (first.div_euclid(3600), end.div_euclid(3600)),
        group_by,
        key_id: id("key_id", &params.key_id)?,
        customer_id: id("customer_id", &params.customer_id)?,
        workflow_id: id("workflow_id", &params.workflow_id)?,
    })
}

/// `start,end,<group fields>,requests,errors,cost,input_tokens,output_tokens`,
/// cost as an exact decimal.
fn csv(group_by: &[Dim], rows: &[ReportRow]) -> String {
    let mut out = String::from("start,end");
    for dim in group_by {
        out.push(',');
        out.push_str(dim.name());
    }
    out.push_str(",requests,errors,cost,input_tokens,output_tokens\n");
    for r in rows {
        let time = |t: &DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let _ = write!(out, "{},{}", time(&r.start), time(&r.end));
        for dim in group_by {
            let value = match dim {
                Dim::Key => r.key_id.as_deref().map(str::to_owned),
                Dim::Customer => r.customer_id.clone().flatten().as_deref().map(str::to_owned),
                Dim::Workflow => r.workflow_id.as_deref().map(str::to_owned),
                Dim::Status => r.status_code.map(|s| s.to_string()),
            };
            out.push(',');
            out.push_str(&quoted(value.as_deref().unwrap_or("")));
        }
        let _ = writeln!(
            out,
            ",{},{},{},{},{}",
            r.requests,
            r.errors,
            decimal(r.micros),
            r.input_tokens,
            r.output_tokens
        );
    }
    out
}

/// A CSV field, quoted when it must be.
fn quoted(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// `12.345678`: micro-dollars as an exact decimal.
fn decimal(m: Micros) -> String {
    let v = m.get();
    let sign = if v < 0 { "-" } else { "" };
    let v = v.unsigned_abs();
    format!("{sign}{}.{:06}", v / 1_000_000, v % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn params(from: &str, to: &str, granularity: &str) -> ReportParams {
        ReportParams {
            from: Some(from.into()),
            to: Some(to.into()),
            granularity: Some(granularity.into()),
            group_by: Some("workflow_id,key_id,workflow_id".into()),
            key_id: None,
            customer_id: None,
            workflow_id: None,
        }
    }

    #[test]
    fn ranges_round_out_to_whole_periods_and_bad_ones_are_422() {
        let now = Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap();
        let ask = parse(&params("2026-11-30T10:30:00Z", "2026-12-02T00:00:01Z", "day"), now).unwrap();
        let day = |y, m, d| Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap().timestamp() / 3600;
        assert_eq!(ask.hours, (day(2026, 11, 30), day(2026, 12, 3)));
        assert_eq!(ask.group_by, vec![Dim::Workflow, Dim::Key], "in the order given, once");
        let ask = parse(&params("2026-11-15T10:30:00Z", "2027-01-01T00:00:00Z", "month"), now).unwrap();
        assert_eq!(ask.hours, (day(2026, 11, 1), day(2027, 1, 1)));
        let ask = parse(&params("2026-11-15T10:30:00Z", "2026-11-15T10:30:01Z", "hour"), now).unwrap();
        assert_eq!(ask.hours.1 - ask.hours.0, 1);
        for bad in [
            params("2026-12-02T00:00:00Z", "2026-12-01T00:00:00Z", "day"),
            params("2026-01-01T00:00:00Z", "2026-12-01T00:00:00Z", "hour"),
            params("2026-01-01T00:00:00Z", "2026-12-01T00:00:00Z", "week"),
            params("yesterday", "2026-12-01T00:00:00Z", "day"),
        ] {
            assert!(matches!(parse(&bad, now), Err(ApiError::Validation(_))));
        }
        let mut unknown = params("2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z", "day");
        unknown.group_by = Some("model".into());
        assert!(matches!(parse(&unknown, now), Err(ApiError::Validation(_))));
    }

    #[test]
    fn csv_quotes_what_it_must_and_writes_cost_exactly() {
        let row = ReportRow {
            start: Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
            end: Utc.with_ymd_and_hms(2026, 12, 2, 0, 0, 0).unwrap(),
            key_id: None,
            customer_id: Some(Some(Arc::from("acme, \"inc\""))),
            workflow_id: None,
            status_code: None,
            requests: 3,
            errors: 1,
            cost: 0.000123,
            input_tokens: 5,
            output_tokens: 6,
            micros: Micros::new(123),
        };
        assert_eq!(
            csv(&[Dim::Customer], &[row]),
            "start,end,customer_id,requests,errors,cost,input_tokens,output_tokens\n\
             2026-12-01T00:00:00Z,2026-12-02T00:00:00Z,\"acme, \"\"inc\"\"\",3,1,0.000123,5,6\n"
        );
    }
}
