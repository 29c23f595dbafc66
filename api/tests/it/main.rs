//! The integration tests, one binary: real servers on free ports, real
//! `nats-server` processes, real files. One module per subject; what they
//! share is in `common` (the `App` harness and `on_both_backends!`).
//!
//! One binary links the crate once instead of once per file. Tests that
//! start several processes (cluster, crash) take turns among themselves.

mod common;

mod anywhere;
mod cluster;
mod connections;
mod crash;
mod customers;
mod damage;
mod deploy;
mod gateway;
mod month;
mod retention;
mod serve;
mod webhooks;
