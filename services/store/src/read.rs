//! Reading the store: streams (to decide), an organisation's history and the global log.

use std::collections::HashMap;

use anyhow::Context;
use gatehouse_events::{Chain, Envelope};
use tokio_postgres::types::Json;
use uuid::Uuid;

use crate::Db;

/// An event as stored: its envelope and the chain link after it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub envelope: Envelope,
    pub chain: Chain,
}

/// What kind of aggregate a stream holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Org,
    Admin,
}

/// A stream read whole: its organisation, version and events.
#[derive(Debug, Clone)]
pub struct Stream {
    pub org_id: Uuid,
    pub version: i64,
    pub events: Vec<Envelope>,
}

fn recorded(row: &tokio_postgres::Row) -> anyhow::Result<Recorded> {
    let Json(envelope): Json<Envelope> = row.try_get(0).context("decoding a stored envelope")?;
    let bytes: Vec<u8> = row.try_get(1)?;
    Ok(Recorded {
        envelope,
        chain: Chain::from_slice(&bytes).context("reading a chain link")?,
    })
}

impl Db {
    /// The last position given (0 for an empty store).
    pub async fn head(&self) -> anyhow::Result<i64> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached("SELECT last_position FROM store_head")
            .await
            .context("reading the store head")?;
        let row = client
            .query_one(&statement, &[])
            .await
            .context("reading the store head")?;
        Ok(row.get(0))
    }

    /// Reads whole streams, keyed by stream id; absent streams are absent from the map.
    pub async fn read_streams(&self, ids: &[Uuid]) -> anyhow::Result<HashMap<Uuid, Stream>> {
        let after: Vec<(Uuid, i64)> = ids.iter().map(|&id| (id, 0)).collect();
        self.read_streams_after(&after).await
    }

    /// Reads each stream's events after the version given with it (0: the whole stream), keyed
    /// by stream id; a stream with nothing after that version is absent from the map. Each
    /// read goes through the `(stream_id, stream_version)` index, so a long stream costs only
    /// what it gained. A read of many streams runs as up to [`READ_PARALLEL`] statements at
    /// once, each on its own connection, so that decoding one slice's rows overlaps the
    /// server's work on the next. Slices may see different snapshots; that is safe because a
    /// decision on what was read is appended only if every stream it read (or the
    /// organisation's position) is still where it was.
    pub async fn read_streams_after(
        &self,
        streams: &[(Uuid, i64)],
    ) -> anyhow::Result<HashMap<Uuid, Stream>> {
        // Each stream once (a repeated id would read its events twice), from its lowest version.
        let mut streams = streams.to_vec();
        streams.sort_unstable();
        streams.dedup_by_key(|(id, _)| *id);
        let slice = streams.len().div_ceil(READ_PARALLEL).max(READ_SLICE_MIN);
        if streams.len() <= slice {
            return read_slice(self, streams).await;
        }
        let reads: Vec<_> = streams
            .chunks(slice)
            .map(|chunk| tokio::spawn(read_slice_owned(self.clone(), chunk.to_vec())))
            .collect();
        let mut all = HashMap::with_capacity(streams.len());
        for read in reads {
            all.extend(read.await.context("reading streams")??);
        }
        Ok(all)
    }

    /// The ids of an organisation's streams of one kind.
    pub async fn org_streams(&self, org_id: Uuid, kind: StreamKind) -> anyhow::Result<Vec<Uuid>> {
        let client = self.client().await?;
        let kind = match kind {
            StreamKind::Org => "org",
            StreamKind::Admin => "admin",
        };
        let rows = client
            .query(
                "SELECT stream_id FROM streams WHERE org_id = $1 AND kind = $2::text::stream_kind ORDER BY stream_id",
                &[&org_id, &kind],
            )
            .await
            .context("listing an organisation's streams")?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// The organisation's last position and chain head (0 and c_0 when it has no event).
    pub async fn org_head(&self, org_id: Uuid) -> anyhow::Result<(i64, Chain)> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT last_position, head FROM org_chains WHERE org_id = $1",
                &[&org_id],
            )
            .await
            .context("reading an organisation's chain head")?;
        match row {
            Some(row) => {
                let bytes: Vec<u8> = row.get(1);
                Ok((row.get(0), Chain::from_slice(&bytes)?))
            }
            None => Ok((0, Chain::GENESIS)),
        }
    }

    /// Up to `limit` events after `position`, across organisations, in position order.
    pub async fn read_after(&self, position: i64, limit: i64) -> anyhow::Result<Vec<Recorded>> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT envelope, chain FROM events WHERE position > $1 ORDER BY position LIMIT $2",
            )
            .await
            .context("reading events after a position")?;
        let rows = client
            .query(&statement, &[&position, &limit])
            .await
            .context("reading events after a position")?;
        rows.iter().map(recorded).collect()
    }

    /// Up to `limit` events of one organisation after `position`, in position order.
    pub async fn read_org_after(
        &self,
        org_id: Uuid,
        position: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<Recorded>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT envelope, chain FROM events WHERE org_id = $1 AND position > $2 ORDER BY position LIMIT $3",
                &[&org_id, &position, &limit],
            )
            .await
            .context("reading an organisation's events")?;
        rows.iter().map(recorded).collect()
    }
}

/// At most this many statements read one call's streams at once.
const READ_PARALLEL: usize = 4;
/// A read of fewer streams than this per slice stays one statement: splitting it would cost
/// more round trips than it overlaps.
const READ_SLICE_MIN: usize = 1000;

async fn read_slice_owned(
    db: Db,
    streams: Vec<(Uuid, i64)>,
) -> anyhow::Result<HashMap<Uuid, Stream>> {
    read_slice(&db, streams).await
}

/// One statement's read of some streams, each from its own version on. The statement is
/// cached, and a cached statement may run a generic plan, which cannot see how few streams the
/// array holds: a plain join then hashed the array against a scan of the whole events table.
/// The lateral subquery, fenced by `OFFSET 0` so the planner does not flatten it back into that
/// join, is an index look-up per stream in every plan. The rows are not sorted by the server
/// (for 10,000 streams that sort spilled to disk); each stream's events are put in order here.
async fn read_slice(db: &Db, streams: Vec<(Uuid, i64)>) -> anyhow::Result<HashMap<Uuid, Stream>> {
    let (ids, after): (Vec<Uuid>, Vec<i64>) = streams.into_iter().unzip();
    let client = db.client().await?;
    let statement = client
        .prepare_cached(
            "SELECT e.envelope, e.stream_id, e.org_id
             FROM unnest($1::uuid[], $2::bigint[]) AS w(stream_id, after_version)
             CROSS JOIN LATERAL (
                 SELECT envelope, stream_id, org_id FROM events
                 WHERE stream_id = w.stream_id AND stream_version > w.after_version
                 OFFSET 0
             ) e",
        )
        .await
        .context("reading streams")?;
    let rows = client
        .query(&statement, &[&ids, &after])
        .await
        .context("reading streams")?;
    drop(client);
    let mut streams: HashMap<Uuid, Stream> = HashMap::new();
    for row in rows {
        let Json(envelope): Json<Envelope> =
            row.try_get(0).context("decoding a stored envelope")?;
        let stream_id: Uuid = row.get(1);
        let entry = streams.entry(stream_id).or_insert_with(|| Stream {
            org_id: row.get(2),
            version: 0,
            events: Vec::new(),
        });
        entry.version = entry.version.max(envelope.streamversion);
        entry.events.push(envelope);
    }
    for stream in streams.values_mut() {
        stream.events.sort_by_key(|e| e.streamversion);
    }
    Ok(streams)
}
