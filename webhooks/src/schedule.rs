//! When a failed delivery is tried again: `NODAI_WEBHOOK_RETRY_SCHEDULE`,
//! the delays after the first, second, … failed attempt; after the last one
//! the delivery has failed for good.

use chrono::{DateTime, Duration, Utc};

use crate::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule(Vec<Duration>);

impl Default for Schedule {
    /// `5s,5m,30m,2h,5h,10h,10h`: eight attempts over about 28 hours.
    fn default() -> Self {
        "5s,5m,30m,2h,5h,10h,10h".parse().expect("the default schedule parses")
    }
}

impl std::str::FromStr for Schedule {
    type Err = Error;

    /// Comma-separated durations: `500ms`, `5s`, `5m`, `2h`, `1d`; each at
    /// most 30 days, at most 50 of them.
    fn from_str(text: &str) -> Result<Schedule, Error> {
        let bad = || Error::Schedule(text.to_owned());
        let delays = text
            .split(',')
            .map(|part| {
                let part = part.trim();
                let split = part.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
                let n: i64 = part[..split].parse().map_err(|_| bad())?;
                let unit = match &part[split..] {
                    "ms" => Duration::milliseconds(1),
                    "s" => Duration::seconds(1),
                    "m" => Duration::minutes(1),
                    "h" => Duration::hours(1),
                    "d" => Duration::days(1),
                    _ => return Err(bad()),
                };
                unit.checked_mul(n.try_into().map_err(|_| bad())?)
                    .filter(|d| *d <= Duration::days(30))
                    .ok_or_else(bad)
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Every pending delivery may be tried this often: bounded.
        if delays.len() > 50 {
            return Err(bad());
        }
        Ok(Schedule(delays))
    }
}

/// Longest `Retry-After` honoured: a day.
const RETRY_AFTER_MAX: Duration = Duration::days(1);

impl Schedule {
    /// After the `n`th failed attempt of the current schedule (1-based) at
    /// `now`: when to try again, or None when the schedule is exhausted.
    /// The delay gets ±10% jitter (`jitter` in `[0, 1)`), so endpoints that
    /// failed together are not retried in lockstep, and is at least what
    /// the endpoint's `Retry-After` asked for.
    pub fn next_attempt(
        &self,
        n: u32,
        now: DateTime<Utc>,
        jitter: f64,
        retry_after: Option<Duration>,
    ) -> Option<DateTime<Utc>> {
        let delay = *self.0.get((n as usize).checked_sub(1)?)?;
        let spread = delay.num_milliseconds() as f64 * 0.2 * (jitter - 0.5);
        let delay = delay + Duration::milliseconds(spread as i64);
        let delay = retry_after.map_or(delay, |asked| delay.max(asked.min(RETRY_AFTER_MAX)));
        Some(now + delay)
    }
}

/// A `Retry-After` value: seconds, or an HTTP date.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u32>() {
        return Some(Duration::seconds(secs.into()));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
    Some((at - now).max(Duration::zero()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_schedule_parses_and_runs_out() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        let s = Schedule::default();
        assert_eq!(s.next_attempt(1, now, 0.5, None), Some(now + Duration::seconds(5)));
        assert_eq!(s.next_attempt(2, now, 0.5, None), Some(now + Duration::minutes(5)));
        assert_eq!(s.next_attempt(7, now, 0.5, None), Some(now + Duration::hours(10)));
        assert_eq!(s.next_attempt(8, now, 0.5, None), None, "eight attempts in all");
        assert_eq!(s.next_attempt(0, now, 0.5, None), None);
        let ms: Schedule = "200ms, 1s".parse().unwrap();
        assert_eq!(
            ms.next_attempt(1, now, 0.5, None),
            Some(now + Duration::milliseconds(200))
        );
        let too_many = vec!["1s"; 51].join(",");
        for bad in [
            "",
            "5",
            "5x",
            "-5s",
            "5s,,",
            "999999d",
            "18446744073709551615s",
            &too_many,
        ] {
            assert!(bad.parse::<Schedule>().is_err(), "{bad:?}");
        }
        assert!(vec!["1s"; 50].join(",").parse::<Schedule>().is_ok());
    }

    #[test]
    fn jitter_spreads_and_retry_after_extends() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        let s: Schedule = "100s".parse().unwrap();
        assert_eq!(s.next_attempt(1, now, 0.0, None), Some(now + Duration::seconds(90)));
        assert_eq!(
            s.next_attempt(1, now, 0.999_999, None).unwrap().timestamp(),
            (now + Duration::seconds(110)).timestamp() - 1
        );
        let asked = parse_retry_after("300", now);
        assert_eq!(s.next_attempt(1, now, 0.5, asked), Some(now + Duration::seconds(300)));
        let sooner = parse_retry_after("Wed, 25 Nov 2026 12:00:10 GMT", now);
        assert_eq!(sooner, Some(Duration::seconds(10)));
        assert_eq!(
            s.next_attempt(1, now, 0.5, sooner),
            Some(now + Duration::seconds(100)),
            "never sooner than the schedule"
        );
        let huge = parse_retry_after("99999999", now);
        assert_eq!(
            s.next_attempt(1, now, 0.5, huge),
            Some(now + Duration::days(1)),
            "capped at a day"
        );
    }
}
