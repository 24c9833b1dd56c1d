//! `gatehouse relay republish` as an operator runs it after the JetStream stream lost its
//! messages (purged, or deleted outright): the stream ends up holding every event once, in
//! position order, with its id, and a consumer that deduplicates by position, whether it saw
//! the events before the loss or comes afterwards, holds each event exactly once.

use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;

use async_nats::jetstream::consumer::{self, PullConsumer};
use futures::StreamExt;
use gatehouse_tests::producer::{Producer, RelayConfig};
use gatehouse_tests::{TestEnv, nats_url};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// How long a condition may take before the test fails (generous: CI machines are slow).
const PATIENCE: Duration = Duration::from_secs(60);

/// A short duplicate window, so that republishing right after a purge (which JetStream answers
/// with "duplicate" until it forgets the ids) waits seconds rather than minutes.
const WINDOW_SECS: u64 = 2;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn config(env: &TestEnv) -> RelayConfig {
    RelayConfig {
        duplicate_window: Duration::from_secs(WINDOW_SECS),
        ..RelayConfig::new(&env.stream, &env.prefix)
    }
}

/// The `gatehouse` binary on the test's database and stream.
fn gatehouse(env: &TestEnv) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.env("DATABASE_URL", &env.db_url)
        .env("NATS_URL", nats_url())
        .env("GATEHOUSE_NATS_STREAM", &env.stream)
        .env("GATEHOUSE_NATS_PREFIX", &env.prefix)
        .env("GATEHOUSE_NATS_DUPLICATE_WINDOW", WINDOW_SECS.to_string())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Runs `gatehouse relay republish ARGS`; answers its exit code, stdout and stderr.
async fn republish(env: &TestEnv, args: &[&str]) -> (Option<i32>, String, String) {
    let out = tokio::time::timeout(
        PATIENCE,
        gatehouse(env)
            .args(["relay", "republish"])
            .args(args)
            .output(),
    )
    .await
    .expect("republish ends")
    .expect("the gatehouse binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A message's global position.
fn position(headers: Option<&async_nats::HeaderMap>) -> i64 {
    headers
        .and_then(|h| h.get("Gatehouse-Position"))
        .expect("a Gatehouse-Position header")
        .as_str()
        .parse()
        .expect("a numeric position")
}

/// What the stream holds, in stream order: (position, Nats-Msg-Id).
async fn stream_contents(env: &TestEnv) -> Vec<(i64, String)> {
    let stream = env
        .jetstream
        .get_stream(&env.stream)
        .await
        .expect("the stream");
    let state = stream.cached_info().state.clone();
    let mut held = Vec::new();
    for sequence in state.first_sequence..=state.last_sequence {
        let message = stream.get_raw_message(sequence).await.expect("a message");
        let id = message
            .headers
            .get("Nats-Msg-Id")
            .expect("a Nats-Msg-Id")
            .as_str()
            .to_owned();
        held.push((position(Some(&message.headers)), id));
    }
    assert_eq!(held.len() as u64, state.messages, "no holes in the stream");
    held
}

/// Asserts the stream holds each stored event once, in position order, with its id.
async fn assert_stream_holds_each_event_once(env: &TestEnv) {
    let stored: Vec<(i64, String)> = env
        .db
        .read_after(0, 100_000)
        .await
        .expect("the store")
        .into_iter()
        .map(|r| (r.envelope.position, r.envelope.id.to_string()))
        .collect();
    let held = stream_contents(env).await;
    let ids: HashSet<&String> = held.iter().map(|(_, id)| id).collect();
    assert_eq!(ids.len(), held.len(), "each Nats-Msg-Id once");
    assert_eq!(held, stored, "every event once, in position order");
}

/// A downstream consumer that deduplicates by position: a durable pull consumer with explicit
/// acks, recording each position above the last one it recorded.
struct Tracker {
    durable: &'static str,
    positions: Vec<i64>,
    /// Messages at or below the checkpoint: copies it acked and skipped.
    skipped: usize,
}

impl Tracker {
    fn new(durable: &'static str) -> Tracker {
        Tracker {
            durable,
            positions: Vec::new(),
            skipped: 0,
        }
    }

    /// Gets or creates the durable consumer (a deleted stream took it along).
    async fn consumer(&self, env: &TestEnv) -> PullConsumer {
        let stream = env
            .jetstream
            .get_stream(&env.stream)
            .await
            .expect("the stream");
        let config = consumer::pull::Config {
            durable_name: Some(self.durable.to_owned()),
            filter_subject: format!("{}.>", env.prefix),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        };
        stream
            .get_or_create_consumer(self.durable, config)
            .await
            .expect("the consumer")
    }

    /// Reads until it has recorded `head` and nothing is left to deliver.
    async fn catch_up(&mut self, env: &TestEnv, head: i64) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let mut consumer = self.consumer(env).await;
            let mut batch = consumer
                .fetch()
                .max_messages(100)
                .expires(Duration::from_millis(200))
                .messages()
                .await
                .expect("a fetch");
            while let Some(message) = batch.next().await {
                let message = message.expect("a message");
                let position = position(message.headers.as_ref());
                if position > self.positions.last().copied().unwrap_or(0) {
                    self.positions.push(position);
                } else {
                    self.skipped += 1;
                }
                message.double_ack().await.expect("acknowledged");
            }
            let info = consumer.info().await.expect("consumer info");
            let drained = info.num_pending == 0 && info.num_ack_pending == 0;
            if drained && self.positions.last() == Some(&head) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} did not reach position {head}: it has {:?}",
                self.durable,
                self.positions
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn republishing_after_a_purge_restores_every_event_once_for_old_and_new_consumers() {
    let env = TestEnv::new().await;
    let mut producer = Producer::start(&env, config(&env)).await;
    let mut org = producer.create_org("Acme").await;
    producer.burst(&mut org, 30).await;
    let head = producer.await_relayed().await;
    let mut veteran = Tracker::new("veteran");
    veteran.catch_up(&env, head).await;

    // The runbook: stop the relay, and the stream loses everything.
    producer.stop_relay().await;
    let stream = env
        .jetstream
        .get_stream(&env.stream)
        .await
        .expect("the stream");
    stream.purge().await.expect("purged");

    // JetStream still remembers the purged ids for its duplicate window; republish waits it out
    // instead of counting them as held.
    let (code, stdout, stderr) = republish(&env, &["--from", "1"]).await;
    assert_eq!(code, Some(0), "republish succeeds: {stderr}");
    assert_eq!(
        stdout.trim(),
        format!("republished {head} events (positions 1..={head}); JetStream already held 0")
    );
    assert_stream_holds_each_event_once(&env).await;

    // The relay carries on after the republished events.
    producer.start_relay();
    producer.burst(&mut org, 10).await;
    let head = producer.await_relayed().await;
    assert_stream_holds_each_event_once(&env).await;

    veteran.catch_up(&env, head).await;
    assert_eq!(veteran.positions, (1..=head).collect::<Vec<i64>>());
    assert!(
        veteran.skipped >= 30,
        "the veteran saw the copies and skipped them ({} skipped)",
        veteran.skipped
    );
    let mut newcomer = Tracker::new("newcomer");
    newcomer.catch_up(&env, head).await;
    assert_eq!(newcomer.positions, (1..=head).collect::<Vec<i64>>());
    assert_eq!(newcomer.skipped, 0, "a newcomer gets each event once");
}

#[tokio::test]
async fn republishing_after_the_stream_was_deleted_waits_for_the_relay_then_recreates_it() {
    let env = TestEnv::new().await;
    let mut producer = Producer::start(&env, config(&env)).await;
    let mut org = producer.create_org("Acme").await;
    producer.burst(&mut org, 20).await;
    let head = producer.await_relayed().await;
    let mut veteran = Tracker::new("veteran");
    veteran.catch_up(&env, head).await;

    env.jetstream
        .delete_stream(&env.stream)
        .await
        .expect("the stream is deleted");

    // A relay is still running: republish waits for it to stop, so nothing interleaves.
    let mut child = gatehouse(&env)
        .args(["relay", "republish", "--from", "1"])
        .env("GATEHOUSE_NATS_MAX_AGE", "86400")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("republish starts");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let waiting = tokio::time::timeout(PATIENCE, async {
        while let Some(line) = stderr.next_line().await.expect("stderr") {
            if line.contains("waiting for it to stop") {
                return line;
            }
        }
        panic!("republish ended without waiting for the relay");
    })
    .await
    .expect("republish says it waits for the relay");
    assert!(waiting.contains("a relay is publishing"), "{waiting}");
    producer.stop_relay().await;
    let out = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("republish ends once the relay stopped")
        .expect("republish runs");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("republished {head} events (positions 1..={head}); JetStream already held 0")
    );

    // Recreated with the configured settings.
    let info = env
        .jetstream
        .get_stream(&env.stream)
        .await
        .expect("the stream is back")
        .cached_info()
        .config
        .clone();
    assert_eq!(
        info.storage,
        async_nats::jetstream::stream::StorageType::File
    );
    assert_eq!(info.max_age, Duration::from_secs(86400));
    assert_eq!(info.duplicate_window, Duration::from_secs(WINDOW_SECS));
    assert_stream_holds_each_event_once(&env).await;

    producer.start_relay();
    producer.burst(&mut org, 5).await;
    let head = producer.await_relayed().await;
    assert_stream_holds_each_event_once(&env).await;
    veteran.catch_up(&env, head).await;
    assert_eq!(veteran.positions, (1..=head).collect::<Vec<i64>>());
}

#[tokio::test]
async fn republishing_what_jetstream_still_holds_stores_no_copy() {
    let env = TestEnv::new().await;
    let mut producer = Producer::start(&env, config(&env)).await;
    let mut org = producer.create_org("Acme").await;
    producer.burst(&mut org, 10).await;
    let head = producer.await_relayed().await;
    producer.stop_relay().await;

    let (code, stdout, stderr) = republish(&env, &["--from", "3", "--to", "7"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout.trim(),
        "republished 5 events (positions 3..=7); JetStream already held 5"
    );
    // As if the relay had died before saving its cursor: republishing from before it moves it
    // up, so the relay does not publish those events a third time.
    let client = env.db.pool.get().await.expect("a connection");
    client
        .execute("UPDATE relay_cursor SET position = 4", &[])
        .await
        .expect("move the cursor back");
    let (code, stdout, stderr) = republish(&env, &["--from", "1"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout.trim(),
        format!("republished {head} events (positions 1..={head}); JetStream already held {head}")
    );
    let cursor: i64 = client
        .query_one("SELECT position FROM relay_cursor", &[])
        .await
        .expect("the cursor")
        .get(0);
    assert_eq!(
        cursor, head,
        "the relay's cursor moved up to what was republished"
    );

    let (code, stdout, _) = republish(&env, &["--from", &(head + 1).to_string()]).await;
    assert_eq!(code, Some(0));
    assert_eq!(
        stdout.trim(),
        format!("nothing to republish: the store's last position is {head}")
    );
    assert_stream_holds_each_event_once(&env).await;
}

#[tokio::test]
async fn republish_refuses_a_bad_range_or_bad_stream_settings_and_publishes_nothing() {
    let env = TestEnv::new().await;
    let mut producer = Producer::start(&env, config(&env)).await;
    let mut org = producer.create_org("Acme").await;
    producer.burst(&mut org, 3).await;
    producer.await_relayed().await;
    producer.stop_relay().await;
    let stream = env
        .jetstream
        .get_stream(&env.stream)
        .await
        .expect("the stream");
    stream.purge().await.expect("purged");

    for (args, says) in [
        (
            &["--from", "5", "--to", "3"][..],
            "--to 3 comes before --from 5",
        ),
        (&["--from", "0"][..], "0 is not in 1.."),
        (&["--from", "-4"][..], "--from"),
        (&[][..], "--from"),
    ] {
        let (code, stdout, stderr) = republish(&env, args).await;
        assert_eq!(code, Some(2), "{args:?} is a usage error: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
    }
    // Stream settings JetStream cannot keep are refused before anything is published.
    for (variable, value, code, says) in [
        ("GATEHOUSE_NATS_REPLICAS", "0", 2, "0 is not in 1..=5"),
        ("GATEHOUSE_NATS_REPLICAS", "6", 2, "6 is not in 1..=5"),
        ("GATEHOUSE_NATS_DUPLICATE_WINDOW", "0", 2, "0 is not in 1.."),
        ("GATEHOUSE_NATS_MAX_AGE", "1", 1, "cannot be longer than"),
    ] {
        let out = tokio::time::timeout(
            PATIENCE,
            gatehouse(&env)
                .args(["relay", "republish", "--from", "1"])
                .env(variable, value)
                .output(),
        )
        .await
        .expect("it ends")
        .expect("it runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{variable}={value}: {stderr}"
        );
        assert!(stderr.contains(says), "{variable}={value}: {stderr}");
    }
    let held = env
        .jetstream
        .get_stream(&env.stream)
        .await
        .expect("the stream")
        .cached_info()
        .state
        .messages;
    assert_eq!(held, 0, "nothing was published");
}
