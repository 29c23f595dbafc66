//! Calling a workflow's upstream: `builtin:echo` in-process, or `POST` of
//! `{"workflow_id","input","request_id"}` to an `http(s)` URL with a pooled
//! client and a timeout.

use ingest::Micros;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

use crate::usd;

pub const ECHO: &str = "builtin:echo";

#[derive(Debug)]
pub enum Outcome {
    /// The upstream answered; `cost` if it reported one.
    Answered {
        output: Value,
        cost: Option<Micros>,
    },
    Failed(String),
    TimedOut,
}

#[derive(Deserialize)]
struct UpstreamAnswer {
    #[serde(default)]
    output: Value,
    #[serde(default)]
    usage: Option<UpstreamUsage>,
}

#[derive(Deserialize)]
struct UpstreamUsage {
    cost: Option<f64>,
}

pub async fn call(
    client: &reqwest::Client,
    url: &str,
    workflow_id: &str,
    input: Value,
    request_id: &str,
    timeout: Duration,
) -> Outcome {
    if url == ECHO {
        return Outcome::Answered {
            output: input,
            cost: None,
        };
    }
    let body = json!({"workflow_id": workflow_id, "input": input, "request_id": request_id});
    let response = match client.post(url).json(&body).timeout(timeout).send().await {
        Ok(response) => response,
        Err(e) if e.is_timeout() => return Outcome::TimedOut,
        Err(e) => return Outcome::Failed(format!("request failed: {}", without_url(e))),
    };
    let status = response.status();
    if !status.is_success() {
        return Outcome::Failed(format!("upstream answered {status}"));
    }
    match response.json::<UpstreamAnswer>().await {
        Ok(answer) => Outcome::Answered {
            output: answer.output,
            cost: answer.usage.and_then(|u| u.cost).and_then(usd::from_upstream),
        },
        Err(e) if e.is_timeout() => Outcome::TimedOut,
        Err(_) => Outcome::Failed("upstream answered something other than a JSON object".into()),
    }
}

/// The upstream URL may carry credentials; errors shown to clients must not.
fn without_url(error: reqwest::Error) -> reqwest::Error {
    error.without_url()
}
