//! The Postgres event store, Gatehouse's system of record.
//!
//! - [`db`]: connection pools, creating the database if it is missing, migrations.
//! - [`append`]: appending events to one or many streams atomically, with expected versions,
//!   gapless global positions and the per-organisation hash chain.
//! - [`group`]: group commit: concurrent appends of a process in one transaction, one hold of
//!   the append lock and one WAL flush ([`GroupAppender`]); groups planned on the heads the
//!   process believes go in one round trip, two at a time (`append::pipelined`).
//! - [`read`]: reading streams, an organisation's history and everything after a position.
//! - [`audit`]: an organisation's history in keyset batches for exports, and its hash chain
//!   recomputed from the stored envelopes.
//! - [`json_text`]: a JSON document bound as it was encoded.
//! - [`retry`]: the pause between attempts to reach a service that failed.
//!
//! Appends are serialised on one row lock (`store_head`), so positions are handed out in commit
//! order: a reader that tails `position > last` never skips an event that commits late.

pub mod append;
pub mod audit;
pub mod db;
pub mod group;
pub mod json_text;
pub mod kept;
pub mod read;
pub mod retry;

pub use append::{AppendError, AppendRequest, Appended, Expected, Statement};
pub use db::{Db, DbConfig, Listener};
pub use group::GroupAppender;
pub use json_text::JsonText;
pub use read::{Recorded, StreamKind};

/// The Postgres channel on which every append notifies its last position.
pub const EVENTS_CHANNEL: &str = "gatehouse_events";
