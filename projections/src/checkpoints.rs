//! Read-your-writes: which position every read model has applied, as seen from an API process.
//!
//! [`Checkpoints`] LISTENs on [`NOTIFY_CHANNEL`] (each committed batch announces
//! `<name>:<checkpoint>`), reads the checkpoint tables when it (re)connects, and again every
//! [`POLL_EVERY`] in case a notification was lost with a connection. Positions only move forward:
//! a late notification or a stale read never takes one back.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gatehouse_store::Db;
use tokio::sync::watch;
use tokio_util::task::AbortOnDropHandle;

use crate::batch::{NOTIFY_CHANNEL, parse_notification};
use crate::runtime::{backoff, read_checkpoint};
use crate::{Projection, schema};

/// The safety-net interval between reads of the checkpoint tables.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// The applied position of every projection, kept current by a background task that lives as
/// long as any clone.
#[derive(Clone)]
pub struct Checkpoints {
    /// Indexed like [`Projection::ALL`].
    positions: watch::Receiver<Vec<i64>>,
    _follower: Arc<AbortOnDropHandle<()>>,
}

impl Checkpoints {
    /// Reads the checkpoints and starts following them. Creates the read models' schemas if
    /// they are missing, so queries answer (empty) before any projection ran.
    pub async fn start(db: Db) -> anyhow::Result<Checkpoints> {
        schema::ensure_schemas(&db)
            .await
            .context("creating the read models' schemas")?;
        let mut initial = Vec::with_capacity(Projection::ALL.len());
        for projection in Projection::ALL {
            initial.push(read_checkpoint(&db, projection).await?);
        }
        let (tx, rx) = watch::channel(initial);
        let follower = tokio::spawn(follow(db, tx));
        Ok(Checkpoints {
            positions: rx,
            _follower: Arc::new(AbortOnDropHandle::new(follower)),
        })
    }

    /// The position every projection has applied (the lowest of their checkpoints).
    pub fn current(&self) -> i64 {
        lowest(&self.positions.borrow())
    }

    /// The position one projection has applied.
    pub fn of(&self, projection: Projection) -> i64 {
        let index = Projection::ALL
            .iter()
            .position(|p| *p == projection)
            .unwrap_or(0);
        self.positions.borrow().get(index).copied().unwrap_or(0)
    }

    /// Waits until every projection has applied `position`: `true` once they have, `false` if
    /// `timeout` passes first.
    pub async fn wait_for(&self, position: i64, timeout: Duration) -> bool {
        self.wait_for_models(&Projection::ALL, position, timeout)
            .await
    }

    /// Waits until each of `projections` has applied `position`: `true` once they have,
    /// `false` if `timeout` passes first.
    pub async fn wait_for_models(
        &self,
        projections: &[Projection],
        position: i64,
        timeout: Duration,
    ) -> bool {
        let mut positions = self.positions.clone();
        let reached = positions.wait_for(|p| {
            Projection::ALL.iter().zip(p).all(|(projection, applied)| {
                !projections.contains(projection) || *applied >= position
            })
        });
        matches!(tokio::time::timeout(timeout, reached).await, Ok(Ok(_)))
    }
}

fn lowest(positions: &[i64]) -> i64 {
    positions.iter().copied().min().unwrap_or(0)
}

/// Raises a projection's position; never lowers it.
fn raise(tx: &watch::Sender<Vec<i64>>, projection: Projection, position: i64) {
    let Some(index) = Projection::ALL.iter().position(|p| *p == projection) else {
        return;
    };
    tx.send_if_modified(|positions| match positions.get_mut(index) {
        Some(current) if position > *current => {
            *current = position;
            true
        }
        _ => false,
    });
}

async fn poll(db: &Db, tx: &watch::Sender<Vec<i64>>) {
    for projection in Projection::ALL {
        match read_checkpoint(db, projection).await {
            Ok(position) => raise(tx, projection, position),
            Err(e) => {
                tracing::debug!(projection = projection.name(), error = %format!("{e:#}"), "reading a checkpoint failed; trying again shortly")
            }
        }
    }
}

async fn follow(db: Db, tx: watch::Sender<Vec<i64>>) {
    let mut failures = 0u32;
    loop {
        match db.listen(NOTIFY_CHANNEL).await {
            Ok(mut listener) => {
                failures = 0;
                // Read after LISTEN: whatever committed before it is in the tables.
                poll(&db, &tx).await;
                let mut tick = tokio::time::interval(POLL_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        notification = listener.notifications.recv() => match notification {
                            Some(payload) => match parse_notification(&payload) {
                                Some((projection, position)) => raise(&tx, projection, position),
                                None => tracing::debug!(%payload, "ignoring an unreadable checkpoint notification"),
                            },
                            None => break,
                        },
                        _ = tick.tick() => poll(&db, &tx).await,
                        _ = tx.closed() => return,
                    }
                }
                tracing::warn!("the checkpoint listener's connection closed; reconnecting");
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %format!("{e:#}"), attempt = failures, "cannot listen for checkpoints; polling meanwhile");
                poll(&db, &tx).await;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff(failures.max(1))) => {}
            _ = tx.closed() => return,
        }
    }
}
