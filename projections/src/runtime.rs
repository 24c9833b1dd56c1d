//! The consumer runtime: every projection follows the event stream on its own durable JetStream
//! pull consumer, and falls back to the event store whenever JetStream has nothing to give.
//!
//! Per projection, a loop:
//! 1. fetch up to `batch_size` messages (a long poll of [`FETCH_EXPIRY`]);
//! 2. apply, in one [`Batch`], the store's events up to the last position they name (skipping
//!    what the checkpoint already covers), commit, then acknowledge them: messages are a
//!    signal, the store is what is applied, so a forged message changes nothing;
//! 3. when JetStream had nothing (or is unreachable, or the stream does not exist yet) and the
//!    store's head is past the checkpoint, apply from the store directly.
//!
//! So a model converges on the store whatever JetStream loses, duplicates or redelivers, and
//! while NATS is down. Messages that are not envelopes are logged and acknowledged: poison must
//! not stall a model. Failures of Postgres are retried with backoff; the loop only ends on
//! shutdown, after finishing the batch in hand.

use std::time::Duration;

use anyhow::{Context, anyhow};
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use gatehouse_events::Envelope;
use gatehouse_store::{Db, EVENTS_CHANNEL};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::batch::{Batch, Target};
use crate::{Projection, ProjectionsConfig, schema, telemetry};

/// The header carrying an event's global position (set by the relay).
pub const POSITION_HEADER: &str = "Gatehouse-Position";

/// How long a fetch waits for the first message when the consumer has none pending.
pub const FETCH_EXPIRY: Duration = Duration::from_secs(1);

/// How long JetStream waits for an acknowledgement before delivering a message again.
pub const ACK_WAIT: Duration = Duration::from_secs(30);

/// Messages delivered but not acknowledged, at most, per consumer.
pub const MAX_ACK_PENDING: i64 = 10_000;

/// How long an idle projection without JetStream waits before looking at the store anyway
/// (a store notification wakes it sooner).
pub const IDLE_WAIT: Duration = Duration::from_secs(1);

/// The longest pause between retries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Extra time given to a fetch over its expiry before it counts as unanswered.
const FETCH_GRACE: Duration = Duration::from_secs(1);

/// Acknowledgements are sent after the commit; a NATS outage must not hold the loop.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// A fetch that came back empty sooner than this did not long-poll (e.g. the server answered
/// "requests pending"), so the loop must wait by itself.
const MIN_LONG_POLL: Duration = Duration::from_millis(200);

/// Runs every projection until `shutdown` is cancelled, first creating the read models'
/// schemas when they are missing. Failures of Postgres and NATS are logged and retried with
/// backoff; only an invalid configuration is an error. The stream is the relay's to create:
/// until it exists, the projections follow the store.
pub async fn run(
    db: Db,
    js: jetstream::Context,
    cfg: ProjectionsConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    cfg.validate()?;
    telemetry::describe();
    let mut failures = 0u32;
    while let Err(e) = schema::ensure_schemas(&db).await {
        failures = failures.saturating_add(1);
        tracing::warn!(error = %format!("{e:#}"), attempt = failures, "creating the read models' schemas failed; retrying");
        if !pause(backoff(failures), &shutdown).await {
            return Ok(());
        }
    }

    let (wake_tx, wake) = watch::channel(0u64);
    let mut tasks = JoinSet::new();
    tasks.spawn(follow_store_notifications(
        db.clone(),
        wake_tx,
        shutdown.clone(),
    ));
    for projection in Projection::ALL {
        let worker = Worker {
            projection,
            db: db.clone(),
            js: js.clone(),
            cfg: cfg.clone(),
            shutdown: shutdown.clone(),
            wake: wake.clone(),
            consumer: None,
            consumer_failures: 0,
            retry_consumer_at: Instant::now(),
        };
        tasks.spawn(worker.run());
    }
    drop(wake);
    while let Some(joined) = tasks.join_next().await {
        joined.context("a projection task panicked")??;
    }
    tracing::info!("projections stopped");
    Ok(())
}

/// Wakes idle workers when the store appends (so a projection without JetStream is prompt).
async fn follow_store_notifications(
    db: Db,
    wake: watch::Sender<u64>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        match db.listen(EVENTS_CHANNEL).await {
            Ok(mut listener) => {
                failures = 0;
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        notification = listener.notifications.recv() => match notification {
                            Some(_) => { wake.send_modify(|n| *n = n.wrapping_add(1)); }
                            None => break,
                        },
                    }
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::debug!(error = %format!("{e:#}"), "cannot listen for appends; projections poll the store meanwhile");
            }
        }
        if !pause(backoff(failures.max(1)), &shutdown).await {
            break;
        }
    }
    Ok(())
}

struct Worker {
    projection: Projection,
    db: Db,
    js: jetstream::Context,
    cfg: ProjectionsConfig,
    shutdown: CancellationToken,
    wake: watch::Receiver<u64>,
    consumer: Option<consumer::PullConsumer>,
    consumer_failures: u32,
    retry_consumer_at: Instant,
}

impl Worker {
    async fn run(mut self) -> anyhow::Result<()> {
        let name = self.projection.name();
        let mut failures = 0u32;
        while !self.shutdown.is_cancelled() {
            if self.consumer.is_none() && Instant::now() >= self.retry_consumer_at {
                self.connect().await;
            }

            // 1. What JetStream has.
            let mut long_polled = false;
            let fetched = match self.consumer.clone() {
                Some(consumer) if self.nats_connected() => {
                    let started = Instant::now();
                    let fetched = tokio::select! {
                        biased;
                        _ = self.shutdown.cancelled() => break,
                        fetched = fetch(&consumer, self.cfg.batch_size) => fetched,
                    };
                    long_polled = started.elapsed() >= MIN_LONG_POLL;
                    Some(fetched)
                }
                _ => None,
            };
            match fetched {
                Some(Ok(messages)) if !messages.is_empty() => {
                    match self.apply_messages(&messages).await {
                        Ok(()) => failures = 0,
                        Err(e) => {
                            // Unacknowledged, the messages come again after the ack wait; the
                            // store fills in for them before that.
                            failures = failures.saturating_add(1);
                            tracing::warn!(projection = name, error = %format!("{e:#}"), attempt = failures, "applying a batch failed; retrying");
                            if !pause(backoff(failures), &self.shutdown).await {
                                break;
                            }
                        }
                    }
                    continue;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!(projection = name, error = %format!("{e:#}"), "fetching from JetStream failed; following the store until the consumer is back");
                    self.consumer = None;
                    self.consumer_failures = self.consumer_failures.saturating_add(1);
                    self.retry_consumer_at = Instant::now() + backoff(self.consumer_failures);
                }
                None => {}
            }

            // 2. JetStream had nothing: whatever the store holds beyond the checkpoint was lost
            //    on the way (or NATS is down), so apply it from the store.
            match self.catch_up().await {
                Ok(applied) => {
                    failures = 0;
                    if applied > 0 {
                        continue;
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(projection = name, error = %format!("{e:#}"), attempt = failures, "catching up from the store failed; retrying");
                    if !pause(backoff(failures), &self.shutdown).await {
                        break;
                    }
                    continue;
                }
            }

            // 3. Caught up. A long poll already waited; otherwise wait here.
            if !long_polled && !self.idle().await {
                break;
            }
        }
        tracing::info!(projection = name, "projection stopped");
        Ok(())
    }

    fn nats_connected(&self) -> bool {
        self.js.client().connection_state() == async_nats::connection::State::Connected
    }

    /// One attempt at getting (or creating) the durable consumer; on failure the next attempt
    /// is scheduled with backoff, and the store is followed meanwhile.
    async fn connect(&mut self) {
        let name = self.cfg.consumer_name(self.projection);
        let attempt = async {
            let stream = self
                .js
                .get_stream(&self.cfg.stream)
                .await
                .map_err(|e| anyhow!("looking up stream {}: {e}", self.cfg.stream))?;
            let config = consumer::pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: gatehouse_events::subject::all(&self.cfg.prefix),
                deliver_policy: consumer::DeliverPolicy::All,
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                max_ack_pending: MAX_ACK_PENDING,
                ..Default::default()
            };
            stream
                .get_or_create_consumer::<consumer::pull::Config>(&name, config)
                .await
                .map_err(|e| anyhow!("creating consumer {name}: {e}"))
        };
        let outcome = if self.nats_connected() {
            tokio::time::timeout(Duration::from_secs(5), attempt)
                .await
                .unwrap_or_else(|_| Err(anyhow!("JetStream did not answer within 5 s")))
        } else {
            Err(anyhow!("NATS is not connected"))
        };
        match outcome {
            Ok(consumer) => {
                if self.consumer_failures > 0 {
                    tracing::info!(projection = self.projection.name(), consumer = %name, "following JetStream again");
                }
                self.consumer = Some(consumer);
                self.consumer_failures = 0;
            }
            Err(e) => {
                self.consumer_failures = self.consumer_failures.saturating_add(1);
                self.retry_consumer_at = Instant::now() + backoff(self.consumer_failures);
                // The first failure says so; the retries that follow are routine until it is back.
                if self.consumer_failures == 1 {
                    tracing::warn!(projection = self.projection.name(), error = %format!("{e:#}"), "no JetStream consumer yet; following the event store meanwhile");
                } else {
                    tracing::debug!(projection = self.projection.name(), error = %format!("{e:#}"), "still no JetStream consumer");
                }
            }
        }
    }

    /// Applies a fetched batch in one transaction, then acknowledges every message of it.
    async fn apply_messages(&mut self, messages: &[jetstream::Message]) -> anyhow::Result<()> {
        let mut envelopes = Vec::with_capacity(messages.len());
        for message in messages {
            match parse(message) {
                Ok(envelope) => envelopes.push(envelope),
                // Never the payload: it is not ours to log.
                Err(reason) => tracing::error!(
                    projection = self.projection.name(),
                    subject = %message.subject,
                    %reason,
                    "skipping a message that is not a Gatehouse envelope"
                ),
            }
        }
        // A message says which positions to apply; what is applied is read from the store, so
        // a message whose content is not the store's (forged by anyone who may publish on the
        // subjects, or from another deployment's stream) changes nothing.
        let (Some(first), Some(last)) = (
            envelopes.iter().map(|e| e.position).min(),
            envelopes.iter().map(|e| e.position).max(),
        ) else {
            ack_all(self.projection, messages).await;
            return Ok(());
        };

        let mut client = self.db.client().await?;
        // The store's events for the messages are read while the batch begins (on another
        // connection): usually they follow the checkpoint exactly.
        let wanted = (last - first + 1).min(self.chunk());
        let (begun, stored) = tokio::join!(
            Batch::begin(&mut client, self.projection, Target::Live),
            self.db.read_after(first - 1, wanted)
        );
        let mut batch = begun?;
        let stored = stored.context("reading the fetched positions from the store")?;
        // A hole wider than a batch (e.g. the stream was purged, or JetStream was down for long)
        // is filled from the store batch by batch first, not in this one transaction.
        if last - batch.checkpoint() > self.chunk() {
            drop(batch);
            drop(client);
            self.catch_up().await?;
            client = self.db.client().await?;
            batch = Batch::begin(&mut client, self.projection, Target::Live).await?;
        }
        // Whatever lies between the checkpoint and the first message, then the messages'.
        batch.fill_gap(&self.db, first, self.chunk()).await?;
        if batch.checkpoint() + 1 >= first {
            for recorded in &stored {
                batch.apply(&recorded.envelope).await?;
            }
        }
        batch.fill_gap(&self.db, last + 1, self.chunk()).await?;
        if batch.checkpoint() < last {
            tracing::error!(
                projection = self.projection.name(),
                position = last,
                checkpoint = batch.checkpoint(),
                "skipping messages whose positions are not in the event store (another deployment's stream?)"
            );
        }
        let checkpoint = batch.commit().await?;
        // The lag metric's head is read while the messages are acknowledged.
        tokio::join!(
            record(&self.db, self.projection, checkpoint),
            ack_all(self.projection, messages)
        );
        Ok(())
    }

    /// Applies the store's events beyond the checkpoint, batch after batch, until caught up or
    /// shut down. Returns how many positions it applied.
    async fn catch_up(&mut self) -> anyhow::Result<u64> {
        // Appends notified so far are covered by what follows.
        self.wake.borrow_and_update();
        let mut applied = 0u64;
        while !self.shutdown.is_cancelled() {
            let checkpoint = read_checkpoint(&self.db, self.projection).await?;
            let head = self.db.head().await?;
            telemetry::positions(self.projection, checkpoint, head);
            if head <= checkpoint {
                break;
            }
            let events = self
                .db
                .read_after(checkpoint, self.chunk())
                .await
                .context("reading events to apply")?;
            if events.is_empty() {
                break;
            }
            let mut client = self.db.client().await?;
            let mut batch = Batch::begin(&mut client, self.projection, Target::Live).await?;
            let before = batch.checkpoint();
            for recorded in &events {
                batch.apply(&recorded.envelope).await?;
            }
            let after = batch.commit().await?;
            applied += (after - before).max(0) as u64;
            telemetry::positions(self.projection, after, head);
            tracing::debug!(
                projection = self.projection.name(),
                from = before + 1,
                to = after,
                "applied events from the store"
            );
        }
        Ok(applied)
    }

    /// Waits for an append, the next consumer attempt, [`IDLE_WAIT`] or shutdown (`false`).
    async fn idle(&mut self) -> bool {
        let mut until = Instant::now() + IDLE_WAIT;
        if self.consumer.is_none() {
            until = until.min(self.retry_consumer_at);
        }
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => false,
            _ = tokio::time::sleep_until(until) => true,
            changed = self.wake.changed() => {
                if changed.is_err() {
                    // The notifier is gone (shutting down): wait out the interval instead.
                    tokio::time::sleep_until(until).await;
                }
                true
            }
        }
    }

    fn chunk(&self) -> i64 {
        i64::try_from(self.cfg.batch_size).unwrap_or(i64::MAX)
    }
}

/// Records a model's checkpoint against the store's head (the lag metric).
async fn record(db: &Db, projection: Projection, checkpoint: i64) {
    match db.head().await {
        Ok(head) => telemetry::positions(projection, checkpoint, head),
        Err(e) => {
            tracing::debug!(error = %format!("{e:#}"), "reading the store head for the lag metric")
        }
    }
}

/// Fetches up to `max` messages, waiting at most [`FETCH_EXPIRY`] for the first.
async fn fetch(
    consumer: &consumer::PullConsumer,
    max: usize,
) -> anyhow::Result<Vec<jetstream::Message>> {
    let collect = async {
        let mut batch = consumer
            .fetch()
            .max_messages(max)
            .expires(FETCH_EXPIRY)
            .messages()
            .await
            .map_err(|e| anyhow!("requesting messages: {e}"))?;
        let mut messages = Vec::new();
        while let Some(item) = batch.next().await {
            match item {
                Ok(message) => messages.push(message),
                Err(e) if messages.is_empty() => return Err(anyhow!("receiving messages: {e}")),
                // Keep what arrived; the next fetch reports the error again if it persists.
                Err(e) => {
                    tracing::debug!(error = %e, "a fetch ended early");
                    break;
                }
            }
        }
        Ok(messages)
    };
    tokio::time::timeout(FETCH_EXPIRY + FETCH_GRACE, collect)
        .await
        .unwrap_or_else(|_| Err(anyhow!("JetStream did not answer a fetch in time")))
}

/// The envelope a message carries, or why it is not one.
fn parse(message: &async_nats::Message) -> Result<Envelope, String> {
    let envelope: Envelope = serde_json::from_slice(&message.payload)
        .map_err(|e| format!("the body is not an envelope: {e}"))?;
    if envelope.position < 1 {
        return Err(format!(
            "position {} is not a store position",
            envelope.position
        ));
    }
    if let Some(header) = message
        .headers
        .as_ref()
        .and_then(|h| h.get(POSITION_HEADER))
        && header.as_str().parse::<i64>().ok() != Some(envelope.position)
    {
        return Err(format!(
            "header {POSITION_HEADER} {:?} disagrees with the envelope's position {}",
            header.as_str(),
            envelope.position
        ));
    }
    Ok(envelope)
}

/// Acknowledges the messages; a failure only means JetStream delivers them again, and they are
/// then skipped by position.
async fn ack_all(projection: Projection, messages: &[jetstream::Message]) {
    let acks = futures::future::join_all(messages.iter().map(|m| m.ack()));
    match tokio::time::timeout(ACK_TIMEOUT, acks).await {
        Ok(results) => {
            let failed = results.iter().filter(|r| r.is_err()).count();
            if failed > 0 {
                tracing::debug!(
                    projection = projection.name(),
                    failed,
                    "some acknowledgements failed; those messages will be skipped when redelivered"
                );
            }
        }
        Err(_) => tracing::debug!(
            projection = projection.name(),
            "acknowledging timed out; the messages will be skipped when redelivered"
        ),
    }
}

/// The checkpoint of the live model.
pub(crate) async fn read_checkpoint(db: &Db, projection: Projection) -> anyhow::Result<i64> {
    let client = db.client().await?;
    let sql = format!(
        "SELECT position FROM {}.checkpoint",
        crate::schema::quote(&projection.schema())
    );
    let row = client
        .query_one(&sql, &[])
        .await
        .with_context(|| format!("reading the checkpoint of {}", projection.name()))?;
    Ok(row.get(0))
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
    fn backoff_doubles_from_100_ms_up_to_five_seconds() {
        let pauses: Vec<u64> = (1..=8).map(|n| backoff(n).as_millis() as u64).collect();
        assert_eq!(pauses, vec![100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    }
}
