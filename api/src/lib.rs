//! The nodai server: the `nodai` binary, its configuration, and the HTTP API.
//!
//! - [`config`]: the command line and environment, parsed once into [`Config`].
//! - [`server`]: [`server::run`] takes a bound listener and a shutdown token
//!   and runs everything until the token is cancelled.
//! - [`datadir`]: the data directory and the lock that keeps a second process out.
//! - [`follower`]: tails the stream and tracks how far this process has applied it.
//! - [`metrics`]: Prometheus metrics, and a stream wrapper that counts appends.
//! - [`routes`]: one module per group of endpoints, each exporting `router()`.
//! - [`error`]: [`ApiError`], the one place errors become HTTP problem+json.
//!
//! Only this crate knows axum and HTTP status codes.

pub mod config;
pub mod datadir;
pub mod error;
pub mod follower;
pub mod metrics;
pub mod routes;
pub mod server;

pub use config::Config;
pub use error::ApiError;
