//! The whole pipeline at once (store → relay → JetStream → projections) through the trap every
//! tailing reader must avoid: an append that takes a lower position but commits after another.

use std::time::Duration;

use async_nats::jetstream;
use gatehouse_events::Event;
use gatehouse_events::types::OrgCreated;
use gatehouse_projections::{Checkpoints, ProjectionsConfig, query};
use gatehouse_relay::RelayConfig;
use gatehouse_tests::{TestEnv, admin_created, eventually, system_append};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const PATIENCE: Duration = Duration::from_secs(30);

/// The positions of the stream's messages, in stream order.
async fn stream_positions(js: &jetstream::Context, name: &str) -> Vec<i64> {
    let stream = js.get_stream(name).await.expect("the stream exists");
    let count = stream.cached_info().state.messages;
    let mut positions = Vec::new();
    for sequence in 1..=count {
        let message = stream
            .get_raw_message(sequence)
            .await
            .expect("a stored message");
        let position = message
            .headers
            .get("Gatehouse-Position")
            .expect("every message has its position")
            .as_str()
            .parse()
            .expect("a numeric position");
        positions.push(position);
    }
    positions
}

#[tokio::test]
async fn an_append_that_commits_late_reaches_the_stream_and_the_widget_in_position_order() {
    let env = TestEnv::new().await;
    let relay_cfg = RelayConfig::new(&env.stream, &env.prefix);
    gatehouse_relay::ensure_stream(&env.jetstream, &relay_cfg)
        .await
        .expect("the stream is created");
    let shutdown = CancellationToken::new();
    let tasks: Vec<JoinHandle<anyhow::Result<()>>> = vec![
        tokio::spawn(gatehouse_relay::run(
            env.db.clone(),
            env.jetstream.clone(),
            relay_cfg,
            shutdown.clone(),
        )),
        tokio::spawn(gatehouse_projections::run(
            env.db.clone(),
            env.jetstream.clone(),
            ProjectionsConfig::new(&env.stream, &env.prefix),
            shutdown.clone(),
        )),
    ];
    let checkpoints = Checkpoints::start(env.db.clone())
        .await
        .expect("checkpoints");

    let org = Uuid::now_v7();
    let created = env
        .db
        .append(system_append(
            org,
            vec![Event::OrgCreated(OrgCreated {
                org_id: org,
                name: "Acme".into(),
            })],
        ))
        .await
        .expect("the organisation");
    let first = created.last_position().expect("a position");
    assert!(checkpoints.wait_for(first, PATIENCE).await);

    // A takes the next position and holds it, uncommitted.
    let (a_id, b_id) = (Uuid::now_v7(), Uuid::now_v7());
    let mut a_client = env.db.pool.get().await.expect("connection");
    let tx = a_client.transaction().await.expect("begin");
    let a = gatehouse_store::append::append_in(
        &tx,
        system_append(org, vec![admin_created(a_id, false)]),
    )
    .await
    .expect("append A");
    let a_position = a.last_position().expect("A has a position");

    // B starts after A and waits for it.
    let db = env.db.clone();
    let b = tokio::spawn(async move {
        db.append(system_append(org, vec![admin_created(b_id, false)]))
            .await
    });
    let probe = env.db.pool.get().await.expect("connection");
    eventually(PATIENCE, "append B waiting on A", || async {
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
    let (count, _) = query::admins_without_mfa(&env.db, org, None, 10)
        .await
        .expect("the widget");
    assert_eq!(count, 0, "nothing uncommitted shows in the widget");

    tx.commit().await.expect("commit A");
    let b = b.await.expect("B does not panic").expect("append B");
    let b_position = b.last_position().expect("B has a position");
    assert!(b_position > a_position);

    assert!(
        checkpoints.wait_for(b_position, PATIENCE).await,
        "the projections apply both appends"
    );
    let (count, page) = query::admins_without_mfa(&env.db, org, None, 10)
        .await
        .expect("the widget");
    let mut shown: Vec<Uuid> = page.iter().map(|admin| admin.id).collect();
    shown.sort();
    let mut expected = vec![a_id, b_id];
    expected.sort();
    assert_eq!(
        (count, shown),
        (2, expected),
        "A and B are both in the widget"
    );
    let expected = vec![first, a_position, b_position];
    let positions = eventually(PATIENCE, "the relay publishing A and B", || async {
        let positions = stream_positions(&env.jetstream, &env.stream).await;
        (positions.len() >= expected.len()).then_some(positions)
    })
    .await;
    assert_eq!(
        positions, expected,
        "the stream holds every event once, in position order"
    );

    shutdown.cancel();
    for task in tasks {
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("stops when asked")
            .expect("does not panic")
            .expect("stops without error");
    }
}
