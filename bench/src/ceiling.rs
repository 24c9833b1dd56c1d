//! The raw ceilings: what this machine's Postgres and NATS do with nothing of Gatehouse in
//! between, measured in the same run as the scenario they bound.
//!
//! - one-row INSERT transactions over many connections (the commands' ceiling);
//! - one multi-row INSERT (the bulk's);
//! - pipelined JetStream publishes of the store's envelopes (the relay's);
//! - a copy of the admins read model's table, for the ceiling server ([`crate::ceiling_server`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use gatehouse_events::envelope::EnvelopeParts;
use gatehouse_events::types::AdminRef;
use gatehouse_events::{Actor, Envelope, Event, subject};
use gatehouse_relay::RelayConfig;
use tokio_postgres::Client;
use uuid::Uuid;

use crate::env::{Env, connect};

/// Publishes awaiting their acknowledgement at once (the relay's default too).
pub const PUBLISH_IN_FLIGHT: usize = 1024;

/// Envelopes read from the store before each timed run of publishes, so the ceiling measures
/// publishing alone in bounded memory.
const PUBLISH_CHUNK: i64 = 100_000;

/// Creates the scratch tables (the read models' schemas first, as serve would, since one is
/// copied).
pub async fn prepare(store: &gatehouse_store::Db, client: &Client) -> anyhow::Result<()> {
    gatehouse_projections::ensure_schemas(store).await?;
    client
        .batch_execute(include_str!("ceiling.sql"))
        .await
        .context("creating the ceilings' scratch tables")
}

/// A body the size and shape of a stored envelope.
fn envelope_body() -> anyhow::Result<serde_json::Value> {
    let parts = EnvelopeParts {
        id: Uuid::now_v7(),
        org_id: Uuid::now_v7(),
        actor: Actor::Admin(Uuid::now_v7()),
        correlation_id: Uuid::new_v4(),
        time: chrono::Utc::now(),
        auth_method: Some("api-key"),
    };
    let event = Event::MfaRequirementRemoved(AdminRef {
        admin_id: Uuid::now_v7(),
    });
    serde_json::to_value(Envelope::new(&parts, &event, 1, 2)).context("encoding an envelope")
}

/// One-row INSERT transactions (autocommit: one round trip, one commit each) from
/// `connections` connections for `duration`; answers transactions per second.
pub async fn insert_transactions(
    env: &Env<'_>,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let url = env.database_url();
    let clients = futures::future::try_join_all((0..connections).map(|_| connect(&url))).await?;
    let body = Arc::new(envelope_body()?);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for client in clients {
        let (body, stop) = (body.clone(), stop.clone());
        tasks.spawn(async move {
            let insert = client
                .prepare("INSERT INTO bench_ceiling.writes (id, body) VALUES ($1, $2)")
                .await
                .context("preparing the insert")?;
            let mut done = 0u64;
            while !stop.load(Ordering::Relaxed) {
                client
                    .execute(&insert, &[&Uuid::now_v7(), &*body])
                    .await
                    .context("inserting a row")?;
                done += 1;
            }
            anyhow::Ok(done)
        });
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0u64;
    while let Some(done) = tasks.join_next().await {
        total += done.context("an insert task panicked")??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// One INSERT of `rows` rows (unnest of arrays, in one transaction); answers rows per second.
pub async fn multi_row_insert(client: &mut Client, rows: usize) -> anyhow::Result<f64> {
    let body = envelope_body()?;
    let ids: Vec<Uuid> = (0..rows).map(|_| Uuid::now_v7()).collect();
    let bodies = vec![body; rows];
    let started = Instant::now();
    let tx = client.transaction().await.context("beginning the insert")?;
    tx.execute(
        "INSERT INTO bench_ceiling.writes (id, body)
         SELECT * FROM unnest($1::uuid[], $2::jsonb[])",
        &[&ids, &bodies],
    )
    .await
    .context("inserting the rows")?;
    tx.commit().await.context("committing the insert")?;
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

/// Fills the ceiling server's table with `n` admins of one organisation, none with MFA
/// required; answers that organisation's id.
pub async fn fill_admins(client: &Client, n: usize) -> anyhow::Result<Uuid> {
    let org = Uuid::now_v7();
    let n = i64::try_from(n).context("too many admins")?;
    client
        .execute(
            "INSERT INTO bench_ceiling.admins
                 (admin_id, org_id, email, first_name, last_name, role, created_at, mfa_required)
             SELECT gen_random_uuid(), $1, 'ceiling-' || i || '@bench.example', 'Bench',
                    'Admin ' || i, 'manager', now(), false
             FROM generate_series(1, $2::bigint) AS i",
            &[&org, &n],
        )
        .await
        .context("filling the ceiling's admins")?;
    client
        .batch_execute("ANALYZE bench_ceiling.admins")
        .await
        .context("analysing the ceiling's admins")?;
    Ok(org)
}

/// A message as the relay would publish it: subject, `Nats-Msg-Id`, body.
type Message = (String, String, Bytes);

/// Publishes every envelope of the store to a scratch stream (made like the relay's, deleted
/// after) with `Nats-Msg-Id`, [`PUBLISH_IN_FLIGHT`] in flight; answers how many and the
/// messages per second of the publishing alone.
pub async fn publish(env: &Env<'_>, client: &Client) -> anyhow::Result<(u64, f64)> {
    let nats = async_nats::connect(&env.args.nats)
        .await
        .context("connecting to NATS")?;
    let js = jetstream::new(nats);
    let (stream, prefix) = env.ceiling_stream();
    gatehouse_relay::ensure_stream(&js, &RelayConfig::new(stream.clone(), prefix.clone())).await?;
    let mut after = 0i64;
    let mut published = 0u64;
    let mut busy = Duration::ZERO;
    loop {
        let (messages, last) = read_messages(client, &prefix, after).await?;
        let Some(last) = last else { break };
        after = last;
        let started = Instant::now();
        published += publish_pipelined(&js, messages).await?;
        busy += started.elapsed();
    }
    js.delete_stream(&stream)
        .await
        .context("deleting the scratch stream")?;
    Ok((published, published as f64 / busy.as_secs_f64().max(1e-9)))
}

/// Up to [`PUBLISH_CHUNK`] messages after `after`, encoded as the relay encodes them, and the
/// last position read.
async fn read_messages(
    client: &Client,
    prefix: &str,
    after: i64,
) -> anyhow::Result<(Vec<Message>, Option<i64>)> {
    let rows = client
        .query(
            "SELECT position, envelope::text FROM events WHERE position > $1
             ORDER BY position LIMIT $2",
            &[&after, &PUBLISH_CHUNK],
        )
        .await
        .context("reading envelopes")?;
    let last = rows.last().map(|row| row.get::<_, i64>(0));
    let mut messages = Vec::with_capacity(rows.len());
    for row in &rows {
        let envelope: Envelope =
            serde_json::from_str(row.get(1)).context("decoding a stored envelope")?;
        let subject = subject::for_event(prefix, envelope.orgid, &envelope.event_type);
        let body = serde_json::to_vec(&envelope).context("encoding an envelope")?;
        messages.push((subject, envelope.id.to_string(), Bytes::from(body)));
    }
    Ok((messages, last))
}

/// Publishes `messages` with at most [`PUBLISH_IN_FLIGHT`] awaiting their acknowledgement.
async fn publish_pipelined(js: &jetstream::Context, messages: Vec<Message>) -> anyhow::Result<u64> {
    let mut in_flight = FuturesUnordered::new();
    let mut acknowledged = 0u64;
    for (subject, id, body) in messages {
        while in_flight.len() >= PUBLISH_IN_FLIGHT {
            settle(in_flight.next().await)?;
            acknowledged += 1;
        }
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, id);
        let ack = js
            .publish_with_headers(subject, headers, body)
            .await
            .context("publishing")?;
        in_flight.push(ack.into_future());
    }
    while let Some(settled) = in_flight.next().await {
        settle(Some(settled))?;
        acknowledged += 1;
    }
    Ok(acknowledged)
}

fn settle<T, E: std::error::Error + Send + Sync + 'static>(
    settled: Option<Result<T, E>>,
) -> anyhow::Result<()> {
    settled
        .context("an acknowledgement went missing")?
        .context("JetStream refused a publish")?;
    Ok(())
}
