//! Groups planned on the heads their process believes the store holds, and checked under the
//! append lock in the same round trip as their writes.
//!
//! A group written the usual way ([`super::append_group`]) reads the heads it needs under the
//! lock, plans its envelopes in the process, then writes: the lock is held across two round
//! trips and the planning between them. But a process that writes most of the store's appends
//! already knows what its last group left: the global position, the chain head of each
//! organisation it wrote, the version of each stream (and the commands say, in their
//! expectations, which versions they read). A group planned on that [`Tip`] sends `BEGIN`, one
//! check of every head it assumed (`append_heads_hold`, migration V9, which takes the lock),
//! its writes and `COMMIT` in one go: Postgres holds the lock only while it checks, writes and
//! flushes, and the next group, sent behind it on the same connection, follows at once.
//!
//! A belief that no longer holds (another process appended, or a group sent before it was
//! refused) fails the check: Postgres aborts the transaction, nothing of the group is written,
//! and the group appender writes the same appends again the usual way ([`Verdict::Spoiled`]).
//! The answers planned on the tip, refusals included, are given only once the check held, so
//! they are exactly what the usual way would have answered on the same heads.

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::{
    AppendError, AppendRequest, Appended, Expected, Heads, OrgHead, Rows, StreamHead, WRITES,
    Writes, prepare,
};

/// Streams, and organisations, a tip keeps at most; past that it forgets them and learns again
/// from the groups written the usual way.
const TIP_ENTRIES: usize = 100_000;

/// The SQLSTATE `append_heads_hold` raises when a head is not as the group assumed.
const SPOILED: &str = "GH409";

/// What a group appender believes the store holds after the groups it wrote or sent: the
/// global position, and the heads of the organisations and streams those groups touched.
/// Right as long as nobody else appends; a group planned on it checks every head it used.
#[derive(Default)]
pub(crate) struct Tip {
    /// Whether `position` was learned (nothing is believed before the first usual group).
    known: bool,
    position: i64,
    /// Each stream's organisation and version.
    streams: HashMap<Uuid, (Uuid, i64)>,
    /// Each organisation's chain head and last position (`added` unused, 0).
    orgs: HashMap<Uuid, OrgHead>,
}

impl Tip {
    /// Takes in the heads a batch read or left.
    pub(super) fn learn(&mut self, heads: &Heads) {
        if self.streams.len() + heads.streams.len() > TIP_ENTRIES {
            self.streams.clear();
        }
        if self.orgs.len() + heads.orgs.len() > TIP_ENTRIES {
            self.orgs.clear();
        }
        self.known = true;
        self.position = heads.position;
        self.streams.extend(
            heads
                .streams
                .iter()
                .map(|(id, s)| (*id, (s.org, s.version))),
        );
        self.orgs.extend(
            heads
                .orgs
                .iter()
                .map(|(id, o)| (*id, OrgHead { added: 0, ..*o })),
        );
    }

    /// Believes nothing any more (a group planned on it was spoiled, or failed).
    pub(crate) fn forget(&mut self) {
        *self = Tip::default();
    }
}

/// A group planned on the tip: each append's answer, to be given once the group committed, and
/// what it sends.
pub(crate) struct Speculation {
    pub(crate) results: Vec<Result<Appended, AppendError>>,
    pub(crate) sent: Pending,
}

/// Plans the requests on the tip and moves the tip past them, or answers `None` when the tip
/// does not tell every head the group needs (an organisation it never wrote, a stream of which
/// neither it nor the request's expectations tell the version) or a request carries its own
/// statements (which the usual way runs in savepoints). Nothing is sent.
pub(crate) fn speculate(tip: &mut Tip, requests: &[&AppendRequest]) -> Option<Speculation> {
    if !tip.known {
        return None;
    }
    let mut streams: HashMap<Uuid, (Uuid, i64)> = HashMap::new();
    let mut orgs: HashMap<Uuid, OrgHead> = HashMap::new();
    for req in requests {
        if !req.statements.is_empty() {
            return None;
        }
        orgs.insert(req.org_id, *tip.orgs.get(&req.org_id)?);
        for id in req.touched() {
            if streams.contains_key(&id) {
                continue;
            }
            let head = match tip.streams.get(&id) {
                Some(head) => *head,
                // Not seen by this process: the version the request read, which the check
                // confirms.
                None => match req.expected.iter().find(|(e, _)| *e == id) {
                    Some((_, Expected::Exactly(version))) => (req.org_id, *version),
                    Some((_, Expected::NoStream)) => (req.org_id, 0),
                    _ => return None,
                },
            };
            streams.insert(id, head);
        }
    }
    let check = Check::new(tip.position, &streams, &orgs);
    let mut heads = Heads {
        position: tip.position,
        streams: streams
            .iter()
            .filter(|(_, (_, version))| *version > 0)
            .map(|(id, (org, version))| {
                let head = StreamHead {
                    org: *org,
                    version: *version,
                    written: None,
                };
                (*id, head)
            })
            .collect(),
        orgs,
    };
    let mut rows = Rows::default();
    let results = requests
        .iter()
        .map(|req| {
            heads
                .plan(req)
                .map(|planned| heads.admit(planned, &mut rows))
        })
        .collect();
    tip.learn(&heads);
    Some(Speculation {
        results,
        sent: Pending {
            check,
            writes: Writes::new(rows, &heads),
        },
    })
}

/// Every head a group assumed: a version or chain position of 0 means "none yet".
struct Check {
    position: i64,
    stream_ids: Vec<Uuid>,
    stream_orgs: Vec<Uuid>,
    stream_versions: Vec<i64>,
    org_ids: Vec<Uuid>,
    org_heads: Vec<Vec<u8>>,
    org_lasts: Vec<i64>,
}

impl Check {
    fn new(
        position: i64,
        streams: &HashMap<Uuid, (Uuid, i64)>,
        orgs: &HashMap<Uuid, OrgHead>,
    ) -> Check {
        let mut check = Check {
            position,
            stream_ids: Vec::with_capacity(streams.len()),
            stream_orgs: Vec::with_capacity(streams.len()),
            stream_versions: Vec::with_capacity(streams.len()),
            org_ids: Vec::with_capacity(orgs.len()),
            org_heads: Vec::with_capacity(orgs.len()),
            org_lasts: Vec::with_capacity(orgs.len()),
        };
        for (id, (org, version)) in streams {
            check.stream_ids.push(*id);
            check.stream_orgs.push(*org);
            check.stream_versions.push(*version);
        }
        for (id, head) in orgs {
            check.org_ids.push(*id);
            check.org_heads.push(head.chain.0.to_vec());
            check.org_lasts.push(head.last);
        }
        check
    }
}

const CHECK: &str = "SELECT append_heads_hold($1, $2, $3, $4, $5, $6, $7)";

/// The statements a planned group sends, prepared on its connection.
#[derive(Clone)]
pub(crate) struct Statements {
    check: tokio_postgres::Statement,
    writes: [tokio_postgres::Statement; 5],
}

impl Statements {
    /// Prepares them on `c` (once per connection: deadpool keeps them).
    pub(crate) async fn prepare(c: &deadpool_postgres::Client) -> anyhow::Result<Statements> {
        let [check] = prepare(c, [CHECK]).await?;
        let writes = prepare(c, WRITES).await?;
        Ok(Statements { check, writes })
    }
}

/// How a planned group ended.
pub(crate) enum Verdict {
    /// The check held and everything was written: the planned answers stand.
    Committed,
    /// A head was not as assumed: nothing was written; write the appends again the usual way.
    Spoiled,
    /// The transaction failed otherwise, or its outcome is unknown (the connection was lost).
    Failed(tokio_postgres::Error),
}

/// What a planned group sends.
pub(crate) struct Pending {
    check: Check,
    writes: Option<Writes>,
}

impl Pending {
    /// Sends `BEGIN`, the check, the writes and `COMMIT`, all in the future's first poll (so a
    /// group sent after this one on the same connection runs after it), then waits for every
    /// answer, so the connection is idle again when it answers (unless it was lost).
    pub(crate) async fn send(
        self,
        conn: Arc<deadpool_postgres::Client>,
        statements: Statements,
    ) -> Verdict {
        let c: &deadpool_postgres::Client = &conn;
        let check = &self.check;
        let params: [&(dyn ToSql + Sync); 7] = [
            &check.position,
            &check.stream_ids,
            &check.stream_orgs,
            &check.stream_versions,
            &check.org_ids,
            &check.org_heads,
            &check.org_lasts,
        ];
        let (begun, checked, written, committed) = futures::join!(
            c.batch_execute("BEGIN"),
            c.execute(&statements.check, &params),
            async {
                match &self.writes {
                    Some(writes) => writes.run(c, &statements.writes).await,
                    None => Ok(()),
                }
            },
            c.batch_execute("COMMIT"),
        );
        if let Err(e) = begun {
            return Verdict::Failed(e);
        }
        match checked {
            // The check aborted the transaction: its COMMIT rolled it back, or never answered
            // and then nothing committed either.
            Err(e) if e.code().is_some_and(|c| c.code() == SPOILED) => return Verdict::Spoiled,
            Err(e) => return Verdict::Failed(e),
            Ok(_) => {}
        }
        match written.and(committed) {
            Ok(()) => Verdict::Committed,
            Err(e) => Verdict::Failed(e),
        }
    }
}
