//! Publishing a range of the store again, e.g. after a stream was purged or recreated.
//!
//! JetStream drops a publish whose `Nats-Msg-Id` it saw within its duplicate window, and a purge
//! does not make it forget (nats-server#6782): republishing right after a purge would be
//! acknowledged as duplicates and store nothing. So when the stream has lost messages it stored
//! less than a window ago, republishing first waits until the window has passed. Should a
//! publish still come back as a duplicate of a message the stream no longer holds, it fails
//! rather than count an event that was not stored.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use async_nats::jetstream;
use gatehouse_store::Db;

use crate::RelayConfig;
use crate::publish::{NotHeld, publish_batch_held_from};

/// Margin past the duplicate window before JetStream is trusted to have forgotten an id: its
/// clean-up runs on a timer, and its clock is not ours.
const FORGET_MARGIN: Duration = Duration::from_secs(1);

/// What a republish did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Republished {
    /// Events JetStream acknowledged.
    pub events: u64,
    /// Of those, the ones it already held (same `Nats-Msg-Id`), so it stored no copy.
    pub duplicates: u64,
    /// The first and last positions published, if any.
    pub first: Option<i64>,
    pub last: Option<i64>,
}

/// What [`republish_with_progress`] reports as it goes.
#[derive(Debug, Clone, Copy)]
pub enum Step<'a> {
    /// The stream lost messages less than a duplicate window ago; JetStream would drop them as
    /// duplicates until it forgets their ids, so republishing waits this long first.
    WaitingForJetStreamToForget(Duration),
    /// A batch was acknowledged: the totals so far.
    Published(&'a Republished),
}

/// Publishes the store's events with position in `[from, to]` again, with the same
/// `Nats-Msg-Id`s (so JetStream drops those it still holds). It does not move the relay's
/// cursor; a failure is returned, and retrying is safe.
///
/// Run it while no relay publishes (`gatehouse relay republish` holds the relay's leader lock):
/// a live relay's next batch would otherwise land between the republished events.
pub async fn republish(
    db: &Db,
    js: &jetstream::Context,
    cfg: &RelayConfig,
    from: i64,
    to: Option<i64>,
) -> anyhow::Result<Republished> {
    republish_with_progress(db, js, cfg, from, to, |_| {}).await
}

/// [`republish`], calling `progress` before waiting and after every batch.
pub async fn republish_with_progress(
    db: &Db,
    js: &jetstream::Context,
    cfg: &RelayConfig,
    from: i64,
    to: Option<i64>,
    mut progress: impl FnMut(Step<'_>),
) -> anyhow::Result<Republished> {
    cfg.validate()?;
    if from < 1 {
        bail!("positions start at 1; cannot republish from {from}");
    }
    if let Some(to) = to
        && to < from
    {
        bail!("cannot republish from {from} to {to}: the range is empty");
    }
    let stream = js
        .get_stream(&cfg.stream)
        .await
        .with_context(|| format!("looking up the JetStream stream {}", cfg.stream))?;
    let info = stream.cached_info();
    // Sequences below the first one still held were removed: a duplicate of one of them is an
    // event JetStream remembers but no longer has.
    let first_held = info.state.first_sequence;
    if let Some(wait) = wait_to_be_forgotten(&info.state, info.config.duplicate_window) {
        progress(Step::WaitingForJetStreamToForget(wait));
        tokio::time::sleep(wait).await;
    }

    let mut done = Republished::default();
    let mut after = from - 1;
    loop {
        let limit = match to {
            Some(to) if to <= after => break,
            Some(to) => cfg.batch_size.min(to - after),
            None => cfg.batch_size,
        };
        let batch = db
            .read_after(after, limit)
            .await
            .context("reading events to republish")?;
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            break;
        };
        let (first, last) = (first.envelope.position, last.envelope.position);
        let published = match publish_batch_held_from(js, cfg, &batch, first_held).await {
            Ok(published) => published,
            Err(e) => {
                let hint = match e.downcast_ref::<NotHeld>() {
                    Some(_) => format!(
                        "; JetStream still remembers the ids of messages removed from the \
                         stream: run the command again after its duplicate window ({} s)",
                        info.config.duplicate_window.as_secs()
                    ),
                    None => String::new(),
                };
                return Err(e.context(format!("republishing positions {first} to {last}{hint}")));
            }
        };
        done.events += published.acknowledged;
        done.duplicates += published.duplicates;
        done.first.get_or_insert(first);
        done.last = Some(last);
        tracing::debug!(to = last, total = done.events, "republished a batch");
        progress(Step::Published(&done));
        after = last;
    }
    Ok(done)
}

/// How long until JetStream has forgotten the ids of messages the stream lost (purged,
/// deleted or expired), if it may still remember some: it remembers each id for the duplicate
/// window after it stored the message, and the last one was stored at `last_timestamp`.
fn wait_to_be_forgotten(state: &jetstream::stream::State, window: Duration) -> Option<Duration> {
    if state.messages >= state.last_sequence {
        // It holds every message it ever stored: nothing is remembered without being held.
        return None;
    }
    let stored_nanos = u64::try_from(state.last_timestamp.unix_timestamp_nanos()).ok()?;
    let forgotten_at = UNIX_EPOCH + Duration::from_nanos(stored_nanos) + window + FORGET_MARGIN;
    forgotten_at.duration_since(SystemTime::now()).ok()
}
