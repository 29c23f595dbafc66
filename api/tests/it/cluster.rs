//! nodai on a three-node NATS JetStream cluster, started by
//! `deploy/local-cluster.sh` exactly as an operator starts it: two API
//! replicas, a worker (and a standby), stream replicas 3. Each test runs a
//! bounded load through a fault and then checks that the stream, the usage
//! every replica reports and every worker's Parquet archive agree with what
//! was acknowledged.
//!
//! The clusters are heavy for a 2-core machine, so the tests take turns.

use crate::common;

use ingest::{Event, EventStream};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

const TOKEN: &str = "cluster-admin-token-0123456789";
/// Some test panicked: clusters print their logs when dropped.
static FAILED: AtomicBool = AtomicBool::new(false);

struct Cluster {
    dir: tempfile::TempDir,
    base: u16,
    env: Vec<(&'static str, String)>,
    http: reqwest::Client,
}

impl Cluster {
    /// `deploy/local-cluster.sh up` with `env` passed to every nodai; None
    /// (skipped) without nats-server unless NODAI_REQUIRE_NATS=1.
    async fn up(env: &[(&'static str, &str)]) -> Option<Cluster> {
        // The testkit decides whether a missing nats-server skips or fails.
        drop(ingest::testkit::NatsServer::start().await?);
        // A failing test's cluster may be dropped by a load task rather than
        // the panicking thread: remember that something failed.
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                FAILED.store(true, Ordering::Relaxed);
                previous(info)
            }));
        });
        let mut env: Vec<(&'static str, String)> = env.iter().map(|(k, v)| (*k, v.to_string())).collect();
        env.extend([
            ("NODAI_ADMIN_TOKEN", TOKEN.to_owned()),
            ("NODAI_ARCHIVE_FLUSH_SECS", "1".to_owned()),
            ("NODAI_WEBHOOK_ALLOW_PRIVATE", "1".to_owned()),
            ("NODAI_LOG", "info".to_owned()),
        ]);
        let cluster = Cluster {
            dir: tempfile::tempdir().unwrap(),
            base: free_base(),
            env,
            // Above the longest a query waits on metering in an outage
            // (ARCHITECTURE.md, "A query answered 503 is never billed":
            // 15 s to admit, 32 s to record), so a timeout here is a bug.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        };
        cluster.script(&["up"]).await;
        Some(cluster)
    }

    async fn script(&self, args: &[&str]) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local-cluster.sh");
        let output = tokio::process::Command::new("bash")
            .arg(script)
            .args(args)
            .env("CLUSTER_DIR", self.dir.path())
            .env("BASE_PORT", self.base.to_string())
            .env("NODAI_BIN", env!("CARGO_BIN_EXE_nodai"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "local-cluster.sh {args:?} failed: {}{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.logs()
        );
    }

    async fn start(&self, name: &str) {
        self.script(&["start", name]).await
    }

    async fn kill(&self, name: &str) {
        self.script(&["kill", name]).await
    }

    async fn stop(&self, name: &str) {
        self.script(&["stop", name]).await
    }

    fn url(&self, name: &str) -> String {
        let (role, n) = name.split_once('-').unwrap();
        let n: u16 = n.parse().unwrap();
        let port = match role {
            "api" => self.base + 20 + n,
            "worker" => self.base + 30 + n,
            _ => panic!("{name} has no HTTP port"),
        };
        format!("http://127.0.0.1:{port}")
    }

    fn nats_urls(&self) -> String {
        (1..=3)
            .map(|n| format!("nats://127.0.0.1:{}", self.base + n))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn data_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The last lines of every process's log, for failure messages.
    fn logs(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(self.dir.path()).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                out += &format!("--- {}\n", path.display());
                for line in tail.into_iter().rev() {
                    out += line;
                    out.push('\n');
                }
            }
        }
        out
    }

    async fn admin(&self, name: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url(name)))
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Creates a key on `name` and waits until both API replicas have it
    /// (the other one may answer 403 `invalid_api_key` for a moment before:
    /// a write is read-your-writes only on the replica that took it);
    /// returns (id, plaintext).
    async fn create_key(&self, name: &str, body: Value) -> (String, String) {
        let (id, key) = self.post_key(name, body).await;
        until("both API replicas have the key", Duration::from_secs(10), async || {
            self.usage("api-1", &id).await.is_some() && self.usage("api-2", &id).await.is_some()
        })
        .await;
        (id, key)
    }

    /// Creates a key on `name` and returns at once: (id, plaintext).
    async fn post_key(&self, name: &str, body: Value) -> (String, String) {
        let (status, key) = self.admin(name, Method::POST, "/api/v1/api-keys", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{key}");
        (
            key["id"].as_str().unwrap().to_owned(),
            key["key"].as_str().unwrap().to_owned(),
        )
    }

    async fn echo_workflow(&self, price: f64) {
        let body = json!({"id": "echo", "name": "echo", "upstream_url": "builtin:echo", "price_per_request": price});
        let (status, body) = self.admin("api-1", Method::POST, "/api/v1/workflows", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    /// One query; the status and the body (the request id of a 200, the
    /// problem's code otherwise). A connection error is None.
    async fn query(&self, name: &str, key: &str) -> Option<(u16, String)> {
        let response = self
            .http
            .post(format!("{}/api/v1/workflows/echo/query", self.url(name)))
            .header("x-api-key", key)
            .json(&json!({"input": "hello"}))
            .send()
            .await
            .inspect_err(|e| eprintln!("query to {name}: {e:?}"))
            .ok()?;
        let status = response.status().as_u16();
        let body: Value = response
            .json()
            .await
            .inspect_err(|e| eprintln!("query to {name}: {e:?}"))
            .ok()?;
        let field = if status == 200 { "request_id" } else { "code" };
        Some((status, body[field].as_str().unwrap_or_default().to_owned()))
    }

    async fn usage(&self, name: &str, key_id: &str) -> Option<u64> {
        let (status, usage) = self
            .admin(name, Method::GET, &format!("/api/v1/api-keys/{key_id}/usage"), None)
            .await;
        (status == StatusCode::OK).then(|| usage["total_requests"].as_u64().unwrap())
    }

    /// Every record on the stream, read from the start. Right after a fault
    /// the cluster may still be electing, and a JetStream request of this
    /// read can time out: that is retried (until a deadline), never taken
    /// as the answer.
    async fn records(&self) -> Vec<ingest::Record> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.try_records().await {
                Ok(records) => return records,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("reading the stream failed, retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => panic!("the stream could not be read for 60 s: {e}"),
            }
        }
    }

    async fn try_records(&self) -> Result<Vec<ingest::Record>, ingest::StreamError> {
        let options = ingest::nats::Options::new(self.nats_urls(), "NODAI");
        let stream = ingest::nats::NatsStream::connect(options).await?;
        futures::StreamExt::collect::<Vec<_>>(stream.replay(1).await?)
            .await
            .into_iter()
            .collect()
    }

    /// The `query.recorded` events on the stream: (event id, request id, key id).
    /// The queries that count: every `query.recorded` on the stream but
    /// those stored after their `record_by` (their queries were answered
    /// 503; the fold and the archive leave them out too).
    async fn recorded(&self) -> Vec<(String, String, String)> {
        self.records()
            .await
            .iter()
            .filter_map(|r| {
                let envelope = r.envelope().unwrap();
                match envelope.event() {
                    Ok(Event::QueryRecorded(q))
                        if q.record_by.is_none_or(|by| r.stored_micros <= by.timestamp_micros()) =>
                    {
                        Some((envelope.id.to_string(), q.request_id, q.key_id))
                    }
                    _ => None,
                }
            })
            .collect()
    }

    /// What the stream and the NATS nodes say about queries that were
    /// answered 200 but are missing from the stream: where each one's
    /// `query.admitted` (limited keys) sits and what surrounds it, each
    /// node's view of the stream, and the nodes' warnings and elections.
    async fn evidence(&self, lost: &[&String]) -> String {
        let events: Vec<(u64, String)> = self
            .records()
            .await
            .iter()
            .map(|r| {
                let what = match r.envelope().map(|e| e.event()) {
                    Ok(Ok(Event::QueryRecorded(q))) => format!("query.recorded {}", q.request_id),
                    Ok(Ok(Event::QueryAdmitted(a))) => format!("query.admitted {}", a.request_id),
                    Ok(Ok(other)) => other.event_type().to_owned(),
                    _ => "undecodable".to_owned(),
                };
                (r.seq, what)
            })
            .collect();
        let mut out = format!(
            "stream: {} records, seq {:?}..{:?}\n",
            events.len(),
            events.first().map(|e| e.0),
            events.last().map(|e| e.0)
        );
        for request_id in lost {
            match events.iter().position(|(_, what)| what.ends_with(request_id.as_str())) {
                Some(at) => {
                    out += &format!("{request_id}: found as {:?}; around it:\n", events[at]);
                    for (seq, what) in &events[at.saturating_sub(3)..(at + 12).min(events.len())] {
                        out += &format!("  {seq} {what}\n");
                    }
                }
                None => out += &format!("{request_id}: no event of it on the stream\n"),
            }
        }
        let gaps: Vec<_> = events
            .windows(2)
            .filter(|w| w[1].0 != w[0].0 + 1)
            .map(|w| (w[0].0, w[1].0))
            .collect();
        out += &format!("sequence gaps: {gaps:?}\n");
        for n in 1..=3 {
            let url = format!("http://127.0.0.1:{}/jsz?accounts=true&streams=true", self.base + 40 + n);
            let state = match self.http.get(url).send().await {
                Ok(response) => response.json::<Value>().await.ok(),
                Err(_) => None,
            };
            for account in state
                .iter()
                .flat_map(|s| s["account_details"].as_array().into_iter().flatten())
            {
                for stream in account["stream_detail"].as_array().into_iter().flatten() {
                    if stream["name"] == "NODAI" {
                        out += &format!("nats-{n}: state {} cluster {}\n", stream["state"], stream["cluster"]);
                    }
                }
            }
        }
        for n in 1..=3 {
            let text = std::fs::read_to_string(self.dir.path().join(format!("nats-{n}.log"))).unwrap_or_default();
            out += &format!("--- nats-{n}.log, warnings and elections\n");
            for line in text.lines().filter(|l| {
                [
                    "[WRN]", "[ERR]", "leader", "RAFT", "Restored", "atchup", "runcat", "eset",
                ]
                .iter()
                .any(|k| l.contains(k))
                    && !l.contains("Error trying to connect to route")
            }) {
                out += line;
                out.push('\n');
            }
        }
        out
    }

    /// The node leading the stream, from NATS monitoring.
    async fn stream_leader(&self) -> String {
        for n in 1..=3 {
            let url = format!("http://127.0.0.1:{}/jsz?accounts=true&streams=true", self.base + 40 + n);
            let Ok(response) = self.http.get(url).send().await else {
                continue;
            };
            let Ok(jsz) = response.json::<Value>().await else {
                continue;
            };
            for account in jsz["account_details"].as_array().into_iter().flatten() {
                for stream in account["stream_detail"].as_array().into_iter().flatten() {
                    if stream["name"] == "NODAI" {
                        if let Some(leader) = stream["cluster"]["leader"].as_str() {
                            return leader.to_owned();
                        }
                    }
                }
            }
        }
        panic!("no node leads the stream\n{}", self.logs());
    }

    /// After a fault: every acknowledged query is on the stream once, every
    /// replica in `apis` reports the stream's usage, and every worker in
    /// `workers` has archived each recorded query exactly once.
    async fn agree(&self, acked: &HashSet<String>, apis: &[&str], workers: &[&str]) {
        let mut recorded = self.recorded().await;
        // Seen once after a leader kill: an acknowledged query missing from
        // one replay. Read again, to tell a replay that missed an event
        // (our bug, loudly reported) from an event the stream lost.
        for attempt in 1..=2 {
            let have: HashSet<&str> = recorded.iter().map(|(_, r, _)| r.as_str()).collect();
            let missing = acked.iter().filter(|r| !have.contains(r.as_str())).count();
            if missing == 0 {
                break;
            }
            let again = self.recorded().await;
            eprintln!(
                "REPLAY CHECK: {missing} acknowledged queries missing from a replay of {} events; re-read {attempt} has {}",
                recorded.len(),
                again.len()
            );
            recorded = again;
        }
        let request_ids: HashSet<&str> = recorded.iter().map(|(_, r, _)| r.as_str()).collect();
        assert_eq!(request_ids.len(), recorded.len(), "a query recorded twice");
        let lost: Vec<_> = acked.iter().filter(|r| !request_ids.contains(r.as_str())).collect();
        if !lost.is_empty() {
            panic!(
                "acknowledged but not on the stream: {lost:?}\n{}",
                self.evidence(&lost).await
            );
        }
        let mut per_key = BTreeMap::<&str, u64>::new();
        for (_, _, key) in &recorded {
            *per_key.entry(key).or_default() += 1;
        }
        for api in apis {
            for (key, count) in &per_key {
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    let usage = self.usage(api, key).await;
                    if usage == Some(*count) {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{api} reports {usage:?} queries of {key}; the stream has {count}\n{}",
                        self.logs()
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let ids = |recorded: &[(String, String, String)]| {
            let mut ids: Vec<String> = recorded.iter().map(|(id, _, _)| id.clone()).collect();
            ids.sort();
            ids
        };
        let mut expected = ids(&recorded);
        for worker in workers {
            let archive = self.data_dir(worker).join("archive");
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut reread = false;
            loop {
                let archived = common::archived_once(&archive);
                if archived == expected {
                    break;
                }
                // As above: a replay right after a fault may miss an event;
                // read once more before calling the archive wrong.
                if !reread && Instant::now() + Duration::from_secs(20) > deadline {
                    reread = true;
                    let again = ids(&self.recorded().await);
                    if again != expected {
                        eprintln!(
                            "REPLAY CHECK: a second read of the stream has {} counting queries, the first {}",
                            again.len(),
                            expected.len()
                        );
                        expected = again;
                    }
                }
                if Instant::now() >= deadline {
                    let extra: Vec<_> = archived
                        .iter()
                        .filter(|id| expected.binary_search(id).is_err())
                        .collect();
                    let missing: Vec<_> = expected
                        .iter()
                        .filter(|id| archived.binary_search(id).is_err())
                        .collect();
                    let on_stream: Vec<String> = self
                        .records()
                        .await
                        .iter()
                        .filter_map(|r| {
                            let envelope = r.envelope().ok()?;
                            let id = envelope.id.to_string();
                            let Ok(Event::QueryRecorded(q)) = envelope.event() else {
                                return None;
                            };
                            (extra.contains(&&id) || missing.contains(&&id)).then(|| {
                                format!(
                                    "{id} at seq {} stored {} record_by {:?}",
                                    r.seq, r.stored_micros, q.record_by
                                )
                            })
                        })
                        .collect();
                    eprintln!("on the stream: {on_stream:#?}");
                    panic!(
                        "{worker} archived {} rows; the stream has {} counting queries; archived, not counting: {extra:?}; \
                         counting, not archived: {missing:?}",
                        archived.len(),
                        expected.len()
                    );
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

impl Drop for Cluster {
    /// Whatever still runs is killed (the state goes with the temp dir).
    fn drop(&mut self) {
        if std::thread::panicking() || FAILED.load(Ordering::Relaxed) {
            eprintln!("{}", self.logs());
        }
        for entry in std::fs::read_dir(self.dir.path()).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "pid") {
                if let Ok(pid) = std::fs::read_to_string(&path) {
                    let _ = std::process::Command::new("kill").args(["-9", pid.trim()]).status();
                }
            }
        }
    }
}

/// A base port whose cluster ports are all free right now.
fn free_base() -> u16 {
    let offsets = [1, 2, 3, 11, 12, 13, 21, 22, 23, 31, 32, 33, 41, 42, 43];
    loop {
        // Below Linux's ephemeral range (32768 up): a port found free there
        // can be taken by any outgoing connection before its server binds it.
        let base = 20_000 + (uuid::Uuid::now_v7().as_u128() as u16 % 120) * 100;
        if offsets
            .iter()
            .all(|o| std::net::TcpListener::bind(("127.0.0.1", base + o)).is_ok())
        {
            return base;
        }
    }
}

/// Clients querying until stopped, round-robin over `targets` (replica,
/// key); what each answer was.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    outcomes: Arc<Mutex<Outcomes>>,
}

#[derive(Default, Debug)]
struct Outcomes {
    /// Request ids of 200s.
    acked: HashSet<String>,
    /// Count per (status, code) of everything else; status 0: no answer.
    other: BTreeMap<(u16, String), u64>,
    /// When each 200 came, to find the longest outage.
    ok_at: Vec<Instant>,
}

impl Load {
    fn start(cluster: &Arc<Cluster>, targets: Vec<(&'static str, String)>, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Outcomes::default()));
        let tasks = (0..clients)
            .map(|c| {
                let (cluster, stop, outcomes, targets) =
                    (cluster.clone(), stop.clone(), outcomes.clone(), targets.clone());
                tokio::spawn(async move {
                    let mut i = c;
                    while !stop.load(Ordering::Relaxed) {
                        let (replica, key) = &targets[i % targets.len()];
                        i += 1;
                        let answer = cluster.query(replica, key).await;
                        let refused = answer.is_none();
                        {
                            let mut o = outcomes.lock().unwrap();
                            match answer {
                                Some((200, request_id)) => {
                                    o.acked.insert(request_id);
                                    o.ok_at.push(Instant::now());
                                }
                                Some(other) => *o.other.entry(other).or_default() += 1,
                                None => *o.other.entry((0, String::new())).or_default() += 1,
                            }
                        }
                        // A refused connection answers at once; don't spin.
                        if refused {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                })
            })
            .collect();
        Load { stop, tasks, outcomes }
    }

    async fn stop(self) -> Outcomes {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        Arc::try_unwrap(self.outcomes).unwrap().into_inner().unwrap()
    }

    fn answered(&self) -> usize {
        self.outcomes.lock().unwrap().acked.len()
    }
}

impl Outcomes {
    /// The longest time without a 200 between `from` and the last 200.
    fn longest_gap_after(&self, from: Instant) -> Duration {
        let mut at: Vec<Instant> = self.ok_at.iter().copied().filter(|t| *t >= from).collect();
        at.sort();
        let mut gap = at.first().map_or(Duration::ZERO, |first| *first - from);
        for pair in at.windows(2) {
            gap = gap.max(pair[1] - pair[0]);
        }
        gap
    }

    /// Only 200s and `allowed` (status, code) answers.
    fn only(&self, allowed: &[(u16, &str)]) {
        for ((status, code), n) in &self.other {
            assert!(
                allowed.iter().any(|(s, c)| s == status && c == code),
                "{n} answers {status} {code:?}; allowed besides 200: {allowed:?}"
            );
        }
    }
}

/// `n` queries at once over `keys` (round robin), alternating replicas;
/// how many got each status.
async fn hammer(cluster: &Arc<Cluster>, keys: &[String], n: usize) -> BTreeMap<u16, u64> {
    let queries: Vec<_> = (0..n)
        .map(|i| {
            let (cluster, key) = (cluster.clone(), keys[i % keys.len()].clone());
            tokio::spawn(async move {
                let replica = if i % 2 == 0 { "api-1" } else { "api-2" };
                let answer = cluster.query(replica, &key).await;
                answer.unwrap_or_else(|| panic!("no answer\n{}", cluster.logs()))
            })
        })
        .collect();
    let mut statuses = BTreeMap::<u16, u64>::new();
    for query in queries {
        *statuses.entry(query.await.unwrap().0).or_default() += 1;
    }
    statuses
}

/// Waits until `check` holds, for up to `limit`.
async fn until(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

async fn load_for(load: &Load, at_least: usize) {
    until("the load gets answers", Duration::from_secs(60), async || {
        load.answered() >= at_least
    })
    .await;
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Writes on one replica are read back at once there and show up on the
/// other within milliseconds; a key hammered through both replicas at once
/// is admitted exactly up to its limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_see_each_others_writes_and_limits_are_exact_across_them() {
    let _turn = common::TURN.lock().await;
    let Some(cluster) = Cluster::up(&[]).await else { return };
    let cluster = Arc::new(cluster);
    cluster.echo_workflow(0.01).await;

    let mut seen_after = Vec::new();
    for i in 0..40 {
        let (writer, reader) = if i % 2 == 0 {
            ("api-1", "api-2")
        } else {
            ("api-2", "api-1")
        };
        let (key_id, _) = cluster.post_key(writer, json!({"name": format!("k{i}")})).await;
        let written = Instant::now();
        let path = format!("/api/v1/api-keys/{key_id}");
        let (status, _) = cluster.admin(writer, Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "the replica that took the write reads it");
        until("the other replica sees the key", Duration::from_secs(10), async || {
            cluster.admin(reader, Method::GET, &path, None).await.0 == StatusCode::OK
        })
        .await;
        seen_after.push(written.elapsed());
    }
    seen_after.sort();
    eprintln!(
        "propagation to the other replica (debug build, includes one GET): p50 {:?}, p99 {:?}",
        percentile(&seen_after, 0.5),
        percentile(&seen_after, 0.99)
    );

    // 120 concurrent queries, half through each replica, on a key that
    // allows 40 an hour, and on one that allows $0.40 a month at $0.01 each.
    for limits in [json!({"rate_limit_per_hour": 40}), json!({"cost_limit_per_month": 0.4})] {
        let mut body = json!({"name": "hammered"});
        body.as_object_mut()
            .unwrap()
            .extend(limits.as_object().unwrap().clone());
        let (key_id, key) = cluster.create_key("api-1", body).await;
        let statuses = hammer(&cluster, &[key], 120).await;
        eprintln!("{limits}: {statuses:?}");
        assert_eq!(
            statuses.get(&200),
            Some(&40),
            "{limits}: over- or under-admitted: {statuses:?}"
        );
        let rejected = if limits.get("rate_limit_per_hour").is_some() {
            429
        } else {
            402
        };
        assert_eq!(statuses.get(&rejected), Some(&80), "{statuses:?}");
        for replica in ["api-1", "api-2"] {
            until("both replicas count 40", Duration::from_secs(10), async || {
                cluster.usage(replica, &key_id).await == Some(40)
            })
            .await;
        }
    }

    // A customer's shared limit across replicas: 200 queries at once over
    // 4 of its keys, alternating replicas, on a limit of 50 a day. Its
    // keys' admissions share one subject, so exactly 50 are admitted.
    let (status, body) = cluster
        .admin(
            "api-1",
            Method::POST,
            "/api/v1/customers",
            Some(json!({"id": "shared.co", "name": "Shared", "limits": [{"metric": "requests", "window": "day", "max": 50}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut keys = Vec::new();
    for i in 0..4 {
        let (_, key) = cluster
            .create_key(
                "api-1",
                json!({"name": format!("shared {i}"), "customer_id": "shared.co"}),
            )
            .await;
        keys.push(key);
    }
    let statuses = hammer(&cluster, &keys, 200).await;
    eprintln!("customer limit across replicas: {statuses:?}");
    assert_eq!(statuses.get(&200), Some(&50), "{statuses:?}");
    assert_eq!(statuses.get(&429), Some(&150), "{statuses:?}");
    for replica in ["api-1", "api-2"] {
        until(
            "both replicas count the customer's 50",
            Duration::from_secs(10),
            async || {
                let (status, usage) = cluster
                    .admin(replica, Method::GET, "/api/v1/customers/shared.co/usage", None)
                    .await;
                status == StatusCode::OK && usage["total_requests"] == 50
            },
        )
        .await;
    }

    // Prepaid credits across replicas: $0.20 at $0.01 a query admits
    // exactly 20 of 60, and both replicas show the same balance.
    let (status, body) = cluster
        .admin(
            "api-1",
            Method::POST,
            "/api/v1/customers",
            Some(json!({"id": "prepaid.co", "name": "Prepaid", "billing": "prepaid"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = cluster
        .admin(
            "api-1",
            Method::POST,
            "/api/v1/customers/prepaid.co/credits",
            Some(json!({"amount": 0.2})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, key) = cluster
        .create_key("api-1", json!({"name": "prepaid", "customer_id": "prepaid.co"}))
        .await;
    let statuses = hammer(&cluster, &[key], 60).await;
    assert_eq!(statuses.get(&200), Some(&20), "{statuses:?}");
    assert_eq!(statuses.get(&402), Some(&40), "{statuses:?}");
    for replica in ["api-1", "api-2"] {
        until(
            "both replicas show a zero balance",
            Duration::from_secs(10),
            async || {
                let (_, credits) = cluster
                    .admin(replica, Method::GET, "/api/v1/customers/prepaid.co/credits", None)
                    .await;
                credits["balance"] == 0.0
            },
        )
        .await;
    }

    // Holds across replicas: the upstream reports $0.05 a query, the
    // workflow's maximum is $0.02. In flight, each counts at the maximum on
    // both replicas (it travels in query.admitted), and each is charged the
    // maximum: $0.40 admits exactly 20.
    let upstream = {
        let router = axum::Router::new().route(
            "/reports",
            axum::routing::post(|| async { axum::Json(json!({"output": "ok", "usage": {"cost": 0.05}})) }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/reports", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        url
    };
    let change = json!({"upstream_url": upstream, "max_cost_per_request": 0.02});
    let (status, body) = cluster
        .admin("api-1", Method::PUT, "/api/v1/workflows/echo", Some(change))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    until(
        "the other replica has the maximum",
        Duration::from_secs(10),
        async || {
            let (_, workflow) = cluster
                .admin("api-2", Method::GET, "/api/v1/workflows/echo", None)
                .await;
            workflow["max_cost_per_request"] == json!(0.02)
        },
    )
    .await;
    let (key_id, key) = cluster
        .create_key("api-1", json!({"name": "held", "cost_limit_per_month": 0.4}))
        .await;
    let queries: Vec<_> = (0..120)
        .map(|i| {
            let (cluster, key) = (cluster.clone(), key.clone());
            tokio::spawn(async move {
                let replica = if i % 2 == 0 { "api-1" } else { "api-2" };
                cluster.query(replica, &key).await.map(|(status, _)| status)
            })
        })
        .collect();
    let mut statuses = BTreeMap::<u16, u64>::new();
    for query in queries {
        *statuses.entry(query.await.unwrap().expect("an answer")).or_default() += 1;
    }
    assert_eq!(statuses.get(&200), Some(&20), "held at the maximum: {statuses:?}");
    assert_eq!(statuses.get(&402), Some(&100), "{statuses:?}");
    for replica in ["api-1", "api-2"] {
        until("both replicas count $0.40", Duration::from_secs(10), async || {
            let (_, usage) = cluster
                .admin(replica, Method::GET, &format!("/api/v1/api-keys/{key_id}/usage"), None)
                .await;
            usage["cost_this_month"] == json!(0.4)
        })
        .await;
    }

    // A customer made through one replica is known at once to the next,
    // and so is a key: a replica that has not seen a name yet catches up
    // with the stream before it answers that the name is unknown. Fifty at
    // once, so that the other replica is busy and behind.
    let hops: Vec<_> = (0..50)
        .map(|i| {
            let cluster = cluster.clone();
            tokio::spawn(async move {
                let id = format!("hop-{i}");
                let (status, body) = cluster
                    .admin(
                        "api-1",
                        Method::POST,
                        "/api/v1/customers",
                        Some(json!({"id": id, "name": "hop"})),
                    )
                    .await;
                assert_eq!(status, StatusCode::CREATED, "{body}");
                let (key_id, _) = cluster
                    .post_key("api-2", json!({"name": "hop", "customer_id": id}))
                    .await;
                let (status, body) = cluster
                    .admin("api-1", Method::DELETE, &format!("/api/v1/api-keys/{key_id}"), None)
                    .await;
                assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
            })
        })
        .collect();
    for hop in hops {
        hop.await.unwrap();
    }

    // Verifications (work nodai does not proxy) through both replicas at
    // once: a customer's limit of 30 requests a day admits exactly 30 of 90.
    let (status, body) = cluster
        .admin(
            "api-1",
            Method::POST,
            "/api/v1/customers",
            Some(
                json!({"id": "verified", "name": "V", "limits": [{"metric": "requests", "window": "day", "max": 30}]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, key) = cluster
        .create_key("api-2", json!({"name": "verified", "customer_id": "verified"}))
        .await;
    let verifications: Vec<_> = (0..90)
        .map(|i| {
            let (cluster, key) = (cluster.clone(), key.clone());
            tokio::spawn(async move {
                let replica = if i % 2 == 0 { "api-1" } else { "api-2" };
                let (status, answer) = cluster
                    .admin(replica, Method::POST, "/api/v1/verify", Some(json!({"key": key})))
                    .await;
                assert_eq!(status, StatusCode::OK, "{answer}");
                answer["code"].as_str().unwrap_or_default().to_owned()
            })
        })
        .collect();
    let mut codes = BTreeMap::<String, u64>::new();
    for verification in verifications {
        *codes.entry(verification.await.unwrap()).or_default() += 1;
    }
    assert_eq!(
        codes,
        BTreeMap::from([("rate_limited".to_owned(), 60), ("valid".to_owned(), 30)]),
        "exact across replicas"
    );
}

/// Killing the node that leads the stream, under load: queries keep
/// succeeding or briefly get 503 `metering_unavailable`, never an
/// unmetered 200; the node rejoins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_a_nats_node_loses_no_acknowledged_query() {
    let _turn = common::TURN.lock().await;
    let Some(cluster) = Cluster::up(&[]).await else { return };
    let cluster = Arc::new(cluster);
    cluster.echo_workflow(0.001).await;
    let (free, free_key) = cluster.create_key("api-1", json!({"name": "free"})).await;
    let (limited, limited_key) = cluster
        .create_key("api-1", json!({"name": "limited", "rate_limit_per_hour": 1_000_000}))
        .await;
    let targets = vec![
        ("api-1", free_key.clone()),
        ("api-2", limited_key.clone()),
        ("api-2", free_key),
        ("api-1", limited_key),
    ];
    let load = Load::start(&cluster, targets, 8);
    load_for(&load, 100).await;

    let leader = cluster.stream_leader().await;
    let killed = Instant::now();
    cluster.kill(&leader).await;
    let before = load.answered();
    until(
        "queries succeed again without the leader",
        Duration::from_secs(60),
        async || load.answered() > before + 50,
    )
    .await;
    cluster.start(&leader).await;
    let before = load.answered();
    load_for(&load, before + 100).await;
    let outcomes = load.stop().await;
    eprintln!(
        "killed {leader}: {} acknowledged, others {:?}, longest time without a 200: {:?}",
        outcomes.acked.len(),
        outcomes.other,
        outcomes.longest_gap_after(killed)
    );
    outcomes.only(&[(503, "metering_unavailable")]);
    cluster.agree(&outcomes.acked, &["api-1", "api-2"], &["worker-1"]).await;
    assert!(cluster.usage("api-1", &free).await.unwrap() > 0);
    assert!(cluster.usage("api-2", &limited).await.unwrap() > 0);
}

/// An API replica killed under load comes back, catches up and agrees with
/// the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_api_replica_catches_up_and_agrees() {
    let _turn = common::TURN.lock().await;
    let Some(cluster) = Cluster::up(&[]).await else { return };
    let cluster = Arc::new(cluster);
    cluster.echo_workflow(0.001).await;
    let (_, key) = cluster
        .create_key("api-1", json!({"name": "k", "cost_limit_per_month": 1000}))
        .await;
    let load = Load::start(&cluster, vec![("api-1", key.clone()), ("api-2", key)], 6);
    load_for(&load, 100).await;
    cluster.kill("api-2").await;
    let before = load.answered();
    load_for(&load, before + 100).await;
    cluster.start("api-2").await;
    let before = load.answered();
    load_for(&load, before + 100).await;
    let outcomes = load.stop().await;
    eprintln!("acknowledged {}, others {:?}", outcomes.acked.len(), outcomes.other);
    // The killed replica's connections broke (status 0), and it said 503
    // while catching up; nothing else failed.
    outcomes.only(&[(0, ""), (503, "not_ready")]);
    cluster.agree(&outcomes.acked, &["api-1", "api-2"], &["worker-1"]).await;
}

async fn worker_active(cluster: &Cluster, worker: &str) -> bool {
    let Ok(response) = cluster
        .http
        .get(format!("{}/metrics", cluster.url(worker)))
        .send()
        .await
    else {
        return false;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines().any(|l| l == "nodai_worker_active 1")
}

/// The active worker is killed while alerts are being retried and rows
/// flushed; the standby takes over: each alert is delivered (under one
/// `webhook-id`, once successfully), and both workers' archives hold each
/// query exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_worker_takes_over_from_a_killed_one() {
    let _turn = common::TURN.lock().await;
    let Some(cluster) = Cluster::up(&[("NODAI_WEBHOOK_RETRY_SCHEDULE", "1s,1s,1s,1s,1s,1s")]).await else {
        return;
    };
    let cluster = Arc::new(cluster);
    until("the first worker is active", Duration::from_secs(30), async || {
        worker_active(&cluster, "worker-1").await
    })
    .await;
    cluster.start("worker-2").await;
    assert!(!worker_active(&cluster, "worker-2").await, "the second stands by");
    // The API does not run on a worker.
    let (status, _) = cluster.admin("worker-2", Method::GET, "/api/v1/api-keys", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let receiver = common::FlakyReceiver::default();
    let url = receiver.clone().start().await;
    let (status, body) = cluster
        .admin(
            "api-1",
            Method::POST,
            "/api/v1/webhooks",
            Some(json!({"url": url, "events": ["usage.threshold"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    cluster.echo_workflow(0.01).await;
    let (_, key) = cluster
        .create_key(
            "api-1",
            json!({"name": "k", "cost_limit_per_month": 1.0, "alert_thresholds": [25, 50]}),
        )
        .await;
    // $0.60 of queries: both thresholds cross, their first attempts fail.
    let load = Load::start(&cluster, vec![("api-1", key.clone()), ("api-2", key.clone())], 4);
    load_for(&load, 60).await;
    let alerting = load.stop().await;
    until("both alerts were attempted", Duration::from_secs(30), async || {
        receiver.attempts_of("usage.threshold").len() == 2
    })
    .await;
    // Queries go on through the kill, so the worker dies with rows pending
    // and flushing every second.
    let (_, free) = cluster.create_key("api-2", json!({"name": "free"})).await;
    let load = Load::start(&cluster, vec![("api-1", free.clone()), ("api-2", free)], 2);
    load_for(&load, 20).await;

    let killed = Instant::now();
    cluster.kill("worker-1").await;
    let took_over = until("the standby takes over", Duration::from_secs(30), async || {
        worker_active(&cluster, "worker-2").await
    })
    .await;
    eprintln!("worker-2 active {took_over:?} after worker-1 was killed");
    until("each alert is delivered", Duration::from_secs(60), async || {
        receiver.attempts_of("usage.threshold").values().all(|n| *n >= 3)
    })
    .await;
    let attempts = receiver.attempts_of("usage.threshold");
    assert_eq!(attempts.len(), 2, "one webhook-id per alert: {attempts:?}");
    eprintln!(
        "attempts per alert across the failover: {attempts:?}, {:?} after the kill",
        killed.elapsed()
    );

    // Queries answered while worker-1 was down are archived by worker-2;
    // worker-1 comes back as the standby and archives them too, once.
    let answered = load.answered();
    load_for(&load, answered + 20).await;
    let mut outcomes = load.stop().await;
    outcomes.acked.extend(alerting.acked);
    cluster.start("worker-1").await;
    assert!(
        !worker_active(&cluster, "worker-1").await,
        "the restarted worker stands by"
    );
    cluster
        .agree(&outcomes.acked, &["api-1", "api-2"], &["worker-1", "worker-2"])
        .await;
    let (_, webhooks) = cluster.admin("api-1", Method::GET, "/api/v1/webhooks", None).await;
    let webhook_id = webhooks["data"][0]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/webhooks/{webhook_id}/deliveries");
    until(
        "the deliveries log shows both succeeded",
        Duration::from_secs(10),
        async || {
            let (_, deliveries) = cluster.admin("api-2", Method::GET, &path, None).await;
            let rows = deliveries["data"].as_array().cloned().unwrap_or_default();
            rows.len() == 2 && rows.iter().all(|d| d["status"] == "succeeded")
        },
    )
    .await;
    assert_eq!(
        receiver.attempts_of("usage.threshold").len(),
        2,
        "no alert delivered under a second id"
    );
}

/// All of NATS stops for 10 s under load: queries get 503, nothing
/// crashes, and everything recovers when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_of_nats_down_for_ten_seconds_then_back() {
    let _turn = common::TURN.lock().await;
    let Some(cluster) = Cluster::up(&[]).await else { return };
    let cluster = Arc::new(cluster);
    cluster.echo_workflow(0.001).await;
    let (_, free_key) = cluster.create_key("api-1", json!({"name": "free"})).await;
    let (_, limited_key) = cluster
        .create_key("api-1", json!({"name": "limited", "rate_limit_per_hour": 1_000_000}))
        .await;
    let load = Load::start(&cluster, vec![("api-1", free_key), ("api-2", limited_key)], 4);
    load_for(&load, 50).await;
    // Stopped, not killed: a NATS node acknowledges once a quorum holds an
    // event in memory, so killing every node at once (a power cut) may lose
    // the last acknowledged events (ARCHITECTURE.md, "Durability").
    for node in ["nats-1", "nats-2", "nats-3"] {
        cluster.stop(node).await;
    }
    let down = Instant::now();
    tokio::time::sleep_until(down + Duration::from_secs(10)).await;
    for name in ["api-1", "api-2", "worker-1"] {
        let (status, _) = cluster.admin(name, Method::GET, "/healthz", None).await;
        assert_eq!(status, StatusCode::OK, "{name} lives through the outage");
    }
    for node in ["nats-1", "nats-2", "nats-3"] {
        cluster.start(node).await;
    }
    let before = load.answered();
    let recovered = until("queries succeed again", Duration::from_secs(90), async || {
        load.answered() > before + 20
    })
    .await;
    let outcomes = load.stop().await;
    eprintln!(
        "NATS down 10 s: {} acknowledged, others {:?}; 20 more answers {recovered:?} after it was back",
        outcomes.acked.len(),
        outcomes.other
    );
    assert!(
        outcomes.other.contains_key(&(503, "metering_unavailable".to_owned())),
        "nothing noticed the outage: {:?}",
        outcomes.other
    );
    outcomes.only(&[(503, "metering_unavailable")]);
    cluster.agree(&outcomes.acked, &["api-1", "api-2"], &["worker-1"]).await;
}
