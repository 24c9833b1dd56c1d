//! The relay against real Postgres and real NATS: what arrives, in which order, and that it
//! arrives once, through late commits, crashes, two relays and NATS outages.

use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::{self, stream};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use gatehouse_events::types::{AdminCreated, OrgCreated};
use gatehouse_events::{Actor, Envelope, Event, Role};
use gatehouse_relay::publish::{message, publish_batch};
use gatehouse_relay::{CHAIN_HEADER, LEADER_LOCK_KEY, POSITION_HEADER, RelayConfig};
use gatehouse_store::{AppendRequest, Appended, Db, DbConfig};
use gatehouse_tests::faults::NatsServer;
use gatehouse_tests::{TestEnv, eventually};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long a condition may take before the test fails (generous: CI machines are slow).
const PATIENCE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn request(org: Uuid, events: Vec<Event>) -> AppendRequest {
    AppendRequest {
        org_id: org,
        actor: Actor::System,
        correlation_id: Uuid::now_v7(),
        time: Utc::now(),
        auth_method: None,
        events,
        expected: vec![],
        org_position: None,
        statements: vec![],
    }
}

fn org_created(org: Uuid) -> Event {
    Event::OrgCreated(OrgCreated {
        org_id: org,
        name: "Acme".into(),
    })
}

fn admin_created() -> Event {
    let admin = Uuid::now_v7();
    Event::AdminCreated(AdminCreated {
        admin_id: admin,
        email: format!("{admin}@example.com"),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        role: Role::Administrator,
        mfa_required: false,
    })
}

/// Appends `n` admins to `org`, one append each.
async fn append_admins(db: &Db, org: Uuid, n: usize) -> Vec<Appended> {
    let mut all = Vec::with_capacity(n);
    for _ in 0..n {
        all.push(
            db.append(request(org, vec![admin_created()]))
                .await
                .expect("append"),
        );
    }
    all
}

/// A relay task and the means to stop it.
struct RunningRelay {
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningRelay {
    fn start(db: &Db, js: &jetstream::Context, cfg: &RelayConfig) -> RunningRelay {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(gatehouse_relay::run(
            db.clone(),
            js.clone(),
            cfg.clone(),
            shutdown.clone(),
        ));
        RunningRelay { shutdown, task }
    }

    /// Cancels it and waits until it returned, which must be `Ok`.
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the relay stops when asked")
            .expect("the relay does not panic")
            .expect("the relay stops without error");
    }
}

async fn messages_in_stream(js: &jetstream::Context, name: &str) -> u64 {
    let stream = js.get_stream(name).await.expect("the stream exists");
    stream.get_info().await.expect("stream info").state.messages
}

/// Waits until the stream holds exactly `n` messages.
async fn await_messages_in_stream(js: &jetstream::Context, name: &str, n: u64) {
    let what = format!("{n} messages in stream {name}");
    eventually(PATIENCE, &what, || async {
        let count = messages_in_stream(js, name).await;
        assert!(
            count <= n,
            "stream {name} holds {count} messages, more than the {n} events"
        );
        (count == n).then_some(())
    })
    .await;
}

/// Every message of the stream, in stream order.
async fn stream_messages(js: &jetstream::Context, name: &str) -> Vec<StreamMessage> {
    let stream = js.get_stream(name).await.expect("the stream exists");
    let state = stream.get_info().await.expect("stream info").state;
    let mut messages = Vec::new();
    for seq in state.first_sequence..=state.last_sequence {
        messages.push(stream.get_raw_message(seq).await.expect("a stored message"));
    }
    messages
}

fn header(message: &StreamMessage, name: &str) -> String {
    message
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("message {} has no {name} header", message.sequence))
        .as_str()
        .to_owned()
}

fn positions(messages: &[StreamMessage]) -> Vec<i64> {
    messages
        .iter()
        .map(|m| {
            header(m, POSITION_HEADER)
                .parse()
                .expect("a numeric position")
        })
        .collect()
}

async fn cursor(db: &Db) -> i64 {
    let client = db.pool.get().await.expect("connection");
    client
        .query_one("SELECT position FROM relay_cursor", &[])
        .await
        .expect("cursor")
        .get(0)
}

async fn await_cursor(db: &Db, position: i64) {
    eventually(
        PATIENCE,
        &format!("the relay cursor at {position}"),
        || async { (cursor(db).await == position).then_some(()) },
    )
    .await;
}

fn config(env: &TestEnv) -> RelayConfig {
    RelayConfig::new(&env.stream, &env.prefix)
}

async fn ready_stream(env: &TestEnv, cfg: &RelayConfig) {
    gatehouse_relay::ensure_stream(&env.jetstream, cfg)
        .await
        .expect("the stream is created");
}

/// The stream's configuration as JetStream reports it.
async fn stream_config(env: &TestEnv) -> stream::Config {
    env.jetstream
        .get_stream(&env.stream)
        .await
        .expect("the stream")
        .get_info()
        .await
        .expect("info")
        .config
}

fn positions_of(recorded: &[gatehouse_store::Recorded]) -> Vec<i64> {
    recorded.iter().map(|r| r.envelope.position).collect()
}

/// The application name of the connection holding the relay's leader lock, if any (`pg_locks`
/// shows every database's locks: other tests run relays too).
async fn leader_name(db: &Db) -> Option<String> {
    let client = db.pool.get().await.expect("connection");
    client
        .query_opt(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE a.datname = current_database()
               AND l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
               AND ((l.classid::bigint << 32) | l.objid::bigint) = $1",
            &[&LEADER_LOCK_KEY],
        )
        .await
        .expect("pg_locks")
        .map(|row| row.get(0))
}

/// The positions of the next `count` raw publishes. A core subscription sees every copy a relay
/// sends, where the stream keeps one.
async fn next_publishes(subscriber: &mut async_nats::Subscriber, count: usize) -> Vec<i64> {
    let mut seen = Vec::with_capacity(count);
    while seen.len() < count {
        let message = tokio::time::timeout(PATIENCE, subscriber.next())
            .await
            .unwrap_or_else(|_| panic!("expected {count} publishes, saw {seen:?}"))
            .expect("the subscription is open");
        let headers = message.headers.expect("relay messages carry headers");
        let position = headers
            .get(POSITION_HEADER)
            .expect("a position header")
            .as_str()
            .parse()
            .expect("a number");
        seen.push(position);
    }
    seen
}

/// When a session last started reading the log (the store's `read_after`, which only the relay
/// calls while the test waits), from `pg_stat_activity`.
async fn last_read_of_events(db: &Db) -> Option<DateTime<Utc>> {
    let client = db.pool.get().await.expect("connection");
    client
        .query_one(
            "SELECT max(query_start) FROM pg_stat_activity
             WHERE datname = current_database() AND query LIKE '%FROM events WHERE position >%'",
            &[],
        )
        .await
        .expect("pg_stat_activity")
        .get(0)
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_event_arrives_in_position_order_on_its_subject_with_its_headers_and_envelope() {
    let env = TestEnv::new().await;
    // Small batches and a small window, so several batches and a full window are exercised.
    let cfg = RelayConfig {
        batch_size: 3,
        max_in_flight: 2,
        ..config(&env)
    };
    ready_stream(&env, &cfg).await;
    let (acme, globex) = (Uuid::now_v7(), Uuid::now_v7());

    // Some events before the relay starts (catching up), some after (following).
    let mut appended = vec![
        env.db
            .append(request(
                acme,
                vec![org_created(acme), admin_created(), admin_created()],
            ))
            .await
            .expect("append"),
        env.db
            .append(request(globex, vec![org_created(globex)]))
            .await
            .expect("append"),
    ];
    let relay = RunningRelay::start(&env.db, &env.jetstream, &cfg);
    appended.extend(append_admins(&env.db, globex, 2).await);
    appended.extend(append_admins(&env.db, acme, 3).await);
    let expected: Vec<(&Envelope, String)> = appended
        .iter()
        .flat_map(|a| a.envelopes.iter().zip(a.chains.iter().map(|c| c.to_hex())))
        .collect();
    assert_eq!(expected.len(), 9);

    await_messages_in_stream(&env.jetstream, &env.stream, 9).await;
    await_cursor(&env.db, 9).await;
    relay.stop().await;

    let stored = env.db.read_after(0, 100).await.expect("read the store");
    let messages = stream_messages(&env.jetstream, &env.stream).await;
    assert_eq!(
        positions(&messages),
        (1..=9).collect::<Vec<i64>>(),
        "one message per event, in position order"
    );
    for ((message, (envelope, chain)), recorded) in messages.iter().zip(&expected).zip(&stored) {
        let name = match envelope.event_type.as_str() {
            "gatehouse.org.created.v1" => "org.created",
            "gatehouse.admin.created.v1" => "admin.created",
            other => panic!("unexpected event type {other}"),
        };
        assert_eq!(
            message.subject.as_str(),
            format!("{}.{}.{name}", env.prefix, envelope.orgid)
        );
        assert_eq!(header(message, "Nats-Msg-Id"), envelope.id.to_string());
        assert_eq!(
            header(message, POSITION_HEADER),
            envelope.position.to_string()
        );
        assert_eq!(&header(message, CHAIN_HEADER), chain);
        let body: Envelope =
            serde_json::from_slice(&message.payload).expect("the body is an envelope");
        assert_eq!(&body, *envelope, "the body is the envelope as appended");
        assert_eq!(
            body, recorded.envelope,
            "the body is the envelope as stored"
        );
        assert_eq!(
            message.payload.as_ref(),
            serde_json::to_vec(&recorded.envelope)
                .expect("json")
                .as_slice()
        );
    }
}

#[tokio::test]
async fn an_append_that_commits_late_is_relayed_before_the_append_that_waited_for_it() {
    let env = TestEnv::new().await;
    let cfg = config(&env);
    ready_stream(&env, &cfg).await;
    let org = Uuid::now_v7();
    env.db
        .append(request(org, vec![org_created(org)]))
        .await
        .expect("first append");
    let relay = RunningRelay::start(&env.db, &env.jetstream, &cfg);
    await_messages_in_stream(&env.jetstream, &env.stream, 1).await;

    // A takes position N and holds the append lock, uncommitted.
    let mut a_client = env.db.pool.get().await.expect("connection");
    let tx = a_client.transaction().await.expect("begin");
    let a = gatehouse_store::append::append_in(&tx, request(org, vec![admin_created()]))
        .await
        .expect("append A");
    let n = a.last_position().expect("A has an event");
    assert_eq!(n, 2);

    // B starts and must wait for A.
    let db = env.db.clone();
    let b = tokio::spawn(async move { db.append(request(org, vec![admin_created()])).await });
    let probe = env.db.pool.get().await.expect("connection");
    eventually(PATIENCE, "append B waiting on A's lock", || async {
        let waiting: i64 = probe
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .expect("pg_stat_activity")
            .get(0);
        (waiting > 0).then_some(())
    })
    .await;

    // A reader tailing the log sees neither A nor B yet; it can never see B without A.
    let seen = env.db.read_after(n - 1, 100).await.expect("read after N-1");
    assert!(
        seen.is_empty(),
        "nothing after N-1 is visible before A commits, got {:?}",
        positions_of(&seen)
    );

    tx.commit().await.expect("commit A");
    let b = b.await.expect("B does not panic").expect("append B");
    assert_eq!(b.last_position(), Some(n + 1));

    await_messages_in_stream(&env.jetstream, &env.stream, 3).await;
    relay.stop().await;
    let messages = stream_messages(&env.jetstream, &env.stream).await;
    assert_eq!(positions(&messages), vec![1, n, n + 1]);
    assert_eq!(
        header(&messages[1], "Nats-Msg-Id"),
        a.envelopes[0].id.to_string()
    );
    assert_eq!(
        header(&messages[2], "Nats-Msg-Id"),
        b.envelopes[0].id.to_string()
    );
}

#[tokio::test]
async fn a_relay_that_died_before_saving_its_cursor_leaves_each_event_once_in_the_stream() {
    let env = TestEnv::new().await;
    let cfg = RelayConfig {
        batch_size: 4,
        ..config(&env)
    };
    ready_stream(&env, &cfg).await;
    let org = Uuid::now_v7();
    append_admins(&env.db, org, 10).await;

    let relay = RunningRelay::start(&env.db, &env.jetstream, &cfg);
    await_cursor(&env.db, 10).await;
    relay.stop().await;
    assert_eq!(messages_in_stream(&env.jetstream, &env.stream).await, 10);

    // As if it had died after publishing everything but before saving any cursor.
    let client = env.db.pool.get().await.expect("connection");
    client
        .execute("UPDATE relay_cursor SET position = 0", &[])
        .await
        .expect("reset the cursor");

    let relay = RunningRelay::start(&env.db, &env.jetstream, &cfg);
    await_cursor(&env.db, 10).await;
    assert_eq!(
        messages_in_stream(&env.jetstream, &env.stream).await,
        10,
        "JetStream dropped the copies"
    );

    // And it goes on with new events after the copies.
    append_admins(&env.db, org, 2).await;
    await_cursor(&env.db, 12).await;
    relay.stop().await;
    let messages = stream_messages(&env.jetstream, &env.stream).await;
    assert_eq!(positions(&messages), (1..=12).collect::<Vec<i64>>());
}

#[tokio::test]
async fn of_two_relays_only_one_publishes_and_the_other_takes_over_when_it_stops() {
    let env = TestEnv::new().await;
    let cfg = config(&env);
    ready_stream(&env, &cfg).await;
    let mut subscriber = env
        .nats
        .subscribe(format!("{}.>", env.prefix))
        .await
        .expect("subscribe");
    env.nats.flush().await.expect("flush the subscription");

    let named = |name: &str| {
        let url = format!("{}?application_name={name}", env.db_url);
        async move {
            Db::connect(&DbConfig { url, pool_size: 2 })
                .await
                .expect("connect")
        }
    };
    let (db_a, db_b) = (named("relay_a").await, named("relay_b").await);
    let mut relays = vec![
        ("relay_a", RunningRelay::start(&db_a, &env.jetstream, &cfg)),
        ("relay_b", RunningRelay::start(&db_b, &env.jetstream, &cfg)),
    ];
    let leader = eventually(PATIENCE, "a relay taking the lead", || leader_name(&env.db)).await;

    let org = Uuid::now_v7();
    append_admins(&env.db, org, 5).await;
    let mut seen = next_publishes(&mut subscriber, 5).await;
    await_cursor(&env.db, 5).await;
    assert_eq!(
        leader_name(&env.db).await.as_deref(),
        Some(leader.as_str()),
        "the leader did not change"
    );

    // The leader stops; the standby takes over and publishes what comes next.
    let index = relays
        .iter()
        .position(|(name, _)| *name == leader)
        .expect("the leader is one of ours");
    let (_, stopped) = relays.remove(index);
    stopped.stop().await;
    let (standby, survivor) = relays.remove(0);
    eventually(PATIENCE, "the standby taking the lead", || async {
        (leader_name(&env.db).await.as_deref() == Some(standby)).then_some(())
    })
    .await;
    append_admins(&env.db, org, 3).await;
    seen.extend(next_publishes(&mut subscriber, 3).await);
    await_cursor(&env.db, 8).await;

    assert_eq!(
        seen,
        (1..=8).collect::<Vec<i64>>(),
        "each event was published once, by one relay at a time"
    );
    await_messages_in_stream(&env.jetstream, &env.stream, 8).await;
    survivor.stop().await;
}

#[tokio::test]
async fn a_deposed_leader_cannot_move_the_cursor() {
    let env = TestEnv::new().await;
    let shutdown = CancellationToken::new();
    let first = gatehouse_relay::leader::acquire(&env.db, &shutdown)
        .await
        .expect("connect")
        .expect("leads");
    let db = env.db.clone();
    let token = shutdown.clone();
    let standby = tokio::spawn(async move { gatehouse_relay::leader::acquire(&db, &token).await });

    // The first leader's connection dies (as when its host drops off the network).
    let client = env.db.pool.get().await.expect("connection");
    let terminated: i64 = client
        .query_one(
            "SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l
             JOIN pg_database d ON d.oid = l.database AND d.datname = current_database()
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
               AND ((l.classid::bigint << 32) | l.objid::bigint) = $1",
            &[&LEADER_LOCK_KEY],
        )
        .await
        .expect("terminate the leader's backend")
        .get(0);
    assert_eq!(terminated, 1);

    let second = tokio::time::timeout(PATIENCE, standby)
        .await
        .expect("the standby takes over")
        .expect("no panic")
        .expect("connect")
        .expect("leads");
    assert!(
        first.save_cursor(7).await.is_err(),
        "the deposed leader's write is refused"
    );
    second
        .save_cursor(7)
        .await
        .expect("the new leader moves the cursor");
    assert_eq!(cursor(&env.db).await, 7);
}

#[tokio::test]
async fn events_appended_while_nats_is_down_are_accepted_and_arrive_once_in_order_later() {
    let env = TestEnv::new().await;
    let mut nats = NatsServer::start_new()
        .await
        .expect("a NATS server of this test's own");
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| Duration::from_millis((attempts as u64 * 50).min(500)))
        .connect(nats.url())
        .await
        .expect("connect to the private NATS");
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(1))
        .build(client.clone());
    let cfg = config(&env);
    gatehouse_relay::ensure_stream(&js, &cfg)
        .await
        .expect("the stream is created");

    let relay = RunningRelay::start(&env.db, &js, &cfg);
    let org = Uuid::now_v7();
    let mut appended = append_admins(&env.db, org, 3).await;
    await_cursor(&env.db, 3).await;

    nats.stop().await.expect("stop NATS");
    eventually(PATIENCE, "the client noticing NATS is gone", || async {
        (client.connection_state() == async_nats::connection::State::Disconnected).then_some(())
    })
    .await;
    let before_outage = last_read_of_events(&env.db).await;
    // Commands are still accepted: appends never touch NATS.
    appended.extend(append_admins(&env.db, org, 4).await);
    assert_eq!(env.db.head().await.expect("head"), 7);
    // The relay reads the new events, gets no acknowledgement, and reads them again to retry.
    let first_try = eventually(PATIENCE, "the relay reading the new events", || async {
        last_read_of_events(&env.db)
            .await
            .filter(|t| Some(*t) > before_outage)
    })
    .await;
    eventually(PATIENCE, "the relay retrying", || async {
        last_read_of_events(&env.db)
            .await
            .filter(|t| *t > first_try)
    })
    .await;
    assert_eq!(
        cursor(&env.db).await,
        3,
        "nothing is acknowledged while NATS is down"
    );

    nats.start().await.expect("restart NATS");
    await_cursor(&env.db, 7).await;
    relay.stop().await;

    let messages = stream_messages(&js, &env.stream).await;
    assert_eq!(
        positions(&messages),
        (1..=7).collect::<Vec<i64>>(),
        "each event once, in order"
    );
    let ids: Vec<String> = messages.iter().map(|m| header(m, "Nats-Msg-Id")).collect();
    let expected: Vec<String> = appended
        .iter()
        .flat_map(|a| &a.envelopes)
        .map(|e| e.id.to_string())
        .collect();
    assert_eq!(ids, expected);
}

#[tokio::test]
async fn a_relay_that_cannot_publish_keeps_its_cursor_and_retries_until_it_can() {
    let env = TestEnv::new().await;
    let cfg = config(&env);
    // No stream yet: nothing acknowledges. A subscriber of our own sees each attempt.
    let mut subscriber = env
        .nats
        .subscribe(format!("{}.>", env.prefix))
        .await
        .expect("subscribe");
    env.nats.flush().await.expect("flush the subscription");
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_millis(300))
        .build(env.nats.clone());
    let org = Uuid::now_v7();
    append_admins(&env.db, org, 3).await;

    let relay = RunningRelay::start(&env.db, &js, &cfg);
    let seen = next_publishes(&mut subscriber, 6).await;
    assert_eq!(
        seen,
        vec![1, 2, 3, 1, 2, 3],
        "the whole batch is tried again from the cursor"
    );
    assert_eq!(
        cursor(&env.db).await,
        0,
        "nothing was acknowledged, so the cursor did not move"
    );

    ready_stream(&env, &cfg).await;
    await_cursor(&env.db, 3).await;
    relay.stop().await;
    let messages = stream_messages(&env.jetstream, &env.stream).await;
    assert_eq!(positions(&messages), vec![1, 2, 3]);
}

#[tokio::test]
async fn a_message_whose_predecessor_was_lost_is_refused_so_the_stream_stays_in_position_order() {
    let env = TestEnv::new().await;
    let cfg = config(&env);
    ready_stream(&env, &cfg).await;
    append_admins(&env.db, Uuid::now_v7(), 3).await;
    let stored = env.db.read_after(0, 10).await.expect("read the store");
    publish_batch(&env.jetstream, &cfg, &stored[..1])
        .await
        .expect("publish position 1");

    // Position 2 is lost on the way (say, in a dropped connection's buffer); 3 gets through.
    let (subject, headers, body) =
        message(&cfg.prefix, &stored[2], Some(&stored[1])).expect("a message");
    let sent = env
        .jetstream
        .publish_with_headers(subject, headers, body)
        .await
        .expect("sent");
    let refused = sent.await.expect_err("3 is refused while 2 is missing");
    assert_eq!(refused.kind(), PublishErrorKind::WrongLastMessageId);

    // The retry from the cursor fills the hole, and 3 follows it.
    publish_batch(&env.jetstream, &cfg, &stored[1..])
        .await
        .expect("publish from position 2");
    let messages = stream_messages(&env.jetstream, &env.stream).await;
    assert_eq!(positions(&messages), vec![1, 2, 3]);
}

#[tokio::test]
async fn republishing_after_the_stream_was_deleted_restores_every_event_with_its_id() {
    let env = TestEnv::new().await;
    let cfg = RelayConfig {
        batch_size: 2,
        ..config(&env)
    };
    ready_stream(&env, &cfg).await;
    let org = Uuid::now_v7();
    append_admins(&env.db, org, 5).await;
    let relay = RunningRelay::start(&env.db, &env.jetstream, &cfg);
    await_cursor(&env.db, 5).await;
    relay.stop().await;
    let before = stream_messages(&env.jetstream, &env.stream).await;

    env.jetstream
        .delete_stream(&env.stream)
        .await
        .expect("delete the stream");
    ready_stream(&env, &cfg).await;
    assert_eq!(messages_in_stream(&env.jetstream, &env.stream).await, 0);

    let first = gatehouse_relay::republish(&env.db, &env.jetstream, &cfg, 1, Some(3))
        .await
        .expect("republish 1..=3");
    assert_eq!((first.events, first.duplicates), (3, 0));
    assert_eq!((first.first, first.last), (Some(1), Some(3)));
    let rest = gatehouse_relay::republish(&env.db, &env.jetstream, &cfg, 4, None)
        .await
        .expect("republish 4..");
    assert_eq!((rest.events, rest.duplicates), (2, 0));
    let again = gatehouse_relay::republish(&env.db, &env.jetstream, &cfg, 1, None)
        .await
        .expect("republish everything again");
    assert_eq!(
        (again.events, again.duplicates),
        (5, 5),
        "JetStream already held every event"
    );

    let after = stream_messages(&env.jetstream, &env.stream).await;
    assert_eq!(positions(&after), (1..=5).collect::<Vec<i64>>());
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(header(new, "Nats-Msg-Id"), header(old, "Nats-Msg-Id"));
        assert_eq!(new.subject, old.subject);
        assert_eq!(new.payload, old.payload);
    }
    assert_eq!(
        cursor(&env.db).await,
        5,
        "republishing leaves the relay's cursor alone"
    );
}

#[tokio::test]
async fn ensuring_the_stream_twice_applies_the_configured_settings_and_changes_nothing() {
    let env = TestEnv::new().await;
    let cfg = RelayConfig {
        duplicate_window: Duration::from_secs(90),
        max_age: Duration::from_secs(7 * 24 * 3600),
        replicas: 1,
        ..config(&env)
    };
    ready_stream(&env, &cfg).await;
    let first = stream_config(&env).await;
    ready_stream(&env, &cfg).await;
    let second = stream_config(&env).await;

    assert_eq!(first.subjects, vec![format!("{}.>", env.prefix)]);
    assert_eq!(first.storage, stream::StorageType::File);
    assert_eq!(first.retention, stream::RetentionPolicy::Limits);
    assert_eq!(first.duplicate_window, Duration::from_secs(90));
    assert_eq!(first.max_age, Duration::from_secs(7 * 24 * 3600));
    assert_eq!(first.num_replicas, 1);
    assert_eq!(first, second, "ensuring it again changes nothing");
}

#[tokio::test]
async fn ensuring_the_stream_applies_changed_settings_and_recreates_a_deleted_one() {
    let env = TestEnv::new().await;
    ready_stream(&env, &config(&env)).await;
    let defaults = stream_config(&env).await;
    assert_eq!(defaults.duplicate_window, Duration::from_secs(120));
    assert_eq!(
        defaults.max_age,
        Duration::ZERO,
        "messages are kept forever by default"
    );

    let changed = RelayConfig {
        duplicate_window: Duration::from_secs(30),
        max_age: Duration::from_secs(3600),
        ..config(&env)
    };
    ready_stream(&env, &changed).await;
    let updated = stream_config(&env).await;
    assert_eq!(updated.duplicate_window, Duration::from_secs(30));
    assert_eq!(updated.max_age, Duration::from_secs(3600));

    env.jetstream
        .delete_stream(&env.stream)
        .await
        .expect("delete the stream");
    ready_stream(&env, &changed).await;
    let recreated = stream_config(&env).await;
    assert_eq!(recreated.storage, stream::StorageType::File);
    assert_eq!(recreated.duplicate_window, Duration::from_secs(30));
    assert_eq!(recreated.max_age, Duration::from_secs(3600));
    assert_eq!(recreated.num_replicas, 1);
}

#[tokio::test]
async fn ensuring_the_stream_refuses_settings_jetstream_cannot_keep_and_creates_nothing() {
    let env = TestEnv::new().await;
    let refused = [
        RelayConfig {
            replicas: 0,
            ..config(&env)
        },
        RelayConfig {
            replicas: 6,
            ..config(&env)
        },
        RelayConfig {
            duplicate_window: Duration::ZERO,
            ..config(&env)
        },
        RelayConfig {
            duplicate_window: Duration::from_secs(120),
            max_age: Duration::from_secs(60),
            ..config(&env)
        },
    ];
    for cfg in refused {
        let error = gatehouse_relay::ensure_stream(&env.jetstream, &cfg)
            .await
            .expect_err("refused");
        let message = error.to_string();
        assert!(
            message.contains("GATEHOUSE_NATS_"),
            "the error names the setting: {message}"
        );
    }
    assert!(
        env.jetstream.get_stream(&env.stream).await.is_err(),
        "no stream was created"
    );
}
