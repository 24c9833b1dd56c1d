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
//! Each caller gets its own answer once the group's commit has answered. If the commit (or the
//! connection) fails, every append of the group gets that failure: none of them is known to be
//! committed, exactly as for a lone append whose commit failed.

use std::sync::{Arc, OnceLock};

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};

use crate::Db;
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

/// Writes groups until every sender is gone.
async fn write_groups(db: Db, mut queue: mpsc::Receiver<Job>) {
    while let Some(first) = queue.recv().await {
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
        write_group(&db, jobs).await;
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

async fn write_group(db: &Db, jobs: Vec<Job>) {
    let (requests, answers): (Vec<AppendRequest>, Vec<_>) =
        jobs.into_iter().map(|j| (j.request, j.answer)).unzip();
    let results = match commit_group(db, requests).await {
        Ok(results) => results,
        Err(failed) => {
            let failed = Arc::new(failed);
            answers
                .iter()
                .map(|_| {
                    Err(AppendError::Other(anyhow::Error::new(GroupFailed(
                        failed.clone(),
                    ))))
                })
                .collect()
        }
    };
    for (answer, result) in answers.into_iter().zip(results) {
        // A caller that gave up (its request was cancelled) no longer listens.
        let _ = answer.send(result);
    }
}

/// Writes the appends in one transaction; answers each one's outcome, or the failure that lost
/// them all. The transaction's `BEGIN` and `COMMIT` ride with its reads and writes
/// ([`append_group`]), so a group costs two round trips; after a failure the connection is
/// closed rather than returned to the pool, since its transaction may still be open.
async fn commit_group(
    db: &Db,
    requests: Vec<AppendRequest>,
) -> anyhow::Result<Vec<Result<Appended, AppendError>>> {
    let client = db.client().await?;
    match append_group(&client, requests).await {
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
