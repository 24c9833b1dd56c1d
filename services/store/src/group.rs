//! Group commit: concurrent appends share one transaction, one hold of the append lock and one
//! WAL flush.
//!
//! Positions are gapless and handed out in commit order, so every append holds the store's one
//! row lock (`store_head`) until its commit, flush included. One append per transaction caps the
//! whole store at one flush per append. A [`GroupAppender`] queues the appends of its process
//! and writes whatever is queued when the previous group has committed, as one batch
//! ([`append_group`]: the heads read once, expectations checked in memory, one statement per
//! table), so one append's conflict (or unique violation) refuses that append alone and the
//! others commit. Nobody waits to fill a group: a lone append goes at once.
//!
//! A group is planned on the heads the appender believes the store holds when it can be
//! ([`crate::append::pipelined`]): the process knows what its own last group left, and a
//! command's expectations say which versions it read. Such a group goes in one round trip
//! (`BEGIN`, a check of every head it assumed that takes the lock, its writes, `COMMIT`), and up
//! to [`PIPELINE`] of them are in flight on one connection, so Postgres passes from one group's
//! commit to the next without waiting for the process. A group whose check fails (another
//! process appended, or the group before it failed) wrote nothing, and is written again the
//! usual way once the groups sent before it are answered: under the lock, its heads read first
//! ([`append_group`]). So is a group the appender cannot plan (an organisation or a stream it
//! knows nothing of, an append with its own statements).
//!
//! Each caller gets its own answer once the group's commit has answered. If the commit (or the
//! connection) fails, every append of the group gets that failure: none of them is known to be
//! committed, exactly as for a lone append whose commit failed.

use std::sync::{Arc, OnceLock};
use std::task::Poll;

use anyhow::Context;
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, oneshot};

use crate::Db;
use crate::append::pipelined::{self, Statements, Tip, Verdict};
use crate::append::{AppendError, AppendRequest, Appended, append_group};

/// Appends waiting for their group, at most (callers wait beyond).
const QUEUE: usize = 1_024;

/// Appends in one group, at most; and events, at most (a bulk of 10,000 goes alone or nearly).
const GROUP_APPENDS: usize = 256;
const GROUP_EVENTS: usize = 20_000;

struct Job {
    request: AppendRequest,
    answer: oneshot::Sender<Result<Appended, AppendError>>,
}

/// Appends through groups (see the module). Clones share the queue; the task writing the
/// groups starts with the first append and ends when the last clone is dropped.
#[derive(Clone)]
pub struct GroupAppender {
    db: Db,
    queue: Arc<OnceLock<mpsc::Sender<Job>>>,
}

impl GroupAppender {
    pub fn new(db: Db) -> GroupAppender {
        GroupAppender {
            db,
            queue: Arc::new(OnceLock::new()),
        }
    }

    /// Appends the request's events atomically, or nothing, as [`Db::append`] does; answers
    /// once the group holding it has committed.
    pub async fn append(&self, request: AppendRequest) -> Result<Appended, AppendError> {
        let queue = self.queue.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(QUEUE);
            tokio::spawn(write_groups(self.db.clone(), receiver));
            sender
        });
        let (answer, answered) = oneshot::channel();
        queue
            .send(Job { request, answer })
            .await
            .map_err(|_| anyhow::anyhow!("the group appender stopped"))?;
        answered
            .await
            .map_err(|_| anyhow::anyhow!("the group appender dropped an append"))?
    }
}

/// Groups sent on the connection and not answered yet, at most (see the module).
const PIPELINE: usize = 2;

/// Writes groups until every sender is gone.
async fn write_groups(db: Db, mut queue: mpsc::Receiver<Job>) {
    let mut writer = Writer::new(db);
    loop {
        if writer.in_flight.is_empty() {
            writer.rewrite_spoiled().await;
        }
        tokio::select! {
            biased;
            Some(sent) = writer.in_flight.next(), if !writer.in_flight.is_empty() => {
                writer.settle(sent);
            }
            job = queue.recv(), if writer.in_flight.len() < PIPELINE && writer.spoiled.is_empty() => {
                let Some(first) = job else { break };
                writer.launch(gather(first, &mut queue)).await;
            }
        }
    }
    writer.drain().await;
    writer.rewrite_spoiled().await;
}

/// The first append and whatever else is queued, within a group's bounds.
fn gather(first: Job, queue: &mut mpsc::Receiver<Job>) -> Vec<Job> {
    let mut events = first.request.events.len();
    let mut jobs = vec![first];
    while jobs.len() < GROUP_APPENDS && events < GROUP_EVENTS {
        match queue.try_recv() {
            Ok(job) => {
                events += job.request.events.len();
                jobs.push(job);
            }
            Err(_) => break,
        }
    }
    jobs
}

/// A planned group sent, once Postgres answered it.
struct Sent {
    verdict: Verdict,
    jobs: Vec<Job>,
    results: Vec<Result<Appended, AppendError>>,
}

/// The task writing the groups: what it believes of the store's heads, and the planned groups
/// in flight on its connection.
struct Writer {
    db: Db,
    tip: Tip,
    /// The connection planned groups are sent on, with its statements, while any are in flight.
    conn: Option<(Arc<deadpool_postgres::Client>, Statements)>,
    in_flight: FuturesUnordered<BoxFuture<'static, Sent>>,
    /// Planned groups whose check failed, to write again the usual way once none is in flight.
    spoiled: Vec<Vec<Job>>,
    /// Groups to write the usual way before planning on the tip again, and spoiled groups since
    /// the last planned one committed: each spoiled group doubles the wait, so processes
    /// appending side by side mostly read their heads rather than guess them wrong.
    skip: u32,
    spoiled_in_a_row: u32,
}

impl Writer {
    fn new(db: Db) -> Writer {
        Writer {
            db,
            tip: Tip::default(),
            conn: None,
            in_flight: FuturesUnordered::new(),
            spoiled: Vec::new(),
            skip: 0,
            spoiled_in_a_row: 0,
        }
    }

    /// Sends the group planned on the tip if it can be, or else writes it the usual way once
    /// every group sent before it was answered.
    async fn launch(&mut self, jobs: Vec<Job>) {
        if self.skip > 0 {
            self.skip -= 1;
        } else {
            let requests: Vec<&AppendRequest> = jobs.iter().map(|j| &j.request).collect();
            if let Some(speculation) = pipelined::speculate(&mut self.tip, &requests) {
                let (conn, statements) = match self.connection().await {
                    Ok(conn) => conn,
                    Err(e) => {
                        self.tip.forget();
                        fail(jobs, e.context("writing a group of appends"));
                        return;
                    }
                };
                let results = speculation.results;
                let sending = speculation.sent.send(conn, statements);
                let mut sent = async move {
                    Sent {
                        verdict: sending.await,
                        jobs,
                        results,
                    }
                }
                .boxed();
                // The first poll sends the whole transaction, so groups reach Postgres in the
                // order they were planned in.
                match futures::poll!(&mut sent) {
                    Poll::Ready(sent) => self.settle(sent),
                    Poll::Pending => self.in_flight.push(sent),
                }
                return;
            }
        }
        self.drain().await;
        self.rewrite_spoiled().await;
        self.write_read(jobs).await;
    }

    /// The connection planned groups go on: the one groups in flight use, or a new one.
    async fn connection(&mut self) -> anyhow::Result<(Arc<deadpool_postgres::Client>, Statements)> {
        if let Some((conn, statements)) = &self.conn
            && !conn.is_closed()
        {
            return Ok((conn.clone(), statements.clone()));
        }
        let client = self.db.client().await?;
        let statements = Statements::prepare(&client).await?;
        let conn = Arc::new(client);
        self.conn = Some((conn.clone(), statements.clone()));
        Ok((conn, statements))
    }

    /// Answers a planned group's appends, or keeps it to write again.
    fn settle(&mut self, sent: Sent) {
        match sent.verdict {
            Verdict::Committed => {
                metrics::counter!("gatehouse_store_groups_total", "way" => "planned").increment(1);
                self.spoiled_in_a_row = 0;
                for (job, result) in sent.jobs.into_iter().zip(sent.results) {
                    let _ = job.answer.send(result);
                }
            }
            Verdict::Spoiled => {
                metrics::counter!("gatehouse_store_groups_total", "way" => "spoiled").increment(1);
                tracing::debug!(
                    appends = sent.jobs.len(),
                    "a planned group's heads had moved"
                );
                self.tip.forget();
                self.spoiled_in_a_row = (self.spoiled_in_a_row + 1).min(8);
                self.skip = (1 << self.spoiled_in_a_row) - 1;
                self.spoiled.push(sent.jobs);
            }
            Verdict::Failed(e) => {
                self.tip.forget();
                if self.conn.as_ref().is_some_and(|(c, _)| c.is_closed()) {
                    self.conn = None;
                }
                fail(
                    sent.jobs,
                    anyhow::Error::new(e).context("writing a group of appends"),
                );
            }
        }
    }

    /// Waits for every group in flight, and gives their connection back.
    async fn drain(&mut self) {
        while let Some(sent) = self.in_flight.next().await {
            self.settle(sent);
        }
        self.conn = None;
    }

    /// Writes the spoiled groups again, the usual way (nothing may be in flight).
    async fn rewrite_spoiled(&mut self) {
        self.conn = None;
        for jobs in std::mem::take(&mut self.spoiled) {
            self.write_read(jobs).await;
        }
    }

    /// Writes the group the usual way, reading its heads under the lock; the tip learns them.
    async fn write_read(&mut self, jobs: Vec<Job>) {
        let (requests, answers): (Vec<AppendRequest>, Vec<_>) =
            jobs.into_iter().map(|j| (j.request, j.answer)).unzip();
        match commit_group(&self.db, requests, &mut self.tip).await {
            Ok(results) => {
                metrics::counter!("gatehouse_store_groups_total", "way" => "read").increment(1);
                for (answer, result) in answers.into_iter().zip(results) {
                    // A caller that gave up (its request was cancelled) no longer listens.
                    let _ = answer.send(result);
                }
            }
            Err(failed) => {
                self.tip.forget();
                fail_answers(answers, failed);
            }
        }
    }
}

/// A failure of the whole group, given to each of its appends with the cause's chain intact
/// (so a caller still tells "Postgres is out of reach" from other failures).
#[derive(Debug)]
struct GroupFailed(Arc<anyhow::Error>);

impl std::fmt::Display for GroupFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the append's group failed")
    }
}

impl std::error::Error for GroupFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let cause: &(dyn std::error::Error + Send + Sync + 'static) = self.0.as_ref().as_ref();
        Some(cause)
    }
}

/// Gives each append the failure of its whole group.
fn fail(jobs: Vec<Job>, failed: anyhow::Error) {
    fail_answers(jobs.into_iter().map(|j| j.answer).collect(), failed);
}

fn fail_answers(
    answers: Vec<oneshot::Sender<Result<Appended, AppendError>>>,
    failed: anyhow::Error,
) {
    let failed = Arc::new(failed);
    for answer in answers {
        let _ = answer.send(Err(AppendError::Other(anyhow::Error::new(GroupFailed(
            failed.clone(),
        )))));
    }
}

/// Writes the appends in one transaction; answers each one's outcome, or the failure that lost
/// them all. The transaction's `BEGIN` and `COMMIT` ride with its reads and writes
/// ([`append_group`]), so a group costs two round trips; after a failure the connection is
/// closed rather than returned to the pool, since its transaction may still be open.
async fn commit_group(
    db: &Db,
    requests: Vec<AppendRequest>,
    tip: &mut Tip,
) -> anyhow::Result<Vec<Result<Appended, AppendError>>> {
    let client = db.client().await?;
    match append_group(&client, requests, tip).await {
        Ok(results) => Ok(results),
        Err(failed) => {
            drop(deadpool_postgres::Object::take(client));
            Err(into_anyhow(failed)).context("writing a group of appends")
        }
    }
}

fn into_anyhow(e: AppendError) -> anyhow::Error {
    match e {
        AppendError::Other(e) => e,
        refused => anyhow::Error::new(refused),
    }
}
