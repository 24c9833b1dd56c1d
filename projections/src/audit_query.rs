//! Reads of the audit read model (schema `proj_audit`): filtered keyset pages of AuditRecords
//! ([`list`]) for `GET /audit/events`, and the CSV export ([`csv_chunks`], [`for_each_csv_chunk`]),
//! read in keyset batches so memory stays constant whatever the history's size.
//!
//! Records are ordered by their global position, which never changes once given: a page's
//! `search_after` is the last position it shows, and the next page starts strictly after (or
//! before, sorting `desc`) it, so events appended meanwhile neither shift nor repeat a record.
//! Times are half-open: `start_time` is included, `end_time` is not.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use gatehouse_events::audit::{self, AuditRecord};
use gatehouse_store::Db;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

pub const MIN_LIMIT: i64 = 1;
pub const MAX_LIMIT: i64 = 1000;

/// Records read per batch by the CSV export.
pub const CSV_BATCH: i64 = 1000;

/// How long the export waits for the audit read model to reach the position it must cover.
pub const CATCH_UP_WAIT: Duration = Duration::from_secs(10);

/// Who initiated a record, or what it is about: an admin (or organisation) id, an admin's
/// email, or (initiators only) the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartyFilter {
    Id(Uuid),
    /// Lower-cased, as emails are stored.
    Email(String),
    System,
}

impl PartyFilter {
    /// `system`, a UUID, or an email address (something with an `@`); `None` otherwise.
    pub fn parse(s: &str) -> Option<PartyFilter> {
        let s = s.trim();
        if s == "system" {
            Some(PartyFilter::System)
        } else if let Ok(id) = Uuid::parse_str(s) {
            Some(PartyFilter::Id(id))
        } else if s.len() > 2 && s.contains('@') {
            Some(PartyFilter::Email(s.to_lowercase()))
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// Oldest first (the default).
    #[default]
    Asc,
    Desc,
}

impl Sort {
    pub fn parse(s: &str) -> Option<Sort> {
        match s {
            "asc" => Some(Sort::Asc),
            "desc" => Some(Sort::Desc),
            _ => None,
        }
    }
}

/// The filters of `GET /audit/events`; `None` means "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Included.
    pub start_time: Option<DateTime<Utc>>,
    /// Excluded.
    pub end_time: Option<DateTime<Utc>>,
    /// One of [`audit::EVENT_TYPES`].
    pub event_type: Option<String>,
    pub initiated_by: Option<PartyFilter>,
    pub resource: Option<PartyFilter>,
}

/// One page of records.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub records: Vec<AuditRecord>,
    /// The last record's position, when more records follow; `None` on the last page.
    pub search_after: Option<i64>,
}

/// The SQL conditions of a query and their parameters, numbered in the order pushed.
struct Conditions<'a> {
    sql: String,
    params: Vec<&'a (dyn ToSql + Sync)>,
}

impl<'a> Conditions<'a> {
    fn new(org: &'a Uuid) -> Conditions<'a> {
        Conditions {
            sql: "org_id = $1".to_owned(),
            params: vec![org],
        }
    }

    fn push(&mut self, condition: &str, param: &'a (dyn ToSql + Sync)) {
        self.params.push(param);
        let n = self.params.len();
        self.sql.push_str(&format!(
            " AND {}",
            condition.replace('?', &format!("${n}"))
        ));
    }

    fn party(&mut self, id_column: &str, email_column: &str, party: &'a PartyFilter) {
        match party {
            PartyFilter::Id(id) => self.push(&format!("{id_column} = ?"), id),
            PartyFilter::Email(email) => self.push(&format!("{email_column} = ?"), email),
            PartyFilter::System => self.sql.push_str(&format!(" AND {id_column} IS NULL")),
        }
    }

    fn time(&mut self, start: &'a Option<DateTime<Utc>>, end: &'a Option<DateTime<Utc>>) {
        if let Some(start) = start {
            self.push("occurred_at >= ?", start);
        }
        if let Some(end) = end {
            self.push("occurred_at < ?", end);
        }
    }
}

fn record_of(row: &tokio_postgres::Row) -> anyhow::Result<AuditRecord> {
    let json: serde_json::Value = row.try_get("record").context("reading a record")?;
    serde_json::from_value(json).context("decoding a stored audit record")
}

/// A page of the organisation's records matching `filter`, in `sort` order, strictly after
/// (`asc`) or before (`desc`) the position `search_after`. `limit` must be within
/// [`MIN_LIMIT`]`..=`[`MAX_LIMIT`] (callers validate it first, answering 400).
pub async fn list(
    db: &Db,
    org: Uuid,
    filter: &Filter,
    sort: Sort,
    search_after: Option<i64>,
    limit: i64,
) -> anyhow::Result<Page> {
    anyhow::ensure!(
        (MIN_LIMIT..=MAX_LIMIT).contains(&limit),
        "a page holds {MIN_LIMIT} to {MAX_LIMIT} records, not {limit}"
    );
    let mut conditions = Conditions::new(&org);
    conditions.time(&filter.start_time, &filter.end_time);
    if let Some(event_type) = &filter.event_type {
        conditions.push("event_type = ?", event_type);
    }
    if let Some(party) = &filter.initiated_by {
        conditions.party("initiator_id", "initiator_email", party);
    }
    if let Some(party) = &filter.resource {
        conditions.party("resource_id", "resource_email", party);
    }
    let (after, order) = match sort {
        Sort::Asc => ("position > ?", "ASC"),
        Sort::Desc => ("position < ?", "DESC"),
    };
    if let Some(position) = &search_after {
        conditions.push(after, position);
    }
    // One more than the page, to know whether another page follows.
    let fetch = limit + 1;
    conditions.params.push(&fetch);
    let sql = format!(
        "SELECT record FROM proj_audit.records WHERE {} ORDER BY position {order} LIMIT ${}",
        conditions.sql,
        conditions.params.len()
    );
    let client = db.client().await?;
    // Not a cached statement: each combination of filters gets a plan of its own.
    let rows = client
        .query(&sql, &conditions.params)
        .await
        .context("listing audit records")?;
    let mut records = rows
        .iter()
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .map(record_of)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
    records.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let search_after = if more {
        records.last().map(|r| r.position)
    } else {
        None
    };
    Ok(Page {
        records,
        search_after,
    })
}

/// The last position the live audit read model has applied.
pub async fn applied(db: &Db) -> anyhow::Result<i64> {
    let client = db.client().await?;
    let row = client
        .query_one("SELECT position FROM proj_audit.checkpoint", &[])
        .await
        .context("reading the audit read model's checkpoint")?;
    Ok(row.try_get(0)?)
}

/// Waits (polling) until the audit read model has applied `position`, at most `timeout`.
pub async fn wait_until_applied(db: &Db, position: i64, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let applied = applied(db).await?;
        if applied >= position {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the audit read model has applied the history up to position {applied}, not yet \
             {position}: is the projections role running? (`gatehouse projections rebuild audit` \
             builds it from the event store)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The organisation's history as CSV (header row first, then one row per record in position
/// order; see [`audit::csv_row`] for the columns), in chunks of up to [`CSV_BATCH`] rows.
/// Covers the records with `start_time <= time < end_time` (either bound optional) and
/// `position <= until_position`; waits up to [`CATCH_UP_WAIT`] for the read model to reach
/// `until_position` first, and fails if it does not. Reads one batch at a time: constant
/// memory whatever the size. Each batch is read on a pooled connection, released in between.
pub fn csv_chunks(
    db: Db,
    org: Uuid,
    start_time: Option<DateTime<Utc>>,
    end_time: Option<DateTime<Utc>>,
    until_position: i64,
) -> impl Stream<Item = anyhow::Result<String>> + Send + 'static {
    enum Step {
        Header,
        After(i64),
        Done,
    }
    futures::stream::try_unfold(Step::Header, move |step| {
        let db = db.clone();
        async move {
            match step {
                Step::Header => {
                    wait_until_applied(&db, until_position, CATCH_UP_WAIT).await?;
                    Ok(Some((audit::csv_header(), Step::After(0))))
                }
                Step::After(after) => {
                    let records =
                        csv_batch(&db, org, start_time, end_time, after, until_position).await?;
                    let Some(last) = records.last().map(|r| r.position) else {
                        return Ok(None);
                    };
                    let next = if (records.len() as i64) < CSV_BATCH {
                        Step::Done
                    } else {
                        Step::After(last)
                    };
                    let chunk: String = records.iter().map(audit::csv_row).collect();
                    Ok(Some((chunk, next)))
                }
                Step::Done => Ok(None),
            }
        }
    })
}

/// [`csv_chunks`] handed to `sink` one chunk at a time (for writers that are not streams).
pub async fn for_each_csv_chunk(
    db: Db,
    org: Uuid,
    start_time: Option<DateTime<Utc>>,
    end_time: Option<DateTime<Utc>>,
    until_position: i64,
    mut sink: impl FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let chunks = csv_chunks(db, org, start_time, end_time, until_position);
    let mut chunks = std::pin::pin!(chunks);
    while let Some(chunk) = chunks.next().await {
        sink(&chunk?)?;
    }
    Ok(())
}

async fn csv_batch(
    db: &Db,
    org: Uuid,
    start_time: Option<DateTime<Utc>>,
    end_time: Option<DateTime<Utc>>,
    after: i64,
    until: i64,
) -> anyhow::Result<Vec<AuditRecord>> {
    let mut conditions = Conditions::new(&org);
    conditions.time(&start_time, &end_time);
    conditions.push("position > ?", &after);
    conditions.push("position <= ?", &until);
    conditions.params.push(&CSV_BATCH);
    let sql = format!(
        "SELECT record FROM proj_audit.records WHERE {} ORDER BY position LIMIT ${}",
        conditions.sql,
        conditions.params.len()
    );
    let client = db.client().await?;
    let rows = client
        .query(&sql, &conditions.params)
        .await
        .context("reading audit records to export")?;
    rows.iter().map(record_of).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parties_are_ids_emails_or_the_system() {
        let id = Uuid::now_v7();
        assert_eq!(
            PartyFilter::parse(&id.to_string()),
            Some(PartyFilter::Id(id))
        );
        assert_eq!(
            PartyFilter::parse(" Ada@Example.com "),
            Some(PartyFilter::Email("ada@example.com".into()))
        );
        assert_eq!(PartyFilter::parse("system"), Some(PartyFilter::System));
        assert_eq!(PartyFilter::parse("ada"), None);
        assert_eq!(PartyFilter::parse(""), None);
    }

    #[test]
    fn filters_become_numbered_conditions() {
        let org = Uuid::nil();
        let email = PartyFilter::Email("a@b.c".into());
        let start = Some(Utc::now());
        let mut c = Conditions::new(&org);
        c.time(&start, &None);
        c.party("initiator_id", "initiator_email", &email);
        c.party("initiator_id", "initiator_email", &PartyFilter::System);
        assert_eq!(
            c.sql,
            "org_id = $1 AND occurred_at >= $2 AND initiator_email = $3 AND initiator_id IS NULL"
        );
        assert_eq!(c.params.len(), 3);
    }
}
