//! Publishing a batch of stored events to JetStream.
//!
//! Publishes are pipelined: up to `max_in_flight` wait for their acknowledgement at once. A
//! pipeline can lose a message in the middle (a reconnect drops what was in the old socket's
//! buffer while the next messages go out on the new one); a later retry would then store it
//! *after* its successors. To keep the stream in position order, every message but a batch's
//! first carries `Nats-Expected-Last-Msg-Id: <the previous event's id>`: JetStream refuses it
//! unless its predecessor is the last message stored, so nothing is stored past a hole. The
//! first of a batch needs no such guard: its predecessors were all acknowledged before (the
//! cursor), and leaving it unguarded lets a batch start on an empty or purged stream.
//!
//! JetStream checks `Nats-Msg-Id` before the guard, so a retried batch's messages already
//! stored are acknowledged as duplicates, and the first one missing follows its predecessor.

use anyhow::{Context, anyhow};
use async_nats::HeaderMap;
use async_nats::header::{NATS_EXPECTED_LAST_MESSAGE_ID, NATS_MESSAGE_ID};
use async_nats::jetstream;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use gatehouse_events::subject;
use gatehouse_store::Recorded;

use crate::RelayConfig;

/// The header carrying an event's global position (consumers deduplicate by it).
pub const POSITION_HEADER: &str = "Gatehouse-Position";
/// The header carrying the organisation's chain link after the event, in hex.
pub const CHAIN_HEADER: &str = "Gatehouse-Chain";

/// What JetStream acknowledged of a batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Every message of the batch (it is all or an error).
    pub acknowledged: u64,
    /// Of those, the ones JetStream already held (same `Nats-Msg-Id`).
    pub duplicates: u64,
}

/// The subject, headers and body of one event's message.
pub fn message(
    prefix: &str,
    recorded: &Recorded,
    previous: Option<&Recorded>,
) -> anyhow::Result<(String, HeaderMap, Bytes)> {
    let envelope = &recorded.envelope;
    let subject = subject::for_event(prefix, envelope.orgid, &envelope.event_type);
    let body = serde_json::to_vec(envelope).context("encoding an envelope")?;
    let mut headers = HeaderMap::new();
    headers.insert(NATS_MESSAGE_ID, envelope.id.to_string());
    headers.insert(POSITION_HEADER, envelope.position.to_string());
    headers.insert(CHAIN_HEADER, recorded.chain.to_hex());
    if let Some(previous) = previous {
        headers.insert(
            NATS_EXPECTED_LAST_MESSAGE_ID,
            previous.envelope.id.to_string(),
        );
    }
    Ok((subject, headers, Bytes::from(body)))
}

/// A publish JetStream dropped as a duplicate of a message it no longer holds: it remembers
/// ids for its duplicate window even after a purge removed their messages (nats-server#6782).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotHeld {
    /// The event's global position.
    pub position: i64,
    /// The stream sequence JetStream named as the original.
    pub sequence: u64,
}

impl std::fmt::Display for NotHeld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "JetStream dropped position {} as a duplicate of stream sequence {}, which it no \
             longer holds (removed within its duplicate window)",
            self.position, self.sequence
        )
    }
}

impl std::error::Error for NotHeld {}

/// Publishes `batch` (consecutive positions, in order) and waits for every acknowledgement.
/// Fails on the first refused or unacknowledged message, after the ones in flight settle; the
/// caller retries the batch from its start.
pub async fn publish_batch(
    js: &jetstream::Context,
    cfg: &RelayConfig,
    batch: &[Recorded],
) -> anyhow::Result<Published> {
    publish_batch_held_from(js, cfg, batch, 0).await
}

/// [`publish_batch`], where a duplicate of a stream sequence below `first_held` (the stream's
/// first sequence when the caller looked) fails with [`NotHeld`]: JetStream acknowledged it
/// without storing it, so counting it as published would lose it.
pub async fn publish_batch_held_from(
    js: &jetstream::Context,
    cfg: &RelayConfig,
    batch: &[Recorded],
    first_held: u64,
) -> anyhow::Result<Published> {
    let window = cfg.max_in_flight.max(1);
    let mut in_flight = FuturesOrdered::new();
    let mut published = Published::default();
    let mut failure: Option<anyhow::Error> = None;
    let mut previous: Option<&Recorded> = None;

    for recorded in batch {
        while in_flight.len() >= window {
            match in_flight.next().await {
                Some(settled) => settle(settled, cfg, first_held, &mut published, &mut failure),
                None => break,
            }
        }
        if failure.is_some() {
            // Everything after a failure would be refused by its guard anyway.
            break;
        }
        let position = recorded.envelope.position;
        let (subject, headers, body) = message(&cfg.prefix, recorded, previous)?;
        match js.publish_with_headers(subject, headers, body).await {
            Ok(ack) => in_flight.push_back(async move { (position, ack.await) }),
            Err(e) => {
                failure = Some(anyhow!(e).context(format!("publishing position {position}")));
                break;
            }
        }
        previous = Some(recorded);
    }
    while let Some(settled) = in_flight.next().await {
        settle(settled, cfg, first_held, &mut published, &mut failure);
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(published),
    }
}

type Settled = (
    i64,
    Result<jetstream::publish::PublishAck, jetstream::context::PublishError>,
);

fn settle(
    (position, result): Settled,
    cfg: &RelayConfig,
    first_held: u64,
    published: &mut Published,
    failure: &mut Option<anyhow::Error>,
) {
    match result {
        Ok(ack) if ack.stream == cfg.stream && ack.duplicate && ack.sequence < first_held => {
            let not_held = NotHeld {
                position,
                sequence: ack.sequence,
            };
            failure.get_or_insert(anyhow::Error::new(not_held));
        }
        Ok(ack) if ack.stream == cfg.stream => {
            published.acknowledged += 1;
            published.duplicates += u64::from(ack.duplicate);
        }
        Ok(ack) => {
            let wrong = anyhow!(
                "position {position} went to stream {} instead of {}: do their subjects overlap?",
                ack.stream,
                cfg.stream
            );
            failure.get_or_insert(wrong);
        }
        Err(e) => {
            // Only the first cause matters: after it, refusals by the ordering guard follow.
            if failure.is_none() {
                *failure = Some(
                    anyhow!(e)
                        .context(format!("JetStream did not acknowledge position {position}")),
                );
            }
        }
    }
}
