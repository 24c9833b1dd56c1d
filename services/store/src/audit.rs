//! The audit's reads of the store: an organisation's history in keyset batches for exports
//! (constant memory whatever its size), and the hash chain recomputed from the stored
//! envelopes ([`Db::verify_org`]).

use anyhow::Context;
use chrono::{DateTime, Utc};
use gatehouse_events::Chain;
use gatehouse_events::verify::{ExportLine, Report, Start, Verifier};
use serde_json::Value;
use tokio_postgres::types::Json;
use uuid::Uuid;

use crate::Db;

/// Rows a batch reads: about a megabyte of envelopes.
pub const BATCH: i64 = 1000;

/// Which events an export holds: those whose time is in `[start, end)` (either bound optional).
/// Times compare at the millisecond, as the envelope's `time` states them (and as the audit
/// read model keeps them), not at the stored column's microsecond.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

/// An event as an export writes it: its global position, the envelope exactly as stored, and
/// the chain link after it.
#[derive(Debug, Clone)]
pub struct ExportRow {
    pub position: i64,
    pub envelope: Value,
    pub chain: Chain,
}

/// An organisation's history read forward in batches of at most [`BATCH`] rows, fixed at the
/// organisation's last position when it was opened: events appended meanwhile are not part of
/// it, so the export is one consistent prefix of the chain.
pub struct HistoryCursor {
    db: Db,
    org_id: Uuid,
    range: TimeRange,
    after: i64,
    until_position: i64,
    batch: i64,
}

impl HistoryCursor {
    /// Reads `rows` rows a batch instead of [`BATCH`] (at least one).
    pub fn with_batch(mut self, rows: i64) -> HistoryCursor {
        self.batch = rows.max(1);
        self
    }

    /// The organisation's last position this cursor stops at.
    pub fn until_position(&self) -> i64 {
        self.until_position
    }

    /// The next batch in position order; empty once the history is read.
    pub async fn next_batch(&mut self) -> anyhow::Result<Vec<ExportRow>> {
        if self.after >= self.until_position {
            return Ok(Vec::new());
        }
        let client = self.db.client().await?;
        let rows = client
            .query(
                "SELECT position, envelope, chain FROM events
                 WHERE org_id = $1 AND position > $2 AND position <= $3
                   AND ($4::timestamptz IS NULL OR date_trunc('milliseconds', occurred_at) >= $4)
                   AND ($5::timestamptz IS NULL OR date_trunc('milliseconds', occurred_at) < $5)
                 ORDER BY position LIMIT $6",
                &[
                    &self.org_id,
                    &self.after,
                    &self.until_position,
                    &self.range.start,
                    &self.range.end,
                    &self.batch,
                ],
            )
            .await
            .context("reading an organisation's history")?;
        let batch = rows
            .iter()
            .map(export_row)
            .collect::<anyhow::Result<Vec<_>>>()?;
        match batch.last() {
            Some(last) => self.after = last.position,
            // Nothing left in the range: the cursor is done.
            None => self.after = self.until_position,
        }
        Ok(batch)
    }
}

impl ExportRow {
    /// Appends the row as one NDJSON export line, `{"chain": "<hex>", "event": <envelope>}`.
    pub fn write_ndjson(&self, out: &mut Vec<u8>) -> anyhow::Result<()> {
        let line = ExportLine {
            chain: self.chain.to_hex(),
            event: &self.envelope,
        };
        serde_json::to_writer(&mut *out, &line).context("encoding an export line")?;
        out.push(b'\n');
        Ok(())
    }
}

fn export_row(row: &tokio_postgres::Row) -> anyhow::Result<ExportRow> {
    let Json(envelope): Json<Value> = row.try_get(1).context("reading a stored envelope")?;
    let bytes: Vec<u8> = row.try_get(2)?;
    Ok(ExportRow {
        position: row.try_get(0)?,
        envelope,
        chain: Chain::from_slice(&bytes).context("reading a chain link")?,
    })
}

/// The recorded state of an organisation's chain (`org_chains`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RecordedHead {
    head: Chain,
    last_position: i64,
    events: i64,
}

impl Db {
    /// Opens a cursor over the organisation's history as it stands now.
    pub async fn history(&self, org_id: Uuid, range: TimeRange) -> anyhow::Result<HistoryCursor> {
        let until_position = self
            .recorded_head(org_id)
            .await?
            .map_or(0, |h| h.last_position);
        Ok(HistoryCursor {
            db: self.clone(),
            org_id,
            range,
            after: 0,
            until_position,
            batch: BATCH,
        })
    }

    async fn recorded_head(&self, org_id: Uuid) -> anyhow::Result<Option<RecordedHead>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT head, last_position, events FROM org_chains WHERE org_id = $1",
                &[&org_id],
            )
            .await
            .context("reading an organisation's chain head")?;
        row.map(|row| {
            let bytes: Vec<u8> = row.try_get(0)?;
            Ok(RecordedHead {
                head: Chain::from_slice(&bytes).context("reading the chain head")?,
                last_position: row.try_get(1)?,
                events: row.try_get(2)?,
            })
        })
        .transpose()
    }

    /// Recomputes the organisation's chain from `c_0` over the stored envelopes, checks every
    /// stored link, and at the end the recorded head, last position and count, so a deleted
    /// last event is caught too (it is then reported at the recorded last position).
    pub async fn verify_org(&self, org_id: Uuid) -> anyhow::Result<Report> {
        let recorded = self.recorded_head(org_id).await?;
        let mut cursor = HistoryCursor {
            db: self.clone(),
            org_id,
            range: TimeRange::default(),
            after: 0,
            // Events appended after the recorded head was read are not part of this check.
            until_position: recorded.map_or(i64::MAX, |r| r.last_position),
            batch: BATCH,
        };
        let mut verifier = Verifier::new(Start::Genesis);
        let mut last_position = 0;
        loop {
            let batch = cursor.next_batch().await?;
            if batch.is_empty() {
                break;
            }
            for row in batch {
                verifier.push(row.position, &row.envelope, row.chain);
                last_position = row.position;
            }
        }
        match recorded {
            Some(r) => {
                let complete = r.last_position == last_position
                    && r.events == verifier.events() as i64
                    && r.head == verifier.stated_head();
                if !complete {
                    verifier.fail_at(r.last_position);
                }
            }
            // Events without a recorded head: the head row itself was removed.
            None if verifier.events() > 0 => verifier.fail_at(last_position),
            None => {}
        }
        Ok(verifier.finish())
    }
}
