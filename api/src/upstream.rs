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
    answered(response).await
}

/// A JSON answer `{"output","usage":{"cost"}}`.
async fn answered(response: reqwest::Response) -> Outcome {
    match response.json::<UpstreamAnswer>().await {
        Ok(answer) => Outcome::Answered {
            output: answer.output,
            cost: answer.usage.and_then(|u| u.cost).and_then(usd::from_upstream),
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
            cost: None,
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
    let mut bytes = response.bytes_stream();
    let (mut pending, mut data) = (Vec::<u8>::new(), Vec::<String>::new());
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
                if !data.is_empty() && out.send(data.join("\n")).await.is_err() {
                    return Outcome::Answered {
                        output: Value::Null,
                        cost: None,
                    };
                }
                data.clear();
            } else if let Some(value) = line.strip_prefix("data:") {
                data.push(value.strip_prefix(' ').unwrap_or(value).to_owned());
            }
        }
    }
    if !data.is_empty() {
        let _ = out.send(data.join("\n")).await;
    }
    Outcome::Answered {
        output: Value::Null,
        cost: None,
    }
}

/// The upstream URL may carry credentials; errors shown to clients must not.
fn without_url(error: reqwest::Error) -> reqwest::Error {
    error.without_url()
}
