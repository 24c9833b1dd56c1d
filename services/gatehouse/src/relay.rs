//! `gatehouse relay republish`: publishes a range of the event store to JetStream again, after
//! the stream lost messages (purged, deleted, expired by its max age). The store is the system
//! of record; the stream can always be rebuilt from it.
//!
//! While it runs it holds the relay's leader lock, so no relay publishes in between: a live
//! relay's next batch would otherwise land among the republished events and the stream would
//! leave position order. A running relay stands by meanwhile and carries on from its cursor
//! afterwards.

use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::Subcommand;
use gatehouse_relay::leader::{self, Leader};
use gatehouse_relay::{Republished, Step};
use gatehouse_store::Db;
use tokio_util::sync::CancellationToken;

use crate::{Config, services};

#[derive(Debug, Subcommand)]
pub enum RelayCommand {
    /// Publishes the stored events from --from to --to again, with their ids, so JetStream
    /// drops those it still holds. Recreates the stream first if it was deleted.
    Republish {
        /// First position to publish (positions start at 1).
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
        from: i64,
        /// Last position to publish (default: the store's last position when it starts).
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
        to: Option<i64>,
    },
}

impl RelayCommand {
    /// What is wrong with the arguments, if anything, checked before connecting to anything.
    pub fn check(&self) -> Result<(), String> {
        match self {
            RelayCommand::Republish { from, to: Some(to) } if to < from => Err(format!(
                "--to {to} comes before --from {from}: nothing would be republished"
            )),
            RelayCommand::Republish { .. } => Ok(()),
        }
    }
}

pub async fn run(config: &Config, command: RelayCommand) -> anyhow::Result<()> {
    let RelayCommand::Republish { from, to } = command;
    let cfg = config.relay_config()?;
    let db = services::database(config).await?;
    let nats = services::nats(config).await?;
    let js = async_nats::jetstream::new(nats);

    // Ctrl-C (or SIGTERM) gives up waiting for the relay, or stops between publishes: whatever
    // was acknowledged stays in order, and running the command again is safe.
    let interrupted = CancellationToken::new();
    let on_signal = {
        let interrupted = interrupted.clone();
        tokio::spawn(async move {
            crate::serve::shutdown_signal().await;
            interrupted.cancel();
        })
    };
    let leader = pause_the_relay(&db, &interrupted).await?;
    let outcome = tokio::select! {
        outcome = republish(&db, &js, &cfg, &leader, from, to) => outcome,
        _ = interrupted.cancelled() => Err(anyhow!(
            "interrupted; what was acknowledged is in the stream, in order, and the command is safe to run again"
        )),
    };
    leader.release().await;
    on_signal.abort();
    let (done, head) = outcome?;
    match (done.first, done.last) {
        (Some(first), Some(last)) => println!(
            "republished {} events (positions {first}..={last}); JetStream already held {}",
            done.events, done.duplicates
        ),
        _ => println!("nothing to republish: the store's last position is {head}"),
    }
    Ok(())
}

/// Republishes `from..=to` (to the head without `to`) while `leader` holds the relay back.
/// Answers what was done and the store's head.
async fn republish(
    db: &Db,
    js: &async_nats::jetstream::Context,
    cfg: &gatehouse_relay::RelayConfig,
    leader: &Leader,
    from: i64,
    to: Option<i64>,
) -> anyhow::Result<(Republished, i64)> {
    gatehouse_relay::ensure_stream(js, cfg)
        .await
        .context("creating or updating the JetStream stream")?;
    let (cursor, head) = leader.positions().await?;
    // Events appended from now on are the relay's to publish once it carries on.
    let end = to.map_or(head, |to| to.min(head));
    if end < from {
        return Ok((Republished::default(), head));
    }

    let bar = indicatif::ProgressBar::new(u64::try_from(end - from + 1)?).with_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {pos}/{len} positions, {per_sec}, ETA {eta}",
        )
        .context("progress bar template")?
        .progress_chars("=> "),
    );
    bar.set_message("republishing");
    let progress = |step: Step<'_>| match step {
        Step::WaitingForJetStreamToForget(wait) => bar.set_message(format!(
            "waiting {} s for JetStream to forget the ids of the messages it lost",
            wait.as_secs() + 1
        )),
        Step::Published(done) => {
            bar.set_message("republishing");
            let last = done.last.unwrap_or(from - 1);
            bar.set_position(u64::try_from(last - from + 1).unwrap_or(0));
        }
    };
    let done =
        gatehouse_relay::republish_with_progress(db, js, cfg, from, Some(end), progress).await;
    bar.finish_and_clear();
    let done = done?;

    // What was just republished is in the stream in order: a relay that was behind need not
    // publish it once more (copies past the duplicate window would be stored again).
    if let Some(last) = done.last
        && done.first.is_some_and(|first| first <= cursor + 1)
        && last > cursor
    {
        leader.save_cursor(last).await?;
    }
    Ok((done, head))
}

/// Takes the relay's leader lock, waiting (with a word on stderr) while a relay holds it.
async fn pause_the_relay(db: &Db, interrupted: &CancellationToken) -> anyhow::Result<Leader> {
    let acquiring = leader::acquire(db, interrupted);
    tokio::pin!(acquiring);
    let acquired = tokio::select! {
        acquired = &mut acquiring => acquired,
        _ = tokio::time::sleep(Duration::from_secs(1)) => {
            eprintln!(
                "a relay is publishing (it holds the relay's leader lock); waiting for it to stop. \
                 Stop the relay role (e.g. `gatehouse serve --roles api,projections,mailer`), \
                 or press Ctrl-C to give up."
            );
            acquiring.await
        }
    };
    acquired?
        .ok_or_else(|| anyhow!("interrupted while waiting for the relay; nothing was republished"))
}
