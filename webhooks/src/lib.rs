//! Webhooks: Standard Webhooks v1 signatures, the SSRF guard on endpoint
//! URLs, the retry schedule, and the worker that delivers.
//!
//! Subscriptions, alert rules and delivery state are folded from the stream
//! in `ledger` (`ledger::webhooks`, `ledger::alerts`); this crate is what
//! touches the network. The worker reads the projection for what is due,
//! sends it, and records every attempt as a `delivery.attempted` event, so a
//! restart (or another worker) picks up exactly where it stopped.

mod error;
pub mod guard;
pub mod schedule;
pub mod signature;
pub mod worker;

pub use error::Error;
pub use guard::Guard;
pub use schedule::Schedule;
pub use worker::Worker;
