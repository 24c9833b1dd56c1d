//! A batch: one transaction that applies consecutive events to one model and advances its
//! checkpoint with them, so an event is applied exactly once however often it is delivered.
//!
//! Positions are global and gapless (see `gatehouse_store`), so a model has applied exactly the
//! positions `1..=checkpoint`. A batch skips what is at or below the checkpoint (duplicates,
//! redeliveries) and applies only `checkpoint + 1`; when a message arrives past a hole, the hole
//! is filled from the event store first.

use std::task::Poll;

use anyhow::Context;
use gatehouse_events::{Envelope, Event};
use gatehouse_store::{Db, Statement};
use tokio_postgres::types::ToSql;

use crate::Projection;
use crate::schema::quote;

/// The Postgres channel on which each committed batch announces `<name>:<checkpoint>`.
pub const NOTIFY_CHANNEL: &str = "gatehouse_projections";

/// Runs a statement through the connection's statement cache. Plans are re-planned when the
/// `search_path` differs, so one cached statement serves the live and the `_next` schema.
pub(crate) async fn exec(
    tx: &deadpool_postgres::Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<(), tokio_postgres::Error> {
    let statement = tx.prepare_cached(sql).await?;
    tx.execute(&statement, params).await.map(|_| ())
}

/// Statements sent before the first of them is answered, at most (see [`pipeline`]).
const PIPELINE_WINDOW: usize = 256;

/// Runs the statements in order in the transaction, pipelined: each is sent without waiting
/// for the answer to the one before, and Postgres runs them in the order sent, so a run costs
/// a round trip per [`PIPELINE_WINDOW`] statements rather than one each. Under load every round
/// trip waits for both processes to be scheduled; one statement at a time, a projection fell
/// seconds behind the commands it follows.
pub(crate) async fn pipeline(
    tx: &deadpool_postgres::Transaction<'_>,
    statements: &[Statement],
) -> Result<(), tokio_postgres::Error> {
    // Each statement's request is queued on the connection the first time its future is
    // polled, so the statements are prepared first (a preparation would let later ones pass),
    // then the futures are polled in order.
    let mut prepared = Vec::with_capacity(statements.len());
    for statement in statements {
        prepared.push(tx.prepare_cached(statement.sql).await?);
    }
    let params: Vec<Vec<&(dyn ToSql + Sync)>> = statements
        .iter()
        .map(|s| {
            s.params
                .iter()
                .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                .collect()
        })
        .collect();
    for (window, window_params) in prepared
        .chunks(PIPELINE_WINDOW)
        .zip(params.chunks(PIPELINE_WINDOW))
    {
        let mut pending: Vec<_> = window
            .iter()
            .zip(window_params)
            .map(|(statement, params)| Some(Box::pin(tx.execute(statement, params))))
            .collect();
        std::future::poll_fn(|cx| {
            let mut done = true;
            // In order, every time: the first error answered is the first statement's.
            for slot in pending.iter_mut() {
                if let Some(future) = slot {
                    match future.as_mut().poll(cx) {
                        Poll::Ready(Ok(_)) => *slot = None,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => done = false,
                    }
                }
            }
            if done {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        })
        .await?;
    }
    Ok(())
}

/// Events queued in a batch before they are written together.
const WRITE_RUN: usize = 1_000;

/// Which schema a batch writes, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// The live model: under the projection's lock, announcing its checkpoint.
    Live,
    /// A rebuild's `_next` schema while it replays: nobody reads it, so no lock and no
    /// announcement (it would claim the live model got there).
    Shadow,
    /// A rebuild's `_next` schema as it replaces the live one: under the lock.
    Swap,
}

impl Target {
    fn schema(self, projection: Projection) -> String {
        match self {
            Target::Live => projection.schema(),
            Target::Shadow | Target::Swap => projection.next_schema(),
        }
    }
}

/// An open batch. Dropping it without [`Batch::commit`] rolls everything back.
pub(crate) struct Batch<'c> {
    projection: Projection,
    target: Target,
    tx: deadpool_postgres::Transaction<'c>,
    /// The checkpoint as last saved in this transaction.
    saved: i64,
    /// The checkpoint as applied in this transaction, counting the queued events.
    checkpoint: i64,
    /// Consecutive events accepted by [`Batch::apply`] and not written yet: written together
    /// (one statement per run for the models that can) when the run is full, and before the
    /// checkpoint is saved.
    queued: Vec<Envelope>,
}

impl<'c> Batch<'c> {
    /// Begins a batch on the target's schema and reads its checkpoint. Writers of the live
    /// schema take the projection's advisory lock first, before reading anything of it, so a
    /// rebuild's swap that committed while they waited is seen.
    pub async fn begin(
        client: &'c mut deadpool_postgres::Client,
        projection: Projection,
        target: Target,
    ) -> anyhow::Result<Batch<'c>> {
        let schema = target.schema(projection);
        let tx = client
            .transaction()
            .await
            .context("beginning a projection batch")?;
        // One round trip for the lock, the schema and the checkpoint: the simple-query protocol
        // runs the statements in order without a preparation each (the values are a constant
        // key and a quoted schema name, nothing from outside).
        let mut sql = String::new();
        if target != Target::Shadow {
            sql.push_str(&format!(
                "SELECT pg_advisory_xact_lock({});",
                projection.lock_key()
            ));
        }
        sql.push_str(&format!("SET LOCAL search_path TO {};", quote(&schema)));
        if target == Target::Shadow {
            // Nobody reads a shadow while it is replayed, and a crashed rebuild starts over:
            // its commits need not wait for the WAL flush.
            sql.push_str("SET LOCAL synchronous_commit = off;");
        }
        sql.push_str("SELECT position FROM checkpoint FOR UPDATE");
        let answers = tx
            .simple_query(&sql)
            .await
            .with_context(|| format!("locking and reading the checkpoint of {schema}"))?;
        let checkpoint =
            last_number(&answers).with_context(|| format!("reading the checkpoint of {schema}"))?;
        Ok(Batch {
            projection,
            target,
            tx,
            saved: checkpoint,
            checkpoint,
            queued: Vec::new(),
        })
    }

    /// The last position applied, counting this batch's events (written or queued).
    pub fn checkpoint(&self) -> i64 {
        self.checkpoint
    }

    /// The transaction, with every queued event written to it.
    pub async fn tx(&mut self) -> anyhow::Result<&deadpool_postgres::Transaction<'c>> {
        self.write_queued().await?;
        Ok(&self.tx)
    }

    /// Applies the event if it is the next one; one already applied is skipped. A later one is
    /// an error: fill the gap first.
    pub async fn apply(&mut self, envelope: &Envelope) -> anyhow::Result<()> {
        if !self.advance(envelope.position)? {
            return Ok(());
        }
        // An unreadable event is logged when written; it counts as applied, or it would
        // stall every event after it.
        self.queued.push(envelope.clone());
        if self.queued.len() >= WRITE_RUN {
            self.write_queued().await?;
        }
        Ok(())
    }

    /// Moves the checkpoint to `position` if it is the next one (`true`); one already applied
    /// leaves it (`false`); a later one is an error: fill the gap first.
    fn advance(&mut self, position: i64) -> anyhow::Result<bool> {
        if position <= self.checkpoint {
            return Ok(false);
        }
        anyhow::ensure!(
            position == self.checkpoint + 1,
            "position {position} is not the next after checkpoint {} of {}",
            self.checkpoint,
            self.projection.name()
        );
        self.checkpoint = position;
        Ok(true)
    }

    /// A rebuild's replay into its shadow: applies a run of consecutive events already decoded
    /// (`None`: one this version cannot read, counted as applied) in one write, straight from
    /// the slice rather than queued one by one. The shadow holds none of these positions (its
    /// checkpoint is below them) and nobody reads it, so the audit records are copied in
    /// ([`crate::audit::Insert::Copy`]). Events already applied are skipped; a gap is an
    /// error, as in [`Batch::apply`].
    pub async fn replay(&mut self, events: &[(Envelope, Option<Event>)]) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.target == Target::Shadow,
            "only a rebuild's shadow replays decoded events"
        );
        self.write_queued().await?;
        let mut decoded = Vec::with_capacity(events.len());
        for (envelope, event) in events {
            if self.advance(envelope.position)?
                && let Some(event) = event
            {
                decoded.push((envelope, event));
            }
        }
        self.projection
            .apply_decoded(&self.tx, &decoded, crate::audit::Insert::Copy)
            .await
    }

    async fn write_queued(&mut self) -> anyhow::Result<()> {
        if !self.queued.is_empty() {
            self.projection.apply(&self.tx, &self.queued).await?;
            self.queued.clear();
        }
        Ok(())
    }

    /// Applies, from the event store, the events between the checkpoint and `before`
    /// (exclusive), reading at most `chunk` at a time. Stops early only if the store does not
    /// hold them (which the caller checks with [`Batch::checkpoint`]).
    pub async fn fill_gap(&mut self, db: &Db, before: i64, chunk: i64) -> anyhow::Result<()> {
        while self.checkpoint + 1 < before {
            let want = (before - 1 - self.checkpoint).min(chunk.max(1));
            let events = db
                .read_after(self.checkpoint, want)
                .await
                .context("reading missed events from the store")?;
            if events.is_empty() {
                break;
            }
            for recorded in &events {
                self.apply(&recorded.envelope).await?;
            }
        }
        Ok(())
    }

    /// Writes the queued events and the checkpoint (in the transaction) if it advanced.
    pub async fn save(&mut self) -> anyhow::Result<()> {
        self.write_queued().await?;
        if self.checkpoint > self.saved {
            exec(&self.tx, SAVE_CHECKPOINT, &[&self.checkpoint])
                .await
                .context("advancing the checkpoint")?;
            self.saved = self.checkpoint;
        }
        Ok(())
    }

    /// Saves the checkpoint, announces it on [`NOTIFY_CHANNEL`] (delivered at commit) when this
    /// batch moved the live model, and commits. Returns the checkpoint.
    pub async fn commit(mut self) -> anyhow::Result<i64> {
        self.write_queued().await?;
        if self.checkpoint > self.saved {
            // Saved and announced in one round trip (a number and a projection's name, inlined).
            let mut sql = format!("UPDATE checkpoint SET position = {};", self.checkpoint);
            if self.target == Target::Live {
                sql.push_str(&notify_sql(self.projection, self.checkpoint));
            }
            self.tx
                .batch_execute(&sql)
                .await
                .context("advancing and announcing the checkpoint")?;
            self.saved = self.checkpoint;
        }
        self.tx
            .commit()
            .await
            .context("committing a projection batch")?;
        Ok(self.checkpoint)
    }
}

const SAVE_CHECKPOINT: &str = "UPDATE checkpoint SET position = $1";

/// The number in the first column of the last row a simple query answered.
fn last_number(answers: &[tokio_postgres::SimpleQueryMessage]) -> anyhow::Result<i64> {
    let row = answers
        .iter()
        .rev()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .context("no row answered")?;
    let text = row.try_get(0)?.context("a null answered")?;
    text.parse()
        .with_context(|| format!("{text:?} is not a position"))
}

/// Announces a checkpoint to [`crate::Checkpoints`] (sent when the transaction commits).
pub(crate) async fn notify(
    tx: &deadpool_postgres::Transaction<'_>,
    projection: Projection,
    checkpoint: i64,
) -> anyhow::Result<()> {
    tx.batch_execute(&notify_sql(projection, checkpoint))
        .await
        .context("announcing the checkpoint")?;
    Ok(())
}

/// The statement announcing `<name>:<checkpoint>`: a projection's name (letters and `_`) and a
/// number, so inlining them is safe.
fn notify_sql(projection: Projection, checkpoint: i64) -> String {
    format!(
        "SELECT pg_notify('{NOTIFY_CHANNEL}', '{}:{checkpoint}');",
        projection.name()
    )
}

/// Parses a notification payload `<name>:<position>`.
pub(crate) fn parse_notification(payload: &str) -> Option<(Projection, i64)> {
    let (name, position) = payload.rsplit_once(':')?;
    Some((Projection::parse(name)?, position.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_name_the_projection_and_its_position() {
        assert_eq!(
            parse_notification("home_widgets:42"),
            Some((Projection::HomeWidgets, 42))
        );
        assert_eq!(parse_notification("admins:x"), None);
        assert_eq!(parse_notification("nope:1"), None);
    }
}
