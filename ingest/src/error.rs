use std::path::PathBuf;

/// Everything a stream backend can fail with. Variants exist because callers
/// react differently: a conflict is retried with fresh state, `Unavailable`
/// becomes a 503, `Locked` stops the process with a clear message.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// A conditional append found another last sequence on the subject.
    #[error("subject {subject} has moved past the expected sequence {expected}")]
    Conflict { subject: String, expected: u64 },
    /// The backend cannot take or serve events right now (NATS down, disk failure).
    #[error("event stream unavailable: {0}")]
    Unavailable(String),
    /// Another process holds the embedded log.
    #[error("{} is locked by another nodai process (only one may use a data dir at a time)", path.display())]
    Locked { path: PathBuf },
    /// The embedded log is damaged somewhere other than its tail.
    #[error("corrupt event log: {0}")]
    Corrupt(String),
    /// The event is larger than the backend accepts.
    #[error("event of {size} bytes exceeds the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    /// The caller asked for something malformed (a bad subject, an undecodable event).
    #[error("invalid event: {0}")]
    Invalid(String),
    /// The event at `seq` was deleted by retention: the stream now starts
    /// at `first`. A reader this far behind needs a snapshot to go on.
    #[error("sequence {seq} was deleted by retention; the stream now starts at {first}")]
    Trimmed { seq: u64, first: u64 },
    #[error("i/o error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StreamError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StreamError {
        let path = path.into();
        move |source| StreamError::Io { path, source }
    }
}

/// A record on the stream that is not a readable envelope.
#[derive(Debug, thiserror::Error)]
#[error("cannot decode event: {0}")]
pub struct DecodeError(#[from] pub serde_json::Error);
