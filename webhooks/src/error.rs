/// What can go wrong with a webhook endpoint or its configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidUrl(String),
    /// The URL's host is, or resolves to, an address webhooks may not reach.
    #[error("{0}")]
    Forbidden(String),
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid retry schedule {0:?}: expected durations like 5s,5m,30m,2h")]
    Schedule(String),
}
