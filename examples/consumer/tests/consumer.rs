//! The example consumer as a downstream team runs it: a process following the test's stream,
//! fed by the real command service and relay. It records every event once, in position order,
//! one organisation when asked, skips what is not an envelope without logging its payload, and
//! survives `kill -9` in the middle of a burst (a torn last line included).

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use futures::StreamExt;
use gatehouse_tests::producer::{Producer, RelayConfig};
use gatehouse_tests::{TestEnv, eventually, nats_url};
use serde_json::Value;
use tokio::process::{Child, Command};
use uuid::Uuid;

/// How long a condition may take before the test fails (generous: CI machines are slow).
const PATIENCE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn config(env: &TestEnv) -> RelayConfig {
    RelayConfig::new(&env.stream, &env.prefix)
}

/// A recorded line: position, id, type, organisation.
type Line = (i64, String, String, String);

/// A temporary file path of the test's own, removed when dropped.
struct TempPath(PathBuf);

impl TempPath {
    fn new(env: &TestEnv, name: &str) -> TempPath {
        TempPath(std::env::temp_dir().join(format!("{}-{name}.ndjson", env.prefix)))
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The example consumer on the test's stream, writing to `output`.
fn consumer(env: &TestEnv, output: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse-example-consumer"));
    cmd.env("NATS_URL", nats_url())
        .env("GATEHOUSE_NATS_STREAM", &env.stream)
        .env("GATEHOUSE_NATS_PREFIX", &env.prefix)
        .arg("--output")
        .arg(output)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs the consumer until it has been idle for two seconds.
async fn run_until_idle(env: &TestEnv, output: &Path, extra: &[&str]) -> Output {
    let mut cmd = consumer(env, output, extra);
    cmd.args(["--exit-after-idle", "2"]);
    let out = tokio::time::timeout(PATIENCE, cmd.output())
        .await
        .expect("the consumer stops once idle")
        .expect("the consumer runs");
    assert!(
        out.status.success(),
        "the consumer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The complete lines of the output file.
fn recorded(path: &Path) -> Vec<Line> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|v| {
            (
                v["position"].as_i64().expect("a position"),
                v["id"].as_str().expect("an id").to_owned(),
                v["type"].as_str().expect("a type").to_owned(),
                v["orgid"].as_str().expect("an organisation").to_owned(),
            )
        })
        .collect()
}

/// Every stored event (of `org` when given), as the consumer should record it.
async fn stored(env: &TestEnv, org: Option<Uuid>) -> Vec<Line> {
    env.db
        .read_after(0, 100_000)
        .await
        .expect("the store")
        .into_iter()
        .map(|r| r.envelope)
        .filter(|e| org.is_none_or(|org| e.orgid == org))
        .map(|e| {
            (
                e.position,
                e.id.to_string(),
                e.event_type,
                e.orgid.to_string(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_consumer_records_every_event_once_in_order_and_only_one_org_when_asked() {
    let env = TestEnv::new().await;
    let producer = Producer::start(&env, config(&env)).await;
    let mut acme = producer.create_org("Acme").await;
    let mut globex = producer.create_org("Globex").await;
    producer.burst(&mut acme, 15).await;
    producer.burst(&mut globex, 10).await;
    producer.await_relayed().await;
    // Something on the stream that is not an envelope, between two bursts.
    let bogus_subject = format!("{}.{}.admin.bogus", env.prefix, acme.id);
    env.jetstream
        .publish(
            bogus_subject.clone(),
            "not-an-envelope secret=hunter2".into(),
        )
        .await
        .expect("published")
        .await
        .expect("stored");
    producer.burst(&mut acme, 5).await;
    producer.burst(&mut globex, 5).await;
    producer.await_relayed().await;

    let all = TempPath::new(&env, "all");
    let out = run_until_idle(&env, &all.0, &[]).await;
    assert_eq!(
        recorded(&all.0),
        stored(&env, None).await,
        "every event once, in position order"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("skipping {bogus_subject} (stream sequence ")),
        "the bad message is named by subject and sequence: {stderr}"
    );
    assert!(
        !stderr.contains("hunter2"),
        "the payload is never logged: {stderr}"
    );

    let only_acme = TempPath::new(&env, "acme");
    let acme_id = acme.id.to_string();
    run_until_idle(
        &env,
        &only_acme.0,
        &["--org", &acme_id, "--durable", "acme-only"],
    )
    .await;
    let expected = stored(&env, Some(acme.id)).await;
    assert!(expected.len() > 20, "Acme's events: {}", expected.len());
    assert_eq!(
        recorded(&only_acme.0),
        expected,
        "Acme's events once, in order, with the gaps Globex leaves"
    );

    // Running it again finds nothing new and records nothing twice.
    run_until_idle(&env, &all.0, &[]).await;
    assert_eq!(recorded(&all.0), stored(&env, None).await);
}

#[tokio::test]
async fn a_consumer_killed_in_the_middle_of_a_burst_records_each_event_once_after_a_restart() {
    let env = TestEnv::new().await;
    let producer = Producer::start(&env, config(&env)).await;
    let mut org = producer.create_org("Acme").await;
    let before_burst = producer.await_relayed().await;
    let output = TempPath::new(&env, "killed");

    let mut child: Child = consumer(&env, &output.0, &[])
        .spawn()
        .expect("the consumer starts");
    let burst = producer.burst(&mut org, 400);
    let kill = async {
        eventually(
            PATIENCE,
            "the consumer recording part of the burst",
            || async {
                let seen = recorded(&output.0).len() as i64;
                (seen >= before_burst + 50).then_some(())
            },
        )
        .await;
        child.start_kill().expect("kill -9");
        child.wait().await.expect("the consumer ends");
        recorded(&output.0).len()
    };
    let (_, recorded_when_killed) = tokio::join!(burst, kill);
    let head = producer.await_relayed().await;
    eprintln!("killed after {recorded_when_killed} of {head} events");

    // As if it had died in the middle of writing a line.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&output.0)
        .and_then(|mut f| std::io::Write::write_all(&mut f, br#"{"position":"#))
        .expect("a torn line");

    let out = run_until_idle(&env, &output.0, &[]).await;
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("dropping a torn last line"),
        "the torn line is dropped"
    );
    let lines = recorded(&output.0);
    let positions: Vec<i64> = lines.iter().map(|l| l.0).collect();
    assert_eq!(
        positions,
        (1..=head).collect::<Vec<i64>>(),
        "every position exactly once, in order"
    );
    assert_eq!(lines, stored(&env, None).await);
    let text = std::fs::read_to_string(&output.0).expect("the output");
    assert_eq!(
        text.lines().count(),
        lines.len(),
        "no torn line is left behind"
    );
}

#[tokio::test]
async fn messages_a_dead_instance_left_unacknowledged_are_recorded_first_on_restart() {
    let env = TestEnv::new().await;
    let producer = Producer::start(&env, config(&env)).await;
    let mut org = producer.create_org("Acme").await;
    producer.burst(&mut org, 30).await;
    let head = producer.await_relayed().await;

    // An instance took the first ten messages of the durable consumer and died before acking:
    // JetStream would deliver them again only after the ack wait, behind the newer ones.
    let stream = env
        .jetstream
        .get_stream(&env.stream)
        .await
        .expect("the stream");
    let durable: async_nats::jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            "example-consumer",
            async_nats::jetstream::consumer::pull::Config {
                durable_name: Some("example-consumer".to_owned()),
                filter_subject: format!("{}.>", env.prefix),
                ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await
        .expect("the durable consumer");
    let taken: Vec<_> = durable
        .fetch()
        .max_messages(10)
        .messages()
        .await
        .expect("a fetch")
        .collect()
        .await;
    assert_eq!(taken.len(), 10);
    drop(taken);

    let output = TempPath::new(&env, "unacked");
    run_until_idle(&env, &output.0, &[]).await;
    let positions: Vec<i64> = recorded(&output.0).iter().map(|l| l.0).collect();
    assert_eq!(
        positions,
        (1..=head).collect::<Vec<i64>>(),
        "the unacknowledged messages come first, then the rest, each once"
    );
}
