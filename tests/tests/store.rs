//! The event store against real Postgres: appends, concurrency, immutability, the chain.

use chrono::Utc;
use gatehouse_events::types::{AdminCreated, MfaRequired, OrgCreated};
use gatehouse_events::{Actor, Chain, Event, RequirementSource, Role};
use gatehouse_store::{AppendError, AppendRequest, Expected};
use gatehouse_tests::TestEnv;
use uuid::Uuid;

fn request(org: Uuid, events: Vec<Event>, expected: Vec<(Uuid, Expected)>) -> AppendRequest {
    AppendRequest {
        org_id: org,
        actor: Actor::System,
        correlation_id: Uuid::now_v7(),
        time: Utc::now(),
        auth_method: None,
        events,
        expected,
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

fn admin_created(admin: Uuid) -> Event {
    Event::AdminCreated(AdminCreated {
        admin_id: admin,
        email: format!("{admin}@example.com"),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        role: Role::Administrator,
        mfa_required: false,
    })
}

#[tokio::test]
async fn appends_get_gapless_positions_and_stream_versions() {
    let env = TestEnv::new().await;
    let org = Uuid::now_v7();
    let admin = Uuid::now_v7();
    let first = env
        .db
        .append(request(
            org,
            vec![org_created(org), admin_created(admin)],
            vec![(org, Expected::NoStream), (admin, Expected::NoStream)],
        ))
        .await
        .expect("first append");
    let second = env
        .db
        .append(request(
            org,
            vec![Event::MfaRequired(MfaRequired {
                admin_id: admin,
                source: RequirementSource::Admin,
            })],
            vec![(admin, Expected::Exactly(1))],
        ))
        .await
        .expect("second append");
    let positions: Vec<i64> = first
        .envelopes
        .iter()
        .chain(&second.envelopes)
        .map(|e| e.position)
        .collect();
    assert_eq!(positions, vec![1, 2, 3]);
    assert_eq!(second.envelopes[0].streamversion, 2);
    assert_eq!(second.envelopes[0].subject, format!("admins/{admin}"));
    assert_eq!(env.db.head().await.expect("head"), 3);
}

#[tokio::test]
async fn a_stale_expected_version_is_a_conflict_and_writes_nothing() {
    let env = TestEnv::new().await;
    let org = Uuid::now_v7();
    let admin = Uuid::now_v7();
    env.db
        .append(request(
            org,
            vec![admin_created(admin)],
            vec![(admin, Expected::NoStream)],
        ))
        .await
        .expect("create");
    let stale = env
        .db
        .append(request(
            org,
            vec![Event::MfaRequired(MfaRequired {
                admin_id: admin,
                source: RequirementSource::Admin,
            })],
            vec![(admin, Expected::NoStream)],
        ))
        .await;
    assert!(matches!(stale, Err(AppendError::Conflict)), "got {stale:?}");
    assert_eq!(env.db.head().await.expect("head"), 1);
}

#[tokio::test]
async fn the_database_refuses_update_delete_and_truncate_of_events() {
    let env = TestEnv::new().await;
    let org = Uuid::now_v7();
    env.db
        .append(request(org, vec![org_created(org)], vec![]))
        .await
        .expect("append");
    let client = env.db.pool.get().await.expect("connection");
    for sql in [
        "UPDATE events SET event_type = 'x'",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        let err = client.batch_execute(sql).await.expect_err(sql);
        assert!(
            err.to_string().contains("append-only") || format!("{err:?}").contains("append-only"),
            "{sql}: {err:?}"
        );
    }
    let count: i64 = client
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 1);
}

#[tokio::test]
async fn each_organisation_has_its_own_hash_chain() {
    let env = TestEnv::new().await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let ea = env
        .db
        .append(request(a, vec![org_created(a)], vec![]))
        .await
        .expect("a");
    let eb = env
        .db
        .append(request(b, vec![org_created(b)], vec![]))
        .await
        .expect("b");
    let ea2 = env
        .db
        .append(request(a, vec![admin_created(Uuid::now_v7())], vec![]))
        .await
        .expect("a2");
    // Recompute independently of the store: c_n = SHA-256(c_(n-1) || JCS(envelope)).
    let c1 = Chain::GENESIS.next(&ea.envelopes[0]).expect("hash");
    let c2 = c1.next(&ea2.envelopes[0]).expect("hash");
    assert_eq!(ea.chains[0], c1);
    assert_eq!(ea2.chains[0], c2);
    assert_eq!(
        eb.chains[0],
        Chain::GENESIS.next(&eb.envelopes[0]).expect("hash")
    );
    assert_eq!(env.db.org_head(a).await.expect("head"), (3, c2));
}
