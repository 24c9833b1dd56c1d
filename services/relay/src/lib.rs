//! The relay: event store -> NATS JetStream. Every event the store commits is published, in
//! position order, with its id as `Nats-Msg-Id` so JetStream drops the duplicates a retry makes.
//!
//! - [`stream`]: creating or updating the JetStream stream ([`ensure_stream`]).
//! - [`leader`]: one active relay among processes (a Postgres session advisory lock) and the
//!   cursor, written only through the connection that holds that lock.
//! - [`publish`]: publishing a batch of envelopes with a bounded window of unacknowledged
//!   publishes, each chained to the one before it so JetStream never stores them out of order.
//! - [`run`](mod@run): the loop ([`run()`]): read after the cursor, publish, advance the
//!   cursor, wait for the next append.
//! - [`republish`](mod@republish): publishing a range of the store again ([`republish()`]),
//!   e.g. after a stream was purged.
//! - [`telemetry`]: the relay's metrics.
//!
//! Appends never touch NATS: while it is down, commands are still accepted and the relay catches
//! up when it is back.

pub mod leader;
pub mod publish;
pub mod republish;
pub mod run;
pub mod stream;
pub mod telemetry;

use std::time::Duration;

pub use leader::LEADER_LOCK_KEY;
pub use publish::{CHAIN_HEADER, POSITION_HEADER, Published};
pub use republish::{Republished, Step, republish, republish_with_progress};
pub use run::run;
pub use stream::ensure_stream;

/// How the relay publishes: where, and how much at once.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// JetStream stream name (`GATEHOUSE_NATS_STREAM`).
    pub stream: String,
    /// First token of every subject (`GATEHOUSE_NATS_PREFIX`).
    pub prefix: String,
    /// Events read from the store per batch; the cursor advances once per batch.
    pub batch_size: i64,
    /// Publishes awaiting their acknowledgement at once. Keep it at or below the JetStream
    /// context's `max_ack_inflight` (5 000 by default), which bounds them too.
    pub max_in_flight: usize,
    /// Replicas of the stream (1 on a single server, 3 on a cluster; JetStream allows 1 to 5).
    pub replicas: usize,
    /// How long JetStream remembers message ids to drop duplicates. A relay that crashes
    /// between publishing and saving its cursor must be back within it, or its next publish
    /// stores copies (consumers deduplicate by position anyway).
    pub duplicate_window: Duration,
    /// How long the stream keeps a message; zero keeps every message forever. The event store
    /// stays the system of record either way: `gatehouse relay republish` restores any range.
    pub max_age: Duration,
}

impl RelayConfig {
    pub fn new(stream: impl Into<String>, prefix: impl Into<String>) -> Self {
        RelayConfig {
            stream: stream.into(),
            prefix: prefix.into(),
            batch_size: 1024,
            max_in_flight: 1024,
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            max_age: Duration::ZERO,
        }
    }

    /// Refuses settings JetStream or the relay cannot work with, saying which and why.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.batch_size > 0,
            "the relay's batch size must be at least 1"
        );
        anyhow::ensure!(
            self.max_in_flight > 0,
            "the relay's in-flight limit must be at least 1"
        );
        anyhow::ensure!(
            !self.prefix.is_empty(),
            "the NATS subject prefix must not be empty"
        );
        anyhow::ensure!(
            (1..=5).contains(&self.replicas),
            "the stream's replicas (GATEHOUSE_NATS_REPLICAS) must be between 1 and 5, not {}",
            self.replicas
        );
        anyhow::ensure!(
            !self.duplicate_window.is_zero(),
            "the duplicate window (GATEHOUSE_NATS_DUPLICATE_WINDOW) must not be zero: \
             without it JetStream stores every retried publish again"
        );
        anyhow::ensure!(
            self.max_age.is_zero() || self.duplicate_window <= self.max_age,
            "the duplicate window ({} s, GATEHOUSE_NATS_DUPLICATE_WINDOW) cannot be longer than \
             the stream's max age ({} s, GATEHOUSE_NATS_MAX_AGE)",
            self.duplicate_window.as_secs(),
            self.max_age.as_secs()
        );
        Ok(())
    }
}
