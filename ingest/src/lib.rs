//! The spine of nodai: the event envelope, the event types, and the append-only
//! stream they live on.
//!
//! - [`envelope`]: the JSON envelope every event travels in, its id and subject.
//! - [`events`]: the typed, versioned event payloads the rest of nodai folds.
//! - [`money`]: exact integer micro-dollars.
//! - [`stream`]: the [`EventStream`] trait both backends implement.
//! - [`embedded`]: the default backend, a segmented, checksummed log in the data dir.
//! - [`nats`]: the NATS JetStream backend.
//!
//! This crate knows NATS and the log's file format; nothing else in nodai does.
//! It depends on no other crate of ours, and it holds no business rules: it
//! stores and replays events, it does not interpret them.

pub mod embedded;
pub mod envelope;
mod error;
pub mod events;
pub mod money;
pub mod nats;
pub mod stream;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use envelope::{Envelope, EventId, Outgoing, Subject};
pub use error::{DecodeError, StreamError};
pub use events::Event;
pub use money::Micros;
pub use stream::{Appended, EventStream, Record, RecordStream, LEASE_TTL};

use std::sync::Arc;

/// Which backend to open, as `nodai serve` chooses it from its flags.
#[derive(Debug, Clone)]
pub enum Backend {
    /// The embedded log under `dir` (the default backend).
    Embedded(embedded::Options),
    /// A JetStream stream on a NATS server or cluster.
    Nats(nats::Options),
}

/// Opens the chosen backend.
pub async fn open(backend: Backend) -> Result<Arc<dyn EventStream>, StreamError> {
    Ok(match backend {
        Backend::Embedded(options) => Arc::new(embedded::EmbeddedLog::open(options).await?),
        Backend::Nats(options) => Arc::new(nats::NatsStream::connect(options).await?),
    })
}
