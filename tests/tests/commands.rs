//! The command service keeps the admin and organisation states it folded or appended (with the
//! stream version each reflects) and reads only what a stream gained since; setting an MFA
//! requirement decides on them unread and lets the append's expectations refuse a stale one.
//! These tests run two command services over one store, as two `gatehouse serve` processes
//! would, and check that neither acts on a state the other has moved past.

use gatehouse_auth::Passwords;
use gatehouse_auth::principal::{AuthMethod, Principal};
use gatehouse_auth::secretbox::SecretKey;
use gatehouse_commands::{CommandContext, CommandError, Commands};
use gatehouse_domain::{AdminId, DomainError, Role};
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

/// The admin's last event type, as the store holds it.
async fn last_type(env: &TestEnv, admin: AdminId) -> String {
    stream_types(env, admin).await.pop().expect("an event")
}

#[tokio::test]
async fn a_decision_on_a_kept_organisation_another_process_moved_on_is_made_again_on_the_read_one()
{
    let env = TestEnv::new().await;
    let (a, b) = (process(&env), process(&env));
    let (ctx, admin) = org_with_admin(&env, &a).await;
    // `a` keeps the organisation without the Global MFA Requirement; `b` turns it on.
    a.set_mfa_requirement(&ctx, admin, true).await.expect("a");
    b.set_global_mfa(&ctx, true).await.expect("b");

    // On its kept states `a` would remove the requirement; the organisation's version refuses
    // that append, and the organisation as read refuses the command.
    let refused = a.set_mfa_requirement(&ctx, admin, false).await;
    assert!(
        matches!(
            refused,
            Err(CommandError::Domain(DomainError::GlobalMfaEnforced))
        ),
        "{refused:?}"
    );
    assert_eq!(
        last_type(&env, admin).await,
        "gatehouse.admin.mfa_required.v1"
    );
}

#[tokio::test]
async fn a_refusal_on_kept_states_is_answered_only_if_the_streams_as_read_refuse_too() {
    let env = TestEnv::new().await;
    let (a, b) = (process(&env), process(&env));
    let (ctx, admin) = org_with_admin(&env, &a).await;
    // `a` keeps the organisation with the Global MFA Requirement on; `b` turns it off.
    a.set_mfa_requirement(&ctx, admin, true).await.expect("a");
    a.set_global_mfa(&ctx, true).await.expect("a turns it on");
    b.set_global_mfa(&ctx, false).await.expect("b turns it off");

    // Kept, the requirement could not be removed; read, it can.
    let removed = a
        .set_mfa_requirement(&ctx, admin, false)
        .await
        .expect("removed");
    assert!(!removed.value.required);
    assert_eq!(
        last_type(&env, admin).await,
        "gatehouse.admin.mfa_requirement_removed.v1"
    );
}

#[tokio::test]
async fn an_actor_another_process_removed_cannot_act_on_the_state_a_process_kept_of_them() {
    let env = TestEnv::new().await;
    let (a, b) = (process(&env), process(&env));
    let (owner, target) = org_with_admin(&env, &a).await;
    let org = owner.principal.org_id;
    let actor = Uuid::now_v7();
    env.db
        .append(system_append(org.0, vec![admin_created(actor, false)]))
        .await
        .expect("the actor is created");
    let ctx = CommandContext::new(Principal {
        admin_id: AdminId(actor),
        org_id: org,
        email: format!("{actor}@example.com"),
        role: Role::Administrator,
        auth_method: AuthMethod::Session,
    });
    // `a` keeps the actor as active; `b` removes them.
    a.set_mfa_requirement(&ctx, target, true)
        .await
        .expect("the actor requires MFA");
    b.remove_admin(&owner, AdminId(actor))
        .await
        .expect("the owner removes the actor");

    let refused = a.set_mfa_requirement(&ctx, target, false).await;
    assert!(
        matches!(refused, Err(CommandError::Domain(DomainError::Forbidden))),
        "{refused:?}"
    );
    assert_eq!(
        last_type(&env, target).await,
        "gatehouse.admin.mfa_required.v1"
    );
}
