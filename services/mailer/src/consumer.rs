//! The mailer's loop: a durable JetStream pull consumer over every administrator event.
//!
//! 1. Get (or create) the durable consumer `<prefix>_mailer`; while the stream does not exist or
//!    NATS is down, wait with backoff (logging the first failure at warn, the rest at debug).
//! 2. Fetch a small batch (a long poll of [`FETCH_EXPIRY`]); acknowledge at once what is not an
//!    envelope (logged) and repeated copies of an event within the batch.
//! 3. Handle the rest a few at a time ([`crate::deliver`]); acknowledge each once handled, or
//!    ask for redelivery after a pause when its email failed or Postgres was unavailable.
//!
//! The ledger, not JetStream, decides whether an email goes out, so redeliveries, duplicates
//! and replays are harmless. On shutdown the emails in hand are finished (a send is never
//! cancelled half-way) and the rest of the batch is handed back.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::anyhow;
use async_nats::jetstream::{self, AckKind, consumer};
use futures::StreamExt;
use gatehouse_events::Envelope;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::deliver::{Disposition, Mailer};

/// The header carrying an event's global position (set by the relay).
pub const POSITION_HEADER: &str = "Gatehouse-Position";

/// How long a fetch waits for the first message when none is pending.
pub const FETCH_EXPIRY: Duration = Duration::from_secs(1);

/// How long JetStream waits for an acknowledgement before delivering a message again. Handling
/// one email takes at most the SMTP time-out (20 s by default); each message announces progress
/// when its handling starts late ([`PROGRESS_AFTER`]).
pub const ACK_WAIT: Duration = Duration::from_secs(60);

/// A message whose handling starts later than this after its fetch began first announces progress,
/// so the ack wait starts again: one that starts sooner has more than twice the SMTP time-out
/// left, and announcing it would cost a publish per email.
pub const PROGRESS_AFTER: Duration = Duration::from_secs(15);

/// Messages delivered but not acknowledged, at most (failed emails waiting for a retry count).
pub const MAX_ACK_PENDING: i64 = 1_000;

/// The longest pause between attempts at reaching JetStream.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Extra time given to a fetch over its expiry before it counts as unanswered.
const FETCH_GRACE: Duration = Duration::from_secs(1);

/// Acknowledgements must not hold the loop when NATS is unwell.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// A fetch that came back empty sooner than this did not long-poll, so the loop waits itself.
const MIN_LONG_POLL: Duration = Duration::from_millis(200);

pub(crate) struct Consumer {
    pub mailer: Mailer,
    pub js: jetstream::Context,
    pub shutdown: CancellationToken,
}

impl Consumer {
    pub async fn run(self) -> anyhow::Result<()> {
        let mut consumer: Option<consumer::PullConsumer> = None;
        let mut failures = 0u32;
        while !self.shutdown.is_cancelled() {
            let current = match &consumer {
                Some(c) => c.clone(),
                None => match self.connect().await {
                    Ok(c) => {
                        if failures > 0 {
                            tracing::info!(consumer = %self.mailer.cfg.consumer_name(), "the mailer follows JetStream again");
                        }
                        failures = 0;
                        consumer = Some(c.clone());
                        c
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        if failures == 1 {
                            tracing::warn!(error = %format!("{e:#}"), "the mailer has no JetStream consumer yet; waiting for NATS and the stream");
                        } else {
                            tracing::debug!(error = %format!("{e:#}"), attempt = failures, "still no JetStream consumer for the mailer");
                        }
                        if !pause(backoff(failures), &self.shutdown).await {
                            break;
                        }
                        continue;
                    }
                },
            };

            let started = Instant::now();
            let fetched = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                fetched = fetch(&current, self.mailer.cfg.batch_size) => fetched,
            };
            match fetched {
                Ok(messages) if messages.is_empty() => {
                    if started.elapsed() < MIN_LONG_POLL
                        && !pause(MIN_LONG_POLL, &self.shutdown).await
                    {
                        break;
                    }
                }
                Ok(messages) => self.process(messages, started).await,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %format!("{e:#}"), "fetching from JetStream failed; the mailer reconnects");
                    consumer = None;
                    if !pause(backoff(failures), &self.shutdown).await {
                        break;
                    }
                }
            }
        }
        tracing::info!("mailer stopped");
        Ok(())
    }

    /// One attempt at getting (or creating) the durable consumer.
    async fn connect(&self) -> anyhow::Result<consumer::PullConsumer> {
        if self.js.client().connection_state() != async_nats::connection::State::Connected {
            return Err(anyhow!("NATS is not connected"));
        }
        let cfg = &self.mailer.cfg;
        let name = cfg.consumer_name();
        let attempt = async {
            let stream = self
                .js
                .get_stream(&cfg.stream)
                .await
                .map_err(|e| anyhow!("looking up stream {}: {e}", cfg.stream))?;
            let config = consumer::pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: cfg.filter_subject(),
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
        tokio::time::timeout(Duration::from_secs(5), attempt)
            .await
            .unwrap_or_else(|_| Err(anyhow!("JetStream did not answer within 5 s")))
    }

    /// Handles a batch fetched from `fetched` on (the ack wait of each of its messages began
    /// after that), a few emails at a time.
    async fn process(&self, messages: Vec<jetstream::Message>, fetched: Instant) {
        let mut seen = HashSet::new();
        let mut work = Vec::with_capacity(messages.len());
        for message in messages {
            match parse(&message) {
                Ok(envelope) if seen.insert(envelope.id) => work.push((message, envelope)),
                // The copy in hand carries the event; its outcome covers this one.
                Ok(envelope) => {
                    tracing::debug!(event_id = %envelope.id, "a second copy of an event in one batch");
                    settle(&message, AckKind::Ack).await;
                }
                Err(reason) => {
                    // Never the payload: it is not ours to log.
                    tracing::error!(subject = %message.subject, %reason, "skipping a message that is not a Gatehouse envelope");
                    settle(&message, AckKind::Ack).await;
                }
            }
        }
        futures::stream::iter(work)
            .for_each_concurrent(self.mailer.cfg.concurrency, |(message, envelope)| async move {
                if self.shutdown.is_cancelled() {
                    // Not started: hand it back for another mailer (or the next start).
                    settle(&message, AckKind::Nak(None)).await;
                    return;
                }
                if fetched.elapsed() > PROGRESS_AFTER {
                    // The ack wait starts again: this one is being worked on.
                    settle(&message, AckKind::Progress).await;
                }
                let kind = match self.mailer.handle(&envelope).await {
                    Ok(Disposition::Done) => AckKind::Ack,
                    Ok(Disposition::RetryAfter(delay)) => AckKind::Nak(Some(delay)),
                    Err(e) => {
                        let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
                        let delay = backoff(u32::try_from(delivered).unwrap_or(1));
                        tracing::warn!(event_id = %envelope.id, error = %format!("{e:#}"), retry_in = ?delay, "handling an event failed; it will come again");
                        AckKind::Nak(Some(delay))
                    }
                };
                settle(&message, kind).await;
            })
            .await;
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

/// Acknowledges (or naks, or announces progress on) a message. A failure only means JetStream
/// delivers it again, and the ledger then recognises it.
async fn settle(message: &jetstream::Message, kind: AckKind) {
    match tokio::time::timeout(ACK_TIMEOUT, message.ack_with(kind)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "acknowledging a message failed; it will come again")
        }
        Err(_) => tracing::debug!("acknowledging a message timed out; it will come again"),
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
    fn backoff_doubles_from_100_ms_up_to_five_seconds() {
        let pauses: Vec<u128> = (1..=8).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(pauses, vec![100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    }
}
