//! Rebuilding read models from the event store without taking them offline.
//!
//! For each projection, a shadow schema `proj_<name>_next` is built from the same DDL and filled
//! by replaying the whole store (one pass, shared by the projections rebuilt together) while the
//! live model keeps serving and following. Then, in one transaction per projection, under the
//! lock the runtime takes per batch: apply what arrived meanwhile, rename the live schema to
//! `_old` and `_next` to the live name, drop `_old`. Queries name tables by schema
//! (`proj_admins.admins`); Postgres resolves those names again after the swap, in new and in
//! cached plans, so a query running across it waits a moment rather than failing. The swap
//! waits only briefly for each of the live tables and, past that, rolls back and tries again,
//! so a query holding one table while it waits for another is never a deadlock's victim.
//!
//! The replay is the long part, and these keep it short:
//! - the shadow's secondary (non-unique) indexes are dropped before it and built again after
//!   it, once per index rather than once per row (what a projection looks up while applying
//!   goes through primary keys, which stay);
//! - each batch is read and decoded once, while the one before is applied; the projections
//!   apply it at the same time, each on a task and a connection of its own;
//! - the audit model's records, one per event, are copied into the shadow (`COPY … FROM STDIN`
//!   in binary, streamed while they are built) rather than inserted: every position is new
//!   there, so nothing needs `ON CONFLICT`;
//! - a shadow batch commits without waiting for the WAL flush: a crash loses at most the last
//!   batches of a shadow nobody reads, and a crashed rebuild starts again from scratch anyway.

use std::sync::Arc;

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use gatehouse_events::{Envelope, Event};
use gatehouse_store::Db;

use crate::Projection;
use crate::batch::{Batch, Target, notify};
use crate::projection::{decode, select};
use crate::schema::{self, quote};

/// Events read from the store per replay batch.
pub const REPLAY_BATCH: i64 = 5_000;

/// One rebuild at a time per database (a session lock, held by a connection of the rebuild's
/// own, so a crashed rebuild releases it).
const REBUILD_LOCK_KEY: i64 = 7_231_110;

/// Rebuilds the named projections (all when `names` is empty) from the event store.
/// `progress(done, total)` is called after each batch, in events; `total` is the store's head
/// when the rebuild started (and grows if appends outrun it). Fails with the valid names on an
/// unknown one, and if another rebuild is running.
pub async fn rebuild(
    db: &Db,
    names: &[String],
    progress: impl Fn(u64, u64) + Send + Sync,
) -> anyhow::Result<()> {
    let projections = select(names)?;
    schema::ensure_schemas(db)
        .await
        .context("creating the read models' schemas")?;

    let (guard, connection) = db
        .dedicated()
        .await
        .context("opening the rebuild's connection")?;
    let locked: bool = guard
        .query_one("SELECT pg_try_advisory_lock($1)", &[&REBUILD_LOCK_KEY])
        .await
        .context("taking the rebuild lock")?
        .get(0);
    anyhow::ensure!(
        locked,
        "another rebuild is running; try again when it has finished"
    );

    let result = rebuild_locked(db, &projections, &progress).await;
    // Closing the connection releases the lock.
    drop(guard);
    let _ = connection.await;
    result
}

async fn rebuild_locked(
    db: &Db,
    projections: &[Projection],
    progress: &(impl Fn(u64, u64) + Send + Sync),
) -> anyhow::Result<()> {
    let deferred = prepare_shadows(db, projections).await?;

    let head = db.head().await?;
    let total = u64::try_from(head).unwrap_or(0);
    progress(0, total);
    let mut cursor = 0i64;
    // Up to the head seen at the start; what comes after is applied at the swap. Each batch is
    // applied by every projection at once, each on a task of its own (so on any free core),
    // while the next one is read and decoded.
    let mut events = read_replay_batch(db, cursor, head).await?;
    while let Some(last) = events.last().map(|(envelope, _)| envelope.position) {
        let applied = futures::future::try_join_all(projections.iter().map(|p| {
            let (db, projection, events) = (db.clone(), *p, events.clone());
            async move {
                tokio::spawn(async move { replay(&db, projection, &events).await })
                    .await
                    .context("a replay task failed")?
            }
        }));
        let (_, next) = tokio::try_join!(applied, read_replay_batch(db, last, head))?;
        events = next;
        cursor = last;
        let done = u64::try_from(cursor).unwrap_or(0);
        progress(done, total.max(done));
    }

    build_deferred_indexes(db, &deferred).await?;
    // Fresh tables have no statistics yet: without them the planner reads whole tables for
    // queries that an index answers (e.g. an export's keyset batches).
    analyze_shadows(db, projections).await?;

    for projection in projections {
        let checkpoint = swap_yielding(db, *projection).await?;
        tracing::info!(
            projection = projection.name(),
            checkpoint,
            "rebuilt the read model"
        );
        let done = u64::try_from(checkpoint).unwrap_or(0);
        progress(
            done.max(u64::try_from(cursor).unwrap_or(0)),
            total.max(done),
        );
    }
    Ok(())
}

/// A replay batch: each envelope with its event, decoded once for every projection (`None`:
/// one this version cannot read, logged once).
type Decoded = Arc<Vec<(Envelope, Option<Event>)>>;

/// The replay batch after `cursor`, up to `head` (empty once there), decoded.
async fn read_replay_batch(db: &Db, cursor: i64, head: i64) -> anyhow::Result<Decoded> {
    if cursor >= head {
        return Ok(Arc::default());
    }
    let recorded = db
        .read_after(cursor, REPLAY_BATCH.min(head - cursor))
        .await
        .context("reading events to replay")?;
    Ok(Arc::new(
        recorded
            .into_iter()
            .map(|r| {
                let event = decode(&r.envelope, "rebuild");
                (r.envelope, event)
            })
            .collect(),
    ))
}

/// The secondary indexes of a shadow schema, dropped for the replay: their definitions, to
/// build them again after it.
const SECONDARY_INDEXES: &str = "SELECT i.indexname, i.indexdef
     FROM pg_indexes i
     JOIN pg_namespace n ON n.nspname = i.schemaname
     JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = i.indexname
     JOIN pg_index x ON x.indexrelid = c.oid
     WHERE i.schemaname = $1 AND NOT x.indisunique
     ORDER BY i.indexname";

/// Fresh `_next` schemas (a crashed rebuild may have left one behind), without their
/// secondary indexes; answers the definitions of those, per projection.
async fn prepare_shadows(
    db: &Db,
    projections: &[Projection],
) -> anyhow::Result<Vec<(Projection, Vec<String>)>> {
    let mut client = db.client().await?;
    let tx = client
        .transaction()
        .await
        .context("beginning the shadow schemas")?;
    let mut deferred = Vec::with_capacity(projections.len());
    for projection in projections {
        let next = projection.next_schema();
        tx.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", quote(&next)))
            .await
            .with_context(|| format!("dropping a leftover {next}"))?;
        schema::create(&tx, *projection, &next).await?;
        let mut definitions = Vec::new();
        for row in tx
            .query(SECONDARY_INDEXES, &[&next])
            .await
            .with_context(|| format!("listing the indexes of {next}"))?
        {
            let name: &str = row.get(0);
            tx.batch_execute(&format!("DROP INDEX {}.{}", quote(&next), quote(name)))
                .await
                .with_context(|| format!("deferring index {next}.{name}"))?;
            definitions.push(row.get(1));
        }
        deferred.push((*projection, definitions));
    }
    tx.commit().await.context("committing the shadow schemas")?;
    Ok(deferred)
}

/// Index builds run at once. Postgres already spreads each build over its parallel
/// maintenance workers; two at a time still overlap one's reading and writing with the other's
/// sorting (on 2 cores, two of the audit model's indexes built together took 2.9 s against
/// 3.6 s one after the other).
const INDEX_BUILDS: usize = 2;

/// Builds the indexes [`prepare_shadows`] deferred, [`INDEX_BUILDS`] at a time, each on a
/// connection of its own.
async fn build_deferred_indexes(
    db: &Db,
    deferred: &[(Projection, Vec<String>)],
) -> anyhow::Result<()> {
    // Owned, so that the rebuild's future stays `Send` (borrowed items would make the build
    // futures generic over their lifetime).
    let builds: Vec<(Projection, String)> = deferred
        .iter()
        .flat_map(|(projection, definitions)| definitions.iter().map(|d| (*projection, d.clone())))
        .collect();
    futures::stream::iter(builds)
        .map(|(projection, definition)| async move {
            let client = db.client().await?;
            client
                .batch_execute(&definition)
                .await
                .with_context(|| format!("building an index of the rebuilt {}", projection.name()))
        })
        .buffer_unordered(INDEX_BUILDS)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Gathers the planner's statistics on the shadow schemas' tables.
async fn analyze_shadows(db: &Db, projections: &[Projection]) -> anyhow::Result<()> {
    let client = db.client().await?;
    for projection in projections {
        let next = projection.next_schema();
        let tables = client
            .query(
                "SELECT tablename FROM pg_tables WHERE schemaname = $1",
                &[&next],
            )
            .await
            .with_context(|| format!("listing the tables of {next}"))?;
        for row in tables {
            let table: &str = row.get(0);
            client
                .batch_execute(&format!("ANALYZE {}.{}", quote(&next), quote(table)))
                .await
                .with_context(|| format!("analysing {next}.{table}"))?;
        }
    }
    Ok(())
}

/// Applies a replay batch to a shadow schema.
async fn replay(
    db: &Db,
    projection: Projection,
    events: &[(Envelope, Option<Event>)],
) -> anyhow::Result<()> {
    let mut client = db.client().await?;
    let mut batch = Batch::begin(&mut client, projection, Target::Shadow).await?;
    batch.replay(events).await?;
    batch.commit().await?;
    Ok(())
}

/// How long the swap waits for one of the live model's table locks before it gives way.
/// Well under Postgres's `deadlock_timeout` (1 s by default): a query that holds one of the
/// model's tables and waits for another the swap already holds would otherwise deadlock with
/// it, and Postgres would cancel the query.
const SWAP_LOCK_TIMEOUT: &str = "100ms";

/// Attempts at the swap before the rebuild gives up (each waits at most [`SWAP_LOCK_TIMEOUT`]
/// per lock, then steps back for a moment).
const SWAP_ATTEMPTS: u32 = 100;

/// [`swap`], again whenever it gave way to the queries on a lock.
async fn swap_yielding(db: &Db, projection: Projection) -> anyhow::Result<i64> {
    let mut attempt = 1;
    loop {
        match swap(db, projection).await {
            Err(e) if attempt < SWAP_ATTEMPTS && gave_way(&e) => {
                tracing::info!(
                    projection = projection.name(),
                    attempt,
                    "the swap gave way to queries holding the live model; trying again"
                );
                tokio::time::sleep(std::time::Duration::from_millis(
                    10 * u64::from(attempt.min(10)),
                ))
                .await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Whether the swap failed for waiting longer than [`SWAP_LOCK_TIMEOUT`] on a lock.
fn gave_way(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(tokio_postgres::Error::code)
            == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE)
    })
}

/// Catches the shadow up under the projection's lock and puts it in place of the live schema.
/// Its table locks are taken with [`SWAP_LOCK_TIMEOUT`], so it fails rather than deadlock with
/// a query (see [`swap_yielding`]).
async fn swap(db: &Db, projection: Projection) -> anyhow::Result<i64> {
    let mut client = db.client().await?;
    let mut batch = Batch::begin(&mut client, projection, Target::Swap).await?;
    loop {
        let events = db
            .read_after(batch.checkpoint(), REPLAY_BATCH)
            .await
            .context("reading events to replay")?;
        if events.is_empty() {
            break;
        }
        for recorded in &events {
            batch.apply(&recorded.envelope).await?;
        }
    }
    // Saved while `search_path` still names the shadow.
    batch.save().await?;
    let live = quote(&projection.schema());
    let next = quote(&projection.next_schema());
    let old = quote(&format!("{}_old", projection.schema()));
    batch
        .tx()
        .await?
        .batch_execute(&format!(
            "SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}';
             DROP SCHEMA IF EXISTS {old} CASCADE;
             ALTER SCHEMA {live} RENAME TO {old};
             ALTER SCHEMA {next} RENAME TO {live};
             DROP SCHEMA {old} CASCADE;"
        ))
        .await
        .with_context(|| format!("swapping in the rebuilt {}", projection.name()))?;
    let checkpoint = batch.checkpoint();
    notify(batch.tx().await?, projection, checkpoint).await?;
    batch.commit().await
}
