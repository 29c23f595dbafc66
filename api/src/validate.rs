//! Field rules for request bodies, each turning bad input into a 422 that
//! names the field.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::error::ApiError;

fn invalid(message: String) -> ApiError {
    ApiError::Validation(message)
}

pub fn name(field: &str, value: &str) -> Result<String, ApiError> {
    let len = value.chars().count();
    if !(1..=128).contains(&len) || value.trim().is_empty() {
        return Err(invalid(format!("{field} must be 1 to 128 characters, not blank")));
    }
    Ok(value.to_owned())
}

/// `[a-z0-9_-]{1,64}`.
pub fn workflow_id(value: &str) -> Result<String, ApiError> {
    let ok = (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !ok {
        return Err(invalid(format!("workflow id {value:?} must match [a-z0-9_-]{{1,64}}")));
    }
    Ok(value.to_owned())
}

pub fn workflow_ids(values: &[String]) -> Result<Vec<String>, ApiError> {
    if values.len() > 1000 {
        return Err(invalid("workflow_ids holds at most 1000 ids".into()));
    }
    let mut ids: Vec<String> = values.iter().map(|v| workflow_id(v)).collect::<Result<_, _>>()?;
    ids.sort();
    ids.dedup();
    Ok(ids)
}

pub fn rate_limit(value: i64) -> Result<u64, ApiError> {
    u64::try_from(value).map_err(|_| invalid("rate_limit_per_hour must be 0 or more".into()))
}

pub fn thresholds(values: &[i64]) -> Result<Vec<u32>, ApiError> {
    if values.len() > 20 {
        return Err(invalid("alert_thresholds holds at most 20 percents".into()));
    }
    let mut out: Vec<u32> = values
        .iter()
        .map(|&v| u32::try_from(v).ok().filter(|v| (1..=1000).contains(v)))
        .collect::<Option<_>>()
        .ok_or_else(|| invalid("alert_thresholds are percents from 1 to 1000".into()))?;
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// An RFC 3339 time strictly in the future.
pub fn expires_at(value: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    let at = DateTime::parse_from_rfc3339(value)
        .map_err(|_| invalid(format!("expires_at {value:?} is not an RFC 3339 time")))?
        .with_timezone(&Utc);
    if at <= now {
        return Err(invalid("expires_at must be in the future".into()));
    }
    Ok(at)
}

/// `https://host[:port]`, exactly an origin (no path, no trailing slash);
/// also `http://` for loopback hosts (`localhost`, `127.0.0.1`, `[::1]`),
/// which browsers treat as secure contexts, so a site can be developed
/// locally against its real key.
pub fn origins(values: &[String]) -> Result<Vec<String>, ApiError> {
    if values.len() > 100 {
        return Err(invalid("allowed_origins holds at most 100 origins".into()));
    }
    values
        .iter()
        .map(|v| {
            let url = reqwest::Url::parse(v)
                .ok()
                .filter(|u| match (u.scheme(), u.host_str()) {
                    ("https", Some(_)) => true,
                    ("http", Some(host)) => ["localhost", "127.0.0.1", "[::1]"].contains(&host),
                    _ => false,
                });
            match url {
                Some(u) if u.origin().ascii_serialization() == *v => Ok(v.clone()),
                _ => Err(invalid(format!(
                    "allowed origin {v:?} must be https://host[:port] (or http:// on localhost)"
                ))),
            }
        })
        .collect()
}

pub fn metadata(value: &Value) -> Result<Value, ApiError> {
    if !value.is_object() {
        return Err(invalid("metadata must be a JSON object".into()));
    }
    if value.to_string().len() > 16 * 1024 {
        return Err(invalid("metadata is larger than 16 KiB".into()));
    }
    Ok(value.clone())
}

/// `http(s)://…` with a host, or `builtin:echo`.
pub fn upstream_url(value: &str) -> Result<String, ApiError> {
    if value == crate::upstream::ECHO {
        return Ok(value.to_owned());
    }
    match reqwest::Url::parse(value) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host_str().is_some() && value.len() <= 2048 => {
            Ok(value.to_owned())
        }
        _ => Err(invalid(format!(
            "upstream_url must be http(s)://… or {}",
            crate::upstream::ECHO
        ))),
    }
}

/// `?limit=` of a list: 1 to 1000, default 100.
pub fn page_limit(value: Option<&str>) -> Result<usize, ApiError> {
    match value {
        None => Ok(100),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| invalid("limit must be an integer from 1 to 1000".into())),
    }
}

/// A search box's text, trimmed; at most 128 characters.
pub fn search(value: Option<&str>) -> Result<String, ApiError> {
    let value = value.unwrap_or_default().trim();
    if value.chars().count() > 128 {
        return Err(invalid("q must be at most 128 characters".into()));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(name("name", "").is_err());
        assert!(name("name", "   ").is_err());
        assert!(name("name", &"x".repeat(129)).is_err());
        assert!(name("name", &"é".repeat(128)).is_ok());
        assert!(workflow_id("Summarize").is_err());
        assert!(workflow_id(&"a".repeat(65)).is_err());
        assert!(workflow_id("sum_1-a").is_ok());
        assert!(rate_limit(-1).is_err());
        assert_eq!(thresholds(&[100, 80, 80]).unwrap(), [80, 100]);
        assert!(thresholds(&[0]).is_err());
        let now = Utc::now();
        assert!(expires_at("2020-01-01T00:00:00Z", now).is_err());
        assert!(expires_at("tomorrow", now).is_err());
        assert!(expires_at("2999-01-01T00:00:00Z", now).is_ok());
        assert!(origins(&["https://app.example.com".into(), "https://a.test:8443".into()]).is_ok());
        assert!(origins(&["http://localhost:3000".into(), "http://127.0.0.1:8080".into()]).is_ok());
        assert!(origins(&["http://[::1]:8080".into()]).is_ok());
        for bad in [
            "http://a.test",
            "http://10.0.0.1",
            "http://localhost.evil.test",
            "https://a.test/",
            "https://a.test/x",
            "a.test",
            "http://localhost:3000/",
        ] {
            assert!(origins(&[bad.into()]).is_err(), "{bad}");
        }
        assert!(upstream_url("builtin:echo").is_ok());
        assert!(upstream_url("ftp://x").is_err());
        assert!(upstream_url("https://ai.example/run").is_ok());
        assert_eq!(page_limit(None).unwrap(), 100);
        assert!(page_limit(Some("0")).is_err());
        assert!(page_limit(Some("1001")).is_err());
    }
}
