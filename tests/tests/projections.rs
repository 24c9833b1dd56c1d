//! The projections against real Postgres and real NATS: what the read models show, and that
//! they show it exactly once whatever JetStream duplicates, redelivers or loses, through kills,
//! rebuilds and read-your-writes waits.
//!
//! Events reach JetStream here the way the relay publishes them (subject, `Nats-Msg-Id`,
//! `Gatehouse-Position`, `Gatehouse-Chain`, the envelope as body), published by the test itself
//! so that it decides what JetStream holds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{consumer, stream};
use chrono::Utc;
use gatehouse_events::types::{
    AdminCreated, AdminRef, HomeWidgetChanged, MfaEnrollmentCompleted, MfaLocked, MfaRequired,
    OrgCreated, OrgRef, WIDGET_ADMINS_WITHOUT_MFA_REQUIRED,
};
use gatehouse_events::{Actor, Chain, Envelope, Event, RequirementSource, Role};
use gatehouse_projections::query::{self, AdminView};
use gatehouse_projections::{Checkpoints, Projection, ProjectionsConfig};
use gatehouse_store::{AppendRequest, Db, DbConfig};
use gatehouse_tests::faults::NatsServer;
use gatehouse_tests::{TestEnv, eventually};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long a condition may take before the test fails (generous: CI machines are slow).
const PATIENCE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

fn org_created(org: Uuid, name: &str) -> Event {
    Event::OrgCreated(OrgCreated {
        org_id: org,
        name: name.into(),
    })
}

fn admin_created(admin: Uuid, mfa_required: bool) -> Event {
    Event::AdminCreated(AdminCreated {
        admin_id: admin,
        email: format!("{admin}@example.com"),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        role: Role::Administrator,
        mfa_required,
    })
}

fn mfa_required(admin: Uuid, source: RequirementSource) -> Event {
    Event::MfaRequired(MfaRequired {
        admin_id: admin,
        source,
    })
}

fn requirement_removed(admin: Uuid) -> Event {
    Event::MfaRequirementRemoved(AdminRef { admin_id: admin })
}

fn admin_removed(admin: Uuid) -> Event {
    Event::AdminRemoved(AdminRef { admin_id: admin })
}

fn widget_changed(admin: Uuid, visible: bool) -> Event {
    Event::HomeWidgetChanged(HomeWidgetChanged {
        admin_id: admin,
        widget: WIDGET_ADMINS_WITHOUT_MFA_REQUIRED.into(),
        visible,
    })
}

/// An event as stored: what the relay would publish.
#[derive(Clone)]
struct Stored {
    envelope: Envelope,
    chain: Chain,
}

/// Appends the events (one transaction) and returns them as stored.
async fn append(db: &Db, org: Uuid, events: Vec<Event>) -> Vec<Stored> {
    let appended = db
        .append(AppendRequest {
            org_id: org,
            actor: Actor::System,
            correlation_id: Uuid::now_v7(),
            time: Utc::now(),
            auth_method: None,
            events,
            expected: vec![],
            org_position: None,
            statements: vec![],
        })
        .await
        .expect("append");
    appended
        .envelopes
        .into_iter()
        .zip(appended.chains)
        .map(|(envelope, chain)| Stored { envelope, chain })
        .collect()
}

/// An organisation with `n` admins, every other one without MFA required; returns the ids.
async fn seed_org(db: &Db, n: usize) -> (Uuid, Vec<Uuid>, Vec<Stored>) {
    let org = Uuid::now_v7();
    let admins: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    let mut events = vec![org_created(org, "Acme")];
    events.extend(
        admins
            .iter()
            .enumerate()
            .map(|(i, a)| admin_created(*a, i % 2 == 0)),
    );
    let stored = append(db, org, events).await;
    (org, admins, stored)
}

// ---------------------------------------------------------------------------------------------
// JetStream, published the way the relay does it
// ---------------------------------------------------------------------------------------------

async fn create_stream(env: &TestEnv) {
    env.jetstream
        .create_stream(stream::Config {
            name: env.stream.clone(),
            subjects: vec![format!("{}.>", env.prefix)],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .expect("the test stream is created");
}

async fn publish(env: &TestEnv, stored: &Stored) {
    publish_with_id(env, stored, &stored.envelope.id.to_string()).await;
}

/// Publishes with a chosen `Nats-Msg-Id`: a new id makes JetStream store a duplicate.
async fn publish_with_id(env: &TestEnv, stored: &Stored, msg_id: &str) {
    publish_to(&env.jetstream, &env.prefix, stored, msg_id)
        .await
        .expect("JetStream stores the message");
}

/// Publishes as the relay does: subject, headers, and the envelope as body.
async fn publish_to(
    js: &async_nats::jetstream::Context,
    prefix: &str,
    stored: &Stored,
    msg_id: &str,
) -> anyhow::Result<()> {
    let envelope = &stored.envelope;
    let subject =
        gatehouse_events::subject::for_event(prefix, envelope.orgid, &envelope.event_type);
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", msg_id);
    headers.insert("Gatehouse-Position", envelope.position.to_string().as_str());
    headers.insert("Gatehouse-Chain", stored.chain.to_hex().as_str());
    let body = serde_json::to_vec(envelope)?;
    js.publish_with_headers(subject, headers, body.into())
        .await?
        .await?;
    Ok(())
}

async fn publish_all(env: &TestEnv, events: &[Stored]) {
    for stored in events {
        publish(env, stored).await;
    }
}

async fn last_stream_sequence(env: &TestEnv) -> u64 {
    let mut stream = env
        .jetstream
        .get_stream(&env.stream)
        .await
        .expect("the stream exists");
    stream
        .info()
        .await
        .expect("stream info")
        .state
        .last_sequence
}

/// Whether the projection's consumer has been delivered, and acknowledged, everything.
async fn consumer_acknowledged_everything(env: &TestEnv, projection: Projection) -> bool {
    let last = last_stream_sequence(env).await;
    let name = config(env).consumer_name(projection);
    let Ok(stream) = env.jetstream.get_stream(&env.stream).await else {
        return false;
    };
    let Ok(mut consumer) = stream.get_consumer::<consumer::pull::Config>(&name).await else {
        return false;
    };
    let Ok(info) = consumer.info().await else {
        return false;
    };
    info.num_pending == 0 && info.num_ack_pending == 0 && info.ack_floor.stream_sequence >= last
}

async fn await_consumers_acknowledged_everything(env: &TestEnv) {
    for projection in Projection::ALL {
        eventually(
            PATIENCE,
            &format!(
                "the {} consumer to acknowledge every message",
                projection.name()
            ),
            || async {
                consumer_acknowledged_everything(env, projection)
                    .await
                    .then_some(())
            },
        )
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// The runtime
// ---------------------------------------------------------------------------------------------

fn config(env: &TestEnv) -> ProjectionsConfig {
    ProjectionsConfig::new(&env.stream, &env.prefix)
}

/// The projections runtime and the means to stop (or kill) it.
struct Running {
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    fn start(env: &TestEnv) -> Running {
        Running::start_with(env, config(env))
    }

    fn start_with(env: &TestEnv, cfg: ProjectionsConfig) -> Running {
        Running::start_on(env, env.db.clone(), cfg)
    }

    /// Starts it on a pool of its own (so a kill takes its connections with it).
    fn start_on(env: &TestEnv, db: Db, cfg: ProjectionsConfig) -> Running {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(gatehouse_projections::run(
            db,
            env.jetstream.clone(),
            cfg,
            shutdown.clone(),
        ));
        Running { shutdown, task }
    }

    /// Asks it to stop and waits until it returned, which must be `Ok`.
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the projections stop when asked")
            .expect("the projections do not panic")
            .expect("the projections stop without error");
    }

    /// Drops it wherever it is, as a crash would (an open transaction is never committed).
    async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// A projection's checkpoint; 0 before the runtime created its schema.
async fn checkpoint(db: &Db, projection: Projection) -> i64 {
    let client = db.pool.get().await.expect("connection");
    let sql = format!("SELECT position FROM {}.checkpoint", projection.schema());
    match client.query_one(&sql, &[]).await {
        Ok(row) => row.get(0),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => 0,
        Err(e) => panic!("reading the checkpoint of {}: {e}", projection.name()),
    }
}

/// Waits until every projection has applied `position` (read from the checkpoint tables).
async fn await_applied(db: &Db, position: i64) {
    eventually(
        PATIENCE,
        &format!("every projection at position {position}"),
        || async {
            for projection in Projection::ALL {
                if checkpoint(db, projection).await < position {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
}

async fn await_applied_head(db: &Db) -> i64 {
    let head = db.head().await.expect("head");
    await_applied(db, head).await;
    head
}

/// Every row of every read model table, and the checkpoints, for comparing models whole.
#[derive(Debug, PartialEq)]
struct Snapshot(Vec<(&'static str, Vec<serde_json::Value>)>);

async fn snapshot(db: &Db) -> Snapshot {
    let client = db.pool.get().await.expect("connection");
    let mut tables = Vec::new();
    for (table, order) in [
        ("proj_admins.admins", "admin_id"),
        ("proj_admins.orgs", "org_id"),
        ("proj_admins.checkpoint", "position"),
        ("proj_home_widgets.widgets", "admin_id"),
        ("proj_home_widgets.checkpoint", "position"),
        ("proj_audit.records", "position"),
        ("proj_audit.emails", "admin_id"),
        ("proj_audit.checkpoint", "position"),
    ] {
        let sql = format!("SELECT to_jsonb(t) FROM {table} t ORDER BY {order}");
        let rows = client.query(&sql, &[]).await.expect(table);
        tables.push((
            table,
            rows.iter()
                .map(|r| r.get::<_, serde_json::Value>(0))
                .collect(),
        ));
    }
    Snapshot(tables)
}

async fn rebuild_all(db: &Db) {
    gatehouse_projections::rebuild(db, &[], |_, _| {})
        .await
        .expect("the rebuild succeeds");
}

async fn all_admins(db: &Db, org: Uuid) -> Vec<AdminView> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = query::list_admins(db, org, after, 2)
            .await
            .expect("list admins");
        let full = page.len() == 2;
        after = page.last().map(|a| a.id);
        all.extend(page);
        if !full {
            return all;
        }
    }
}

async fn all_without_mfa(db: &Db, org: Uuid) -> (i64, Vec<AdminView>) {
    let (count, mut all) = query::admins_without_mfa(db, org, None, 2)
        .await
        .expect("the widget's list");
    let mut full = all.len() == 2;
    while full {
        let after = all.last().map(|a| a.id);
        let (again, page) = query::admins_without_mfa(db, org, after, 2)
            .await
            .expect("the widget's list");
        assert_eq!(again, count, "the count does not change between pages");
        full = page.len() == 2;
        all.extend(page);
    }
    (count, all)
}

/// The widget's count and list are the organisation's admins whose MFA is not required.
async fn assert_widget_matches_admins(db: &Db, org: Uuid) {
    let expected: Vec<Uuid> = all_admins(db, org)
        .await
        .into_iter()
        .filter(|a| !a.mfa_required)
        .map(|a| a.id)
        .collect();
    let (count, listed) = all_without_mfa(db, org).await;
    assert_eq!(listed.iter().map(|a| a.id).collect::<Vec<_>>(), expected);
    assert_eq!(count, expected.len() as i64);
    let summary = query::org_summary(db, org)
        .await
        .expect("summary")
        .expect("the organisation exists");
    assert_eq!(summary.without_mfa_required, count);
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_read_models_follow_an_organisation_through_requirements_removals_and_the_global_requirement()
 {
    let env = TestEnv::new().await;
    create_stream(&env).await;
    let running = Running::start(&env);
    let org = Uuid::now_v7();
    let (ada, bob, cy, dee) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );

    let created = append(
        &env.db,
        org,
        vec![
            org_created(org, "Acme"),
            admin_created(ada, true),
            admin_created(bob, false),
            admin_created(cy, false),
            admin_created(dee, false),
        ],
    )
    .await;
    let mut changed = append(
        &env.db,
        org,
        vec![mfa_required(bob, RequirementSource::Admin)],
    )
    .await;
    changed.extend(append(&env.db, org, vec![requirement_removed(ada)]).await);
    changed.extend(append(&env.db, org, vec![admin_removed(cy)]).await);
    changed.extend(append(&env.db, org, vec![widget_changed(bob, false)]).await);
    changed.extend(
        append(
            &env.db,
            org,
            vec![
                Event::MfaEnrollmentCompleted(MfaEnrollmentCompleted {
                    admin_id: dee,
                    method: "totp".into(),
                    replaced_previous: false,
                }),
                Event::MfaLocked(MfaLocked {
                    admin_id: bob,
                    failed_attempts: 5,
                }),
            ],
        )
        .await,
    );
    publish_all(&env, &created).await;
    publish_all(&env, &changed).await;
    await_applied_head(&env.db).await;

    let admins = all_admins(&env.db, org).await;
    assert_eq!(
        admins.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![ada, bob, dee],
        "in creation order, without the removed admin"
    );
    let by_id = |id: Uuid| admins.iter().find(|a| a.id == id).expect("listed").clone();
    let (a, b, d) = (by_id(ada), by_id(bob), by_id(dee));
    assert_eq!(
        (a.mfa_required, a.requirement_source.as_deref()),
        (false, None)
    );
    assert_eq!(
        (b.mfa_required, b.requirement_source.as_deref()),
        (true, Some("admin"))
    );
    assert_eq!(
        (d.mfa_required, d.requirement_source.as_deref()),
        (false, None)
    );
    assert_eq!(
        (d.enrolled, d.locked, b.enrolled, b.locked),
        (true, false, false, true)
    );
    assert_eq!(a.email, format!("{ada}@example.com"));
    assert_eq!(a.role, "administrator");
    assert_eq!(a.org_id, org);
    assert_eq!(
        Some(a.created_at),
        created[1].envelope.occurred_at(),
        "created_at is the event's time"
    );
    assert_eq!(
        query::get_admin(&env.db, org, bob).await.expect("get"),
        Some(b)
    );
    assert_eq!(
        query::get_admin(&env.db, org, cy).await.expect("get"),
        None,
        "a removed admin is gone"
    );
    assert_eq!(
        query::get_admin(&env.db, Uuid::now_v7(), ada)
            .await
            .expect("get"),
        None,
        "another organisation sees nothing"
    );

    assert_widget_matches_admins(&env.db, org).await;
    let (count, _) = query::admins_without_mfa(&env.db, org, None, 200)
        .await
        .expect("widget");
    assert_eq!(
        count, 2,
        "Ada (requirement removed) and Dee (created without)"
    );
    let summary = query::org_summary(&env.db, org)
        .await
        .expect("summary")
        .expect("exists");
    assert_eq!(
        (
            summary.name.as_str(),
            summary.global_mfa_required,
            summary.admins
        ),
        ("Acme", false, 3)
    );
    assert!(
        !query::widget_visible(&env.db, bob).await.expect("widget"),
        "Bob hid the widget"
    );
    assert!(
        query::widget_visible(&env.db, ada).await.expect("widget"),
        "shown by default"
    );

    // The Global MFA Requirement requires everyone not yet required.
    let global = append(
        &env.db,
        org,
        vec![
            Event::GlobalMfaEnabled(OrgRef { org_id: org }),
            mfa_required(ada, RequirementSource::Global),
            mfa_required(dee, RequirementSource::Global),
        ],
    )
    .await;
    publish_all(&env, &global).await;
    await_applied_head(&env.db).await;

    let summary = query::org_summary(&env.db, org)
        .await
        .expect("summary")
        .expect("exists");
    assert_eq!(
        (
            summary.global_mfa_required,
            summary.admins,
            summary.without_mfa_required
        ),
        (true, 3, 0)
    );
    let sources: Vec<Option<String>> = all_admins(&env.db, org)
        .await
        .into_iter()
        .map(|a| a.requirement_source)
        .collect();
    assert_eq!(
        sources,
        vec![
            Some("global".into()),
            Some("admin".into()),
            Some("global".into())
        ]
    );
    assert_widget_matches_admins(&env.db, org).await;
    await_consumers_acknowledged_everything(&env).await;
    running.stop().await;
}

#[tokio::test]
async fn duplicated_and_redelivered_events_change_nothing() {
    let env = TestEnv::new().await;
    create_stream(&env).await;
    let running = Running::start(&env);
    let org = Uuid::now_v7();
    let ada = Uuid::now_v7();
    let mut events = append(
        &env.db,
        org,
        vec![org_created(org, "Acme"), admin_created(ada, false)],
    )
    .await;
    events.extend(
        append(
            &env.db,
            org,
            vec![mfa_required(ada, RequirementSource::Admin)],
        )
        .await,
    );
    events.extend(append(&env.db, org, vec![requirement_removed(ada)]).await);
    events.extend(
        append(
            &env.db,
            org,
            vec![mfa_required(ada, RequirementSource::Admin)],
        )
        .await,
    );
    publish_all(&env, &events).await;
    let head = await_applied_head(&env.db).await;
    await_consumers_acknowledged_everything(&env).await;
    let before = snapshot(&env.db).await;

    // Duplicates under new message ids: applied again, the removal would make Ada not required
    // and the creation would count her twice.
    publish_with_id(&env, &events[3], "a-duplicate-of-the-removal").await;
    publish_with_id(&env, &events[1], "a-duplicate-of-the-creation").await;
    await_consumers_acknowledged_everything(&env).await;
    assert_eq!(snapshot(&env.db).await, before);

    // A consumer that lost its state is delivered the whole stream again.
    let stream = env.jetstream.get_stream(&env.stream).await.expect("stream");
    stream
        .delete_consumer(&config(&env).consumer_name(Projection::Admins))
        .await
        .expect("delete the consumer");
    await_consumers_acknowledged_everything(&env).await;
    assert_eq!(snapshot(&env.db).await, before);
    assert_eq!(checkpoint(&env.db, Projection::Admins).await, head);
    let admin = query::get_admin(&env.db, org, ada)
        .await
        .expect("get")
        .expect("exists");
    assert!(admin.mfa_required);
    running.stop().await;
}

#[tokio::test]
async fn a_message_lost_in_the_middle_of_the_stream_is_filled_in_from_the_store() {
    let env = TestEnv::new().await;
    create_stream(&env).await;
    let (org, admins, events) = seed_org(&env.db, 5).await;
    // Every message but the third admin's creation reaches JetStream.
    for stored in events
        .iter()
        .filter(|s| s.envelope.position != events[3].envelope.position)
    {
        publish(&env, stored).await;
    }
    let running = Running::start(&env);
    await_applied_head(&env.db).await;
    await_consumers_acknowledged_everything(&env).await;
    let listed: Vec<Uuid> = all_admins(&env.db, org)
        .await
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(listed, admins);
    assert!(
        query::widget_visible(&env.db, admins[2])
            .await
            .expect("widget")
    );
    assert_widget_matches_admins(&env.db, org).await;
    running.stop().await;
}

#[tokio::test]
async fn the_projections_converge_from_the_store_when_nothing_reaches_jetstream() {
    let env = TestEnv::new().await;
    create_stream(&env).await;
    let running = Running::start(&env);
    let (org, admins, _) = seed_org(&env.db, 4).await;
    append(&env.db, org, vec![requirement_removed(admins[0])]).await;
    await_applied_head(&env.db).await;
    let summary = query::org_summary(&env.db, org)
        .await
        .expect("summary")
        .expect("exists");
    assert_eq!((summary.admins, summary.without_mfa_required), (4, 3));
    assert_widget_matches_admins(&env.db, org).await;
    running.stop().await;
}

#[tokio::test]
async fn the_projections_follow_the_store_until_the_stream_exists_and_then_consume_it() {
    let env = TestEnv::new().await;
    // No stream yet: the relay has not created it.
    let running = Running::start(&env);
    let (org, _, early) = seed_org(&env.db, 3).await;
    await_applied_head(&env.db).await;

    create_stream(&env).await;
    publish_all(&env, &early).await;
    let late = append(&env.db, org, vec![admin_created(Uuid::now_v7(), false)]).await;
    publish_all(&env, &late).await;
    await_applied_head(&env.db).await;
    await_consumers_acknowledged_everything(&env).await;
    assert_eq!(all_admins(&env.db, org).await.len(), 4);
    running.stop().await;
}

#[tokio::test]
async fn a_hole_wider_than_a_batch_is_filled_from_the_store_batch_by_batch() {
    let env = TestEnv::new().await;
    create_stream(&env).await;
    let (org, admins, events) = seed_org(&env.db, 30).await;
    // Only the last event reaches JetStream, as after a purge.
    publish(&env, events.last().expect("events")).await;
    let cfg = ProjectionsConfig {
        batch_size: 5,
        ..config(&env)
    };
    let running = Running::start_with(&env, cfg);
    await_applied_head(&env.db).await;
    await_consumers_acknowledged_everything(&env).await;
    let listed: Vec<Uuid> = all_admins(&env.db, org)
        .await
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(listed, admins);
    running.stop().await;
}

#[tokio::test]
async fn the_projections_converge_from_the_store_while_nats_is_down_and_consume_again_when_it_is_back()
 {
    let env = TestEnv::new().await;
    let mut server = NatsServer::start_new()
        .await
        .expect("a NATS server of the test's own");
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    js.create_stream(stream::Config {
        name: env.stream.clone(),
        subjects: vec![format!("{}.>", env.prefix)],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .expect("the stream");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(gatehouse_projections::run(
        env.db.clone(),
        js.clone(),
        config(&env),
        shutdown.clone(),
    ));
    let (org, _, _) = seed_org(&env.db, 2).await;
    await_applied_head(&env.db).await;

    server.stop().await.expect("NATS stops");
    append(&env.db, org, vec![admin_created(Uuid::now_v7(), false)]).await;
    await_applied_head(&env.db).await;
    assert_eq!(all_admins(&env.db, org).await.len(), 3);

    server.start().await.expect("NATS is back");
    let late = append(&env.db, org, vec![admin_created(Uuid::now_v7(), false)]).await;
    eventually(PATIENCE, "the late event stored in JetStream", || async {
        let stored = &late[0];
        publish_to(&js, &env.prefix, stored, &stored.envelope.id.to_string())
            .await
            .ok()
    })
    .await;
    await_applied_head(&env.db).await;
    eventually(
        PATIENCE,
        "both consumers to acknowledge the late event",
        || async {
            let stream = js.get_stream(&env.stream).await.ok()?;
            for projection in Projection::ALL {
                let name = config(&env).consumer_name(projection);
                let mut consumer = stream
                    .get_consumer::<consumer::pull::Config>(&name)
                    .await
                    .ok()?;
                let info = consumer.info().await.ok()?;
                if info.num_pending > 0
                    || info.num_ack_pending > 0
                    || info.ack_floor.stream_sequence < 1
                {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    assert_eq!(all_admins(&env.db, org).await.len(), 4);
    shutdown.cancel();
    tokio::time::timeout(PATIENCE, task)
        .await
        .expect("the projections stop when asked")
        .expect("no panic")
        .expect("no error");
}

#[tokio::test]
async fn a_message_that_is_not_an_envelope_is_skipped_without_stalling_the_projections() {
    let env = TestEnv::new().await;
    create_stream(&env).await;
    let running = Running::start(&env);
    let (org, _, events) = seed_org(&env.db, 2).await;
    env.jetstream
        .publish(
            format!("{}.{org}.admin.created", env.prefix),
            "not an envelope".into(),
        )
        .await
        .expect("publish")
        .await
        .expect("stored");
    publish_all(&env, &events).await;
    await_applied_head(&env.db).await;
    await_consumers_acknowledged_everything(&env).await;
    assert_eq!(all_admins(&env.db, org).await.len(), 2);
    running.stop().await;
}

/// Anyone allowed to publish on Gatehouse's subjects could forge a well-formed envelope at the
/// next position. The read models apply what the store holds at the positions messages name,
/// never a message's content: the forged admin never appears, the real event at that position
/// does, and nothing else is lost.
#[tokio::test]
async fn a_forged_envelope_at_the_next_position_changes_no_read_model() {
    let env = TestEnv::new().await;
    create_stream(&env).await;
    let running = Running::start(&env);
    let (org, admins, seeded) = seed_org(&env.db, 2).await;
    publish_all(&env, &seeded).await;
    let head = await_applied_head(&env.db).await;

    let forged_admin = Uuid::now_v7();
    let forged = Stored {
        envelope: Envelope::new(
            &gatehouse_events::envelope::EnvelopeParts {
                id: Uuid::now_v7(),
                org_id: org,
                actor: Actor::System,
                correlation_id: Uuid::now_v7(),
                time: Utc::now(),
                auth_method: None,
            },
            &admin_created(forged_admin, false),
            head + 1,
            1,
        ),
        chain: Chain::GENESIS,
    };
    publish(&env, &forged).await;
    // The real event at that position comes after the forgery.
    let real_admin = Uuid::now_v7();
    let real = append(&env.db, org, vec![admin_created(real_admin, true)]).await;
    assert_eq!(real[0].envelope.position, head + 1);
    publish_all(&env, &real).await;
    await_applied(&env.db, head + 1).await;
    await_consumers_acknowledged_everything(&env).await;

    let ids: Vec<Uuid> = all_admins(&env.db, org)
        .await
        .iter()
        .map(|a| a.id)
        .collect();
    assert!(!ids.contains(&forged_admin), "the forged admin was applied");
    assert!(ids.contains(&real_admin), "the real event was lost");
    assert_eq!(ids.len(), admins.len() + 1);
    let client = env.db.pool.get().await.expect("connection");
    let forged_records: i64 = client
        .query_one(
            "SELECT count(*) FROM proj_audit.records WHERE resource_id = $1",
            &[&forged_admin],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(forged_records, 0, "the audit history shows the forgery");
    running.stop().await;
}

#[tokio::test]
async fn a_projection_killed_in_the_middle_of_a_batch_resumes_to_the_same_tables_as_a_rebuild() {
    let env = TestEnv::new().await;
    create_stream(&env).await;
    // The runtime to be killed has a pool of its own: a crashed process takes its connections
    // with it.
    let doomed_db = Db::connect(&DbConfig {
        url: env.db_url.clone(),
        pool_size: 4,
    })
    .await
    .expect("a pool for the doomed runtime");
    let running = Running::start_on(&env, doomed_db.clone(), config(&env));
    let (org, admins, seeded) = seed_org(&env.db, 10).await;
    publish_all(&env, &seeded).await;
    let applied = await_applied_head(&env.db).await;

    // Hold one admin's row, so the next batch blocks on it after applying what comes before.
    let mut blocker = env.db.pool.get().await.expect("connection");
    let hold = blocker.transaction().await.expect("begin");
    hold.query_one(
        "SELECT 1 FROM proj_admins.admins WHERE admin_id = $1 FOR UPDATE",
        &[&admins[4]],
    )
    .await
    .expect("lock the row");

    let mut events: Vec<Event> = (0..20)
        .map(|i| admin_created(Uuid::now_v7(), i % 3 == 0))
        .collect();
    events.push(mfa_required(admins[5], RequirementSource::Admin));
    events.push(requirement_removed(admins[4]));
    events.extend((0..20).map(|i| admin_created(Uuid::now_v7(), i % 3 == 0)));
    let batch = append(&env.db, org, events).await;
    let blocked_position = batch[21].envelope.position;
    publish_all(&env, &batch).await;

    // Watched from another session: a transaction sees pg_stat_activity as of its first look.
    let holder: i32 = hold
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    let watcher = env.db.pool.get().await.expect("connection");
    let blocked: i32 = eventually(
        PATIENCE,
        "the admins projection to block on the held row",
        || async {
            let rows = watcher
                .query(
                    "SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                    &[&holder],
                )
                .await
                .expect("pg_stat_activity");
            rows.first().map(|r| r.get::<_, i32>(0))
        },
    )
    .await;

    // Kill it there, as a crash would: the task is dropped and its connections cut.
    running.kill().await;
    doomed_db.pool.close();
    watcher
        .execute("SELECT pg_terminate_backend($1)", &[&blocked])
        .await
        .expect("terminate");
    eventually(PATIENCE, "the killed batch's session to end", || async {
        let gone = watcher
            .query_opt("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&blocked])
            .await
            .expect("pg_stat_activity")
            .is_none();
        gone.then_some(())
    })
    .await;
    drop(watcher);
    let killed_at = checkpoint(&env.db, Projection::Admins).await;
    assert!(
        killed_at >= applied && killed_at < blocked_position,
        "nothing of the killed batch is committed"
    );
    let held = query::get_admin(&env.db, org, admins[4])
        .await
        .expect("get")
        .expect("exists");
    assert!(
        held.mfa_required,
        "the requirement's removal was not applied"
    );
    hold.rollback().await.expect("release the row");
    drop(blocker);

    let running = Running::start(&env);
    await_applied_head(&env.db).await;
    running.stop().await;
    let resumed = snapshot(&env.db).await;
    rebuild_all(&env.db).await;
    assert_eq!(snapshot(&env.db).await, resumed);
    assert_eq!(all_admins(&env.db, org).await.len(), 50);
    assert_widget_matches_admins(&env.db, org).await;
}

/// The HTTP layer's reads, run in a loop until told to stop.
struct QueryLoop {
    answered: Arc<AtomicU64>,
    task: JoinHandle<Option<String>>,
}

impl QueryLoop {
    /// Starts the loop. The organisation's model does not change meanwhile, so every answer
    /// must be the same; the first failure or different answer ends the loop.
    fn start(db: &Db, org: Uuid, admins: &[Uuid], stop: &Arc<AtomicBool>) -> QueryLoop {
        let (db, admins, stop) = (db.clone(), admins.to_vec(), stop.clone());
        let answered = Arc::new(AtomicU64::new(0));
        let counter = answered.clone();
        let task = tokio::spawn(async move {
            let expected_without = admins.len() as i64 / 2;
            while !stop.load(Ordering::Relaxed) {
                let outcome: anyhow::Result<()> = async {
                    let page = query::list_admins(&db, org, None, 200).await?;
                    anyhow::ensure!(page.len() == admins.len(), "listed {} admins", page.len());
                    let (count, page) = query::admins_without_mfa(&db, org, None, 200).await?;
                    anyhow::ensure!(
                        count == expected_without && page.len() as i64 == count,
                        "widget count {count}"
                    );
                    let summary = query::org_summary(&db, org).await?;
                    anyhow::ensure!(
                        summary.as_ref().map(|s| s.admins) == Some(admins.len() as i64),
                        "summary {summary:?}"
                    );
                    anyhow::ensure!(
                        query::get_admin(&db, org, admins[0]).await?.is_some(),
                        "admin missing"
                    );
                    anyhow::ensure!(
                        query::widget_visible(&db, admins[1]).await?,
                        "widget hidden"
                    );
                    Ok(())
                }
                .await;
                if let Err(e) = outcome {
                    return Some(format!("{e:#}"));
                }
                counter.fetch_add(1, Ordering::Relaxed);
            }
            None
        });
        QueryLoop { answered, task }
    }

    fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// The first failure, if any (call after setting the stop flag).
    async fn failure(self) -> Option<String> {
        self.task.await.expect("the queries do not panic")
    }
}

#[tokio::test]
async fn a_rebuild_while_queries_run_fails_no_query_and_equals_the_live_model() {
    let env = TestEnv::new().await;
    create_stream(&env).await;
    let running = Running::start(&env);
    let (org, admins, seeded) = seed_org(&env.db, 60).await;
    publish_all(&env, &seeded).await;
    // Other organisations, so the replay takes more than one batch.
    for _ in 0..50 {
        let (other, other_admins, _) = seed_org(&env.db, 100).await;
        append(&env.db, other, vec![widget_changed(other_admins[0], false)]).await;
    }
    let head = await_applied_head(&env.db).await;
    assert!(
        head > gatehouse_projections::rebuild::REPLAY_BATCH,
        "the replay takes several batches"
    );
    let live = snapshot(&env.db).await;
    let live_indexes = indexes(&env.db).await;

    let stop = Arc::new(AtomicBool::new(false));
    let during = [
        QueryLoop::start(&env.db, org, &admins, &stop),
        QueryLoop::start(&env.db, org, &admins, &stop),
    ];
    let progress = Arc::new(std::sync::Mutex::new(Vec::<(u64, u64)>::new()));
    {
        let progress = progress.clone();
        gatehouse_projections::rebuild(&env.db, &[], move |done, total| {
            if let Ok(mut calls) = progress.lock() {
                calls.push((done, total));
            }
        })
        .await
        .expect("the rebuild succeeds");
    }
    // Queries keep answering after the swap as well.
    let after = QueryLoop::start(&env.db, org, &admins, &stop);
    eventually(PATIENCE, "queries answered after the swap", || async {
        (after.answered() >= 5).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let answered_during: u64 = during.iter().map(QueryLoop::answered).sum();
    for queries in during.into_iter().chain([after]) {
        assert_eq!(
            queries.failure().await,
            None,
            "a query failed or answered differently during the rebuild"
        );
    }
    assert!(answered_during > 0, "queries ran during the rebuild");

    let calls = progress.lock().expect("progress").clone();
    assert!(
        calls.len() >= 3,
        "progress is reported per batch: {calls:?}"
    );
    assert!(
        calls.windows(2).all(|w| w[0].0 <= w[1].0),
        "progress only moves forward: {calls:?}"
    );
    assert_eq!(
        calls.last(),
        Some(&(head as u64, head as u64)),
        "the progress ends at the head"
    );
    assert_eq!(
        snapshot(&env.db).await,
        live,
        "the rebuilt model equals the live one"
    );
    // The replay defers the secondary indexes; the swapped-in model has every one of them.
    assert_eq!(
        indexes(&env.db).await,
        live_indexes,
        "the rebuilt model has the live one's indexes"
    );
    running.stop().await;
}

/// A reader that holds one of the admins model's tables and then reads the other, while a
/// rebuild's swap drops the old tables: in one of the two orders the swap holds the second
/// table and waits for the first, which Postgres would end by cancelling one of them as a
/// deadlock. The swap gives way instead: the reader answers and the rebuild succeeds.
#[tokio::test]
async fn a_reader_holding_one_table_while_it_waits_for_another_is_not_cancelled_by_the_swap() {
    let env = TestEnv::new().await;
    let (org, _, _) = seed_org(&env.db, 20).await;
    rebuild_all(&env.db).await;
    let expected = all_without_mfa(&env.db, org).await;

    for (first, second) in [("admins", "orgs"), ("orgs", "admins")] {
        let mut reader = env.db.pool.get().await.expect("a connection");
        let reader = reader
            .transaction()
            .await
            .expect("the reader's transaction");
        let held: u32 = reader
            .query_one(
                &format!(
                    "SELECT 'proj_admins.{first}'::regclass::oid, count(*) FROM proj_admins.{first}"
                ),
                &[],
            )
            .await
            .expect("the reader reads the first table")
            .get(0);

        let rebuild = {
            let db = env.db.clone();
            tokio::spawn(async move { gatehouse_projections::rebuild(&db, &[], |_, _| {}).await })
        };
        let observer = env.db.pool.get().await.expect("a connection");
        eventually(
            PATIENCE,
            &format!("the swap waiting for proj_admins.{first}"),
            || async {
                let waiting: i64 = observer
                    .query_one(
                        "SELECT count(*) FROM pg_locks
                         WHERE relation = $1 AND NOT granted
                           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                        &[&held],
                    )
                    .await
                    .expect("the locks")
                    .get(0);
                (waiting > 0).then_some(())
            },
        )
        .await;

        let rows: i64 = reader
            .query_one(&format!("SELECT count(*) FROM proj_admins.{second}"), &[])
            .await
            .unwrap_or_else(|e| panic!("the reader reads {second} while the swap waits: {e}"))
            .get(0);
        assert!(rows > 0, "the reader sees the rows of {second}");
        reader.commit().await.expect("the reader commits");
        rebuild
            .await
            .expect("the rebuild does not panic")
            .unwrap_or_else(|e| panic!("the rebuild succeeds after holding {first}: {e:#}"));
    }
    assert_eq!(
        all_without_mfa(&env.db, org).await,
        expected,
        "the swapped-in model answers as before"
    );
}

/// Every index of the read models' schemas, as Postgres would create it again.
async fn indexes(db: &Db) -> Vec<String> {
    let client = db.pool.get().await.expect("a connection");
    let rows = client
        .query(
            "SELECT indexdef FROM pg_indexes WHERE schemaname LIKE 'proj\\_%' ORDER BY 1",
            &[],
        )
        .await
        .expect("the indexes");
    let defs: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert!(
        defs.iter().any(|d| d.contains("records_by_resource_email")),
        "the audit model's secondary indexes are listed: {defs:?}"
    );
    defs
}

#[tokio::test]
async fn events_appended_during_a_rebuild_reach_the_rebuilt_model() {
    let env = TestEnv::new().await;
    create_stream(&env).await;
    let running = Running::start(&env);
    let (org, _, _) = seed_org(&env.db, 1_000).await;
    await_applied_head(&env.db).await;

    // Appended and published (as the relay would) all through the rebuild.
    let stop = Arc::new(AtomicBool::new(false));
    let appender = {
        let (db, js, prefix, stop) = (
            env.db.clone(),
            env.jetstream.clone(),
            env.prefix.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut appended = 0usize;
            while !stop.load(Ordering::Relaxed) {
                for stored in append(&db, org, vec![admin_created(Uuid::now_v7(), false)]).await {
                    let id = stored.envelope.id.to_string();
                    publish_to(&js, &prefix, &stored, &id)
                        .await
                        .expect("publish");
                }
                appended += 1;
            }
            appended
        })
    };
    rebuild_all(&env.db).await;
    stop.store(true, Ordering::Relaxed);
    let appended = appender.await.expect("the appender does not panic");

    await_applied_head(&env.db).await;
    running.stop().await;
    let summary = query::org_summary(&env.db, org)
        .await
        .expect("summary")
        .expect("exists");
    assert!(appended > 0);
    assert_eq!(summary.admins, (1_000 + appended) as i64);
    let live = snapshot(&env.db).await;
    rebuild_all(&env.db).await;
    assert_eq!(snapshot(&env.db).await, live);
}

/// The type of the audit model's `record` column.
async fn record_type(db: &Db) -> String {
    let client = db.pool.get().await.expect("a connection");
    client
        .query_one(
            "SELECT data_type FROM information_schema.columns
             WHERE table_schema = 'proj_audit' AND table_name = 'records'
               AND column_name = 'record'",
            &[],
        )
        .await
        .expect("the record column")
        .get(0)
}

/// Every record of the organisation's history through the audit query, oldest first.
async fn history(db: &Db, org: Uuid) -> Vec<gatehouse_events::audit::AuditRecord> {
    use gatehouse_projections::audit_query::{self, Filter, MAX_LIMIT, Sort};
    audit_query::list(db, org, &Filter::default(), Sort::Asc, None, MAX_LIMIT)
        .await
        .expect("a page of the history")
        .records
}

#[tokio::test]
async fn an_audit_model_made_when_records_were_jsonb_keeps_recording_until_rebuilt_as_json() {
    let env = TestEnv::new().await;
    create_stream(&env).await;
    let running = Running::start(&env);
    let (org, admins, _) = seed_org(&env.db, 3).await;
    await_applied_head(&env.db).await;
    assert_eq!(record_type(&env.db).await, "json");

    // The column as a model created before it became `json` has it.
    let client = env.db.pool.get().await.expect("a connection");
    client
        .batch_execute(
            "ALTER TABLE proj_audit.records ALTER COLUMN record TYPE jsonb USING record::jsonb",
        )
        .await
        .expect("the column made jsonb");
    drop(client);
    append(&env.db, org, vec![requirement_removed(admins[0])]).await;
    let head = await_applied_head(&env.db).await;
    running.stop().await;
    assert_eq!(record_type(&env.db).await, "jsonb");
    let recorded = history(&env.db, org).await;
    assert_eq!(recorded.last().map(|r| r.position), Some(head));
    assert_eq!(
        recorded.last().map(|r| r.event_type.as_str()),
        Some("admin_update"),
        "the requirement's removal is recorded in the jsonb model"
    );

    let live = snapshot(&env.db).await;
    rebuild_all(&env.db).await;
    assert_eq!(record_type(&env.db).await, "json");
    assert_eq!(history(&env.db, org).await, recorded);
    assert_eq!(snapshot(&env.db).await, live);
}

#[tokio::test]
async fn rebuilding_an_unknown_projection_names_the_valid_ones() {
    let env = TestEnv::new().await;
    let err =
        gatehouse_projections::rebuild(&env.db, &["admins".into(), "sessions".into()], |_, _| {})
            .await
            .expect_err("an unknown projection is refused");
    assert_eq!(
        err.to_string(),
        "unknown projection \"sessions\": choose from admins, home_widgets, audit"
    );
}

#[tokio::test]
async fn checkpoints_wait_for_a_position_until_every_projection_applied_it_or_time_runs_out() {
    let env = TestEnv::new().await;
    create_stream(&env).await;
    let checkpoints = Checkpoints::start(env.db.clone())
        .await
        .expect("checkpoints start");
    assert_eq!(checkpoints.current(), 0);
    let (_, _, events) = seed_org(&env.db, 3).await;
    let position = events.last().expect("events").envelope.position;

    // Waiting starts before any projection runs.
    let waiting = {
        let checkpoints = checkpoints.clone();
        tokio::spawn(async move { checkpoints.wait_for(position, PATIENCE).await })
    };
    publish_all(&env, &events).await;
    let running = Running::start(&env);
    assert!(
        waiting.await.expect("no panic"),
        "the wait ends once every projection applied it"
    );
    assert!(checkpoints.current() >= position);
    for projection in Projection::ALL {
        assert!(checkpoint(&env.db, projection).await >= position);
    }
    assert!(
        !checkpoints
            .wait_for(position + 1_000, Duration::from_millis(200))
            .await,
        "a position never reached times out"
    );
    running.stop().await;
}

/// A requirement source as the model names it, as a `'static` name to compare with.
fn source_name(name: &str) -> &'static str {
    [
        RequirementSource::Default,
        RequirementSource::Admin,
        RequirementSource::Global,
    ]
    .into_iter()
    .map(|s| s.as_str())
    .find(|known| *known == name)
    .unwrap_or("an unknown source")
}

#[tokio::test]
async fn a_batch_of_requirement_changes_ends_where_the_changes_one_by_one_would() {
    let env = TestEnv::new().await;
    create_stream(&env).await;
    // Every other admin starts with MFA required (`seed_org`).
    let (org, a, _) = seed_org(&env.db, 6).await;
    let (other, o, _) = seed_org(&env.db, 2).await;
    let changes = vec![
        requirement_removed(a[0]),
        mfa_required(a[1], RequirementSource::Admin),
        requirement_removed(a[2]),
        mfa_required(a[0], RequirementSource::Admin),
        mfa_required(a[1], RequirementSource::Global),
        requirement_removed(a[2]),
        requirement_removed(a[0]),
        // Splits the run; the change after it is for an admin no longer in the model.
        admin_removed(a[3]),
        mfa_required(a[3], RequirementSource::Admin),
        mfa_required(a[4], RequirementSource::Admin),
        mfa_required(a[5], RequirementSource::Admin),
        requirement_removed(a[5]),
    ];
    let other_changes = vec![
        requirement_removed(o[0]),
        mfa_required(o[1], RequirementSource::Admin),
        requirement_removed(o[1]),
    ];
    // The same changes one at a time: (required, source) per admin still in the model.
    let mut expected: std::collections::HashMap<Uuid, (bool, Option<&str>)> = a
        .iter()
        .chain(&o)
        .zip([0, 1, 2, 3, 4, 5, 0, 1])
        .map(|(id, i)| (*id, (i % 2 == 0, (i % 2 == 0).then_some("default"))))
        .collect();
    for event in changes.iter().chain(&other_changes) {
        match event {
            Event::MfaRequired(e) => {
                if let Some(admin) = expected.get_mut(&e.admin_id) {
                    *admin = (true, Some(e.source.as_str()));
                }
            }
            Event::MfaRequirementRemoved(e) => {
                if let Some(admin) = expected.get_mut(&e.admin_id) {
                    *admin = (false, None);
                }
            }
            Event::AdminRemoved(e) => {
                expected.remove(&e.admin_id);
            }
            _ => unreachable!("only requirement changes and a removal"),
        }
    }
    append(&env.db, org, changes).await;
    append(&env.db, other, other_changes).await;

    // Started after the appends, the projections meet all of them in one batch.
    let running = Running::start(&env);
    await_applied_head(&env.db).await;
    for (org, ids) in [(org, &a), (other, &o)] {
        let got: std::collections::HashMap<Uuid, (bool, Option<&str>)> = all_admins(&env.db, org)
            .await
            .into_iter()
            .map(|v| {
                let source = v.requirement_source.as_deref().map(source_name);
                (v.id, (v.mfa_required, source))
            })
            .collect();
        let want: std::collections::HashMap<Uuid, (bool, Option<&str>)> = ids
            .iter()
            .filter_map(|id| expected.get(id).map(|v| (*id, *v)))
            .collect();
        assert_eq!(got, want);
        assert_widget_matches_admins(&env.db, org).await;
        let summary = query::org_summary(&env.db, org)
            .await
            .expect("summary")
            .expect("exists");
        let without = want.values().filter(|(required, _)| !required).count() as i64;
        assert_eq!(
            (summary.admins, summary.without_mfa_required),
            (want.len() as i64, without)
        );
    }
    running.stop().await;
}
