//! Appending events: atomic over many streams, with optimistic concurrency per stream.

use std::collections::HashMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use gatehouse_events::envelope::EnvelopeParts;
use gatehouse_events::types::Aggregate;
use gatehouse_events::{Actor, Chain, Envelope, Event};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::Db;

/// What a writer expects of a stream's version when it appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// The stream has no event yet.
    NoStream,
    /// The stream's last event has this version.
    Exactly(i64),
    /// Anything (for streams whose events do not depend on their past).
    Any,
}

/// A statement run in the append's transaction before the events are written (e.g. a
/// credentials row). A unique violation in it is reported as [`AppendError::Unique`].
pub struct Statement {
    pub sql: &'static str,
    pub params: Vec<Box<dyn ToSql + Sync + Send>>,
}

/// Everything one command writes, in one transaction.
pub struct AppendRequest {
    pub org_id: Uuid,
    pub actor: Actor,
    pub correlation_id: Uuid,
    pub time: DateTime<Utc>,
    /// How the actor authenticated (`session`, `api-key`), recorded in each envelope.
    pub auth_method: Option<&'static str>,
    pub events: Vec<Event>,
    /// Expectations on streams, whether this request writes to them or only read them.
    pub expected: Vec<(Uuid, Expected)>,
    /// When set, the organisation's last position must still be this one: no event of the
    /// organisation was appended since the writer read it (for decisions over all its admins).
    pub org_position: Option<i64>,
    pub statements: Vec<Statement>,
}

/// The events as they were stored and will be published.
#[derive(Debug, Clone, Default)]
pub struct Appended {
    pub envelopes: Vec<Envelope>,
    pub chains: Vec<Chain>,
}

impl Appended {
    /// The global position of the last event written.
    pub fn last_position(&self) -> Option<i64> {
        self.envelopes.last().map(|e| e.position)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// A stream or the organisation moved since the writer read it: read again and retry.
    #[error("a concurrent change won: read again and retry")]
    Conflict,
    /// A unique constraint refused a row (named by the constraint).
    #[error("unique constraint {0} refused the change")]
    Unique(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

fn map_db_error(e: tokio_postgres::Error, doing: &'static str) -> AppendError {
    if let Some(db) = e.as_db_error() {
        if db.code() == &SqlState::UNIQUE_VIOLATION {
            let constraint = db.constraint().unwrap_or_default().to_owned();
            if constraint.starts_with("events_") || constraint.starts_with("streams_") {
                return AppendError::Conflict;
            }
            return AppendError::Unique(constraint);
        }
        if db.code() == &SqlState::T_R_SERIALIZATION_FAILURE
            || db.code() == &SqlState::T_R_DEADLOCK_DETECTED
        {
            return AppendError::Conflict;
        }
    }
    AppendError::Other(anyhow::Error::new(e).context(doing))
}

impl Db {
    /// Appends the request's events atomically, or nothing.
    pub async fn append(&self, req: AppendRequest) -> Result<Appended, AppendError> {
        let mut client = self
            .pool
            .get()
            .await
            .context("getting a Postgres connection")?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| map_db_error(e, "beginning an append"))?;
        let appended = append_in(&tx, req).await?;
        tx.commit()
            .await
            .map_err(|e| map_db_error(e, "committing an append"))?;
        Ok(appended)
    }
}

/// Appends inside a transaction the caller owns and commits. Until that commit, every other
/// append waits: positions are given in commit order.
pub async fn append_in(
    tx: &tokio_postgres::Transaction<'_>,
    req: AppendRequest,
) -> Result<Appended, AppendError> {
    run_statements(tx, &req).await?;
    if req.events.is_empty() && req.expected.is_empty() {
        return Ok(Appended::default());
    }
    let head = lock_head(tx).await?;
    let appended = write_after(tx, req, head).await?;
    if let Some(last) = appended.last_position() {
        save_head(tx, last).await?;
    }
    Ok(appended)
}

/// Takes the append lock (held until the transaction ends) and answers the store's last
/// position. Everything read after it is current.
pub(crate) async fn lock_head(tx: &tokio_postgres::Transaction<'_>) -> Result<i64, AppendError> {
    let row = tx
        .query_one("SELECT last_position FROM store_head FOR UPDATE", &[])
        .await
        .map_err(|e| map_db_error(e, "taking the append lock"))?;
    Ok(row.get(0))
}

/// Moves the store's last position, under the lock [`lock_head`] took.
pub(crate) async fn save_head(
    tx: &tokio_postgres::Transaction<'_>,
    last: i64,
) -> Result<(), AppendError> {
    tx.execute("UPDATE store_head SET last_position = $1", &[&last])
        .await
        .map_err(|e| map_db_error(e, "advancing the store head"))?;
    Ok(())
}

/// Runs the request's own statements (credentials rows, …).
pub(crate) async fn run_statements(
    tx: &tokio_postgres::Transaction<'_>,
    req: &AppendRequest,
) -> Result<(), AppendError> {
    for st in &req.statements {
        let params: Vec<&(dyn ToSql + Sync)> = st
            .params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        tx.execute(st.sql, &params)
            .await
            .map_err(|e| map_db_error(e, "running a statement of the append"))?;
    }
    Ok(())
}

/// Checks the request's expectations and writes its events at the positions after `head`
/// (the store's last position, read under the lock), with the organisation's chain and the
/// streams' versions; the caller moves the store head. Writes nothing on a conflict.
pub(crate) async fn write_after(
    tx: &tokio_postgres::Transaction<'_>,
    req: AppendRequest,
    head: i64,
) -> Result<Appended, AppendError> {
    let n = req.events.len() as i64;
    let last = head + n;
    let mut stream_ids: Vec<Uuid> = req.expected.iter().map(|(id, _)| *id).collect();
    stream_ids.extend(req.events.iter().map(Event::stream_id));
    stream_ids.sort();
    stream_ids.dedup();
    let streams_params: [&(dyn ToSql + Sync); 1] = [&stream_ids];
    let org_params: [&(dyn ToSql + Sync); 1] = [&req.org_id];
    let (rows, org_head) = futures::try_join!(
        tx.query(
            "SELECT stream_id, org_id, version FROM streams WHERE stream_id = ANY($1)",
            &streams_params
        ),
        tx.query_opt(
            "SELECT head, last_position FROM org_chains WHERE org_id = $1",
            &org_params
        ),
    )
    .map_err(|e| map_db_error(e, "reading stream versions"))?;

    let mut versions: HashMap<Uuid, i64> = HashMap::with_capacity(rows.len());
    for row in rows {
        let org: Uuid = row.get(1);
        if org != req.org_id {
            // A stream of another organisation: never written across the tenant boundary.
            return Err(AppendError::Conflict);
        }
        versions.insert(row.get(0), row.get(2));
    }
    for (id, expected) in &req.expected {
        let current = versions.get(id).copied();
        let ok = match expected {
            Expected::Any => true,
            Expected::NoStream => current.is_none(),
            Expected::Exactly(v) => current == Some(*v),
        };
        if !ok {
            return Err(AppendError::Conflict);
        }
    }
    let (mut chain, org_last) = match &org_head {
        Some(row) => {
            let bytes: Vec<u8> = row.get(0);
            (
                Chain::from_slice(&bytes).context("reading the chain head")?,
                row.get::<_, i64>(1),
            )
        }
        None => (Chain::GENESIS, 0),
    };
    if let Some(expected_last) = req.org_position
        && expected_last != org_last
    {
        return Err(AppendError::Conflict);
    }
    if req.events.is_empty() {
        return Ok(Appended::default());
    }

    let first = head + 1;
    let mut envelopes = Vec::with_capacity(req.events.len());
    let mut chains = Vec::with_capacity(req.events.len());
    let mut kinds: HashMap<Uuid, &'static str> = HashMap::new();
    for (i, event) in req.events.iter().enumerate() {
        let stream = event.stream_id();
        let version = versions.entry(stream).or_insert(0);
        *version += 1;
        kinds.insert(
            stream,
            match event.aggregate() {
                Aggregate::Org(_) => "org",
                Aggregate::Admin(_) => "admin",
            },
        );
        let parts = EnvelopeParts {
            id: Uuid::now_v7(),
            org_id: req.org_id,
            actor: req.actor,
            correlation_id: req.correlation_id,
            time: req.time,
            auth_method: req.auth_method,
        };
        let envelope = Envelope::new(&parts, event, first + i as i64, *version);
        chain = chain.next(&envelope).context("hashing an envelope")?;
        envelopes.push(envelope);
        chains.push(chain);
    }

    let positions: Vec<i64> = envelopes.iter().map(|e| e.position).collect();
    let streams: Vec<Uuid> = req.events.iter().map(Event::stream_id).collect();
    let stream_versions: Vec<i64> = envelopes.iter().map(|e| e.streamversion).collect();
    let ids: Vec<Uuid> = envelopes.iter().map(|e| e.id).collect();
    let types: Vec<&str> = envelopes.iter().map(|e| e.event_type.as_str()).collect();
    let bodies: Vec<serde_json::Value> = envelopes
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()
        .context("encoding envelopes")?;
    let chain_bytes: Vec<Vec<u8>> = chains.iter().map(|c| c.0.to_vec()).collect();
    let touched: Vec<Uuid> = kinds.keys().copied().collect();
    let touched_kinds: Vec<&str> = touched.iter().map(|id| kinds[id]).collect();
    let touched_versions: Vec<i64> = touched.iter().map(|id| versions[id]).collect();
    let head_bytes = chain.0.to_vec();

    let channel = crate::EVENTS_CHANNEL;
    let payload = last.to_string();
    let events_params: [&(dyn ToSql + Sync); 9] = [
        &positions,
        &req.org_id,
        &req.time,
        &streams,
        &stream_versions,
        &ids,
        &types,
        &bodies,
        &chain_bytes,
    ];
    let stream_params: [&(dyn ToSql + Sync); 4] =
        [&touched, &req.org_id, &touched_kinds, &touched_versions];
    let chain_params: [&(dyn ToSql + Sync); 4] = [&req.org_id, &head_bytes, &last, &n];
    let notify_params: [&(dyn ToSql + Sync); 2] = [&channel, &payload];
    futures::try_join!(
        tx.execute(
            "INSERT INTO events (position, org_id, stream_id, stream_version, event_id, event_type, occurred_at, envelope, chain)
             SELECT p, $2, s, v, i, t, $3, e, c
             FROM unnest($1::bigint[], $4::uuid[], $5::bigint[], $6::uuid[], $7::text[], $8::jsonb[], $9::bytea[])
                  AS x(p, s, v, i, t, e, c)",
            &events_params,
        ),
        tx.execute(
            "INSERT INTO streams (stream_id, org_id, kind, version)
             SELECT s, $2, k::stream_kind, v FROM unnest($1::uuid[], $3::text[], $4::bigint[]) AS x(s, k, v)
             ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version",
            &stream_params,
        ),
        tx.execute(
            "INSERT INTO org_chains (org_id, head, last_position, events) VALUES ($1, $2, $3, $4)
             ON CONFLICT (org_id) DO UPDATE
             SET head = EXCLUDED.head, last_position = EXCLUDED.last_position,
                 events = org_chains.events + EXCLUDED.events",
            &chain_params,
        ),
        tx.execute("SELECT pg_notify($1, $2)", &notify_params),
    )
    .map_err(|e| map_db_error(e, "writing events"))?;

    Ok(Appended { envelopes, chains })
}
