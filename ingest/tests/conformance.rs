//! One suite, both backends: every test here runs against the embedded log
//! and against a private nats-server.

use futures::StreamExt;
use ingest::embedded::{self, EmbeddedLog};
use ingest::events::{Event, QueryRecorded};
use ingest::nats::{self, NatsStream};
use ingest::testkit::{unique_stream_name, NatsServer};
use ingest::{EventStream, Micros, Outgoing, Record, StreamError, Subject};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

enum Backend {
    Embedded(tempfile::TempDir),
    Nats(NatsServer, String),
}

struct Harness {
    backend: Backend,
    stream: Option<Arc<dyn EventStream>>,
}

impl Harness {
    async fn embedded() -> Harness {
        let mut h = Harness {
            backend: Backend::Embedded(tempfile::tempdir().unwrap()),
            stream: None,
        };
        h.reopen().await;
        h
    }

    async fn nats() -> Option<Harness> {
        let server = NatsServer::start().await?;
        let mut h = Harness {
            backend: Backend::Nats(server, unique_stream_name()),
            stream: None,
        };
        h.reopen().await;
        Some(h)
    }

    fn stream(&self) -> &dyn EventStream {
        self.stream.as_deref().expect("stream is open")
    }

    /// Closes the stream and opens it again from what the backend stored.
    async fn reopen(&mut self) {
        self.stream = None;
        self.stream = Some(match &self.backend {
            Backend::Embedded(dir) => Arc::new(open_again(dir.path()).await),
            Backend::Nats(server, name) => Arc::new(
                NatsStream::connect(nats::Options::new(server.url(), name))
                    .await
                    .unwrap(),
            ),
        });
    }
}

/// Opens the log in `dir` again, right after this process closed it. The
/// OS lock is on an open file description, which a child process being
/// spawned by a test running beside this one (a `nats-server`) shares until
/// its exec closes it; so a `Locked` here can be that brief window rather
/// than a lock this process still holds. Retried for up to 5 s.
async fn open_again(dir: &std::path::Path) -> EmbeddedLog {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        // Small segments, so that retention has sealed ones to delete.
        let options = embedded::Options {
            segment_bytes: 16 << 10,
            ..embedded::Options::new(dir)
        };
        match EmbeddedLog::open(options).await {
            Err(StreamError::Locked { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            opened => return opened.unwrap(),
        }
    }
}

/// A `query.recorded` on `usage.<key>`.
fn event(key: &str, n: u64) -> Outgoing {
    let e = Event::QueryRecorded(QueryRecorded {
        request_id: format!("req_{n}"),
        key_id: key.to_owned(),
        workflow_id: "wf".into(),
        status_code: 200,
        cost: Micros::new(n as i64),
        duration_ms: n,
        reported_cost: None,
        record_by: None,
        customer_id: None,
        input_tokens: 0,
        output_tokens: 0,
        authorization_id: None,
    });
    Outgoing::new(&e, chrono::Utc::now()).unwrap()
}

async fn collect(stream: ingest::RecordStream) -> Vec<Record> {
    tokio::time::timeout(Duration::from_secs(30), stream.map(|r| r.unwrap()).collect())
        .await
        .expect("replay did not end")
}

async fn take(stream: &mut ingest::RecordStream, n: usize) -> Vec<Record> {
    let mut out = Vec::new();
    while out.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} records arrived", out.len()));
        out.push(next.expect("stream ended").unwrap());
    }
    out
}

async fn order_and_replay(h: &mut Harness) {
    let s = h.stream();
    assert_eq!(s.last_seq().await.unwrap(), 0);
    assert!(collect(s.replay(1).await.unwrap()).await.is_empty());
    let mut sent = Vec::new();
    for n in 0..100u64 {
        let e = event(&format!("k{}", n % 7), n);
        let appended = s.append(&e).await.unwrap();
        assert_eq!(appended.seq, n + 1);
        assert!(!appended.duplicate);
        sent.push(e);
    }
    assert_eq!(s.last_seq().await.unwrap(), 100);
    let all = collect(s.replay(1).await.unwrap()).await;
    assert_eq!(all.len(), 100);
    for (i, (record, e)) in all.iter().zip(&sent).enumerate() {
        assert_eq!(record.seq, i as u64 + 1);
        assert_eq!(record.id, e.id);
        assert_eq!(record.subject, e.subject);
        assert_eq!(record.payload, e.payload);
        let envelope = record.envelope().unwrap();
        assert_eq!(envelope.id, e.id);
        assert!(matches!(envelope.event().unwrap(), Event::QueryRecorded(q) if q.duration_ms == i as u64));
    }
    let tail = collect(s.replay(51).await.unwrap()).await;
    assert_eq!(
        tail.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (51..=100).collect::<Vec<_>>()
    );
    assert!(collect(s.replay(101).await.unwrap()).await.is_empty());
}

async fn dedup_by_id(h: &mut Harness) {
    let s = h.stream();
    let e = event("k", 1);
    let first = s.append(&e).await.unwrap();
    s.append(&event("k", 2)).await.unwrap();
    let again = s.append(&e).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.seq, first.seq);
    // A duplicate is answered as such even with a now-stale expectation.
    let conditional = s.append_expecting(&e, 0).await.unwrap();
    assert!(conditional.duplicate);
    assert_eq!(s.last_seq().await.unwrap(), 2);
    assert_eq!(collect(s.replay(1).await.unwrap()).await.len(), 2);
}

async fn conditional_append_conflict(h: &mut Harness) {
    let s = h.stream();
    let subject = Subject::new("usage", "k1").unwrap();
    assert_eq!(s.last_subject_seq(&subject).await.unwrap(), 0);
    let first = s.append_expecting(&event("k1", 1), 0).await.unwrap();
    match s.append_expecting(&event("k1", 2), 0).await {
        Err(StreamError::Conflict { expected: 0, .. }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Another subject has its own sequence.
    let other = s.append_expecting(&event("k2", 3), 0).await.unwrap();
    assert!(other.seq > first.seq);
    match s.append_expecting(&event("k1", 4), other.seq).await {
        Err(StreamError::Conflict { .. }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    let second = s.append_expecting(&event("k1", 5), first.seq).await.unwrap();
    assert_eq!(s.last_subject_seq(&subject).await.unwrap(), second.seq);
    assert_eq!(s.last_seq().await.unwrap(), 3, "refused appends stored nothing");
}

async fn follow_sees_later_appends(h: &mut Harness) {
    let s = h.stream();
    s.append(&event("k", 0)).await.unwrap();
    let mut tail = s.follow(1).await.unwrap();
    let mut from_two = s.follow(2).await.unwrap();
    let first = take(&mut tail, 1).await;
    assert_eq!(first[0].seq, 1);
    let mut ids = Vec::new();
    for n in 1..=50 {
        let e = event("k", n);
        ids.push(e.id);
        s.append(&e).await.unwrap();
    }
    let got = take(&mut tail, 50).await;
    assert_eq!(got.iter().map(|r| r.id).collect::<Vec<_>>(), ids);
    assert_eq!(
        got.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (2..=51).collect::<Vec<_>>()
    );
    let got = take(&mut from_two, 50).await;
    assert_eq!(got[0].seq, 2);
    // Nothing more until something is appended.
    assert!(tokio::time::timeout(Duration::from_millis(200), tail.next())
        .await
        .is_err());
    s.append(&event("k", 99)).await.unwrap();
    assert_eq!(take(&mut tail, 1).await[0].seq, 52);
}

async fn persists_across_reopen(h: &mut Harness) {
    let mut sent = Vec::new();
    for n in 0..20 {
        let e = event(&format!("k{}", n % 3), n);
        h.stream().append(&e).await.unwrap();
        sent.push(e);
    }
    h.reopen().await;
    let s = h.stream();
    assert_eq!(s.last_seq().await.unwrap(), 20);
    let all = collect(s.replay(1).await.unwrap()).await;
    assert_eq!(
        all.iter().map(|r| r.id).collect::<Vec<_>>(),
        sent.iter().map(|e| e.id).collect::<Vec<_>>()
    );
    // Subject sequences and recent ids survive the reopen too.
    let k0 = Subject::new("usage", "k0").unwrap();
    assert_eq!(s.last_subject_seq(&k0).await.unwrap(), 19);
    assert!(s.append(&sent[5]).await.unwrap().duplicate);
    assert!(matches!(
        s.append_expecting(&event("k0", 21), 18).await,
        Err(StreamError::Conflict { .. })
    ));
    assert_eq!(s.append_expecting(&event("k0", 22), 19).await.unwrap().seq, 21);
}

async fn concurrent_appenders_no_gap_no_dup(h: &mut Harness) {
    const TASKS: usize = 16;
    const EACH: usize = 250;
    let stream = h.stream.clone().unwrap();
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let stream = stream.clone();
        handles.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for n in 0..EACH {
                let e = event(&format!("k{t}"), n as u64);
                let appended = stream.append(&e).await.unwrap();
                assert!(!appended.duplicate);
                out.push((appended.seq, e.id));
            }
            out
        }));
    }
    let mut appended = Vec::new();
    for handle in handles {
        appended.extend(handle.await.unwrap());
    }
    let total = (TASKS * EACH) as u64;
    let seqs: HashSet<u64> = appended.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=total).collect::<HashSet<_>>());
    appended.sort();
    let replayed = collect(stream.replay(1).await.unwrap()).await;
    assert_eq!(
        replayed.iter().map(|r| (r.seq, r.id)).collect::<Vec<_>>(),
        appended,
        "replay matches what each append was told"
    );
}

/// A batch append answers each event, in the batch's order: a new one with
/// where it was stored (not necessarily in the batch's order: NATS takes
/// them concurrently), a repeat (of an earlier append or within the batch)
/// with the first copy's sequence.
async fn append_all_answers_each_in_order(h: &mut Harness) {
    let s = h.stream();
    let before = event("b", 0);
    let first = s.append(&before).await.unwrap().seq;
    let mut batch: Vec<Outgoing> = (1..=600).map(|n| event("b", n)).collect();
    batch.insert(300, before.clone());
    batch.push(batch[10].clone());
    let sent: Vec<_> = batch.iter().map(|e| e.id).collect();
    let results = s.append_all(batch).await;
    assert_eq!(results.len(), sent.len());
    let results: Vec<_> = results.into_iter().map(Result::unwrap).collect();
    assert!(
        results[300].duplicate && results[300].seq == first,
        "{:?}",
        results[300]
    );
    assert!(results[601].duplicate && results[601].seq == results[10].seq);
    let stored: Vec<_> = results
        .iter()
        .zip(&sent)
        .filter(|(a, _)| !a.duplicate)
        .map(|(a, id)| (a.seq, *id))
        .collect();
    let mut stored = stored;
    stored.sort();
    assert_eq!(
        stored.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        (first + 1..=first + 600).collect::<Vec<_>>(),
        "each new event stored once, no gap"
    );
    let replayed = collect(s.replay(first + 1).await.unwrap()).await;
    assert_eq!(replayed.iter().map(|r| (r.seq, r.id)).collect::<Vec<_>>(), stored);
}

/// Retention deletes the stream's head: what was there is gone and says
/// so, the rest reads as before, a subject whose last event was deleted
/// counts as having none since (for conditional appends), and all of it
/// holds after a reopen.
async fn trim_deletes_the_head(h: &mut Harness) {
    let s = h.stream();
    assert_eq!(s.first_seq().await.unwrap(), 1, "nothing deleted yet, even empty");
    let lone = s.append(&event("lone", 0)).await.unwrap().seq;
    for n in 1..=400 {
        s.append(&event("busy", n)).await.unwrap();
    }
    assert_eq!(s.trim_before(1).await.unwrap(), 1, "nothing before 1");
    let first = s.trim_before(300).await.unwrap();
    assert!(first > 1 && first <= 300, "deleted up to {first}");
    assert_eq!(s.first_seq().await.unwrap(), first);
    assert!(s.record_at(lone).await.unwrap().is_none());
    assert_eq!(s.record_at(first).await.unwrap().unwrap().seq, first);
    let mut before = s.replay(1).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(30), before.next())
        .await
        .unwrap()
    {
        Some(Err(StreamError::Trimmed { seq: 1, first: f })) if f == first => {}
        other => panic!("expected Trimmed from sequence 1, got {other:?}"),
    }
    let rest = collect(s.replay(first).await.unwrap()).await;
    assert_eq!(
        rest.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (first..=401).collect::<Vec<_>>()
    );
    // `lone`'s subject: its only event is gone, so expecting it (as a
    // replica that folded it does) means "nothing on it since".
    let subject = Subject::new("usage", "lone").unwrap();
    assert_eq!(s.last_subject_seq(&subject).await.unwrap(), 0);
    let again = s.append_expecting(&event("lone", 1), lone).await.unwrap();
    match s.append_expecting(&event("lone", 2), lone).await {
        Err(StreamError::Conflict { .. }) => {}
        other => panic!("a stale expectation must conflict, got {other:?}"),
    }
    h.reopen().await;
    let s = h.stream();
    assert_eq!(s.first_seq().await.unwrap(), first);
    assert_eq!(s.last_subject_seq(&subject).await.unwrap(), again.seq);
    match s.append_expecting(&event("lone", 3), lone).await {
        Err(StreamError::Conflict { .. }) => {}
        other => panic!("a stale expectation must conflict after a reopen, got {other:?}"),
    }
    s.append_expecting(&event("lone", 4), again.seq).await.unwrap();
    let followed = take(&mut s.follow(first).await.unwrap(), 3).await;
    assert_eq!(followed[0].seq, first);
}

/// The published snapshot: none at first, then the last one published.
async fn publish_and_fetch_a_snapshot(h: &mut Harness) {
    let s = h.stream();
    assert_eq!(s.published_snapshot_seq().await.unwrap(), None);
    assert_eq!(s.fetch_snapshot().await.unwrap(), None);
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    s.publish_snapshot(7, big.clone()).await.unwrap();
    s.publish_snapshot(9, b"newer".to_vec()).await.unwrap();
    match &h.backend {
        Backend::Nats(..) => {
            assert_eq!(s.published_snapshot_seq().await.unwrap(), Some(9));
            assert_eq!(s.fetch_snapshot().await.unwrap().as_deref(), Some(&b"newer"[..]));
            s.publish_snapshot(11, big.clone()).await.unwrap();
            h.reopen().await;
            assert_eq!(h.stream().fetch_snapshot().await.unwrap(), Some(big));
        }
        // One process, whose data dir holds its snapshots: nothing to publish.
        Backend::Embedded(_) => assert_eq!(s.published_snapshot_seq().await.unwrap(), None),
    }
}

macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod embedded_log {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let mut h = super::Harness::embedded().await;
                    super::$test(&mut h).await;
                }
            )*
        }
        mod nats_jetstream {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(mut h) = super::Harness::nats().await else { return };
                    super::$test(&mut h).await;
                }
            )*
        }
    };
}

conformance!(
    order_and_replay,
    dedup_by_id,
    conditional_append_conflict,
    follow_sees_later_appends,
    persists_across_reopen,
    concurrent_appenders_no_gap_no_dup,
    append_all_answers_each_in_order,
    trim_deletes_the_head,
    publish_and_fetch_a_snapshot,
);
