//! Calling a workflow's upstream: `builtin:echo` in-process, or `POST` of
//! `{"workflow_id","input","request_id"}` to an `http(s)` URL with a pooled
//! client and a timeout.

use futures::StreamExt;
use ingest::Micros;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::mpsc;

use crate::usd;

pub const ECHO: &str = "builtin:echo";

#[derive(Debug)]
pub enum Outcome {
    /// The upstream answered, with what it reported of its usage.
    Answered {
        output: Value,
        usage: Reported,
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

/// `usage` as an upstream reports it: a cost, tokens (ours, or OpenAI's
/// names). Anything else in it is ignored; nonsense counts as unreported.
#[derive(Deserialize, Default)]
struct UpstreamUsage {
    #[serde(default, deserialize_with = "lenient")]
    cost: Option<f64>,
    #[serde(default, deserialize_with = "lenient")]
    input_tokens: Option<u64>,
    #[serde(default, deserialize_with = "lenient")]
    output_tokens: Option<u64>,
    #[serde(default, deserialize_with = "lenient")]
    prompt_tokens: Option<u64>,
    #[serde(default, deserialize_with = "lenient")]
    completion_tokens: Option<u64>,
}

/// A field of the wrong type reads as absent rather than failing the answer.
fn lenient<'de, D: serde::Deserializer<'de>, T: serde::de::DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    Ok(serde_json::from_value(Value::deserialize(d)?).ok())
}

/// What an upstream reported of a query's usage.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reported {
    pub cost: Option<Micros>,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl From<UpstreamUsage> for Reported {
    fn from(u: UpstreamUsage) -> Reported {
        // Far above any real answer; keeps the sums of a month exact.
        let bounded = |n: Option<u64>| n.unwrap_or(0).min(1 << 40);
        Reported {
            cost: u.cost.and_then(usd::from_upstream),
            input_tokens: bounded(u.input_tokens.or(u.prompt_tokens)),
            output_tokens: bounded(u.output_tokens.or(u.completion_tokens)),
        }
    }
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
            usage: Reported::default(),
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
    answered(response).await
}

/// A JSON answer `{"output","usage":{"cost"}}`.
async fn answered(response: reqwest::Response) -> Outcome {
    match response.json::<UpstreamAnswer>().await {
        Ok(answer) => Outcome::Answered {
            output: answer.output,
            usage: answer.usage.map(Reported::from).unwrap_or_default(),
        },
        Err(e) if e.is_timeout() => Outcome::TimedOut,
        Err(_) => Outcome::Failed("upstream answered something other than a JSON object".into()),
    }
}

/// As [`call`], with the output sent to `out` piece by piece as it comes:
/// `builtin:echo` word by word, an upstream answering `text/event-stream`
/// event by event (its `data`), any other answer as one piece. Stops early
/// (with what it has) once `out` is closed: the client went away.
pub async fn stream(
    client: &reqwest::Client,
    url: &str,
    workflow_id: &str,
    input: Value,
    request_id: &str,
    timeout: Duration,
    out: mpsc::Sender<String>,
) -> Outcome {
    let streamed = stream_within(client, url, workflow_id, input, request_id, &out);
    tokio::time::timeout(timeout, streamed)
        .await
        .unwrap_or(Outcome::TimedOut)
}

async fn stream_within(
    client: &reqwest::Client,
    url: &str,
    workflow_id: &str,
    input: Value,
    request_id: &str,
    out: &mpsc::Sender<String>,
) -> Outcome {
    if url == ECHO {
        match &input {
            Value::String(text) => {
                for word in text.split_inclusive(char::is_whitespace) {
                    if out.send(word.to_owned()).await.is_err() {
                        break;
                    }
                }
            }
            other => drop(out.send(other.to_string()).await),
        }
        return Outcome::Answered {
            output: input,
            usage: Reported::default(),
        };
    }
    let body = json!({"workflow_id": workflow_id, "input": input, "request_id": request_id});
    let request = client
        .post(url)
        .header(reqwest::header::ACCEPT, "text/event-stream, application/json")
        .json(&body);
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => return Outcome::Failed(format!("request failed: {}", without_url(e))),
    };
    let status = response.status();
    if !status.is_success() {
        return Outcome::Failed(format!("upstream answered {status}"));
    }
    let is_events = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !is_events {
        let outcome = answered(response).await;
        if let Outcome::Answered { output, .. } = &outcome {
            let text = match output {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            let _ = out.send(text).await;
        }
        return outcome;
    }
    // Server-sent events: each event's data lines, joined, is one piece.
    // The last event whose data is JSON with a `usage` object reports the
    // query's usage (as OpenAI's streams do in their final chunk).
    let mut bytes = response.bytes_stream();
    let (mut pending, mut data) = (Vec::<u8>::new(), Vec::<String>::new());
    let mut usage = Reported::default();
    while let Some(piece) = bytes.next().await {
        let piece = match piece {
            Ok(piece) => piece,
            Err(e) => return Outcome::Failed(format!("upstream stream broke: {}", without_url(e))),
        };
        pending.extend_from_slice(&piece);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                let event = data.join("\n");
                if let Some(reported) = usage_in(&event) {
                    usage = reported;
                }
                if !data.is_empty() && out.send(event).await.is_err() {
                    return Outcome::Answered {
                        output: Value::Null,
                        usage,
                    };
                }
                data.clear();
            } else if let Some(value) = line.strip_prefix("data:") {
                data.push(value.strip_prefix(' ').unwrap_or(value).to_owned());
            }
        }
    }
    if !data.is_empty() {
        let event = data.join("\n");
        if let Some(reported) = usage_in(&event) {
            usage = reported;
        }
        let _ = out.send(event).await;
    }
    Outcome::Answered {
        output: Value::Null,
        usage,
    }
}

/// The usage an event's data reports, if it is JSON with a `usage` object.
fn usage_in(data: &str) -> Option<Reported> {
    #[derive(Deserialize)]
    struct WithUsage {
        usage: UpstreamUsage,
    }
    // Only what could be a JSON object is parsed.
    if !data.trim_start().starts_with('{') {
        return None;
    }
    serde_json::from_str::<WithUsage>(data).ok().map(|w| w.usage.into())
}

/// The upstream URL may carry credentials; errors shown to clients must not.
fn without_url(error: reqwest::Error) -> reqwest::Error {
    error.without_url()
}
