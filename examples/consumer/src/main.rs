//! An example downstream consumer of Gatehouse events, to copy from.
//!
//! It follows the stream with a durable JetStream pull consumer and records one NDJSON line per
//! event, `{"position","id","type","orgid"}`, in `--output`. That file is both its effect and
//! its progress: the last line's position is the checkpoint. What makes it correct:
//!
//! 1. **Idempotent by position.** Gatehouse delivers at least once (a relay retry, a lost ack, a
//!    republish after the stream was purged). Every event carries its global position (header
//!    `Gatehouse-Position`, field `position`); positions grow in stream order, with gaps when
//!    filtering one organisation. An event at or below the checkpoint is acked and skipped.
//! 2. **Effect first, ack second.** Lines are flushed to disk (fsync) before their acks.
//! 3. **In order.** JetStream redelivers an unacked message only after its ack wait, behind
//!    newer ones, and skipping by position would then drop it. So when an earlier run left
//!    messages unacked, or a delivery goes missing, the durable consumer is restarted from its
//!    ack floor and everything after it comes again in stream order. Run one process per
//!    durable name.
//! 4. **Never stuck on garbage.** A message that is not an envelope is logged (subject and
//!    stream sequence, never the payload) and terminated.
//!
//! If the stream is deleted, it stops with an error; once `gatehouse relay republish` has
//! restored the stream, start it again: the checkpoint skips what it already recorded.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use async_nats::jetstream::consumer::{self, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, AckKind};
use clap::Parser;
use futures::StreamExt;
use gatehouse_events::{Envelope, subject};
use uuid::Uuid;

#[derive(Parser)]
#[command(about = "Records Gatehouse events from NATS JetStream, each exactly once, in order")]
struct Args {
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    #[arg(
        long,
        env = "GATEHOUSE_NATS_STREAM",
        default_value = "GATEHOUSE_EVENTS"
    )]
    stream: String,
    /// First token of every subject (`GATEHOUSE_NATS_PREFIX` of the Gatehouse you follow).
    #[arg(long, env = "GATEHOUSE_NATS_PREFIX", default_value = "gatehouse")]
    prefix: String,
    /// Name of the durable consumer: JetStream remembers its place between runs.
    #[arg(long, default_value = "example-consumer")]
    durable: String,
    /// Follow one organisation only (subject `<prefix>.<org>.>`).
    #[arg(long)]
    org: Option<Uuid>,
    /// The NDJSON file the events are recorded in; its last line is the checkpoint.
    #[arg(long)]
    output: PathBuf,
    /// Stop after this many seconds without a message (otherwise: until SIGINT or SIGTERM).
    #[arg(long)]
    exit_after_idle: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut output = Output::open(&args.output)?;
    let client = async_nats::connect(&args.nats_url)
        .await
        .with_context(|| format!("connecting to NATS at {}", args.nats_url))?;
    let js = jetstream::new(client.clone());
    let stream = js
        .get_stream(&args.stream)
        .await
        .with_context(|| format!("looking up the stream {}", args.stream))?;
    let filter = match args.org {
        Some(org) => subject::for_org(&args.prefix, org),
        None => subject::all(&args.prefix),
    };
    let mut consumer = open_consumer(&stream, &args.durable, &filter, false).await?;
    eprintln!("following {filter} after position {}", output.checkpoint);

    let idle_limit = args.exit_after_idle.map(Duration::from_secs);
    let poll = idle_limit.map_or(Duration::from_secs(1), |l| l.min(Duration::from_secs(1)));
    let mut last_message = Instant::now();
    // The consumer numbers its deliveries 1, 2, 3...; a jump means one went missing.
    let mut next_delivery = None;
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let messages = tokio::select! {
            _ = &mut shutdown => break,
            fetched = fetch(&consumer, poll) => fetched?,
        };
        if messages.is_empty() {
            if idle_limit.is_some_and(|limit| last_message.elapsed() >= limit) {
                break;
            }
            continue;
        }
        last_message = Instant::now();
        // A batch is finished before a signal is looked at again.
        if !record(&mut output, messages, &mut next_delivery).await? {
            eprintln!("a delivery went missing; restarting from the last acknowledged message");
            client.flush().await.context("flushing acks")?;
            consumer = open_consumer(&stream, &args.durable, &filter, true).await?;
            next_delivery = None;
        }
    }
    // Acks are sent without waiting for an answer; let the last ones leave before exiting.
    client.flush().await.context("flushing acks")?;
    eprintln!("stopped after position {}", output.checkpoint);
    Ok(())
}

/// Records a batch, then acks it. `false` when a delivery went missing: what follows the gap
/// is neither recorded nor acked, and the caller restarts the consumer.
async fn record(
    output: &mut Output,
    messages: Vec<jetstream::Message>,
    next_delivery: &mut Option<u64>,
) -> anyhow::Result<bool> {
    let mut settled = Vec::with_capacity(messages.len());
    let mut in_order = true;
    for message in messages {
        let info = message
            .info()
            .map_err(|e| anyhow!("no JetStream metadata: {e}"))?;
        let (sequence, delivery) = (info.stream_sequence, info.consumer_sequence);
        if next_delivery.is_some_and(|expected| delivery != expected) {
            in_order = false;
            break;
        }
        *next_delivery = Some(delivery + 1);
        match read_event(&message) {
            Ok(event) if event.position <= output.checkpoint => {
                settled.push((message, AckKind::Ack))
            }
            Ok(event) => {
                output.append(&event)?;
                settled.push((message, AckKind::Ack));
            }
            Err(reason) => {
                eprintln!(
                    "skipping {} (stream sequence {sequence}): {reason}",
                    message.subject
                );
                // Term: it would never become an event, so JetStream need not deliver it again.
                settled.push((message, AckKind::Term));
            }
        }
    }
    output.sync()?;
    for (message, kind) in settled {
        // A lost ack only means the message comes again, and its position is then skipped.
        if let Err(e) = message.ack_with(kind).await {
            eprintln!("an ack failed ({e}); the message will come again and be skipped");
        }
    }
    Ok(in_order)
}

/// The envelope a message carries, or why it is not one. The reason never quotes the payload.
/// (The header `Gatehouse-Position` repeats `position`, for routing without parsing.)
fn read_event(message: &jetstream::Message) -> Result<Envelope, String> {
    let envelope: Envelope = serde_json::from_slice(&message.payload).map_err(|e| {
        let at = format!("line {} column {}", e.line(), e.column());
        format!(
            "not a Gatehouse envelope ({:?} error at {at})",
            e.classify()
        )
    })?;
    if envelope.position < 1 {
        return Err("its position is not a store position".into());
    }
    Ok(envelope)
}

/// The durable consumer. When an earlier run left messages unacked (or `restart` says a
/// delivery went missing), it is recreated just after its ack floor, so that what was delivered
/// but not acked comes again, in stream order, before anything newer.
async fn open_consumer(
    stream: &jetstream::stream::Stream,
    durable: &str,
    filter: &str,
    restart: bool,
) -> anyhow::Result<PullConsumer> {
    let mut config = consumer::pull::Config {
        durable_name: Some(durable.to_owned()),
        filter_subject: filter.to_owned(),
        ack_policy: consumer::AckPolicy::Explicit,
        ..Default::default()
    };
    let consumer: PullConsumer = stream
        .get_or_create_consumer(durable, config.clone())
        .await
        .with_context(|| format!("getting or creating the consumer {durable}"))?;
    let info = consumer.cached_info();
    if info.config.filter_subject != filter {
        let follows = &info.config.filter_subject;
        bail!("the consumer {durable} follows {follows}, not {filter}: choose another --durable");
    }
    if info.num_ack_pending == 0 && !restart {
        return Ok(consumer);
    }
    let start_sequence = info.ack_floor.stream_sequence + 1;
    config.deliver_policy = DeliverPolicy::ByStartSequence { start_sequence };
    stream
        .delete_consumer(durable)
        .await
        .context("deleting the consumer")?;
    let consumer = stream
        .create_consumer(config)
        .await
        .context("recreating the consumer")?;
    Ok(consumer)
}

/// Up to 100 messages, waiting at most `wait` for them.
async fn fetch(consumer: &PullConsumer, wait: Duration) -> anyhow::Result<Vec<jetstream::Message>> {
    let mut batch = consumer
        .fetch()
        .max_messages(100)
        .expires(wait)
        .messages()
        .await
        .context("fetching messages")?;
    let mut messages = Vec::new();
    while let Some(message) = batch.next().await {
        messages.push(message.map_err(|e| anyhow!("receiving a message: {e}"))?);
    }
    Ok(messages)
}

/// The output file. Invariant: every line but a torn last one is a recorded event, in position
/// order, and `checkpoint` is the position of the last complete line (0 when there is none).
struct Output {
    file: File,
    checkpoint: i64,
}

impl Output {
    /// Opens (or creates) the file, drops a line a crash left half-written, and reads the
    /// checkpoint from the last complete line.
    fn open(path: &Path) -> anyhow::Result<Output> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        // Lines are about 150 bytes: the end of the file holds the last ones.
        let tail_start = file.metadata()?.len().saturating_sub(64 * 1024);
        let mut tail = Vec::new();
        file.seek(SeekFrom::Start(tail_start))?;
        file.read_to_end(&mut tail)?;
        // What follows the last newline is a line a crash cut short.
        let complete = tail.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        anyhow::ensure!(
            complete > 0 || tail_start == 0,
            "{path:?} is not this consumer's"
        );
        if complete < tail.len() {
            eprintln!("dropping a torn last line of {}", path.display());
            file.set_len(tail_start + complete as u64)?;
        }
        let last_line = tail[..complete]
            .split(|&b| b == b'\n')
            .rfind(|l| !l.is_empty());
        let checkpoint = match last_line {
            None => 0,
            Some(line) => serde_json::from_slice::<serde_json::Value>(line)?["position"]
                .as_i64()
                .context("the last line has no position")?,
        };
        Ok(Output { file, checkpoint })
    }

    /// Writes the event's line (the caller syncs before acking).
    fn append(&mut self, event: &Envelope) -> anyhow::Result<()> {
        let line = serde_json::json!({
            "position": event.position,
            "id": event.id,
            "type": event.event_type,
            "orgid": event.orgid,
        });
        let mut bytes = serde_json::to_vec(&line)?;
        bytes.push(b'\n');
        // One write per line: a crash leaves at most the last one torn.
        self.file.write_all(&bytes).context("writing the output")?;
        self.checkpoint = event.position;
        Ok(())
    }

    fn sync(&self) -> anyhow::Result<()> {
        self.file.sync_data().context("syncing the output to disk")
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler at start-up");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
