//! The NATS JetStream backend: the stream lives on a NATS server or cluster,
//! shared by many nodai processes.
//!
//! Events go to `<stream lowercased>.<subject>`; the event id is the
//! `Nats-Msg-Id`, so JetStream de-duplicates within its duplicate window.
//! Appends are retried with the same id until acknowledged or until
//! `append_timeout` passes, so a reconnect neither loses nor doubles an
//! event. Followers use ordered consumers and re-create them from the next
//! wanted sequence after any error, so they see every event once, in order.

use async_nats::jetstream::{
    self, consumer,
    context::{PublishError, PublishErrorKind},
    kv, object_store, stream,
};
use async_nats::HeaderMap;
use async_trait::async_trait;
use futures::StreamExt;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::envelope::{EventId, Outgoing, Subject};
use crate::error::StreamError;
use crate::stream::{Appended, EventStream, Record, RecordStream, LEASE_TTL};

#[derive(Debug, Clone)]
pub struct Options {
    /// `nats://host:port`, or several separated by commas.
    pub url: String,
    /// The JetStream stream name (`NODAI` by default).
    pub stream: String,
    /// Replicas when the stream is created (1 on a single server, 3 on a cluster).
    pub replicas: usize,
    pub duplicate_window: Duration,
    /// How long an append keeps retrying before it reports `Unavailable`.
    pub append_timeout: Duration,
    pub auth: Auth,
}

/// How nodai proves who it is to NATS, and whom it trusts.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// User and password (NATS `authorization` / `accounts` users).
    pub user: Option<(String, Password)>,
    /// A `.creds` file (JWT and NKey seed: decentralised auth).
    pub creds_file: Option<std::path::PathBuf>,
    /// PEM root certificates to trust; set, TLS is required.
    pub ca_file: Option<std::path::PathBuf>,
}

/// A password that never shows in logs or `Debug` output.
#[derive(Clone)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(redacted)")
    }
}

impl Options {
    pub fn new(url: impl Into<String>, stream: impl Into<String>) -> Options {
        Options {
            url: url.into(),
            stream: stream.into(),
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            append_timeout: Duration::from_secs(10),
            auth: Auth::default(),
        }
    }
}

pub struct NatsStream {
    context: jetstream::Context,
    stream: stream::Stream,
    name: String,
    /// `<stream lowercased>.`, put in front of every subject.
    prefix: String,
    append_timeout: Duration,
    replicas: usize,
    /// The KV bucket of leases, made on first use.
    leases: tokio::sync::OnceCell<kv::Store>,
    /// The Object Store bucket of the published snapshot, made on first use.
    snapshots: tokio::sync::OnceCell<object_store::ObjectStore>,
}

/// The published snapshot's object name in `<stream>_SNAPSHOTS`.
const SNAPSHOT_OBJECT: &str = "projection";
/// Its metadata entry holding the sequence it was taken at.
const SNAPSHOT_SEQ: &str = "seq";

/// A follower that has received nothing for this long checks that the
/// stream has nothing new for it.
const STALL_CHECK: Duration = Duration::from_secs(2);

/// Each publish attempt waits this long for its ack before it is retried.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);

impl NatsStream {
    /// Connects and creates the stream if it is missing. An unreachable server
    /// is an error within seconds, not a hang.
    pub async fn connect(options: Options) -> Result<NatsStream, StreamError> {
        let unavailable =
            |what: &str, e: &dyn std::fmt::Display| StreamError::Unavailable(format!("{what} ({}): {e}", options.url));
        if options.stream.is_empty()
            || options
                .stream
                .chars()
                .any(|c| c == '.' || c == '*' || c == '>' || c.is_whitespace())
        {
            return Err(StreamError::Invalid(format!(
                "stream name {:?} must be non-empty without '.', '*', '>' or white space",
                options.stream
            )));
        }
        let mut connect = async_nats::ConnectOptions::new()
            .name("nodai")
            .connection_timeout(Duration::from_secs(5));
        if let Some((user, Password(password))) = &options.auth.user {
            connect = connect.user_and_password(user.clone(), password.clone());
        }
        if let Some(path) = &options.auth.creds_file {
            connect = connect.credentials_file(path).await.map_err(|e| {
                StreamError::Invalid(format!("cannot read the NATS credentials {}: {e}", path.display()))
            })?;
        }
        if let Some(path) = &options.auth.ca_file {
            connect = connect.add_root_certificates(path.clone()).require_tls(true);
        }
        let client = connect
            // Several servers are one comma-separated flag.
            .connect(options.url.split(',').map(str::trim).collect::<Vec<_>>());
        // Refused connections fail at once; a silent host gets a few seconds.
        let client = match tokio::time::timeout(Duration::from_secs(5), client).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(unavailable("cannot connect to NATS", &e)),
            Err(_) => return Err(unavailable("cannot connect to NATS", &"no answer within 5s")),
        };
        if tokio::time::timeout(Duration::from_secs(5), client.flush())
            .await
            .is_err()
        {
            return Err(unavailable("cannot connect to NATS", &"no answer within 5s"));
        }
        let context = jetstream::ContextBuilder::new().timeout(ACK_TIMEOUT).build(client);
        let prefix = format!("{}.", options.stream.to_lowercase());
        let config = stream::Config {
            name: options.stream.clone(),
            subjects: vec![format!("{prefix}>")],
            storage: stream::StorageType::File,
            num_replicas: options.replicas,
            duplicate_window: options.duplicate_window,
            ..Default::default()
        };
        let stream = context
            .get_or_create_stream(config)
            .await
            .map_err(|e| unavailable("cannot open the JetStream stream", &e))?;
        tracing::info!(url = %options.url, stream = %options.stream, "NATS JetStream stream open");
        Ok(NatsStream {
            context,
            stream,
            name: options.stream,
            prefix,
            append_timeout: options.append_timeout,
            replicas: options.replicas,
            leases: tokio::sync::OnceCell::new(),
            snapshots: tokio::sync::OnceCell::new(),
        })
    }

    /// `<stream>_SNAPSHOTS`: the snapshot every replica can load, so that
    /// one joining after retention deleted the stream's head can start.
    async fn snapshots(&self) -> Result<&object_store::ObjectStore, StreamError> {
        self.snapshots
            .get_or_try_init(|| async {
                let bucket = format!("{}_SNAPSHOTS", self.name);
                let unavailable = |e: &dyn std::fmt::Display| {
                    StreamError::Unavailable(format!("cannot open the snapshot bucket {bucket}: {e}"))
                };
                // The bucket's stream as `create_object_store` makes it,
                // made here for the same reason as the lease bucket's.
                self.context
                    .get_or_create_stream(stream::Config {
                        name: format!("OBJ_{bucket}"),
                        description: Some(format!("published snapshots of the nodai stream {}", self.name)),
                        subjects: vec![format!("$O.{bucket}.C.>"), format!("$O.{bucket}.M.>")],
                        storage: stream::StorageType::File,
                        num_replicas: self.replicas,
                        discard: stream::DiscardPolicy::New,
                        allow_rollup: true,
                        allow_direct: true,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| unavailable(&e))?;
                self.context
                    .get_object_store(&bucket)
                    .await
                    .map_err(|e| unavailable(&e))
            })
            .await
    }

    async fn info(&self) -> Result<stream::Info, StreamError> {
        self.stream
            .get_info()
            .await
            .map_err(|e| StreamError::Unavailable(format!("cannot read stream info: {e}")))
    }

    /// `<stream>_LEASES`: one entry per lease, holding its holder. Entries
    /// expire [`LEASE_TTL`] after they were written (the bucket's max age),
    /// which is what frees the lease of a holder that died.
    async fn leases(&self) -> Result<&kv::Store, StreamError> {
        self.leases
            .get_or_try_init(|| async {
                let bucket = format!("{}_LEASES", self.name);
                let unavailable = |e: &dyn std::fmt::Display| {
                    StreamError::Unavailable(format!("cannot open the lease bucket {bucket}: {e}"))
                };
                // The bucket's stream as `create_key_value` makes it, made
                // here because that call also reads account details that
                // nats-server 2.9 does not send in the shape it expects.
                self.context
                    .get_or_create_stream(stream::Config {
                        name: format!("KV_{bucket}"),
                        description: Some(format!("leases of the nodai stream {}", self.name)),
                        subjects: vec![format!("$KV.{bucket}.>")],
                        max_messages_per_subject: 1,
                        max_age: LEASE_TTL,
                        storage: stream::StorageType::File,
                        num_replicas: self.replicas,
                        allow_rollup: true,
                        deny_delete: true,
                        allow_direct: true,
                        discard: stream::DiscardPolicy::New,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| unavailable(&e))?;
                self.context.get_key_value(&bucket).await.map_err(|e| unavailable(&e))
            })
            .await
    }

    async fn publish(&self, event: &Outgoing, expected: Option<u64>) -> Result<Appended, StreamError> {
        let subject = format!("{}{}", self.prefix, event.subject);
        // An expected event that retention deleted: the server knows no
        // event on the subject since, which is what 0 expects.
        let expected = match expected {
            Some(seq) if seq > 0 && seq < self.first_seq().await? => Some(0),
            other => other,
        };
        let deadline = Instant::now() + self.append_timeout;
        let mut backoff = Duration::from_millis(20);
        loop {
            let mut publish = jetstream::message::PublishMessage::build()
                .payload(event.payload.clone())
                .message_id(event.id.to_string());
            if let Some(expected) = expected {
                publish = publish.expected_last_subject_sequence(expected);
            }
            // Bounded here, not only by the client's own timeouts: waiting
            // for an ack permit or the connection's queue has none.
            let attempt = async { self.context.send_publish(subject.clone(), publish).await?.await };
            let attempt = tokio::time::timeout_at(deadline, attempt)
                .await
                .unwrap_or_else(|_| Err(PublishError::new(PublishErrorKind::TimedOut)));
            let error = match attempt {
                Ok(ack) => {
                    return Ok(Appended {
                        seq: ack.sequence,
                        duplicate: ack.duplicate,
                    })
                }
                Err(e) => e,
            };
            match error.kind() {
                PublishErrorKind::WrongLastSequence => {
                    return Err(StreamError::Conflict {
                        subject: event.subject.to_string(),
                        expected: expected.unwrap_or(0),
                    })
                }
                PublishErrorKind::MaxPayloadExceeded => {
                    return Err(StreamError::TooLarge {
                        size: event.payload.len(),
                        max: 0,
                    })
                }
                _ if Instant::now() + backoff >= deadline => {
                    return Err(StreamError::Unavailable(format!(
                        "NATS did not acknowledge the event within {:?}: {error}",
                        self.append_timeout
                    )))
                }
                // Timeouts, a broken connection, no responders while the
                // server restarts: retry with the same id, which JetStream
                // de-duplicates if an earlier attempt did land.
                _ => {
                    tracing::debug!(%error, event_id = %event.id, "retrying append");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
            }
        }
    }

    fn read_from(&self, from: u64, until: Option<u64>) -> RecordStream {
        let (tx, rx) = mpsc::channel::<Result<Record, StreamError>>(1024);
        let context = self.context.clone();
        let name = self.name.clone();
        let prefix = self.prefix.clone();
        tokio::spawn(async move {
            let mut next = from.max(1);
            let mut backoff = Duration::from_millis(50);
            loop {
                if until.is_some_and(|u| next > u) {
                    return;
                }
                match first_sequence(&context, &name).await {
                    Ok(first) if next < first => {
                        let _ = tx.send(Err(StreamError::Trimmed { seq: next, first })).await;
                        return;
                    }
                    _ => {}
                }
                let messages = match ordered_messages(&context, &name, &prefix, next).await {
                    Ok(messages) => messages,
                    Err(error) => {
                        tracing::warn!(%error, next, "cannot start a JetStream consumer; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        if tx.is_closed() {
                            return;
                        }
                        continue;
                    }
                };
                futures::pin_mut!(messages);
                loop {
                    let message = tokio::select! {
                        // The reader went away: stop, and let the consumer go.
                        _ = tx.closed() => return,
                        message = messages.next() => message,
                        // Quiet for a while: fine if the stream has nothing
                        // new. A consumer that lost its server (a cluster
                        // node killed) can wait forever without an error
                        // while the stream moves on; then re-create it.
                        _ = tokio::time::sleep(STALL_CHECK) => {
                            match context.get_stream(&name).await {
                                Ok(stream) if stream.cached_info().state.last_sequence >= next => {
                                    tracing::warn!(next, "JetStream consumer stalled behind the stream; re-creating it");
                                    break;
                                }
                                _ => continue,
                            }
                        }
                    };
                    let message = match message {
                        Some(Ok(message)) => message,
                        Some(Err(error)) => {
                            tracing::warn!(%error, next, "JetStream consumer error; re-creating it");
                            break;
                        }
                        None => break,
                    };
                    backoff = Duration::from_millis(50);
                    let Ok((seq, pending)) = message.info().map(|info| (info.stream_sequence, info.pending)) else {
                        tracing::warn!(subject = %message.subject, "skipped a JetStream message without metadata");
                        continue;
                    };
                    // A re-created consumer may repeat what was already sent.
                    if seq < next {
                        continue;
                    }
                    // A gap: one message deleted by hand, or retention
                    // purged what this reader had not read yet.
                    if seq > next {
                        match first_sequence(&context, &name).await {
                            Ok(first) if next < first => {
                                let _ = tx.send(Err(StreamError::Trimmed { seq: next, first })).await;
                                return;
                            }
                            // Passed only if the stream's leader says the
                            // message is not there: a consumer made against a
                            // node still catching up after an outage was
                            // seen to skip one a replica then never folded.
                            Ok(_) => match missing(&context, &name, next).await {
                                Ok(true) => {}
                                Ok(false) => {
                                    tracing::warn!(
                                        next,
                                        seq,
                                        "a consumer skipped a message the stream holds; re-creating it"
                                    );
                                    break;
                                }
                                Err(error) => {
                                    tracing::warn!(%error, next, "cannot check a gap in the stream; re-creating the consumer");
                                    break;
                                }
                            },
                            // Cannot tell a deleted message from a purge:
                            // never pass a gap unchecked; start over at `next`.
                            Err(error) => {
                                tracing::warn!(%error, next, "cannot check a gap in the stream; re-creating the consumer");
                                break;
                            }
                        }
                    }
                    if until.is_some_and(|u| seq > u) {
                        return;
                    }
                    next = seq + 1;
                    match to_record(&message, &prefix) {
                        Ok(record) => {
                            if tx.send(Ok(record)).await.is_err() {
                                return;
                            }
                        }
                        // Anyone may publish on the stream's subjects; what is
                        // not one of our events must not stop every reader.
                        Err(error) => tracing::warn!(seq, %error, "skipped a message that is not a nodai event"),
                    }
                    // Nothing more on the stream for now: a replay is done, even
                    // if the sequences it expected up to were deleted.
                    if until.is_some_and(|u| next > u) || (until.is_some() && pending == 0) {
                        return;
                    }
                }
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx).boxed()
    }
}

/// The stream's first sequence (see [`EventStream::first_seq`]).
/// Whether the stream's leader holds no message at `seq` (deleted).
async fn missing(context: &jetstream::Context, name: &str, seq: u64) -> Result<bool, StreamError> {
    use async_nats::jetstream::stream::RawMessageErrorKind;
    let stream = context
        .get_stream_no_info(name)
        .await
        .map_err(|e| StreamError::Unavailable(format!("cannot reach the stream: {e}")))?;
    match stream.get_raw_message(seq).await {
        Ok(_) => Ok(false),
        Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => Ok(true),
        Err(e) => Err(StreamError::Unavailable(format!("cannot read sequence {seq}: {e}"))),
    }
}

async fn first_sequence(context: &jetstream::Context, name: &str) -> Result<u64, StreamError> {
    let stream = context
        .get_stream(name)
        .await
        .map_err(|e| StreamError::Unavailable(format!("cannot read stream info: {e}")))?;
    Ok(first_of(&stream.cached_info().state))
}

/// A stream never purged reports 0 while empty; one purged reports the
/// sequence after its last.
fn first_of(state: &stream::State) -> u64 {
    if state.messages == 0 {
        state.last_sequence + 1
    } else {
        state.first_sequence.max(1)
    }
}

async fn ordered_messages(
    context: &jetstream::Context,
    name: &str,
    prefix: &str,
    from: u64,
) -> Result<consumer::pull::Ordered, async_nats::Error> {
    let stream = context.get_stream_no_info(name).await?;
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: format!("{prefix}>"),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: from },
            ..Default::default()
        })
        .await?;
    Ok(consumer.messages().await?)
}

fn to_record(message: &jetstream::Message, prefix: &str) -> Result<Record, StreamError> {
    let info = message
        .info()
        .map_err(|e| StreamError::Invalid(format!("JetStream message without metadata: {e}")))?;
    let seq = info.stream_sequence;
    let subject = message
        .subject
        .strip_prefix(prefix)
        .ok_or_else(|| StreamError::Invalid(format!("message {seq} on foreign subject {}", message.subject)))?;
    let id = message_id(message.headers.as_ref())
        .ok_or_else(|| StreamError::Invalid(format!("message {seq} has no valid Nats-Msg-Id")))?;
    Ok(Record {
        seq,
        id,
        stored_micros: (info.published.unix_timestamp_nanos() / 1000) as i64,
        subject: Subject::parse(subject)?,
        payload: message.payload.clone(),
    })
}

fn message_id(headers: Option<&HeaderMap>) -> Option<EventId> {
    headers?.get("Nats-Msg-Id")?.as_str().parse().ok()
}

#[async_trait]
impl EventStream for NatsStream {
    async fn append(&self, event: &Outgoing) -> Result<Appended, StreamError> {
        self.publish(event, None).await
    }

    async fn append_expecting(&self, event: &Outgoing, expected: u64) -> Result<Appended, StreamError> {
        self.publish(event, Some(expected)).await
    }

    async fn last_seq(&self) -> Result<u64, StreamError> {
        Ok(self.info().await?.state.last_sequence)
    }

    async fn first_seq(&self) -> Result<u64, StreamError> {
        Ok(first_of(&self.info().await?.state))
    }

    async fn trim_before(&self, seq: u64) -> Result<u64, StreamError> {
        if seq > self.first_seq().await? {
            let purged = self
                .stream
                .purge()
                .sequence(seq)
                .await
                .map_err(|e| StreamError::Unavailable(format!("cannot purge the stream before {seq}: {e}")))?;
            tracing::info!(
                purged = purged.purged,
                before = seq,
                "purged old events from the stream (retention)"
            );
        }
        self.first_seq().await
    }

    async fn publish_snapshot(&self, seq: u64, bytes: Vec<u8>) -> Result<(), StreamError> {
        let store = self.snapshots().await?;
        let meta = object_store::ObjectMetadata {
            name: SNAPSHOT_OBJECT.to_owned(),
            description: Some(format!("projection snapshot at sequence {seq}")),
            metadata: [(SNAPSHOT_SEQ.to_owned(), seq.to_string())].into(),
            ..Default::default()
        };
        store
            .put(meta, &mut bytes.as_slice())
            .await
            .map_err(|e| StreamError::Unavailable(format!("cannot publish the snapshot at {seq}: {e}")))?;
        Ok(())
    }

    async fn published_snapshot_seq(&self) -> Result<Option<u64>, StreamError> {
        use async_nats::jetstream::object_store::InfoErrorKind;
        let store = self.snapshots().await?;
        match store.info(SNAPSHOT_OBJECT).await {
            Ok(info) if !info.deleted => Ok(info.metadata.get(SNAPSHOT_SEQ).and_then(|s| s.parse().ok())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == InfoErrorKind::NotFound => Ok(None),
            Err(e) => Err(StreamError::Unavailable(format!(
                "cannot read the published snapshot: {e}"
            ))),
        }
    }

    async fn fetch_snapshot(&self) -> Result<Option<Vec<u8>>, StreamError> {
        use async_nats::jetstream::object_store::GetErrorKind;
        use tokio::io::AsyncReadExt;
        let store = self.snapshots().await?;
        let mut object = match store.get(SNAPSHOT_OBJECT).await {
            Ok(object) => object,
            Err(e) if e.kind() == GetErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(StreamError::Unavailable(format!(
                    "cannot fetch the published snapshot: {e}"
                )))
            }
        };
        let mut bytes = Vec::new();
        object
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| StreamError::Unavailable(format!("cannot read the published snapshot: {e}")))?;
        Ok(Some(bytes))
    }

    async fn last_subject_seq(&self, subject: &Subject) -> Result<u64, StreamError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        let full = format!("{}{}", self.prefix, subject);
        match self.stream.get_last_raw_message_by_subject(&full).await {
            Ok(message) => Ok(message.sequence),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(0),
            Err(e) => Err(StreamError::Unavailable(format!(
                "cannot read the last event on {subject}: {e}"
            ))),
        }
    }

    async fn hold_lease(&self, name: &str, holder: &str) -> Result<bool, StreamError> {
        let leases = self.leases().await?;
        let unavailable = |e: &dyn std::fmt::Display| StreamError::Unavailable(format!("lease {name}: {e}"));
        let entry = leases.entry(name).await.map_err(|e| unavailable(&e))?;
        match entry {
            Some(entry) if entry.operation == kv::Operation::Put => {
                if entry.value != holder.as_bytes() {
                    return Ok(false);
                }
                match leases.update(name, holder.to_owned().into(), entry.revision).await {
                    Ok(_) => Ok(true),
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
                    Err(e) => Err(unavailable(&e)),
                }
            }
            // Never taken, released, or lapsed.
            _ => match leases.create(name, holder.to_owned().into()).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(unavailable(&e)),
            },
        }
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StreamError> {
        let leases = self.leases().await?;
        let unavailable = |e: &dyn std::fmt::Display| StreamError::Unavailable(format!("lease {name}: {e}"));
        if let Some(entry) = leases.entry(name).await.map_err(|e| unavailable(&e))? {
            if entry.operation == kv::Operation::Put && entry.value == holder.as_bytes() {
                leases
                    .delete_expect_revision(name, Some(entry.revision))
                    .await
                    .map_err(|e| unavailable(&e))?;
            }
        }
        Ok(())
    }

    async fn replay(&self, from: u64) -> Result<RecordStream, StreamError> {
        let until = self.last_seq().await?;
        Ok(self.read_from(from, Some(until)))
    }

    async fn follow(&self, from: u64) -> Result<RecordStream, StreamError> {
        Ok(self.read_from(from, None))
    }
}
