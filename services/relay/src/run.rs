//! The relay loop: become the leader, then read after the cursor, publish, advance the cursor,
//! and wait for the next append.
//!
//! The cursor only moves once JetStream acknowledged a whole batch, so a relay that dies between
//! publishing and saving publishes that batch again; JetStream drops the copies (same
//! `Nats-Msg-Id`, within the duplicate window) and consumers deduplicate by position.
//! Positions are gapless and committed in order (see `gatehouse_store`), so reading
//! `position > cursor` never skips an event that commits late. While a backlog drains (the
//! batches come back full), the next batch is read while the current one's publishes are in
//! flight.

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream;
use gatehouse_store::{Db, Recorded};
use tokio_util::sync::CancellationToken;

use crate::leader::{self, Leader, Wake};
use crate::publish::publish_batch;
use crate::{RelayConfig, telemetry};

/// How long a caught-up relay waits for a notification before looking again anyway (a
/// notification can be lost with a connection; the look costs one query).
pub const IDLE_WAIT: Duration = Duration::from_secs(1);

/// The longest pause between retries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Runs until `shutdown` is cancelled; a batch being published is finished first. Failures of
/// Postgres or NATS are logged and retried with backoff; only an invalid configuration is an
/// error.
pub async fn run(
    db: Db,
    js: jetstream::Context,
    cfg: RelayConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    cfg.validate()?;
    telemetry::describe();
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        let outcome = match leader::acquire(&db, &shutdown).await {
            Ok(None) => break,
            Ok(Some(leader)) => {
                failures = 0;
                telemetry::active(true);
                let led = lead(&db, &js, &cfg, leader, &shutdown).await;
                telemetry::active(false);
                led
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => break,
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(
                    error = %format!("{e:#}"),
                    attempt = failures,
                    "the relay lost or could not take its Postgres connection; trying again"
                );
                if !pause(backoff(failures), &shutdown).await {
                    break;
                }
            }
        }
    }
    tracing::info!("relay stopped");
    Ok(())
}

/// Relays while this process holds the lock. `Ok` on shutdown; `Err` when the leader connection
/// failed (the lock is then lost, or released when `leader` drops).
async fn lead(
    db: &Db,
    js: &jetstream::Context,
    cfg: &RelayConfig,
    mut leader: Leader,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut failures = 0u32;
    // Only the leader moves the cursor (and `gatehouse relay republish` holds the same lock),
    // so it is read once here and then kept: a busy cycle is a read, a publish and a save.
    let (mut cursor, head) = leader.positions().await?;
    telemetry::positions(cursor, head);
    // The batch after a full one, read while that one's publishes were in flight.
    let mut ahead: Vec<Recorded> = Vec::new();
    loop {
        if shutdown.is_cancelled() {
            leader.release().await;
            return Ok(());
        }
        let batch = if ahead.is_empty() {
            // Notifications queued so far are covered by the read that follows.
            leader.forget_notifications()?;
            db.read_after(cursor, cfg.batch_size)
                .await
                .context("reading events to publish")?
        } else {
            std::mem::take(&mut ahead)
        };
        let Some(last) = batch.last().map(|r| r.envelope.position) else {
            // Caught up (or the head moved but its events are not visible yet): wait for the
            // next append, then look again.
            let (saved, head) = leader.positions().await?;
            telemetry::positions(saved, head);
            if saved == cursor && leader.wait(IDLE_WAIT, shutdown).await? == Wake::Shutdown {
                leader.release().await;
                return Ok(());
            }
            cursor = saved;
            continue;
        };
        // A full batch means a backlog: the next one is read while this one is published. It is
        // used only if this one is acknowledged whole.
        let full = i64::try_from(batch.len()).is_ok_and(|n| n >= cfg.batch_size);
        let read_ahead = async {
            if full {
                db.read_after(last, cfg.batch_size).await
            } else {
                Ok(Vec::new())
            }
        };
        let (published, next) = tokio::join!(publish_batch(js, cfg, &batch), read_ahead);
        match published {
            Ok(published) => {
                let head = leader.save_cursor(last).await?;
                telemetry::published(published.acknowledged);
                telemetry::positions(last, head.max(last));
                tracing::debug!(
                    from = cursor + 1,
                    to = last,
                    duplicates = published.duplicates,
                    "published a batch"
                );
                cursor = last;
                failures = 0;
                ahead = next.unwrap_or_else(|e| {
                    tracing::debug!(error = %format!("{e:#}"), "reading ahead failed; reading again");
                    Vec::new()
                });
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                // The error names positions and NATS' reason, never a payload.
                tracing::warn!(
                    error = %format!("{e:#}"),
                    from = cursor + 1,
                    attempt = failures,
                    "publishing to JetStream failed; retrying from the cursor"
                );
                if !pause(backoff(failures), shutdown).await {
                    leader.release().await;
                    return Ok(());
                }
            }
        }
    }
}

/// 100 ms, doubling per consecutive failure, at most [`MAX_BACKOFF`].
pub fn backoff(failures: u32) -> Duration {
    gatehouse_store::retry::backoff(failures, MAX_BACKOFF)
}

/// Sleeps for `duration` unless shutdown comes first; `false` on shutdown.
async fn pause(duration: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(duration) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_100_ms_up_to_two_seconds() {
        let pauses: Vec<u64> = (1..=7).map(|n| backoff(n).as_millis() as u64).collect();
        assert_eq!(pauses, vec![100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
