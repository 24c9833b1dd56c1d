//! Appending events: atomic over many streams, with optimistic concurrency per stream.
//!
//! Appends are written in batches (one for a lone [`Db::append`], many for a
//! [`crate::GroupAppender`]'s group): under the append lock, one round trip reads the version of
//! every stream and the chain head of every organisation the batch touches; each append's
//! expectations are checked in memory against those heads as the appends before it in the batch
//! left them; then every accepted event is written with one statement per table. A batch costs
//! the same few round trips whatever its size (two for a group, whose `BEGIN` and `COMMIT` ride
//! with the reads and the writes); only appends carrying their own statements (credentials rows)
//! add theirs, in a savepoint each so that a refused one undoes only itself.

use std::collections::HashMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Transaction};
use gatehouse_events::chain::envelope_canonical_json;
use gatehouse_events::envelope::EnvelopeParts;
use gatehouse_events::types::Aggregate;
use gatehouse_events::{Actor, Chain, Envelope, Event};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::Db;
use crate::json_text::JsonText;

pub(crate) mod pipelined;

use pipelined::Tip;

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

impl AppendRequest {
    /// Every stream the request expects something of or writes to (some more than once).
    fn touched(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.expected
            .iter()
            .map(|(id, _)| *id)
            .chain(self.events.iter().map(Event::stream_id))
    }
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
        let mut client = self.client().await?;
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
pub async fn append_in(tx: &Transaction<'_>, req: AppendRequest) -> Result<Appended, AppendError> {
    if req.events.is_empty() && req.expected.is_empty() {
        run_statements(tx, &req).await?;
        return Ok(Appended::default());
    }
    append_all(tx, vec![req])
        .await?
        .pop()
        .expect("one answer per request")
}

/// Appends the requests in order inside a transaction the caller owns and commits, each as if
/// alone: a refused one (a conflict, a unique violation in its statements) writes nothing and
/// leaves the others be. Answers each request's outcome; the outer error is a failure of the
/// whole batch (the lock, the reads, the writes), after which the transaction is lost.
pub async fn append_all(
    tx: &Transaction<'_>,
    requests: Vec<AppendRequest>,
) -> Result<Vec<Result<Appended, AppendError>>, AppendError> {
    let (results, _) = append_batch(tx, requests, Framing::Caller).await?;
    Ok(results)
}

/// Appends the requests as [`append_all`] does, in a transaction of its own on `client`: its
/// `BEGIN` goes in the same round trip as the lock and the heads read, its `COMMIT` in the same
/// round trip as the writes (a failed write aborts the transaction, and Postgres answers the
/// `COMMIT` behind it with a rollback). After an outer error the transaction's state is unknown:
/// the caller must not reuse the connection. Once committed, `tip` learns the heads the batch
/// read and left.
pub(crate) async fn append_group(
    client: &deadpool_postgres::Client,
    requests: Vec<AppendRequest>,
    tip: &mut Tip,
) -> Result<Vec<Result<Appended, AppendError>>, AppendError> {
    let (results, heads) = append_batch(client, requests, Framing::Own).await?;
    tip.learn(&heads);
    Ok(results)
}

/// Who begins and ends a batch's transaction.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// The caller, around the batch.
    Caller,
    /// The batch itself, pipelined with its first and last round trips.
    Own,
}

impl Framing {
    /// The statement a batch sends with its first round trip, if any.
    fn begin(self) -> Option<&'static str> {
        (self == Framing::Own).then_some("BEGIN")
    }

    /// The statement a batch sends with its last round trip, if any.
    fn end(self, ending: &'static str) -> Option<&'static str> {
        (self == Framing::Own).then_some(ending)
    }
}

/// Sends `sql` (a `BEGIN`, `COMMIT` or `ROLLBACK`) when there is one. Like a query on a prepared
/// statement, it is sent when first polled: in a join, after the futures before it.
async fn frame<C: GenericClient>(
    c: &C,
    sql: Option<&'static str>,
) -> Result<(), tokio_postgres::Error> {
    match sql {
        Some(sql) => c.batch_execute(sql).await,
        None => Ok(()),
    }
}

/// The outcome of each request, and the heads as the batch left them.
type BatchOutcome = (Vec<Result<Appended, AppendError>>, Heads);

async fn append_batch<C: GenericClient>(
    tx: &C,
    requests: Vec<AppendRequest>,
    framing: Framing,
) -> Result<BatchOutcome, AppendError> {
    // Alone, a refused request's transaction is rolled back whole (by its caller, or here when
    // the batch owns it): no savepoint needed.
    let isolate = requests.len() > 1;
    let mut heads = Heads::read(tx, &requests, framing).await?;
    let mut rows = Rows::default();
    let mut results = Vec::with_capacity(requests.len());
    for request in &requests {
        let planned = match heads.plan(request) {
            Ok(planned) => planned,
            Err(refused) => {
                results.push(Err(refused));
                continue;
            }
        };
        if !request.statements.is_empty() {
            if isolate {
                savepoint(tx, "SAVEPOINT append").await?;
            }
            if let Err(refused) = run_statements(tx, request).await {
                if isolate {
                    savepoint(tx, "ROLLBACK TO SAVEPOINT append").await?;
                } else {
                    // The transaction is aborted: nothing more can be written in it.
                    frame(tx, framing.end("ROLLBACK"))
                        .await
                        .map_err(|e| map_db_error(e, "ending a refused append"))?;
                    return Ok((vec![Err(refused)], heads));
                }
                results.push(Err(refused));
                continue;
            }
            if isolate {
                savepoint(tx, "RELEASE SAVEPOINT append").await?;
            }
        }
        results.push(Ok(heads.admit(planned, &mut rows)));
    }
    rows.write(tx, &heads, framing).await?;
    Ok((results, heads))
}

async fn savepoint<C: GenericClient>(tx: &C, sql: &'static str) -> Result<(), AppendError> {
    tx.batch_execute(sql)
        .await
        .map_err(|e| map_db_error(e, "managing an append's savepoint"))
}

/// Runs the request's own statements (credentials rows, …).
async fn run_statements<C: GenericClient>(tx: &C, req: &AppendRequest) -> Result<(), AppendError> {
    for st in &req.statements {
        let params: Vec<&(dyn ToSql + Sync)> = st
            .params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let statement = tx
            .prepare_cached(st.sql)
            .await
            .map_err(|e| map_db_error(e, "preparing a statement of the append"))?;
        tx.execute(&statement, &params)
            .await
            .map_err(|e| map_db_error(e, "running a statement of the append"))?;
    }
    Ok(())
}

/// Prepares the statements once per connection (no round trip after the first time), so that
/// the queries joined after it are each sent when first polled, in the join's order.
async fn prepare<C: GenericClient, const N: usize>(
    c: &C,
    sqls: [&'static str; N],
) -> Result<[tokio_postgres::Statement; N], tokio_postgres::Error> {
    let prepared = futures::future::try_join_all(sqls.map(|sql| c.prepare_cached(sql))).await?;
    Ok(prepared
        .try_into()
        .unwrap_or_else(|_| unreachable!("one statement per query")))
}

/// A stream's head as the batch sees it.
struct StreamHead {
    org: Uuid,
    version: i64,
    /// The stream's kind, once the batch writes to it.
    written: Option<&'static str>,
}

/// An organisation's chain head as the batch sees it.
#[derive(Clone, Copy)]
struct OrgHead {
    chain: Chain,
    last: i64,
    /// Events the batch adds to the organisation.
    added: i64,
}

/// What the store holds of everything a batch touches, read under the append lock, then moved
/// by each admitted append as its write will move it.
struct Heads {
    position: i64,
    streams: HashMap<Uuid, StreamHead>,
    orgs: HashMap<Uuid, OrgHead>,
}

/// One append, checked and ready to be written.
struct Planned {
    appended: Appended,
    org: Uuid,
    time: DateTime<Utc>,
    bodies: Vec<JsonText>,
    /// The stream of each event.
    streams: Vec<Uuid>,
    /// Each stream written, with its kind and version after the append.
    heads: Vec<(Uuid, &'static str, i64)>,
}

impl Heads {
    /// Takes the append lock (held until the transaction ends) and reads, in the same round
    /// trip, the heads of the requests' streams and organisations.
    async fn read<C: GenericClient>(
        tx: &C,
        requests: &[AppendRequest],
        framing: Framing,
    ) -> Result<Heads, AppendError> {
        let mut stream_ids: Vec<Uuid> = requests.iter().flat_map(AppendRequest::touched).collect();
        stream_ids.sort_unstable();
        stream_ids.dedup();
        let mut org_ids: Vec<Uuid> = requests.iter().map(|r| r.org_id).collect();
        org_ids.sort_unstable();
        org_ids.dedup();
        let stream_params: [&(dyn ToSql + Sync); 1] = [&stream_ids];
        let org_params: [&(dyn ToSql + Sync); 1] = [&org_ids];
        let [lock, read_streams, read_orgs] = prepare(
            tx,
            [
                "SELECT last_position FROM store_head FOR UPDATE",
                "SELECT stream_id, org_id, version FROM streams WHERE stream_id = ANY($1)",
                "SELECT org_id, head, last_position FROM org_chains WHERE org_id = ANY($1)",
            ],
        )
        .await
        .map_err(|e| map_db_error(e, "preparing the heads read"))?;
        // Sent in this order on one connection, so both reads run after the lock is taken.
        let ((), head, streams, orgs) = futures::try_join!(
            frame(tx, framing.begin()),
            tx.query(&lock, &[]),
            tx.query(&read_streams, &stream_params),
            tx.query(&read_orgs, &org_params),
        )
        .map_err(|e| map_db_error(e, "taking the append lock and reading heads"))?;
        let position = head
            .first()
            .map(|row| row.get(0))
            .context("the store head row is missing")?;
        let streams = streams
            .iter()
            .map(|row| {
                let head = StreamHead {
                    org: row.get(1),
                    version: row.get(2),
                    written: None,
                };
                (row.get(0), head)
            })
            .collect();
        let orgs = orgs
            .iter()
            .map(|row| {
                let bytes: Vec<u8> = row.get(1);
                let head = OrgHead {
                    chain: Chain::from_slice(&bytes).context("reading a chain head")?,
                    last: row.get(2),
                    added: 0,
                };
                Ok((row.get(0), head))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Heads {
            position,
            streams,
            orgs,
        })
    }

    /// Checks the request's expectations against the heads and builds its envelopes at the
    /// next positions; changes nothing (see [`Heads::admit`]).
    fn plan(&self, req: &AppendRequest) -> Result<Planned, AppendError> {
        for id in req.touched() {
            if self.streams.get(&id).is_some_and(|s| s.org != req.org_id) {
                // A stream of another organisation: never written across the tenant boundary.
                return Err(AppendError::Conflict);
            }
        }
        for (id, expected) in &req.expected {
            let current = self.streams.get(id).map(|s| s.version);
            let ok = match expected {
                Expected::Any => true,
                Expected::NoStream => current.is_none(),
                Expected::Exactly(v) => current == Some(*v),
            };
            if !ok {
                return Err(AppendError::Conflict);
            }
        }
        let org = self.orgs.get(&req.org_id).copied().unwrap_or(OrgHead {
            chain: Chain::GENESIS,
            last: 0,
            added: 0,
        });
        if req
            .org_position
            .is_some_and(|expected| expected != org.last)
        {
            return Err(AppendError::Conflict);
        }

        let mut chain = org.chain;
        let mut versions: HashMap<Uuid, (&'static str, i64)> = HashMap::new();
        let mut appended = Appended {
            envelopes: Vec::with_capacity(req.events.len()),
            chains: Vec::with_capacity(req.events.len()),
        };
        let mut bodies = Vec::with_capacity(req.events.len());
        for (i, event) in req.events.iter().enumerate() {
            let stream = event.stream_id();
            let kind = match event.aggregate() {
                Aggregate::Org(_) => "org",
                Aggregate::Admin(_) => "admin",
            };
            let current = self.streams.get(&stream).map_or(0, |s| s.version);
            let (_, version) = versions.entry(stream).or_insert((kind, current));
            *version += 1;
            let parts = EnvelopeParts {
                id: Uuid::now_v7(),
                org_id: req.org_id,
                actor: req.actor,
                correlation_id: req.correlation_id,
                time: req.time,
                auth_method: req.auth_method,
            };
            let envelope = Envelope::new(&parts, event, self.position + 1 + i as i64, *version);
            // Encoded once: the canonical JSON is both what the chain hashes and the stored body.
            let canonical = envelope_canonical_json(&envelope).context("hashing an envelope")?;
            chain = chain.next_canonical(&canonical);
            bodies.push(JsonText(canonical));
            appended.envelopes.push(envelope);
            appended.chains.push(chain);
        }
        Ok(Planned {
            appended,
            org: req.org_id,
            time: req.time,
            bodies,
            streams: req.events.iter().map(Event::stream_id).collect(),
            heads: versions
                .into_iter()
                .map(|(id, (kind, version))| (id, kind, version))
                .collect(),
        })
    }

    /// Moves the heads past a planned append and queues its rows; answers what it stored.
    fn admit(&mut self, planned: Planned, rows: &mut Rows) -> Appended {
        let org = planned.org;
        let (Some(last), Some(chain)) = (
            planned.appended.last_position(),
            planned.appended.chains.last().copied(),
        ) else {
            return planned.appended;
        };
        let added = planned.appended.envelopes.len() as i64;
        for &(id, kind, version) in &planned.heads {
            let head = self.streams.entry(id).or_insert(StreamHead {
                org,
                version,
                written: None,
            });
            head.version = version;
            head.written = Some(kind);
        }
        let head = self.orgs.entry(org).or_insert(OrgHead {
            chain,
            last,
            added: 0,
        });
        head.chain = chain;
        head.last = last;
        head.added += added;
        self.position = last;
        rows.push(planned)
    }
}

/// The events of a batch's admitted appends, column by column.
#[derive(Default)]
struct Rows {
    positions: Vec<i64>,
    orgs: Vec<Uuid>,
    streams: Vec<Uuid>,
    versions: Vec<i64>,
    ids: Vec<Uuid>,
    types: Vec<String>,
    times: Vec<DateTime<Utc>>,
    bodies: Vec<JsonText>,
    chains: Vec<Vec<u8>>,
}

impl Rows {
    fn push(&mut self, planned: Planned) -> Appended {
        let Planned {
            appended,
            time,
            streams,
            bodies,
            ..
        } = planned;
        for ((envelope, chain), stream) in
            appended.envelopes.iter().zip(&appended.chains).zip(streams)
        {
            self.positions.push(envelope.position);
            self.orgs.push(envelope.orgid);
            self.streams.push(stream);
            self.versions.push(envelope.streamversion);
            self.ids.push(envelope.id);
            self.types.push(envelope.event_type.clone());
            self.times.push(time);
            self.chains.push(chain.0.to_vec());
        }
        self.bodies.extend(bodies);
        appended
    }

    /// Writes the events, the streams' and organisations' new heads and the store head, one
    /// statement each, and wakes the listeners; nothing when no append was admitted. Ends the
    /// batch's own transaction in the same round trip.
    async fn write<C: GenericClient>(
        self,
        tx: &C,
        heads: &Heads,
        framing: Framing,
    ) -> Result<(), AppendError> {
        let Some(writes) = Writes::new(self, heads) else {
            return frame(tx, framing.end("COMMIT"))
                .await
                .map_err(|e| map_db_error(e, "committing appends"));
        };
        let statements = prepare(tx, WRITES)
            .await
            .map_err(|e| map_db_error(e, "preparing the writes"))?;
        // In this order on one connection: the commit, when the batch owns its transaction,
        // follows every write.
        futures::try_join!(
            writes.run(tx, &statements),
            frame(tx, framing.end("COMMIT")),
        )
        .map_err(|e| map_db_error(e, "writing events"))?;
        Ok(())
    }
}

/// The statements that write a batch, in the order [`Writes::run`] sends them.
const WRITES: [&str; 5] = [
    "INSERT INTO events (position, org_id, stream_id, stream_version, event_id, event_type, occurred_at, envelope, chain)
     SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::uuid[], $4::bigint[], $5::uuid[], $6::text[], $7::timestamptz[], $8::jsonb[], $9::bytea[])",
    "INSERT INTO streams (stream_id, org_id, kind, version)
     SELECT s, o, k::stream_kind, v FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bigint[]) AS x(s, o, k, v)
     ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version",
    "INSERT INTO org_chains (org_id, head, last_position, events)
     SELECT * FROM unnest($1::uuid[], $2::bytea[], $3::bigint[], $4::bigint[])
     ON CONFLICT (org_id) DO UPDATE
     SET head = EXCLUDED.head, last_position = EXCLUDED.last_position,
         events = org_chains.events + EXCLUDED.events",
    "UPDATE store_head SET last_position = $1",
    "SELECT pg_notify($1, $2)",
];

/// A batch's writes, ready to send: its events, and the heads its admitted appends left.
pub(crate) struct Writes {
    rows: Rows,
    stream_ids: Vec<Uuid>,
    stream_orgs: Vec<Uuid>,
    stream_kinds: Vec<&'static str>,
    stream_versions: Vec<i64>,
    org_ids: Vec<Uuid>,
    org_chains: Vec<Vec<u8>>,
    org_lasts: Vec<i64>,
    org_added: Vec<i64>,
    position: i64,
}

impl Writes {
    /// The writes of the admitted appends, as `heads` holds them after their admission; none
    /// when no append was admitted.
    fn new(rows: Rows, heads: &Heads) -> Option<Writes> {
        if rows.positions.is_empty() {
            return None;
        }
        let mut writes = Writes {
            rows,
            stream_ids: Vec::new(),
            stream_orgs: Vec::new(),
            stream_kinds: Vec::new(),
            stream_versions: Vec::new(),
            org_ids: Vec::new(),
            org_chains: Vec::new(),
            org_lasts: Vec::new(),
            org_added: Vec::new(),
            position: heads.position,
        };
        for (id, head) in &heads.streams {
            if let Some(kind) = head.written {
                writes.stream_ids.push(*id);
                writes.stream_orgs.push(head.org);
                writes.stream_kinds.push(kind);
                writes.stream_versions.push(head.version);
            }
        }
        for (id, head) in &heads.orgs {
            if head.added > 0 {
                writes.org_ids.push(*id);
                writes.org_chains.push(head.chain.0.to_vec());
                writes.org_lasts.push(head.last);
                writes.org_added.push(head.added);
            }
        }
        Some(writes)
    }

    /// Sends the writes ([`WRITES`], prepared on `c`), all in the first poll and in order, and
    /// waits for their answers.
    async fn run<C: GenericClient>(
        &self,
        c: &C,
        statements: &[tokio_postgres::Statement; 5],
    ) -> Result<(), tokio_postgres::Error> {
        let rows = &self.rows;
        let channel = crate::EVENTS_CHANNEL;
        let last = self.position.to_string();
        let event_params: [&(dyn ToSql + Sync); 9] = [
            &rows.positions,
            &rows.orgs,
            &rows.streams,
            &rows.versions,
            &rows.ids,
            &rows.types,
            &rows.times,
            &rows.bodies,
            &rows.chains,
        ];
        let stream_params: [&(dyn ToSql + Sync); 4] = [
            &self.stream_ids,
            &self.stream_orgs,
            &self.stream_kinds,
            &self.stream_versions,
        ];
        let org_params: [&(dyn ToSql + Sync); 4] = [
            &self.org_ids,
            &self.org_chains,
            &self.org_lasts,
            &self.org_added,
        ];
        let head_params: [&(dyn ToSql + Sync); 1] = [&self.position];
        let notify_params: [&(dyn ToSql + Sync); 2] = [&channel, &last];
        let [events, streams, orgs, head, notify] = statements;
        futures::try_join!(
            c.execute(events, &event_params),
            c.execute(streams, &stream_params),
            c.execute(orgs, &org_params),
            c.execute(head, &head_params),
            c.execute(notify, &notify_params),
        )?;
        Ok(())
    }
}
