//! The command service keeps the admin states it folded (with the stream version each reflects)
//! and reads only what a stream gained since. These tests run two command services over one
//! store, as two `gatehouse serve` processes would, and check that neither decides on a state
//! the other has moved past.

use gatehouse_auth::Passwords;
use gatehouse_auth::secretbox::SecretKey;
use gatehouse_commands::{CommandContext, Commands};
use gatehouse_domain::AdminId;
use gatehouse_tests::producer::create_org;
use gatehouse_tests::{TestEnv, admin_created, system_append};
use uuid::Uuid;

fn process(env: &TestEnv) -> Commands {
    Commands::new(
        env.db.clone(),
        Passwords::new(2),
        SecretKey::from_bytes([7; 32]),
    )
}

/// An organisation, its owner acting in it, and one administrator without MFA required.
async fn org_with_admin(env: &TestEnv, commands: &Commands) -> (CommandContext, AdminId) {
    let owner = create_org(commands, "Acme").await;
    let admin = Uuid::now_v7();
    env.db
        .append(system_append(
            owner.org_id.0,
            vec![admin_created(admin, false)],
        ))
        .await
        .expect("the admin is created");
    (CommandContext::new(owner), AdminId(admin))
}

/// The admin's events, by type, as the store holds them.
async fn stream_types(env: &TestEnv, admin: AdminId) -> Vec<String> {
    let streams = env.db.read_streams(&[admin.0]).await.expect("the stream");
    streams[&admin.0]
        .events
        .iter()
        .map(|e| e.event_type.clone())
        .collect()
}

#[tokio::test]
async fn a_process_decides_on_what_another_appended_after_it_last_read_the_admin() {
    let env = TestEnv::new().await;
    let (a, b) = (process(&env), process(&env));
    let (ctx, admin) = org_with_admin(&env, &a).await;

    // `a` reads the admin (keeping the state at version 2), `b` moves it on.
    let required = a.set_mfa_requirement(&ctx, admin, true).await.expect("a");
    assert!(required.value.required);
    let removed = b.set_mfa_requirement(&ctx, admin, false).await.expect("b");
    assert!(!removed.value.required);

    // Had `a` decided on its kept state (required), this would change nothing.
    let again = a
        .set_mfa_requirement(&ctx, admin, true)
        .await
        .expect("a again");
    assert!(again.value.required);
    assert!(again.position > removed.position, "a appended a new event");
    assert_eq!(
        stream_types(&env, admin).await,
        [
            "gatehouse.admin.created.v1",
            "gatehouse.admin.mfa_required.v1",
            "gatehouse.admin.mfa_requirement_removed.v1",
            "gatehouse.admin.mfa_required.v1",
        ]
    );

    // And the other way round, in a bulk: `b`'s kept state (not required) is behind `a`'s
    // last append, so `b` reports the admin as already required and appends nothing.
    let head = env.db.head().await.expect("the head");
    let bulk = b.require_mfa_bulk(&ctx, &[admin]).await.expect("the bulk");
    assert!(bulk.value.events.is_empty(), "{:?}", bulk.value.events);
    assert_eq!(env.db.head().await.expect("the head"), head);
}

#[tokio::test]
async fn a_command_on_a_long_stream_reads_it_once_and_then_only_what_it_gained() {
    let env = TestEnv::new().await;
    let commands = process(&env);
    let (ctx, admin) = org_with_admin(&env, &commands).await;
    // A thousand MFA requirement changes made elsewhere, straight into the store.
    for chunk in 0..10 {
        let events = (0..100)
            .map(|i| {
                let required = (chunk * 100 + i) % 2 == 0;
                if required {
                    gatehouse_events::Event::MfaRequired(gatehouse_events::types::MfaRequired {
                        admin_id: admin.0,
                        source: gatehouse_events::RequirementSource::Admin,
                    })
                } else {
                    gatehouse_events::Event::MfaRequirementRemoved(
                        gatehouse_events::types::AdminRef { admin_id: admin.0 },
                    )
                }
            })
            .collect();
        let org = ctx.principal.org_id.0;
        env.db
            .append(system_append(org, events))
            .await
            .expect("the changes");
    }
    // 1 + 1,000 events, the last one a removal: each command folds them all to "not required".
    for (round, required) in [(1, true), (2, false), (3, true)] {
        let outcome = commands
            .set_mfa_requirement(&ctx, admin, required)
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(outcome.value.required, required, "round {round}");
    }
    assert_eq!(stream_types(&env, admin).await.len(), 1 + 1_000 + 3);
}
