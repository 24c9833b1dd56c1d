//! The group appender's planned groups (services/store/src/append/pipelined.rs) against real
//! Postgres: appends planned on what a process believes of the store's heads must get the same
//! answers, and leave the same store, as appends that read their heads under the lock, also
//! when another process appends beside it and the belief goes stale.

use gatehouse_events::types::{AdminRef, MfaRequired, OrgCreated};
use gatehouse_events::{Envelope, Event, RequirementSource};
use gatehouse_store::{AppendError, AppendRequest, Db, DbConfig, Expected, GroupAppender};
use gatehouse_tests::{TestEnv, admin_created, system_append};
use uuid::Uuid;

fn request(org: Uuid, events: Vec<Event>, expected: Vec<(Uuid, Expected)>) -> AppendRequest {
    AppendRequest {
        expected,
        ..system_append(org, events)
    }
}

/// Requires MFA of the admin on odd versions, removes the requirement on even ones.
fn flip(admin: Uuid, version: i64) -> Event {
    if version % 2 == 1 {
        Event::MfaRequired(MfaRequired {
            admin_id: admin,
            source: RequirementSource::Admin,
        })
    } else {
        Event::MfaRequirementRemoved(AdminRef { admin_id: admin })
    }
}

/// Another process's store: a pool of its own on the test's database.
async fn another_process(env: &TestEnv) -> Db {
    Db::connect(&DbConfig {
        url: env.db_url.clone(),
        pool_size: 4,
    })
    .await
    .expect("a second pool")
}

/// `orgs` organisations of `per_org` admins each, appended directly; answers each admin with its
/// organisation.
async fn organisations(env: &TestEnv, orgs: usize, per_org: usize) -> Vec<(Uuid, Uuid)> {
    let mut admins = Vec::new();
    for _ in 0..orgs {
        let org = Uuid::now_v7();
        let ids: Vec<Uuid> = (0..per_org).map(|_| Uuid::now_v7()).collect();
        let mut events = vec![Event::OrgCreated(OrgCreated {
            org_id: org,
            name: "Acme".into(),
        })];
        events.extend(ids.iter().map(|&a| admin_created(a, false)));
        env.db
            .append(request(org, events, vec![(org, Expected::NoStream)]))
            .await
            .expect("an organisation");
        admins.extend(ids.into_iter().map(|a| (org, a)));
    }
    admins
}

/// Each admin's requirement flipped `rounds` times, every admin by a task of its own, as a
/// command would: expecting the version it was last answered, and the organisation's stream
/// at version 1. The tasks take the appenders in turn. Answers every envelope appended.
async fn flip_concurrently(
    appenders: &[GroupAppender],
    admins: &[(Uuid, Uuid)],
    rounds: i64,
) -> Vec<Envelope> {
    let tasks: Vec<_> = admins
        .iter()
        .enumerate()
        .map(|(i, &(org, admin))| {
            let appender = appenders[i % appenders.len()].clone();
            tokio::spawn(async move {
                let mut answered = Vec::new();
                for version in 1..=rounds {
                    let appended = appender
                        .append(request(
                            org,
                            vec![flip(admin, version)],
                            vec![
                                (admin, Expected::Exactly(version)),
                                (org, Expected::Exactly(1)),
                            ],
                        ))
                        .await
                        .unwrap_or_else(|e| panic!("admin {admin} at version {version}: {e:?}"));
                    assert_eq!(appended.envelopes[0].streamversion, version + 1);
                    answered.extend(appended.envelopes);
                }
                answered
            })
        })
        .collect();
    let mut envelopes = Vec::new();
    for task in tasks {
        envelopes.extend(task.await.expect("a task"));
    }
    envelopes
}

/// The store holds exactly the envelopes answered after `before`, at gapless positions, and
/// every organisation's chain verifies.
async fn store_holds(env: &TestEnv, before: i64, mut answered: Vec<Envelope>, orgs: &[Uuid]) {
    answered.sort_by_key(|e| e.position);
    let stored: Vec<Envelope> = env
        .db
        .read_after(before, 100_000)
        .await
        .expect("the log")
        .into_iter()
        .map(|r| r.envelope)
        .collect();
    let positions: Vec<i64> = answered.iter().map(|e| e.position).collect();
    let gapless: Vec<i64> = (before + 1..=before + answered.len() as i64).collect();
    assert_eq!(
        positions, gapless,
        "one answer for each position, none twice"
    );
    assert_eq!(
        stored.len(),
        answered.len(),
        "nothing stored that was not answered"
    );
    for (stored, answered) in stored.iter().zip(&answered) {
        assert_eq!(stored, answered, "the answer is what the store holds");
    }
    for org in orgs {
        let report = env.db.verify_org(*org).await.expect("the chain");
        assert!(report.verified, "{org}'s chain holds: {report:?}");
    }
}

#[tokio::test]
async fn concurrent_appends_through_one_appender_are_answered_as_stored() {
    let env = TestEnv::new().await;
    let admins = organisations(&env, 4, 16).await;
    let before = env.db.head().await.expect("head");
    let appender = GroupAppender::new(env.db.clone());
    let answered = flip_concurrently(&[appender], &admins, 12).await;
    assert_eq!(answered.len(), admins.len() * 12);
    let orgs: Vec<Uuid> = admins.iter().step_by(16).map(|(org, _)| *org).collect();
    store_holds(&env, before, answered, &orgs).await;
}

#[tokio::test]
async fn two_processes_appending_to_one_organisation_are_answered_as_stored() {
    let env = TestEnv::new().await;
    let admins = organisations(&env, 2, 24).await;
    let before = env.db.head().await.expect("head");
    // Each appender's belief of the position and the chains goes stale with every group of the
    // other's, so its planned groups are refused by the check and written again.
    let appenders = [
        GroupAppender::new(env.db.clone()),
        GroupAppender::new(another_process(&env).await),
    ];
    let answered = flip_concurrently(&appenders, &admins, 12).await;
    assert_eq!(answered.len(), admins.len() * 12);
    let orgs = [admins[0].0, admins[24].0];
    store_holds(&env, before, answered, &orgs).await;
}

#[tokio::test]
async fn an_append_expecting_what_another_process_wrote_is_not_refused_on_an_old_belief() {
    let env = TestEnv::new().await;
    let admins = organisations(&env, 1, 2).await;
    let [(org, ada), (_, grace)] = admins[..] else {
        unreachable!("two admins")
    };
    let appender = GroupAppender::new(env.db.clone());
    let flip_through = |admin, version| {
        let appender = appender.clone();
        async move {
            appender
                .append(request(
                    org,
                    vec![flip(admin, version)],
                    vec![(admin, Expected::Exactly(version))],
                ))
                .await
        }
    };
    // The appender learns Ada at version 2, then plans Grace's append on what it believes.
    flip_through(ada, 1).await.expect("Ada to version 2");
    flip_through(grace, 1).await.expect("Grace to version 2");

    // Another process moves Ada to version 3.
    another_process(&env)
        .await
        .append(request(
            org,
            vec![flip(ada, 2)],
            vec![(ada, Expected::Exactly(2))],
        ))
        .await
        .expect("Ada to version 3, elsewhere");

    // A writer that read version 3 is not refused because this process last saw version 2...
    let appended = flip_through(ada, 3).await.expect("Ada to version 4");
    assert_eq!(appended.envelopes[0].streamversion, 4);
    // ...and one that read version 3 too late is.
    assert!(
        matches!(flip_through(ada, 3).await, Err(AppendError::Conflict)),
        "a stale expectation is refused"
    );
    // Grace's version as this process left it still holds.
    let appended = flip_through(grace, 2).await.expect("Grace to version 3");
    assert_eq!(appended.envelopes[0].streamversion, 3);
    let report = env.db.verify_org(org).await.expect("the chain");
    assert!(report.verified, "{report:?}");
    // The organisation and its two admins, then five flips.
    assert_eq!(report.events, 3 + 5);
    assert_eq!(env.db.head().await.expect("head"), 8);
}
