//! The ledger: folds the event stream into the state nodai answers from.
//!
//! Its job: key state (indexed by key hash, for validation), usage
//! projections (rolling hour, hourly, daily, monthly, all-time), snapshots
//! of both with the stream sequence they reflect, and the exactly-once
//! Parquet archive of every admitted query.
//!
//! Projections here are pure folds, `apply(&mut self, event)`, with no I/O
//! and no clock of their own; only this crate knows Parquet.
//!
//! Status: the crate is laid out but holds no code yet; the projections
//! arrive with the keys and ledger issues (3 and 4). Until then the server's
//! follower (`api::follower`) only decodes events and tracks its position.
