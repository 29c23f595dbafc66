//! The nodai server: the `nodai` binary, its configuration, and the HTTP API.
//!
//! - [`config`]: the command line and environment, parsed once into [`Config`].
//! - [`server`]: [`server::run`] takes a bound listener and a shutdown token
//!   and runs everything until the token is cancelled.
//! - [`check`]: `nodai check`, a data dir verified offline.
//! - [`datadir`]: the data directory and the lock that keeps a second process out.
//! - [`follower`]: tails the stream into the projection, tracks how far it got, writes snapshots.
//! - [`archiver`]: the worker's Parquet archive writer.
//! - [`retention`]: the worker deletes old stream events once a snapshot and the archive cover them.
//! - [`listen`]: accepting HTTP connections under timeouts and a cap.
//! - [`metrics`]: Prometheus metrics, and a stream wrapper that counts appends.
//! - [`state`]: [`state::AppState`], what every handler may use, and how a handler writes.
//! - [`routes`]: one module per group of endpoints, each exporting `router()`.
//! - [`auth`]: the admin token and the middleware that requires it.
//! - [`limiter`]: exact rate and cost limits under concurrency (reservations).
//! - [`upstream`]: calling a workflow's upstream.
//! - [`extract`], [`validate`], [`usd`]: turning request input into valid values, or 4xx.
//! - [`error`]: [`ApiError`], the one place errors become HTTP problem+json.
//!
//! Only this crate knows axum and HTTP status codes.

pub mod admission;
pub mod archiver;
pub mod auth;
pub mod check;
pub mod config;
pub mod datadir;
pub mod error;
pub mod extract;
pub mod follower;
pub mod lease;
pub mod limiter;
pub mod listen;
pub mod metrics;
pub mod offsite;
pub mod patch;
pub mod retention;
pub mod routes;
pub mod server;
pub mod state;
pub mod upstream;
pub mod usd;
pub mod validate;

pub use config::Config;
pub use error::ApiError;
