//! Exactly one active relay among processes.
//!
//! Leadership is a Postgres *session* advisory lock taken on a dedicated connection. When that
//! connection dies (the process crashed, the network failed), Postgres releases the lock and a
//! standby, retrying every [`STANDBY_RETRY`], takes over. The cursor is read and written only
//! through that same connection, and the write checks that the lock is still held, so a deposed
//! leader can never move it. The connection also LISTENs for appends, so an idle leader wakes as
//! soon as there is something to publish.

use std::time::Duration;

use anyhow::{Context, bail};
use gatehouse_store::{Db, EVENTS_CHANNEL, Listener};
use tokio::sync::mpsc::error::TryRecvError;
use tokio_postgres::Statement;
use tokio_util::sync::CancellationToken;

/// The advisory lock key of the relay's leadership (advisory locks are per database).
pub const LEADER_LOCK_KEY: i64 = 7_231_003;

/// How often a standby tries to become the leader.
pub const STANDBY_RETRY: Duration = Duration::from_millis(500);

const TRY_LOCK: &str = "SELECT pg_try_advisory_lock($1)";
const UNLOCK: &str = "SELECT pg_advisory_unlock($1)";
const READ_POSITIONS: &str =
    "SELECT c.position, h.last_position FROM relay_cursor c CROSS JOIN store_head h";
/// Moves the cursor only while this session holds the leader lock. A bigint advisory key shows
/// in `pg_locks` as its high half in `classid`, its low half in `objid`, and `objsubid` 1.
/// Answers the store's head with it, for the lag metric.
const SAVE_CURSOR: &str = "UPDATE relay_cursor SET position = $1
     WHERE EXISTS (
         SELECT 1 FROM pg_locks
         WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()
           AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = $2)
     RETURNING (SELECT last_position FROM store_head)";

/// What woke an idle leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// An append notified, or the idle wait elapsed: look again.
    Look,
    /// Shutdown was requested.
    Shutdown,
}

/// The leader's connection. Dropping it closes the connection, which releases the lock.
pub struct Leader {
    listener: Listener,
    /// [`READ_POSITIONS`] and [`SAVE_CURSOR`], prepared once: each cycle costs a round trip.
    read_positions: Statement,
    save_cursor: Statement,
}

/// Waits until this process holds the leader lock. `None` when shutdown came first.
pub async fn acquire(db: &Db, shutdown: &CancellationToken) -> anyhow::Result<Option<Leader>> {
    let listener = db
        .listen(EVENTS_CHANNEL)
        .await
        .context("opening the relay's Postgres connection")?;
    let mut standing_by = false;
    loop {
        let row = listener
            .client
            .query_one(TRY_LOCK, &[&LEADER_LOCK_KEY])
            .await
            .context("trying the relay's leader lock")?;
        let won: bool = row.try_get(0).context("reading the leader lock's answer")?;
        if won {
            tracing::info!("this relay is the active one");
            let client = &listener.client;
            let (read_positions, save_cursor) =
                tokio::try_join!(client.prepare(READ_POSITIONS), client.prepare(SAVE_CURSOR))
                    .context("preparing the relay's statements")?;
            return Ok(Some(Leader {
                listener,
                read_positions,
                save_cursor,
            }));
        }
        if !standing_by {
            tracing::info!("another relay is active; standing by");
            standing_by = true;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(STANDBY_RETRY) => {}
        }
    }
}

impl Leader {
    /// The cursor (last position JetStream acknowledged) and the store's head.
    pub async fn positions(&self) -> anyhow::Result<(i64, i64)> {
        let row = self
            .listener
            .client
            .query_one(&self.read_positions, &[])
            .await
            .context("reading the relay cursor")?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// Saves the cursor, refusing if the lock is no longer this session's. Answers the store's
    /// head as it was then.
    pub async fn save_cursor(&self, position: i64) -> anyhow::Result<i64> {
        let row = self
            .listener
            .client
            .query_opt(&self.save_cursor, &[&position, &LEADER_LOCK_KEY])
            .await
            .context("saving the relay cursor")?;
        match row {
            Some(row) => Ok(row.try_get(0)?),
            None => bail!("this relay no longer holds the leader lock; the cursor was not moved"),
        }
    }

    /// Forgets notifications already queued: the next read of the positions covers them.
    pub fn forget_notifications(&mut self) -> anyhow::Result<()> {
        loop {
            match self.listener.notifications.try_recv() {
                Ok(_) => {}
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Disconnected) => bail!("the relay's Postgres connection closed"),
            }
        }
    }

    /// Waits for an append's notification, `idle`, or shutdown, whichever comes first.
    pub async fn wait(
        &mut self,
        idle: Duration,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Wake> {
        tokio::select! {
            _ = shutdown.cancelled() => Ok(Wake::Shutdown),
            _ = tokio::time::sleep(idle) => Ok(Wake::Look),
            notified = self.listener.notifications.recv() => match notified {
                Some(_) => Ok(Wake::Look),
                None => bail!("the relay's Postgres connection closed"),
            },
        }
    }

    /// Gives the lock up at once so a standby need not wait for the connection to close.
    pub async fn release(self) {
        if let Err(e) = self
            .listener
            .client
            .execute(UNLOCK, &[&LEADER_LOCK_KEY])
            .await
        {
            // Closing the connection (when `self` drops) releases it anyway.
            tracing::debug!(error = %e, "could not release the leader lock");
        }
    }
}
