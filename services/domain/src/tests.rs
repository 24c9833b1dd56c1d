//! The deciders as given / when / then: the events of the past are folded into states with the
//! same `evolve` the service uses, a decider runs, and the test asserts the exact events it
//! produced or the exact rule it broke. Every row and column of the role matrix (SPEC §1) is
//! walked through `Role::ALL`.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use gatehouse_events::types::Aggregate;
use gatehouse_events::types::{
    AdminCreated, AdminRef, ApiKeyChanged, HomeWidgetChanged, MfaEnrollmentCompleted, MfaLocked,
    MfaRequired, MfaResetRequested, OrgCreated, OrgRef, WIDGET_ADMINS_WITHOUT_MFA_REQUIRED,
};
use uuid::Uuid;

use crate::decide::{self, BulkRequireMfa, NewAdmin};
use crate::policy;
use crate::state::Lifecycle;
use crate::{
    AdminId, AdminState, DomainError, Email, Event, OrgId, OrgName, OrgState, PersonName,
    RequirementSource, Role,
};

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

const ORG: OrgId = OrgId(Uuid::from_u128(0x0_0001));
const OTHER_ORG: OrgId = OrgId(Uuid::from_u128(0x0_0002));
/// The admin who issues the command.
const ACTOR: AdminId = AdminId(Uuid::from_u128(0xA_0001));
/// The admin the command is about.
const TARGET: AdminId = AdminId(Uuid::from_u128(0xB_0001));

fn admin(n: u128) -> AdminId {
    AdminId(Uuid::from_u128(0xC_0000 + n))
}

/// Every event of these tests happened at this instant: `decide` never reads a clock.
fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0)
        .single()
        .expect("a valid, unambiguous UTC time")
}

fn org_created(org: OrgId) -> Event {
    Event::OrgCreated(OrgCreated {
        org_id: org.0,
        name: "Acme".to_owned(),
    })
}

fn admin_created(id: AdminId, role: Role, mfa_required: bool) -> Event {
    Event::AdminCreated(AdminCreated {
        admin_id: id.0,
        email: format!("{}@example.com", id.0.simple()),
        first_name: "Ada".to_owned(),
        last_name: "Lovelace".to_owned(),
        role,
        mfa_required,
    })
}

fn admin_removed(id: AdminId) -> Event {
    Event::AdminRemoved(AdminRef { admin_id: id.0 })
}

fn mfa_required(id: AdminId, source: RequirementSource) -> Event {
    Event::MfaRequired(MfaRequired {
        admin_id: id.0,
        source,
    })
}

fn requirement_removed(id: AdminId) -> Event {
    Event::MfaRequirementRemoved(AdminRef { admin_id: id.0 })
}

fn global_enabled(org: OrgId) -> Event {
    Event::GlobalMfaEnabled(OrgRef { org_id: org.0 })
}

fn global_disabled(org: OrgId) -> Event {
    Event::GlobalMfaDisabled(OrgRef { org_id: org.0 })
}

fn enrolled(id: AdminId) -> Event {
    Event::MfaEnrollmentCompleted(MfaEnrollmentCompleted {
        admin_id: id.0,
        method: "totp".to_owned(),
        replaced_previous: false,
    })
}

fn locked(id: AdminId) -> Event {
    Event::MfaLocked(MfaLocked {
        admin_id: id.0,
        failed_attempts: 5,
    })
}

fn reset_requested(id: AdminId) -> Event {
    Event::MfaResetRequested(MfaResetRequested {
        admin_id: id.0,
        requested_by_self: true,
        expires_at: at() + chrono::Duration::hours(1),
    })
}

fn widget_changed(id: AdminId, visible: bool) -> Event {
    Event::HomeWidgetChanged(HomeWidgetChanged {
        admin_id: id.0,
        widget: WIDGET_ADMINS_WITHOUT_MFA_REQUIRED.to_owned(),
        visible,
    })
}

/// What one organisation's history folds into.
struct Given {
    org_id: OrgId,
    org: OrgState,
    admins: BTreeMap<AdminId, AdminState>,
}

impl Given {
    /// The admin's state; an id without events is [`AdminState::absent`] in this organisation,
    /// as the service loads it.
    fn admin(&self, id: AdminId) -> AdminState {
        self.admins
            .get(&id)
            .cloned()
            .unwrap_or_else(|| AdminState::absent(id, self.org_id))
    }

    fn actor(&self) -> AdminState {
        self.admin(ACTOR)
    }

    fn target(&self) -> AdminState {
        self.admin(TARGET)
    }

    /// Every admin of the organisation (the removed ones too), as `enable_global_mfa` gets them.
    fn all_admins(&self) -> Vec<AdminState> {
        self.admins.values().cloned().collect()
    }

    /// Folds more events into the states, as if they had been appended.
    fn then(mut self, events: &[Event]) -> Given {
        for event in events {
            self.apply(event);
        }
        self
    }

    fn apply(&mut self, event: &Event) {
        match event.aggregate() {
            Aggregate::Org(_) => self.org = std::mem::take(&mut self.org).evolve(event),
            Aggregate::Admin(id) => {
                let id = AdminId(id);
                let state = self.admin(id).evolve(event, at());
                self.admins.insert(id, state);
            }
        }
    }
}

/// Folds the history of organisation `org_id` with `OrgState::evolve` and `AdminState::evolve`.
fn given_in(org_id: OrgId, events: &[Event]) -> Given {
    Given {
        org_id,
        org: OrgState::default(),
        admins: BTreeMap::new(),
    }
    .then(events)
}

fn given(events: &[Event]) -> Given {
    given_in(ORG, events)
}

/// An organisation with an actor of `actor_role` (MFA required) and a target of `target_role`.
fn actor_and_target(actor_role: Role, target_role: Role, target_required: bool) -> Vec<Event> {
    vec![
        org_created(ORG),
        admin_created(ACTOR, actor_role, true),
        admin_created(TARGET, target_role, target_required),
    ]
}

fn new_admin(id: AdminId, role: Role, mfa_required: Option<bool>) -> NewAdmin {
    NewAdmin {
        id,
        email: Email::parse("grace@example.com").expect("a valid email"),
        first_name: PersonName::parse("first_name", "Grace").expect("a valid name"),
        last_name: PersonName::parse("last_name", "Hopper").expect("a valid name"),
        role,
        mfa_required,
    }
}

/// The event `create_admin` writes for [`new_admin`].
fn created_event(id: AdminId, role: Role, mfa_required: bool) -> Event {
    Event::AdminCreated(AdminCreated {
        admin_id: id.0,
        email: "grace@example.com".to_owned(),
        first_name: "Grace".to_owned(),
        last_name: "Hopper".to_owned(),
        role,
        mfa_required,
    })
}

fn ids(admins: &[AdminId]) -> Vec<Uuid> {
    admins.iter().map(|a| a.0).collect()
}

fn is_billing(role: Role) -> bool {
    role == Role::AdministratorWithBilling
}

/// The "require MFA / remove the requirement" row of the matrix, as the deciders answer it.
fn expected_mfa_answer(
    actor: Role,
    target: Role,
    ok: Vec<Event>,
) -> Result<Vec<Event>, DomainError> {
    match actor {
        Role::AdministratorWithBilling => Ok(ok),
        Role::Administrator if is_billing(target) => {
            Err(DomainError::ForbiddenTargets(vec![TARGET.0]))
        }
        Role::Administrator => Ok(ok),
        Role::Manager | Role::HelpDesk | Role::ReadOnly | Role::CommandRunner => {
            Err(DomainError::Forbidden)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The role matrix itself
// ---------------------------------------------------------------------------------------------

#[test]
fn everyone_but_command_runners_may_see_the_widget_the_admin_list_and_the_audit_history() {
    for role in Role::ALL {
        assert_eq!(
            policy::can_read_directory(role),
            role != Role::CommandRunner,
            "{role:?}"
        );
    }
}

#[test]
fn billing_administrators_manage_and_reset_anyone_plain_administrators_anyone_but_billing_ones() {
    for actor in Role::ALL {
        for target in Role::ALL {
            let expected = match actor {
                Role::AdministratorWithBilling => true,
                Role::Administrator => !is_billing(target),
                _ => false,
            };
            assert_eq!(
                policy::can_manage_mfa_of(actor, target),
                expected,
                "{actor:?} on {target:?}"
            );
        }
    }
}

#[test]
fn only_billing_administrators_may_change_global_mfa_or_create_and_remove_admins() {
    for role in Role::ALL {
        assert_eq!(
            policy::can_change_global_mfa(role),
            is_billing(role),
            "{role:?}"
        );
        assert_eq!(
            policy::can_manage_admins(role),
            is_billing(role),
            "{role:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// create_org
// ---------------------------------------------------------------------------------------------

#[test]
fn create_org_creates_the_organisation_and_its_billing_owner_with_mfa_required() {
    let g = given(&[]);
    let owner = new_admin(ACTOR, Role::AdministratorWithBilling, None);
    let name = OrgName::parse("Acme").expect("a valid name");

    let events = decide::create_org(&g.org, ORG, name, &owner);

    assert_eq!(
        events,
        Ok(vec![
            Event::OrgCreated(OrgCreated {
                org_id: ORG.0,
                name: "Acme".to_owned()
            }),
            created_event(ACTOR, Role::AdministratorWithBilling, true),
        ])
    );
}

#[test]
fn create_org_requires_mfa_for_the_owner_even_when_asked_otherwise() {
    let owner = new_admin(ACTOR, Role::AdministratorWithBilling, Some(false));
    let name = OrgName::parse("Acme").expect("a valid name");

    let events = decide::create_org(&OrgState::default(), ORG, name, &owner).expect("created");

    assert_eq!(
        events[1],
        created_event(ACTOR, Role::AdministratorWithBilling, true)
    );
}

#[test]
fn a_new_organisation_has_global_mfa_off_and_an_active_owner_required_by_default() {
    let owner = new_admin(ACTOR, Role::AdministratorWithBilling, None);
    let name = OrgName::parse("Acme").expect("a valid name");
    let events = decide::create_org(&OrgState::default(), ORG, name, &owner).expect("created");

    let g = given(&events);

    assert_eq!(
        g.org,
        OrgState {
            id: Some(ORG),
            name: "Acme".to_owned(),
            global_mfa: false
        }
    );
    let owner = g.actor();
    assert_eq!(owner.lifecycle, Lifecycle::Active);
    assert_eq!(owner.role, Role::AdministratorWithBilling);
    assert!(owner.required);
    assert_eq!(owner.requirement_source, Some(RequirementSource::Default));
    assert!(!owner.enrolled);
    assert_eq!(owner.created_at, Some(at()));
}

#[test]
fn create_org_refuses_an_owner_who_is_not_an_administrator_with_billing() {
    for role in Role::ALL.into_iter().filter(|r| !is_billing(*r)) {
        let owner = new_admin(ACTOR, role, None);
        let name = OrgName::parse("Acme").expect("a valid name");

        let refused = decide::create_org(&OrgState::default(), ORG, name, &owner);

        assert!(
            matches!(refused, Err(DomainError::Invalid { field: "role", .. })),
            "{role:?}: {refused:?}"
        );
    }
}

#[test]
fn create_org_refuses_an_organisation_that_already_exists() {
    let g = given(&[org_created(ORG)]);
    let owner = new_admin(ACTOR, Role::AdministratorWithBilling, None);
    let name = OrgName::parse("Acme").expect("a valid name");

    assert_eq!(
        decide::create_org(&g.org, ORG, name, &owner),
        Err(DomainError::OrgExists)
    );
}

// ---------------------------------------------------------------------------------------------
// create_admin
// ---------------------------------------------------------------------------------------------

#[test]
fn create_admin_is_allowed_to_billing_administrators_only() {
    for actor_role in Role::ALL {
        let g = given(&[org_created(ORG), admin_created(ACTOR, actor_role, true)]);
        let new = new_admin(TARGET, Role::ReadOnly, None);

        let answer = decide::create_admin(&g.actor(), &g.org, &g.target(), &new);

        let expected = if is_billing(actor_role) {
            Ok(vec![created_event(TARGET, Role::ReadOnly, true)])
        } else {
            Err(DomainError::Forbidden)
        };
        assert_eq!(answer, expected, "{actor_role:?}");
    }
}

#[test]
fn create_admin_lets_billing_administrators_create_every_role() {
    let g = given(&[
        org_created(ORG),
        admin_created(ACTOR, Role::AdministratorWithBilling, true),
    ]);
    for role in Role::ALL {
        let new = new_admin(TARGET, role, None);

        let answer = decide::create_admin(&g.actor(), &g.org, &g.target(), &new);

        assert_eq!(
            answer,
            Ok(vec![created_event(TARGET, role, true)]),
            "{role:?}"
        );
    }
}

#[test]
fn create_admin_requires_mfa_by_default_and_when_asked() {
    let g = given(&[
        org_created(ORG),
        admin_created(ACTOR, Role::AdministratorWithBilling, true),
    ]);
    for asked in [None, Some(true)] {
        let new = new_admin(TARGET, Role::Manager, asked);

        let events = decide::create_admin(&g.actor(), &g.org, &g.target(), &new);

        assert_eq!(
            events,
            Ok(vec![created_event(TARGET, Role::Manager, true)]),
            "{asked:?}"
        );
        let created = given(&events.expect("created")).target();
        assert!(created.required);
        assert_eq!(created.requirement_source, Some(RequirementSource::Default));
    }
}

#[test]
fn create_admin_without_mfa_required_when_asked_while_global_mfa_is_off() {
    let g = given(&[
        org_created(ORG),
        admin_created(ACTOR, Role::AdministratorWithBilling, true),
        global_enabled(ORG),
        global_disabled(ORG),
    ]);
    let new = new_admin(TARGET, Role::HelpDesk, Some(false));

    let events = decide::create_admin(&g.actor(), &g.org, &g.target(), &new);

    assert_eq!(
        events,
        Ok(vec![created_event(TARGET, Role::HelpDesk, false)])
    );
    let created = given(&events.expect("created")).target();
    assert!(!created.required);
    assert_eq!(created.requirement_source, None);
}

#[test]
fn create_admin_refuses_an_admin_without_mfa_while_global_mfa_is_on() {
    let g = given(&[
        org_created(ORG),
        admin_created(ACTOR, Role::AdministratorWithBilling, true),
        global_enabled(ORG),
    ]);
    let new = new_admin(TARGET, Role::HelpDesk, Some(false));

    let refused = decide::create_admin(&g.actor(), &g.org, &g.target(), &new);

    assert_eq!(refused, Err(DomainError::GlobalMfaEnforced));
}

#[test]
fn create_admin_while_global_mfa_is_on_requires_mfa() {
    let g = given(&[
        org_created(ORG),
        admin_created(ACTOR, Role::AdministratorWithBilling, true),
        global_enabled(ORG),
    ]);
    for asked in [None, Some(true)] {
        let new = new_admin(TARGET, Role::HelpDesk, asked);

        let events = decide::create_admin(&g.actor(), &g.org, &g.target(), &new);

        assert_eq!(
            events,
            Ok(vec![created_event(TARGET, Role::HelpDesk, true)]),
            "{asked:?}"
        );
    }
}

#[test]
fn create_admin_refuses_an_id_that_already_has_events() {
    let histories = [
        vec![admin_created(TARGET, Role::ReadOnly, true)],
        vec![
            admin_created(TARGET, Role::ReadOnly, true),
            admin_removed(TARGET),
        ],
    ];
    for history in histories {
        let mut events = vec![
            org_created(ORG),
            admin_created(ACTOR, Role::AdministratorWithBilling, true),
        ];
        events.extend(history);
        let g = given(&events);
        let new = new_admin(TARGET, Role::ReadOnly, None);

        let refused = decide::create_admin(&g.actor(), &g.org, &g.target(), &new);

        assert_eq!(
            refused,
            Err(DomainError::AdminExists),
            "{:?}",
            g.target().lifecycle
        );
    }
}

#[test]
fn create_admin_refuses_an_id_taken_in_another_organisation() {
    let g = given(&[
        org_created(ORG),
        admin_created(ACTOR, Role::AdministratorWithBilling, true),
    ]);
    let foreign = given_in(
        OTHER_ORG,
        &[
            org_created(OTHER_ORG),
            admin_created(TARGET, Role::ReadOnly, true),
        ],
    );
    let new = new_admin(TARGET, Role::ReadOnly, None);

    let refused = decide::create_admin(&g.actor(), &g.org, &foreign.target(), &new);

    assert_eq!(refused, Err(DomainError::AdminExists));
}

#[test]
fn create_admin_refuses_a_removed_or_unknown_actor() {
    let removed = given(&[
        org_created(ORG),
        admin_created(ACTOR, Role::AdministratorWithBilling, true),
        admin_removed(ACTOR),
    ]);
    let absent = given(&[org_created(ORG)]);
    for g in [removed, absent] {
        let new = new_admin(TARGET, Role::ReadOnly, None);

        let refused = decide::create_admin(&g.actor(), &g.org, &g.target(), &new);

        assert_eq!(refused, Err(DomainError::Forbidden));
    }
}

#[test]
fn create_admin_never_decides_on_another_organisations_settings() {
    let g = given(&[
        org_created(ORG),
        admin_created(ACTOR, Role::AdministratorWithBilling, true),
    ]);
    let foreign = given_in(OTHER_ORG, &[org_created(OTHER_ORG)]);
    let new = new_admin(TARGET, Role::ReadOnly, None);

    let refused = decide::create_admin(&g.actor(), &foreign.org, &g.target(), &new);

    assert_eq!(refused, Err(DomainError::OrgNotFound));
}

// ---------------------------------------------------------------------------------------------
// remove_admin
// ---------------------------------------------------------------------------------------------

#[test]
fn remove_admin_is_allowed_to_billing_administrators_only_on_every_role() {
    for actor_role in Role::ALL {
        for target_role in Role::ALL {
            let g = given(&actor_and_target(actor_role, target_role, true));

            let answer = decide::remove_admin(&g.actor(), &g.target());

            let expected = if is_billing(actor_role) {
                Ok(vec![admin_removed(TARGET)])
            } else {
                Err(DomainError::Forbidden)
            };
            assert_eq!(answer, expected, "{actor_role:?} removing {target_role:?}");
        }
    }
}

#[test]
fn a_removed_admin_is_no_longer_active_and_keeps_their_mfa_facts() {
    let g = given(&actor_and_target(
        Role::AdministratorWithBilling,
        Role::Manager,
        true,
    ));
    let events = decide::remove_admin(&g.actor(), &g.target()).expect("removed");

    let target = g.then(&events).target();

    assert_eq!(target.lifecycle, Lifecycle::Removed);
    assert!(!target.is_active());
    assert!(target.required);
    assert_eq!(target.requirement_source, Some(RequirementSource::Default));
}

#[test]
fn remove_admin_refuses_to_remove_oneself() {
    let g = given(&[
        org_created(ORG),
        admin_created(ACTOR, Role::AdministratorWithBilling, true),
    ]);

    assert_eq!(
        decide::remove_admin(&g.actor(), &g.actor()),
        Err(DomainError::SelfAction)
    );
}

#[test]
fn remove_admin_does_not_find_unknown_removed_or_foreign_admins() {
    let g = given(&[
        org_created(ORG),
        admin_created(ACTOR, Role::AdministratorWithBilling, true),
        admin_created(TARGET, Role::ReadOnly, true),
        admin_removed(TARGET),
    ]);
    let foreign = given_in(
        OTHER_ORG,
        &[
            org_created(OTHER_ORG),
            admin_created(admin(1), Role::ReadOnly, true),
        ],
    );
    let targets = [
        ("removed", g.target()),
        ("unknown", g.admin(admin(2))),
        ("foreign", foreign.admin(admin(1))),
    ];
    for (what, target) in targets {
        assert_eq!(
            decide::remove_admin(&g.actor(), &target),
            Err(DomainError::AdminNotFound),
            "{what}"
        );
    }
}

#[test]
fn remove_admin_answers_roles_without_the_right_the_same_whether_or_not_the_target_exists() {
    for actor_role in Role::ALL.into_iter().filter(|r| !is_billing(*r)) {
        let g = given(&[org_created(ORG), admin_created(ACTOR, actor_role, true)]);

        let answer = decide::remove_admin(&g.actor(), &g.admin(admin(404)));

        assert_eq!(answer, Err(DomainError::Forbidden), "{actor_role:?}");
    }
}

#[test]
fn remove_admin_refuses_a_removed_actor() {
    let g = given(&[
        org_created(ORG),
        admin_created(ACTOR, Role::AdministratorWithBilling, true),
        admin_created(TARGET, Role::ReadOnly, true),
        admin_removed(ACTOR),
    ]);

    assert_eq!(
        decide::remove_admin(&g.actor(), &g.target()),
        Err(DomainError::Forbidden)
    );
}

// ---------------------------------------------------------------------------------------------
// set_mfa_requirement
// ---------------------------------------------------------------------------------------------

#[test]
fn set_mfa_requirement_requires_mfa_as_the_role_matrix_allows() {
    for actor_role in Role::ALL {
        for target_role in Role::ALL {
            let g = given(&actor_and_target(actor_role, target_role, false));

            let answer = decide::set_mfa_requirement(&g.actor(), &g.org, &g.target(), true);

            let ok = vec![mfa_required(TARGET, RequirementSource::Admin)];
            assert_eq!(
                answer,
                expected_mfa_answer(actor_role, target_role, ok),
                "{actor_role:?} on {target_role:?}"
            );
        }
    }
}

#[test]
fn set_mfa_requirement_removes_the_requirement_as_the_role_matrix_allows() {
    for actor_role in Role::ALL {
        for target_role in Role::ALL {
            let g = given(&actor_and_target(actor_role, target_role, true));

            let answer = decide::set_mfa_requirement(&g.actor(), &g.org, &g.target(), false);

            let ok = vec![requirement_removed(TARGET)];
            assert_eq!(
                answer,
                expected_mfa_answer(actor_role, target_role, ok),
                "{actor_role:?} on {target_role:?}"
            );
        }
    }
}

#[test]
fn requiring_mfa_for_an_admin_records_an_admin_source() {
    let g = given(&actor_and_target(
        Role::Administrator,
        Role::HelpDesk,
        false,
    ));
    let events =
        decide::set_mfa_requirement(&g.actor(), &g.org, &g.target(), true).expect("allowed");

    let target = g.then(&events).target();

    assert!(target.required);
    assert_eq!(target.requirement_source, Some(RequirementSource::Admin));
}

#[test]
fn removing_the_requirement_clears_its_source() {
    let g = given(&actor_and_target(
        Role::AdministratorWithBilling,
        Role::Administrator,
        true,
    ));
    let events =
        decide::set_mfa_requirement(&g.actor(), &g.org, &g.target(), false).expect("allowed");

    let target = g.then(&events).target();

    assert!(!target.required);
    assert_eq!(target.requirement_source, None);
}

#[test]
fn set_mfa_requirement_to_the_current_value_changes_nothing() {
    for required in [true, false] {
        let g = given(&actor_and_target(
            Role::AdministratorWithBilling,
            Role::ReadOnly,
            required,
        ));

        let answer = decide::set_mfa_requirement(&g.actor(), &g.org, &g.target(), required);

        assert_eq!(answer, Ok(vec![]), "required = {required}");
    }
}

#[test]
fn set_mfa_requirement_refuses_plain_administrators_on_billing_targets_even_when_nothing_would_change()
 {
    for required in [true, false] {
        let g = given(&actor_and_target(
            Role::Administrator,
            Role::AdministratorWithBilling,
            required,
        ));

        let answer = decide::set_mfa_requirement(&g.actor(), &g.org, &g.target(), required);

        assert_eq!(
            answer,
            Err(DomainError::ForbiddenTargets(vec![TARGET.0])),
            "required = {required}"
        );
    }
}

#[test]
fn set_mfa_requirement_refuses_to_remove_a_requirement_while_global_mfa_is_on() {
    for actor_role in [Role::AdministratorWithBilling, Role::Administrator] {
        let mut events = actor_and_target(actor_role, Role::Manager, true);
        events.push(global_enabled(ORG));
        let g = given(&events);

        let answer = decide::set_mfa_requirement(&g.actor(), &g.org, &g.target(), false);

        assert_eq!(
            answer,
            Err(DomainError::GlobalMfaEnforced),
            "{actor_role:?}"
        );
    }
}

#[test]
fn set_mfa_requirement_may_remove_a_global_requirement_once_global_mfa_is_off_again() {
    let g = given(&actor_and_target(
        Role::AdministratorWithBilling,
        Role::Manager,
        false,
    ))
    .then(&[
        global_enabled(ORG),
        mfa_required(TARGET, RequirementSource::Global),
        global_disabled(ORG),
    ]);

    let answer = decide::set_mfa_requirement(&g.actor(), &g.org, &g.target(), false);

    assert_eq!(answer, Ok(vec![requirement_removed(TARGET)]));
}

#[test]
fn set_mfa_requirement_may_still_require_mfa_while_global_mfa_is_on() {
    let g = given(&actor_and_target(
        Role::AdministratorWithBilling,
        Role::Manager,
        true,
    ))
    .then(&[global_enabled(ORG)]);

    let answer = decide::set_mfa_requirement(&g.actor(), &g.org, &g.target(), true);

    assert_eq!(answer, Ok(vec![]));
}

#[test]
fn set_mfa_requirement_does_not_find_unknown_removed_or_foreign_admins() {
    let g = given(&[
        org_created(ORG),
        admin_created(ACTOR, Role::AdministratorWithBilling, true),
        admin_created(TARGET, Role::ReadOnly, true),
        admin_removed(TARGET),
    ]);
    let foreign = given_in(
        OTHER_ORG,
        &[
            org_created(OTHER_ORG),
            admin_created(admin(1), Role::ReadOnly, false),
        ],
    );
    let targets = [
        ("removed", g.target()),
        ("unknown", g.admin(admin(2))),
        ("foreign", foreign.admin(admin(1))),
    ];
    for (what, target) in targets {
        for required in [true, false] {
            let answer = decide::set_mfa_requirement(&g.actor(), &g.org, &target, required);

            assert_eq!(
                answer,
                Err(DomainError::AdminNotFound),
                "{what}, required = {required}"
            );
        }
    }
}

#[test]
fn set_mfa_requirement_answers_roles_without_the_right_the_same_whether_or_not_the_target_exists() {
    for actor_role in [
        Role::Manager,
        Role::HelpDesk,
        Role::ReadOnly,
        Role::CommandRunner,
    ] {
        let g = given(&[org_created(ORG), admin_created(ACTOR, actor_role, true)]);
        let foreign = given_in(OTHER_ORG, &[admin_created(admin(1), Role::ReadOnly, false)]);

        for target in [g.admin(admin(404)), foreign.admin(admin(1))] {
            let answer = decide::set_mfa_requirement(&g.actor(), &g.org, &target, true);

            assert_eq!(answer, Err(DomainError::Forbidden), "{actor_role:?}");
        }
    }
}

#[test]
fn set_mfa_requirement_refuses_a_removed_actor() {
    let g = given(&actor_and_target(
        Role::AdministratorWithBilling,
        Role::ReadOnly,
        false,
    ))
    .then(&[admin_removed(ACTOR)]);

    let answer = decide::set_mfa_requirement(&g.actor(), &g.org, &g.target(), true);

    assert_eq!(answer, Err(DomainError::Forbidden));
}

// ---------------------------------------------------------------------------------------------
// require_mfa_bulk
// ---------------------------------------------------------------------------------------------

#[test]
fn bulk_require_mfa_follows_the_role_matrix_for_every_actor_and_target() {
    for actor_role in Role::ALL {
        for target_role in Role::ALL {
            let g = given(&actor_and_target(actor_role, target_role, false));

            let answer = decide::require_mfa_bulk(&g.actor(), &[TARGET], &[g.target()]);

            let expected =
                expected_mfa_answer(actor_role, target_role, vec![]).map(|_| BulkRequireMfa {
                    events: vec![mfa_required(TARGET, RequirementSource::Admin)],
                    required: vec![TARGET],
                    already_required: vec![],
                });
            assert_eq!(answer, expected, "{actor_role:?} on {target_role:?}");
        }
    }
}

#[test]
fn bulk_require_mfa_refuses_billing_targets_for_plain_administrators() {
    let (b1, b2, m, r) = (admin(1), admin(2), admin(3), admin(4));
    let g = given(&[
        org_created(ORG),
        admin_created(ACTOR, Role::Administrator, true),
        admin_created(m, Role::Manager, false),
        admin_created(b1, Role::AdministratorWithBilling, false),
        admin_created(r, Role::ReadOnly, false),
        admin_created(b2, Role::AdministratorWithBilling, true),
    ]);
    let requested = [m, b1, r, b2, b1];

    let answer = decide::require_mfa_bulk(&g.actor(), &requested, &g.all_admins());

    // All or nothing: no event for the manager or the read-only admin, and every offender listed
    // once, in the order asked, whether or not their MFA was already required.
    assert_eq!(answer, Err(DomainError::ForbiddenTargets(ids(&[b1, b2]))));
}

#[test]
fn bulk_require_mfa_lists_every_unknown_removed_and_foreign_id() {
    let (known, removed, unknown, foreign) = (admin(1), admin(2), admin(3), admin(4));
    let g = given(&[
        org_created(ORG),
        admin_created(ACTOR, Role::AdministratorWithBilling, true),
        admin_created(known, Role::ReadOnly, false),
        admin_created(removed, Role::ReadOnly, false),
        admin_removed(removed),
    ]);
    let other = given_in(
        OTHER_ORG,
        &[
            org_created(OTHER_ORG),
            admin_created(foreign, Role::ReadOnly, false),
        ],
    );
    let states = vec![
        g.admin(known),
        g.admin(removed),
        g.admin(unknown),
        other.admin(foreign),
    ];

    let answer = decide::require_mfa_bulk(
        &g.actor(),
        &[known, removed, unknown, foreign, unknown],
        &states,
    );

    assert_eq!(
        answer,
        Err(DomainError::UnknownAdmins(ids(&[
            removed, unknown, foreign
        ])))
    );
}

#[test]
fn bulk_require_mfa_treats_an_id_without_a_state_as_unknown() {
    let g = given(&[
        org_created(ORG),
        admin_created(ACTOR, Role::AdministratorWithBilling, true),
    ]);

    let answer = decide::require_mfa_bulk(&g.actor(), &[admin(9)], &[]);

    assert_eq!(answer, Err(DomainError::UnknownAdmins(ids(&[admin(9)]))));
}

#[test]
fn bulk_require_mfa_reports_unknown_ids_before_forbidden_ones() {
    let (billing, unknown) = (admin(1), admin(2));
    let g = given(&[
        org_created(ORG),
        admin_created(ACTOR, Role::Administrator, true),
        admin_created(billing, Role::AdministratorWithBilling, false),
    ]);

    let answer = decide::require_mfa_bulk(
        &g.actor(),
        &[billing, unknown],
        &[g.admin(billing), g.admin(unknown)],
    );

    assert_eq!(answer, Err(DomainError::UnknownAdmins(ids(&[unknown]))));
}

#[test]
fn bulk_require_mfa_counts_duplicates_once() {
    let (a, b) = (admin(1), admin(2));
    let g = given(&[
        org_created(ORG),
        admin_created(ACTOR, Role::Administrator, true),
        admin_created(a, Role::HelpDesk, false),
        admin_created(b, Role::CommandRunner, false),
    ]);

    let answer = decide::require_mfa_bulk(&g.actor(), &[a, b, a, a, b], &g.all_admins());

    assert_eq!(
        answer,
        Ok(BulkRequireMfa {
            events: vec![
                mfa_required(a, RequirementSource::Admin),
                mfa_required(b, RequirementSource::Admin)
            ],
            required: vec![a, b],
            already_required: vec![],
        })
    );
}

#[test]
fn bulk_require_mfa_reports_already_required_admins_separately_and_writes_nothing_for_them() {
    let (a, b, c, d) = (admin(1), admin(2), admin(3), admin(4));
    let g = given(&[
        org_created(ORG),
        admin_created(ACTOR, Role::AdministratorWithBilling, true),
        admin_created(a, Role::Administrator, true),
        admin_created(b, Role::Manager, false),
        admin_created(c, Role::AdministratorWithBilling, false),
        admin_created(d, Role::ReadOnly, false),
        mfa_required(d, RequirementSource::Admin),
    ]);

    let answer = decide::require_mfa_bulk(&g.actor(), &[a, b, c, d], &g.all_admins());

    let expected = BulkRequireMfa {
        events: vec![
            mfa_required(b, RequirementSource::Admin),
            mfa_required(c, RequirementSource::Admin),
        ],
        required: vec![b, c],
        already_required: vec![a, d],
    };
    assert_eq!(answer, Ok(expected.clone()));
    let after = g.then(&expected.events);
    for id in [a, b, c, d] {
        assert!(after.admin(id).required, "{id}");
    }
    assert_eq!(
        after.admin(a).requirement_source,
        Some(RequirementSource::Default)
    );
    assert_eq!(
        after.admin(b).requirement_source,
        Some(RequirementSource::Admin)
    );
}

#[test]
fn bulk_require_mfa_on_admins_all_already_required_changes_nothing() {
    let a = admin(1);
    let g = given(&[
        org_created(ORG),
        admin_created(ACTOR, Role::Administrator, true),
        admin_created(a, Role::Manager, true),
    ]);

    let answer = decide::require_mfa_bulk(&g.actor(), &[a, ACTOR], &g.all_admins());

    assert_eq!(
        answer,
        Ok(BulkRequireMfa {
            events: vec![],
            required: vec![],
            already_required: vec![a, ACTOR]
        })
    );
}

#[test]
fn bulk_require_mfa_refuses_an_empty_list() {
    let g = given(&[
        org_created(ORG),
        admin_created(ACTOR, Role::Administrator, true),
    ]);

    let answer = decide::require_mfa_bulk(&g.actor(), &[], &[]);

    assert!(
        matches!(
            answer,
            Err(DomainError::Invalid {
                field: "admin_ids",
                ..
            })
        ),
        "{answer:?}"
    );
}

#[test]
fn bulk_require_mfa_refuses_roles_that_manage_nobodys_mfa_before_looking_at_the_list() {
    for actor_role in [
        Role::Manager,
        Role::HelpDesk,
        Role::ReadOnly,
        Role::CommandRunner,
    ] {
        let g = given(&actor_and_target(actor_role, Role::ReadOnly, false));
        for requested in [vec![], vec![TARGET], vec![admin(404)]] {
            let answer = decide::require_mfa_bulk(&g.actor(), &requested, &g.all_admins());

            assert_eq!(
                answer,
                Err(DomainError::Forbidden),
                "{actor_role:?} asking for {requested:?}"
            );
        }
    }
}

#[test]
fn bulk_require_mfa_refuses_a_removed_actor() {
    let g = given(&actor_and_target(
        Role::AdministratorWithBilling,
        Role::ReadOnly,
        false,
    ))
    .then(&[admin_removed(ACTOR)]);

    let answer = decide::require_mfa_bulk(&g.actor(), &[TARGET], &g.all_admins());

    assert_eq!(answer, Err(DomainError::Forbidden));
}

// ---------------------------------------------------------------------------------------------
// Global MFA Requirement
// ---------------------------------------------------------------------------------------------

#[test]
fn enable_global_mfa_is_allowed_to_billing_administrators_only() {
    for actor_role in Role::ALL {
        let g = given(&[org_created(ORG), admin_created(ACTOR, actor_role, true)]);

        let answer = decide::enable_global_mfa(&g.actor(), &g.org, &g.all_admins());

        let expected = if is_billing(actor_role) {
            Ok(vec![global_enabled(ORG)])
        } else {
            Err(DomainError::Forbidden)
        };
        assert_eq!(answer, expected, "{actor_role:?}");
    }
}

#[test]
fn enable_global_mfa_requires_every_active_unrequired_admin_with_a_global_source() {
    let (required_default, required_admin, unrequired_1, unrequired_2, removed) =
        (admin(1), admin(2), admin(3), admin(4), admin(5));
    let g = given(&[
        org_created(ORG),
        admin_created(ACTOR, Role::AdministratorWithBilling, true),
        admin_created(required_default, Role::Administrator, true),
        admin_created(required_admin, Role::Manager, false),
        mfa_required(required_admin, RequirementSource::Admin),
        admin_created(unrequired_1, Role::AdministratorWithBilling, false),
        admin_created(unrequired_2, Role::CommandRunner, false),
        admin_created(removed, Role::ReadOnly, false),
        admin_removed(removed),
        admin_created(admin(6), Role::HelpDesk, true),
        requirement_removed(admin(6)),
    ]);

    let events = decide::enable_global_mfa(&g.actor(), &g.org, &g.all_admins());

    assert_eq!(
        events,
        Ok(vec![
            global_enabled(ORG),
            mfa_required(unrequired_1, RequirementSource::Global),
            mfa_required(unrequired_2, RequirementSource::Global),
            mfa_required(admin(6), RequirementSource::Global),
        ])
    );
    let after = g.then(&events.expect("enabled"));
    assert!(after.org.global_mfa);
    let source = |id| after.admin(id).requirement_source;
    assert_eq!(source(ACTOR), Some(RequirementSource::Default));
    assert_eq!(source(required_default), Some(RequirementSource::Default));
    assert_eq!(source(required_admin), Some(RequirementSource::Admin));
    assert_eq!(source(unrequired_1), Some(RequirementSource::Global));
    assert_eq!(source(admin(6)), Some(RequirementSource::Global));
    // A removed admin is left as they were.
    assert!(!after.admin(removed).required);
    assert_eq!(source(removed), None);
}

#[test]
fn enable_global_mfa_leaves_no_active_admin_without_mfa_required() {
    let mut history = vec![
        org_created(ORG),
        admin_created(ACTOR, Role::AdministratorWithBilling, true),
    ];
    for (n, role) in (1..).zip(Role::ALL) {
        history.push(admin_created(admin(n), role, n % 2 == 0));
    }
    let g = given(&history);

    let events = decide::enable_global_mfa(&g.actor(), &g.org, &g.all_admins()).expect("enabled");
    let after = g.then(&events);

    let without: Vec<AdminId> = after
        .all_admins()
        .into_iter()
        .filter(|a| a.is_active() && !a.required)
        .map(|a| a.id)
        .collect();
    assert_eq!(without, vec![]);
}

#[test]
fn enable_global_mfa_when_already_on_changes_nothing() {
    let g = given(&[
        org_created(ORG),
        admin_created(ACTOR, Role::AdministratorWithBilling, true),
        global_enabled(ORG),
        // Cannot happen through the deciders, but even so nothing is rewritten.
        admin_created(admin(1), Role::ReadOnly, false),
    ]);

    assert_eq!(
        decide::enable_global_mfa(&g.actor(), &g.org, &g.all_admins()),
        Ok(vec![])
    );
}

#[test]
fn enable_global_mfa_never_touches_admins_of_another_organisation() {
    let g = given(&[
        org_created(ORG),
        admin_created(ACTOR, Role::AdministratorWithBilling, true),
    ]);
    let foreign = given_in(
        OTHER_ORG,
        &[
            org_created(OTHER_ORG),
            admin_created(admin(1), Role::ReadOnly, false),
        ],
    );
    let mut admins = g.all_admins();
    admins.extend(foreign.all_admins());

    let events = decide::enable_global_mfa(&g.actor(), &g.org, &admins);

    assert_eq!(events, Ok(vec![global_enabled(ORG)]));
}

#[test]
fn global_mfa_cannot_be_changed_in_another_organisation() {
    let g = given(&[
        org_created(ORG),
        admin_created(ACTOR, Role::AdministratorWithBilling, true),
    ]);
    let foreign = given_in(
        OTHER_ORG,
        &[
            org_created(OTHER_ORG),
            admin_created(admin(1), Role::ReadOnly, false),
        ],
    );
    let foreign_on = given_in(
        OTHER_ORG,
        &[org_created(OTHER_ORG), global_enabled(OTHER_ORG)],
    );

    assert_eq!(
        decide::enable_global_mfa(&g.actor(), &foreign.org, &foreign.all_admins()),
        Err(DomainError::OrgNotFound)
    );
    assert_eq!(
        decide::disable_global_mfa(&g.actor(), &foreign_on.org),
        Err(DomainError::OrgNotFound)
    );
}

#[test]
fn global_mfa_cannot_be_changed_in_an_organisation_that_does_not_exist() {
    let g = given(&[admin_created(ACTOR, Role::AdministratorWithBilling, true)]);

    assert_eq!(
        decide::enable_global_mfa(&g.actor(), &g.org, &g.all_admins()),
        Err(DomainError::OrgNotFound)
    );
    assert_eq!(
        decide::disable_global_mfa(&g.actor(), &g.org),
        Err(DomainError::OrgNotFound)
    );
}

#[test]
fn disable_global_mfa_is_allowed_to_billing_administrators_only() {
    for actor_role in Role::ALL {
        let g = given(&[
            org_created(ORG),
            admin_created(ACTOR, actor_role, true),
            global_enabled(ORG),
        ]);

        let answer = decide::disable_global_mfa(&g.actor(), &g.org);

        let expected = if is_billing(actor_role) {
            Ok(vec![global_disabled(ORG)])
        } else {
            Err(DomainError::Forbidden)
        };
        assert_eq!(answer, expected, "{actor_role:?}");
    }
}

#[test]
fn disable_global_mfa_changes_no_admin() {
    let g = given(&[
        org_created(ORG),
        admin_created(ACTOR, Role::AdministratorWithBilling, true),
        admin_created(admin(1), Role::Manager, false),
    ]);
    let enabled = decide::enable_global_mfa(&g.actor(), &g.org, &g.all_admins()).expect("enabled");
    let g = g.then(&enabled);
    let before = g.all_admins();

    let events = decide::disable_global_mfa(&g.actor(), &g.org);

    assert_eq!(events, Ok(vec![global_disabled(ORG)]));
    let after = g.then(&events.expect("disabled"));
    assert!(!after.org.global_mfa);
    assert_eq!(after.all_admins(), before);
    assert_eq!(
        after.admin(admin(1)).requirement_source,
        Some(RequirementSource::Global)
    );
}

#[test]
fn disable_global_mfa_when_already_off_changes_nothing() {
    for history in [vec![], vec![global_enabled(ORG), global_disabled(ORG)]] {
        let g = given(&[
            org_created(ORG),
            admin_created(ACTOR, Role::AdministratorWithBilling, true),
        ])
        .then(&history);

        assert_eq!(decide::disable_global_mfa(&g.actor(), &g.org), Ok(vec![]));
    }
}

#[test]
fn global_mfa_cannot_be_changed_by_a_removed_billing_administrator() {
    let g = given(&[
        org_created(ORG),
        admin_created(ACTOR, Role::AdministratorWithBilling, true),
        global_enabled(ORG),
        admin_removed(ACTOR),
    ]);

    assert_eq!(
        decide::disable_global_mfa(&g.actor(), &g.org),
        Err(DomainError::Forbidden)
    );
    let off = given(&[
        org_created(ORG),
        admin_created(ACTOR, Role::AdministratorWithBilling, true),
        admin_removed(ACTOR),
    ]);
    assert_eq!(
        decide::enable_global_mfa(&off.actor(), &off.org, &off.all_admins()),
        Err(DomainError::Forbidden)
    );
}

// ---------------------------------------------------------------------------------------------
// Home widget and API keys: every role, own things only
// ---------------------------------------------------------------------------------------------

#[test]
fn set_home_widget_is_allowed_to_every_role_including_command_runners() {
    for role in Role::ALL {
        let g = given(&[org_created(ORG), admin_created(ACTOR, role, true)]);

        let hidden = decide::set_home_widget(&g.actor(), false);

        assert_eq!(hidden, Ok(vec![widget_changed(ACTOR, false)]), "{role:?}");
        let g = g.then(&hidden.expect("hidden"));
        assert!(!g.actor().widget_visible);
        assert_eq!(
            decide::set_home_widget(&g.actor(), true),
            Ok(vec![widget_changed(ACTOR, true)]),
            "{role:?}"
        );
    }
}

#[test]
fn set_home_widget_to_what_it_already_is_changes_nothing() {
    let g = given(&[
        org_created(ORG),
        admin_created(ACTOR, Role::CommandRunner, true),
    ]);
    assert!(g.actor().widget_visible, "the widget shows by default");
    assert_eq!(decide::set_home_widget(&g.actor(), true), Ok(vec![]));

    let g = g.then(&[widget_changed(ACTOR, false)]);
    assert_eq!(decide::set_home_widget(&g.actor(), false), Ok(vec![]));
}

#[test]
fn set_home_widget_refuses_a_removed_admin() {
    let g = given(&[
        org_created(ORG),
        admin_created(ACTOR, Role::Administrator, true),
        admin_removed(ACTOR),
    ]);

    assert_eq!(
        decide::set_home_widget(&g.actor(), false),
        Err(DomainError::Forbidden)
    );
}

#[test]
fn create_api_key_is_allowed_to_every_role_for_their_own_account() {
    let key_id = Uuid::from_u128(0xE_0001);
    for role in Role::ALL {
        let g = given(&[org_created(ORG), admin_created(ACTOR, role, true)]);

        let answer = decide::create_api_key(&g.actor(), key_id);

        assert_eq!(
            answer,
            Ok(vec![Event::ApiKeyCreated(ApiKeyChanged {
                admin_id: ACTOR.0,
                key_id
            })]),
            "{role:?}"
        );
    }
}

#[test]
fn revoke_api_key_is_allowed_to_every_role_for_their_own_live_keys() {
    let key_id = Uuid::from_u128(0xE_0001);
    for role in Role::ALL {
        let g = given(&[org_created(ORG), admin_created(ACTOR, role, true)]);

        let answer = decide::revoke_api_key(&g.actor(), key_id, true);

        assert_eq!(
            answer,
            Ok(vec![Event::ApiKeyRevoked(ApiKeyChanged {
                admin_id: ACTOR.0,
                key_id
            })]),
            "{role:?}"
        );
    }
}

#[test]
fn revoke_api_key_refuses_a_key_that_is_not_ones_own_or_not_live() {
    for role in Role::ALL {
        let g = given(&[org_created(ORG), admin_created(ACTOR, role, true)]);

        let answer = decide::revoke_api_key(&g.actor(), Uuid::from_u128(0xE_0002), false);

        assert!(
            matches!(
                answer,
                Err(DomainError::Invalid {
                    field: "key_id",
                    ..
                })
            ),
            "{role:?}: {answer:?}"
        );
    }
}

#[test]
fn api_keys_cannot_be_created_or_revoked_by_a_removed_or_unknown_admin() {
    let removed = given(&[
        org_created(ORG),
        admin_created(ACTOR, Role::AdministratorWithBilling, true),
        admin_removed(ACTOR),
    ]);
    let unknown = given(&[org_created(ORG)]);
    let key_id = Uuid::from_u128(0xE_0001);
    for g in [removed, unknown] {
        assert_eq!(
            decide::create_api_key(&g.actor(), key_id),
            Err(DomainError::Forbidden)
        );
        assert_eq!(
            decide::revoke_api_key(&g.actor(), key_id, true),
            Err(DomainError::Forbidden)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

#[test]
fn evolve_keeps_a_requirement_source_exactly_when_mfa_is_required() {
    let histories = [
        vec![admin_created(TARGET, Role::Manager, true)],
        vec![admin_created(TARGET, Role::Manager, false)],
        vec![
            admin_created(TARGET, Role::Manager, true),
            requirement_removed(TARGET),
            mfa_required(TARGET, RequirementSource::Admin),
            requirement_removed(TARGET),
            mfa_required(TARGET, RequirementSource::Global),
            enrolled(TARGET),
            locked(TARGET),
            reset_requested(TARGET),
            widget_changed(TARGET, false),
            requirement_removed(TARGET),
            admin_removed(TARGET),
        ],
    ];
    for history in histories {
        let mut state = AdminState::absent(TARGET, ORG);
        assert_eq!(state.requirement_source.is_some(), state.required);
        for event in &history {
            state = state.evolve(event, at());
            assert_eq!(
                state.requirement_source.is_some(),
                state.required,
                "after {} the state is {state:?}",
                event.type_name()
            );
        }
    }
}

#[test]
fn evolve_records_where_each_requirement_came_from() {
    let cases = [
        (
            vec![admin_created(TARGET, Role::ReadOnly, true)],
            Some(RequirementSource::Default),
        ),
        (vec![admin_created(TARGET, Role::ReadOnly, false)], None),
        (
            vec![
                admin_created(TARGET, Role::ReadOnly, false),
                mfa_required(TARGET, RequirementSource::Admin),
            ],
            Some(RequirementSource::Admin),
        ),
        (
            vec![
                admin_created(TARGET, Role::ReadOnly, false),
                mfa_required(TARGET, RequirementSource::Global),
            ],
            Some(RequirementSource::Global),
        ),
        (
            vec![
                admin_created(TARGET, Role::ReadOnly, true),
                requirement_removed(TARGET),
            ],
            None,
        ),
    ];
    for (history, source) in cases {
        assert_eq!(
            given(&history).target().requirement_source,
            source,
            "{history:?}"
        );
    }
}

#[test]
fn completing_enrollment_clears_the_mfa_lockout() {
    let g = given(&[
        admin_created(TARGET, Role::Administrator, true),
        enrolled(TARGET),
        locked(TARGET),
    ]);
    assert!(g.target().locked);

    // A reset request alone does not lift the lockout; completing the new enrollment does.
    let g = g.then(&[reset_requested(TARGET)]);
    assert!(g.target().locked);
    let g = g.then(&[enrolled(TARGET)]);

    assert!(!g.target().locked);
    assert!(g.target().enrolled);
}

#[test]
fn required_and_enrolled_are_separate_facts_and_all_four_combinations_occur() {
    for required in [false, true] {
        for is_enrolled in [false, true] {
            let mut history = vec![admin_created(TARGET, Role::HelpDesk, required)];
            if is_enrolled {
                history.push(enrolled(TARGET));
            }

            let target = given(&history).target();

            assert_eq!((target.required, target.enrolled), (required, is_enrolled));
        }
    }
}

#[test]
fn an_admin_without_events_is_absent_inactive_and_not_required() {
    let state = AdminState::absent(TARGET, ORG);

    assert_eq!(state.lifecycle, Lifecycle::Absent);
    assert!(!state.is_active());
    assert!(!state.required);
    assert_eq!(state.requirement_source, None);
    assert_eq!(state.created_at, None);
}

#[test]
fn evolve_of_an_admin_records_their_details_and_creation_time() {
    let target = given(&[admin_created(TARGET, Role::CommandRunner, false)]).target();

    assert_eq!(target.lifecycle, Lifecycle::Active);
    assert_eq!(target.email, format!("{}@example.com", TARGET.0.simple()));
    assert_eq!(
        (target.first_name.as_str(), target.last_name.as_str()),
        ("Ada", "Lovelace")
    );
    assert_eq!(target.role, Role::CommandRunner);
    assert_eq!(target.created_at, Some(at()));
    assert!(target.widget_visible);
}

#[test]
fn evolve_of_an_organisation_follows_the_global_mfa_switch_and_ignores_admin_events() {
    let mut org = OrgState::default();
    assert!(!org.exists());

    org = org.evolve(&org_created(ORG));
    assert_eq!(
        org,
        OrgState {
            id: Some(ORG),
            name: "Acme".to_owned(),
            global_mfa: false
        }
    );
    org = org.evolve(&global_enabled(ORG));
    assert!(org.global_mfa);
    org = org.evolve(&admin_created(ACTOR, Role::ReadOnly, false));
    assert!(org.global_mfa);
    org = org.evolve(&global_disabled(ORG));
    assert_eq!(
        org,
        OrgState {
            id: Some(ORG),
            name: "Acme".to_owned(),
            global_mfa: false
        }
    );
}

// ---------------------------------------------------------------------------------------------
// A whole story, as the seed article tells it
// ---------------------------------------------------------------------------------------------

#[test]
fn the_admins_without_mfa_required_list_empties_through_bulk_and_global_requirements() {
    let without = |g: &Given| -> Vec<AdminId> {
        g.all_admins()
            .into_iter()
            .filter(|a| a.is_active() && !a.required)
            .map(|a| a.id)
            .collect()
    };
    let (plain, help, runner, billing) = (admin(1), admin(2), admin(3), admin(4));
    let owner = new_admin(ACTOR, Role::AdministratorWithBilling, None);
    let org_events = decide::create_org(
        &OrgState::default(),
        ORG,
        OrgName::parse("Acme").expect("valid"),
        &owner,
    )
    .expect("created");
    let mut g = given(&org_events);
    for (id, role) in [
        (plain, Role::Administrator),
        (help, Role::HelpDesk),
        (runner, Role::CommandRunner),
        (billing, Role::AdministratorWithBilling),
    ] {
        let events = decide::create_admin(
            &g.actor(),
            &g.org,
            &g.admin(id),
            &new_admin(id, role, Some(false)),
        )
        .expect("created");
        g = g.then(&events);
    }
    assert_eq!(without(&g), vec![plain, help, runner, billing]);

    // The plain administrator clears what they may from the widget; the billing admin stays.
    let refused = decide::require_mfa_bulk(&g.admin(plain), &without(&g), &g.all_admins());
    assert_eq!(refused, Err(DomainError::ForbiddenTargets(ids(&[billing]))));
    let bulk = decide::require_mfa_bulk(&g.admin(plain), &[help, runner, plain], &g.all_admins())
        .expect("allowed");
    g = g.then(&bulk.events);
    assert_eq!(without(&g), vec![billing]);

    // The owner turns the Global MFA Requirement on: nobody is left without MFA required.
    let events = decide::enable_global_mfa(&g.actor(), &g.org, &g.all_admins()).expect("enabled");
    assert_eq!(
        events,
        vec![
            global_enabled(ORG),
            mfa_required(billing, RequirementSource::Global)
        ]
    );
    g = g.then(&events);
    assert_eq!(without(&g), vec![]);
    assert_eq!(
        decide::set_mfa_requirement(&g.admin(plain), &g.org, &g.admin(help), false),
        Err(DomainError::GlobalMfaEnforced)
    );

    // Turned off again, everyone stays required and the requirement is editable again.
    let events = decide::disable_global_mfa(&g.actor(), &g.org).expect("disabled");
    g = g.then(&events);
    assert_eq!(without(&g), vec![]);
    let events = decide::set_mfa_requirement(&g.admin(plain), &g.org, &g.admin(help), false)
        .expect("allowed");
    g = g.then(&events);
    assert_eq!(without(&g), vec![help]);
}

// ---------------------------------------------------------------------------------------------
// Audit access: recorded for every role that may read the history, refused for the others
// ---------------------------------------------------------------------------------------------

#[test]
fn reading_the_audit_history_is_recorded_for_the_roles_that_may_and_refused_for_command_runners() {
    let query = std::collections::BTreeMap::from([("sort".to_owned(), "desc".to_owned())]);
    for role in Role::ALL {
        let g = given(&[org_created(ORG), admin_created(ACTOR, role, true)]);

        let recorded = decide::record_audit_access(&g.actor(), "events", query.clone());

        if role == Role::CommandRunner {
            assert_eq!(recorded, Err(DomainError::Forbidden), "{role:?}");
        } else {
            assert_eq!(
                recorded,
                Ok(vec![Event::AuditAccessed(
                    gatehouse_events::types::AuditAccessed {
                        admin_id: ACTOR.0,
                        action: "events".to_owned(),
                        query: query.clone(),
                    }
                )]),
                "{role:?}"
            );
        }
    }
    let removed = given(&[
        org_created(ORG),
        admin_created(ACTOR, Role::Administrator, true),
        admin_removed(ACTOR),
    ]);
    assert_eq!(
        decide::record_audit_access(&removed.actor(), "export", query),
        Err(DomainError::Forbidden)
    );
}
