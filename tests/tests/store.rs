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

/// What one of the concurrent appends asked, and what it should get.
enum Ask {
    /// Require MFA of `admin` at version 1: one such append per admin wins.
    Require { admin: Uuid },
    /// Create an admin whose credentials row takes an email already taken.
    Duplicate,
}

#[tokio::test]
async fn concurrent_appends_through_the_group_appender_each_get_their_own_answer() {
    let env = TestEnv::new().await;
    let appender = gatehouse_store::GroupAppender::new(env.db.clone());
    let org = Uuid::now_v7();
    let admins: Vec<Uuid> = (0..40).map(|_| Uuid::now_v7()).collect();
    let taken = gatehouse_domain::Email::parse("taken@example.com").expect("an address");
    let mut setup = request(
        org,
        std::iter::once(org_created(org))
            .chain(admins.iter().map(|a| admin_created(*a)))
            .collect(),
        vec![],
    );
    setup.statements = vec![gatehouse_auth::rows::insert_admin(
        gatehouse_domain::AdminId(admins[0]),
        gatehouse_domain::OrgId(org),
        &taken,
        gatehouse_events::Role::Administrator,
        None,
    )];
    let head_before = appender
        .append(setup)
        .await
        .expect("the setup")
        .envelopes
        .len() as i64;

    // Four appends race per admin for version 1 -> 2, and forty more are refused by a unique
    // constraint: all at once, so they share groups.
    let mut asks: Vec<Ask> = Vec::new();
    for _ in 0..4 {
        asks.extend(admins.iter().map(|&admin| Ask::Require { admin }));
        asks.extend((0..10).map(|_| Ask::Duplicate));
    }
    let tasks: Vec<_> = asks
        .iter()
        .map(|ask| {
            let appender = appender.clone();
            let req = match ask {
                Ask::Require { admin } => request(
                    org,
                    vec![Event::MfaRequired(MfaRequired {
                        admin_id: *admin,
                        source: RequirementSource::Admin,
                    })],
                    vec![(*admin, Expected::Exactly(1))],
                ),
                Ask::Duplicate => {
                    let id = Uuid::now_v7();
                    let mut req = request(org, vec![admin_created(id)], vec![]);
                    req.statements = vec![gatehouse_auth::rows::insert_admin(
                        gatehouse_domain::AdminId(id),
                        gatehouse_domain::OrgId(org),
                        &taken,
                        gatehouse_events::Role::Administrator,
                        None,
                    )];
                    req
                }
            };
            tokio::spawn(async move { appender.append(req).await })
        })
        .collect();
    let mut winners: std::collections::HashMap<Uuid, Vec<i64>> = Default::default();
    let mut positions = Vec::new();
    for (ask, task) in asks.iter().zip(tasks) {
        let result = task.await.expect("the append task");
        match (ask, result) {
            (Ask::Require { admin }, Ok(appended)) => {
                let envelope = &appended.envelopes[0];
                assert_eq!(envelope.streamversion, 2);
                winners.entry(*admin).or_default().push(envelope.position);
                positions.push(envelope.position);
            }
            (Ask::Require { .. }, Err(AppendError::Conflict)) => {}
            (Ask::Duplicate, Err(AppendError::Unique(constraint))) => {
                assert!(constraint.contains("email"), "{constraint}");
            }
            (_, other) => panic!("an unexpected answer: {other:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        admins.len(),
        "every admin's race has a winner"
    );
    assert!(
        winners.values().all(|w| w.len() == 1),
        "exactly one winner per admin: {winners:?}"
    );
    // The winners hold the positions after the setup, gaplessly, and nothing else was written.
    positions.sort_unstable();
    let expected: Vec<i64> = (head_before + 1..=head_before + admins.len() as i64).collect();
    assert_eq!(positions, expected);
    assert_eq!(
        env.db.head().await.expect("head"),
        head_before + admins.len() as i64
    );
    let report = env.db.verify_org(org).await.expect("the chain");
    assert!(
        report.verified,
        "the organisation's chain holds: {report:?}"
    );
    assert_eq!(report.events, head_before as u64 + admins.len() as u64);
}

/// A credentials row claiming `email` for a new admin `id` of `org`.
fn claim(id: Uuid, org: Uuid, email: &gatehouse_domain::Email) -> gatehouse_store::Statement {
    gatehouse_auth::rows::insert_admin(
        gatehouse_domain::AdminId(id),
        gatehouse_domain::OrgId(org),
        email,
        gatehouse_events::Role::Administrator,
        None,
    )
}

#[tokio::test]
async fn a_group_refused_alone_leaves_its_connection_ready_for_the_next_group() {
    let env = TestEnv::new().await;
    // One connection, so every group below runs on the one the refused group used.
    let db = gatehouse_store::Db::connect(&gatehouse_store::DbConfig {
        url: env.db_url.clone(),
        pool_size: 1,
    })
    .await
    .expect("a pool of one");
    let appender = gatehouse_store::GroupAppender::new(db);
    let (org, admin) = (Uuid::now_v7(), Uuid::now_v7());
    let taken = gatehouse_domain::Email::parse("taken@example.com").expect("an address");
    let mut setup = request(org, vec![org_created(org), admin_created(admin)], vec![]);
    setup.statements = vec![claim(admin, org, &taken)];
    appender.append(setup).await.expect("the setup");

    for round in 0..3 {
        // Alone in its group, its credentials row fails and aborts the group's transaction.
        let id = Uuid::now_v7();
        let mut duplicate = request(org, vec![admin_created(id)], vec![]);
        duplicate.statements = vec![claim(id, org, &taken)];
        let refused = appender.append(duplicate).await;
        assert!(
            matches!(&refused, Err(AppendError::Unique(c)) if c.contains("email")),
            "round {round}: {refused:?}"
        );
        let required = request(
            org,
            vec![Event::MfaRequired(MfaRequired {
                admin_id: admin,
                source: RequirementSource::Admin,
            })],
            vec![(admin, Expected::Any)],
        );
        let appended = appender
            .append(required)
            .await
            .unwrap_or_else(|e| panic!("round {round}: the next group fails: {e:?}"));
        assert_eq!(appended.envelopes[0].streamversion, 2 + round);
    }
    let report = env.db.verify_org(org).await.expect("the chain");
    assert!(report.verified, "{report:?}");
    assert_eq!(report.events, 2 + 3);
}

#[tokio::test]
async fn a_batch_checks_each_append_against_the_ones_before_it_and_keeps_each_organisation_apart() {
    let env = TestEnv::new().await;
    let (acme, globex) = (Uuid::now_v7(), Uuid::now_v7());
    for org in [acme, globex] {
        env.db
            .append(request(
                org,
                vec![org_created(org)],
                vec![(org, Expected::NoStream)],
            ))
            .await
            .expect("the organisation");
    }
    let globex_last = 2;
    let (ada, grace, linus) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let require = |admin| {
        Event::MfaRequired(MfaRequired {
            admin_id: admin,
            source: RequirementSource::Admin,
        })
    };
    let since_globex = |admin| {
        let mut r = request(
            globex,
            vec![admin_created(admin)],
            vec![(admin, Expected::NoStream)],
        );
        r.org_position = Some(globex_last);
        r
    };
    let batch = vec![
        // Acme's new admin.
        request(
            acme,
            vec![admin_created(ada)],
            vec![(ada, Expected::NoStream)],
        ),
        // Globex writing to the stream Acme created just before, in the same batch.
        request(globex, vec![require(ada)], vec![]),
        // Globex, expecting nothing of it appended since position 2: true, then no longer.
        since_globex(grace),
        since_globex(linus),
        // Two writers who both read Ada at version 1: the first wins.
        request(acme, vec![require(ada)], vec![(ada, Expected::Exactly(1))]),
        request(acme, vec![require(ada)], vec![(ada, Expected::Exactly(1))]),
    ];
    let mut client = env.db.pool.get().await.expect("a connection");
    let tx = client.transaction().await.expect("begin");
    let results = gatehouse_store::append::append_all(&tx, batch)
        .await
        .expect("the batch");
    tx.commit().await.expect("commit");

    let answers: Vec<Result<(i64, i64), String>> = results
        .iter()
        .map(|r| match r {
            Ok(a) => Ok((a.envelopes[0].position, a.envelopes[0].streamversion)),
            Err(e) => Err(e.to_string()),
        })
        .collect();
    let conflict = Err(AppendError::Conflict.to_string());
    assert_eq!(
        answers,
        vec![
            Ok((3, 1)),
            conflict.clone(),
            Ok((4, 1)),
            conflict.clone(),
            Ok((5, 2)),
            conflict,
        ]
    );
    assert_eq!(env.db.head().await.expect("head"), 5);
    for (org, events) in [(acme, 3), (globex, 2)] {
        let report = env.db.verify_org(org).await.expect("the chain");
        assert!(report.verified, "{org}'s chain holds: {report:?}");
        assert_eq!(report.events, events);
    }
    // The next append sees the versions the batch left.
    let next = env
        .db
        .append(request(
            acme,
            vec![require(ada)],
            vec![(ada, Expected::Exactly(2))],
        ))
        .await
        .expect("the append after the batch");
    assert_eq!(next.envelopes[0].streamversion, 3);
}

#[tokio::test]
async fn a_read_of_thousands_of_streams_answers_each_whole_and_in_order_after_its_version() {
    // Enough streams that the read is split into slices read at once (services/store/src/read.rs).
    const ADMINS: usize = 2_500;
    let env = TestEnv::new().await;
    let org = Uuid::now_v7();
    let admins: Vec<Uuid> = (0..ADMINS).map(|_| Uuid::now_v7()).collect();
    let mut envelopes = Vec::new();
    let mut created = vec![org_created(org)];
    created.extend(admins.iter().map(|&a| admin_created(a)));
    let first = env
        .db
        .append(request(org, created, vec![(org, Expected::NoStream)]))
        .await
        .expect("the admins");
    envelopes.extend(first.envelopes);
    // Every second admin gains a version 2, every sixth a version 3 as well.
    let required = admins.iter().step_by(2).map(|&admin_id| {
        Event::MfaRequired(MfaRequired {
            admin_id,
            source: RequirementSource::Admin,
        })
    });
    let removed = admins.iter().step_by(6).map(|&admin_id| {
        Event::MfaRequirementRemoved(gatehouse_events::types::AdminRef { admin_id })
    });
    for events in [required.collect::<Vec<_>>(), removed.collect()] {
        let appended = env
            .db
            .append(request(org, events, vec![]))
            .await
            .expect("more versions");
        envelopes.extend(appended.envelopes);
    }

    // Each admin read after a version of its own (0, 1 or 2); one id twice, one unknown.
    let after = |i: usize| (i % 3) as i64;
    let mut asked: Vec<(Uuid, i64)> = admins
        .iter()
        .enumerate()
        .map(|(i, &a)| (a, after(i)))
        .collect();
    asked.push((admins[0], after(0)));
    asked.push((Uuid::now_v7(), 0));
    let read = env.db.read_streams_after(&asked).await.expect("the read");

    let mut expected_streams = 0;
    for (i, admin) in admins.iter().enumerate() {
        let expected: Vec<_> = envelopes
            .iter()
            .filter(|e| e.subject == format!("admins/{admin}") && e.streamversion > after(i))
            .cloned()
            .collect();
        match read.get(admin) {
            None => assert!(expected.is_empty(), "admin {i} is missing from the read"),
            Some(stream) => {
                expected_streams += 1;
                assert_eq!(stream.org_id, org);
                assert_eq!(stream.events, expected, "admin {i}'s events");
                assert_eq!(
                    stream.version,
                    expected.last().map_or(0, |e| e.streamversion),
                    "admin {i}'s version"
                );
            }
        }
    }
    assert_eq!(read.len(), expected_streams, "only the admins' streams");
    // Read whole (a third) or after version 1 with a version 2 (a sixth); none of the rest.
    let whole_or_after_one = (0..ADMINS).filter(|i| i % 3 == 0 || i % 6 == 4).count();
    assert_eq!(expected_streams, whole_or_after_one);
}
