//! The login deciders as given / when / then: the admin's past events are folded into a state
//! with the same `AdminState::evolve` the service uses (each at its own time where time matters),
//! a decider runs with the verdict on the password or code, and the test asserts the exact events
//! it produced, its outcome, or the exact rule it broke (SPEC §1: Login, TOTP, Reset / enrollment
//! by email, and the "reset another admin's MFA" row of the role matrix).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use gatehouse_events::types::Aggregate;
use gatehouse_events::types::{
    AdminCreated, AdminRef, LoginFailed, LoginSucceeded, MfaEnrollmentCompleted,
    MfaEnrollmentStarted, MfaLocked, MfaRequired, MfaResetRequested,
};
use uuid::Uuid;

use crate::login::{self, Client, CodeOutcome, PasswordOutcome};
use crate::{AdminId, AdminState, DomainError, Event, OrgId, RequirementSource, Role};

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

const ORG: OrgId = OrgId(Uuid::from_u128(0x0_0001));
const OTHER_ORG: OrgId = OrgId(Uuid::from_u128(0x0_0002));
/// The admin who asks for someone else's reset.
const ACTOR: AdminId = AdminId(Uuid::from_u128(0xA_0001));
/// The admin who logs in, enrolls, or whose reset is asked for.
const TARGET: AdminId = AdminId(Uuid::from_u128(0xB_0001));

/// The instant the stories start at: the deciders never read a clock.
fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0)
        .single()
        .expect("a valid, unambiguous UTC time")
}

fn minutes(n: i64) -> Duration {
    Duration::minutes(n)
}

fn client() -> Client {
    Client {
        ip: "203.0.113.7".to_owned(),
        user_agent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0".to_owned(),
    }
}

// Past events.

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

fn mfa_required(id: AdminId) -> Event {
    Event::MfaRequired(MfaRequired {
        admin_id: id.0,
        source: RequirementSource::Admin,
    })
}

fn requirement_removed(id: AdminId) -> Event {
    Event::MfaRequirementRemoved(AdminRef { admin_id: id.0 })
}

// Events the deciders produce (also folded as past events).

fn login_succeeded(id: AdminId, mfa: bool) -> Event {
    Event::LoginSucceeded(LoginSucceeded {
        admin_id: id.0,
        mfa,
        mfa_type: if mfa { "totp" } else { "none" }.to_owned(),
        auth_method: "session".to_owned(),
        client_ip: "203.0.113.7".to_owned(),
        user_agent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0".to_owned(),
    })
}

fn login_failed(id: AdminId, reason: &str) -> Event {
    Event::LoginFailed(LoginFailed {
        admin_id: id.0,
        reason: reason.to_owned(),
        client_ip: "203.0.113.7".to_owned(),
        user_agent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0".to_owned(),
    })
}

fn mfa_locked(id: AdminId, failed_attempts: u32) -> Event {
    Event::MfaLocked(MfaLocked {
        admin_id: id.0,
        failed_attempts,
    })
}

fn reset_requested(id: AdminId, requested_by_self: bool, now: DateTime<Utc>) -> Event {
    Event::MfaResetRequested(MfaResetRequested {
        admin_id: id.0,
        requested_by_self,
        expires_at: now + Duration::hours(1),
    })
}

fn enrollment_started(id: AdminId) -> Event {
    Event::MfaEnrollmentStarted(MfaEnrollmentStarted {
        admin_id: id.0,
        method: "totp".to_owned(),
    })
}

fn enrollment_completed(id: AdminId, replaced_previous: bool) -> Event {
    Event::MfaEnrollmentCompleted(MfaEnrollmentCompleted {
        admin_id: id.0,
        method: "totp".to_owned(),
        replaced_previous,
    })
}

/// What the admins' streams of one organisation fold into.
struct Given {
    org_id: OrgId,
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

    /// Folds more events, appended at [`at`].
    fn then(self, events: &[Event]) -> Given {
        self.then_at(at(), events)
    }

    /// Runs an enrollment decider on the target, which must accept, and folds what it produced.
    fn then_target_does(
        self,
        decider: fn(&AdminState) -> Result<Vec<Event>, DomainError>,
    ) -> Given {
        let events = decider(&self.target()).expect("an active admin");
        self.then(&events)
    }

    /// Folds more events, appended at `time`.
    fn then_at(mut self, time: DateTime<Utc>, events: &[Event]) -> Given {
        for event in events {
            match event.aggregate() {
                Aggregate::Admin(id) => {
                    let id = AdminId(id);
                    let state = self.admin(id).evolve(event, time);
                    self.admins.insert(id, state);
                }
                Aggregate::Org(_) => panic!("the login deciders never see {event:?}"),
            }
        }
        self
    }
}

/// Folds admin events of organisation `org_id`, appended at [`at`].
fn given_in(org_id: OrgId, events: &[Event]) -> Given {
    Given {
        org_id,
        admins: BTreeMap::new(),
    }
    .then(events)
}

fn given(events: &[Event]) -> Given {
    given_in(ORG, events)
}

/// An enrolled target of `role` (MFA required) and nothing else yet.
fn enrolled_target() -> Given {
    given(&[
        admin_created(TARGET, Role::Administrator, true),
        enrollment_completed(TARGET, false),
    ])
}

/// The target enters a code with this verdict; what was produced is appended.
fn enter_code(g: Given, accepted: bool) -> (Given, Vec<Event>, CodeOutcome) {
    let (events, outcome) =
        login::code_checked(&g.target(), accepted, &client()).expect("an enrolled, active admin");
    (g.then(&events), events, outcome)
}

/// Wrong codes in a row; each must be refused without locking.
fn wrong_codes_without_lock(mut g: Given, n: usize) -> Given {
    for i in 1..=n {
        let (next, events, outcome) = enter_code(g, false);
        assert_eq!(
            events,
            vec![login_failed(TARGET, "invalid_code")],
            "wrong code {i}"
        );
        assert_eq!(
            outcome,
            CodeOutcome::Refused { locked_now: false },
            "wrong code {i}"
        );
        g = next;
    }
    g
}

/// The target asks for a Set Up MFA email at `now` (self-service); what was produced is appended
/// at `now`.
fn self_reset(g: Given, now: DateTime<Utc>) -> Result<Given, DomainError> {
    let events = login::request_mfa_reset(None, &g.target(), now)?;
    assert_eq!(events, vec![reset_requested(TARGET, true, now)]);
    Ok(g.then_at(now, &events))
}

/// The "reset another admin's MFA" row of the role matrix.
fn may_reset(actor: Role, target: Role) -> bool {
    match actor {
        Role::AdministratorWithBilling => true,
        Role::Administrator => target != Role::AdministratorWithBilling,
        Role::Manager | Role::HelpDesk | Role::ReadOnly | Role::CommandRunner => false,
    }
}

// ---------------------------------------------------------------------------------------------
// password_accepted / password_refused
// ---------------------------------------------------------------------------------------------

#[test]
fn a_right_password_logs_in_an_admin_without_mfa_required_or_enrolled() {
    let g = given(&[admin_created(TARGET, Role::HelpDesk, false)]);

    let answer = login::password_accepted(&g.target(), &client());

    assert_eq!(
        answer,
        Ok((
            vec![Event::LoginSucceeded(LoginSucceeded {
                admin_id: TARGET.0,
                mfa: false,
                mfa_type: "none".to_owned(),
                auth_method: "session".to_owned(),
                client_ip: "203.0.113.7".to_owned(),
                user_agent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0".to_owned(),
            })],
            PasswordOutcome::Authenticated
        ))
    );
}

#[test]
fn a_right_password_copies_the_clients_address_and_user_agent_into_the_login() {
    let g = given(&[admin_created(TARGET, Role::ReadOnly, false)]);
    let other = Client {
        ip: "2001:db8::42".to_owned(),
        user_agent: "curl/8.11.0".to_owned(),
    };

    let (events, _) = login::password_accepted(&g.target(), &other).expect("logged in");

    assert_eq!(
        events,
        vec![Event::LoginSucceeded(LoginSucceeded {
            admin_id: TARGET.0,
            mfa: false,
            mfa_type: "none".to_owned(),
            auth_method: "session".to_owned(),
            client_ip: "2001:db8::42".to_owned(),
            user_agent: "curl/8.11.0".to_owned(),
        })]
    );
}

#[test]
fn a_right_password_leaves_a_required_admin_who_is_not_enrolled_pending_without_events() {
    let histories = [
        vec![admin_created(TARGET, Role::Manager, true)],
        vec![
            admin_created(TARGET, Role::Manager, false),
            mfa_required(TARGET),
        ],
    ];
    for history in histories {
        let g = given(&history);

        let answer = login::password_accepted(&g.target(), &client());

        assert_eq!(
            answer,
            Ok((vec![], PasswordOutcome::MfaPending { enrolled: false })),
            "{history:?}"
        );
    }
}

#[test]
fn a_right_password_leaves_an_enrolled_admin_pending_even_when_mfa_is_not_required() {
    let g = given(&[
        admin_created(TARGET, Role::Manager, true),
        enrollment_completed(TARGET, false),
        requirement_removed(TARGET),
    ]);
    assert!(!g.target().required);

    let answer = login::password_accepted(&g.target(), &client());

    assert_eq!(
        answer,
        Ok((vec![], PasswordOutcome::MfaPending { enrolled: true }))
    );
}

#[test]
fn a_right_password_leaves_a_required_and_enrolled_admin_pending() {
    let g = enrolled_target();

    let answer = login::password_accepted(&g.target(), &client());

    assert_eq!(
        answer,
        Ok((vec![], PasswordOutcome::MfaPending { enrolled: true }))
    );
}

#[test]
fn a_right_password_leaves_a_locked_admin_pending_too() {
    let g = enrolled_target().then(&[mfa_locked(TARGET, 5)]);

    let answer = login::password_accepted(&g.target(), &client());

    assert_eq!(
        answer,
        Ok((vec![], PasswordOutcome::MfaPending { enrolled: true }))
    );
}

#[test]
fn the_password_step_does_not_find_a_removed_or_unknown_admin() {
    let removed = given(&[
        admin_created(TARGET, Role::ReadOnly, false),
        admin_removed(TARGET),
    ]);
    let unknown = given(&[]);
    for g in [removed, unknown] {
        let target = g.target();

        assert_eq!(
            login::password_accepted(&target, &client()),
            Err(DomainError::AdminNotFound),
            "{target:?}"
        );
        assert_eq!(
            login::password_refused(&target, &client()),
            Err(DomainError::AdminNotFound),
            "{target:?}"
        );
    }
}

#[test]
fn a_wrong_password_is_recorded_as_an_invalid_password_failure() {
    for (required, enrolled) in [(false, false), (true, false), (true, true)] {
        let mut history = vec![admin_created(TARGET, Role::Administrator, required)];
        if enrolled {
            history.push(enrollment_completed(TARGET, false));
        }
        let g = given(&history);

        let answer = login::password_refused(&g.target(), &client());

        assert_eq!(
            answer,
            Ok(vec![Event::LoginFailed(LoginFailed {
                admin_id: TARGET.0,
                reason: "invalid_password".to_owned(),
                client_ip: "203.0.113.7".to_owned(),
                user_agent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0".to_owned(),
            })]),
            "required {required}, enrolled {enrolled}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// code_checked
// ---------------------------------------------------------------------------------------------

#[test]
fn a_code_cannot_be_checked_for_an_admin_who_is_not_enrolled() {
    for required in [false, true] {
        let g = given(&[admin_created(TARGET, Role::Administrator, required)]);

        for accepted in [false, true] {
            assert_eq!(
                login::code_checked(&g.target(), accepted, &client()),
                Err(DomainError::MfaNotEnrolled),
                "required {required}, accepted {accepted}"
            );
        }
    }
}

#[test]
fn a_code_is_not_checked_for_a_removed_or_unknown_admin() {
    let removed = enrolled_target().then(&[admin_removed(TARGET)]);
    let unknown = given(&[]);
    for g in [removed, unknown] {
        assert_eq!(
            login::code_checked(&g.target(), true, &client()),
            Err(DomainError::AdminNotFound)
        );
    }
}

#[test]
fn a_right_code_logs_in_with_totp_mfa() {
    let g = enrolled_target();

    let answer = login::code_checked(&g.target(), true, &client());

    assert_eq!(
        answer,
        Ok((
            vec![Event::LoginSucceeded(LoginSucceeded {
                admin_id: TARGET.0,
                mfa: true,
                mfa_type: "totp".to_owned(),
                auth_method: "session".to_owned(),
                client_ip: "203.0.113.7".to_owned(),
                user_agent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0".to_owned(),
            })],
            CodeOutcome::Accepted
        ))
    );
}

#[test]
fn a_right_code_logs_in_an_enrolled_admin_whose_requirement_was_removed() {
    let g = enrolled_target().then(&[requirement_removed(TARGET)]);

    let answer = login::code_checked(&g.target(), true, &client());

    assert_eq!(
        answer,
        Ok((vec![login_succeeded(TARGET, true)], CodeOutcome::Accepted))
    );
}

#[test]
fn a_wrong_code_is_recorded_as_an_invalid_code_failure() {
    let g = enrolled_target();

    let answer = login::code_checked(&g.target(), false, &client());

    assert_eq!(
        answer,
        Ok((
            vec![Event::LoginFailed(LoginFailed {
                admin_id: TARGET.0,
                reason: "invalid_code".to_owned(),
                client_ip: "203.0.113.7".to_owned(),
                user_agent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0".to_owned(),
            })],
            CodeOutcome::Refused { locked_now: false }
        ))
    );
}

#[test]
fn the_fifth_wrong_code_in_a_row_locks_mfa() {
    let g = wrong_codes_without_lock(enrolled_target(), 4);
    assert_eq!(g.target().failed_codes, 4);
    assert!(!g.target().locked);

    let (g, events, outcome) = enter_code(g, false);

    assert_eq!(
        events,
        vec![
            login_failed(TARGET, "invalid_code"),
            Event::MfaLocked(MfaLocked {
                admin_id: TARGET.0,
                failed_attempts: 5,
            }),
        ]
    );
    assert_eq!(outcome, CodeOutcome::Refused { locked_now: true });
    assert!(g.target().locked);
}

#[test]
fn a_locked_admin_is_refused_even_with_the_right_code_and_the_attempt_is_recorded() {
    let (g, _, _) = enter_code(wrong_codes_without_lock(enrolled_target(), 4), false);
    assert!(g.target().locked);

    for accepted in [true, false, true] {
        let answer = login::code_checked(&g.target(), accepted, &client());

        assert_eq!(
            answer,
            Ok((
                vec![Event::LoginFailed(LoginFailed {
                    admin_id: TARGET.0,
                    reason: "locked".to_owned(),
                    client_ip: "203.0.113.7".to_owned(),
                    user_agent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0".to_owned(),
                })],
                CodeOutcome::Locked
            )),
            "accepted {accepted}"
        );
    }
}

#[test]
fn a_locked_admin_stays_locked_and_is_not_locked_again_however_many_attempts_follow() {
    let (mut g, _, _) = enter_code(wrong_codes_without_lock(enrolled_target(), 4), false);

    for accepted in [false, false, true, false, false, false] {
        let (next, events, outcome) = enter_code(g, accepted);

        assert_eq!(events, vec![login_failed(TARGET, "locked")]);
        assert_eq!(outcome, CodeOutcome::Locked);
        assert!(next.target().locked);
        g = next;
    }
}

#[test]
fn a_right_code_resets_the_count_of_wrong_ones() {
    let g = wrong_codes_without_lock(enrolled_target(), 4);

    let (g, events, outcome) = enter_code(g, true);
    assert_eq!(events, vec![login_succeeded(TARGET, true)]);
    assert_eq!(outcome, CodeOutcome::Accepted);
    assert_eq!(g.target().failed_codes, 0);

    // Four more wrong codes: eight wrong in all, but never five in a row.
    let g = wrong_codes_without_lock(g, 4);
    assert!(!g.target().locked);

    // A fifth in a row does lock.
    let (g, events, outcome) = enter_code(g, false);
    assert_eq!(
        events,
        vec![login_failed(TARGET, "invalid_code"), mfa_locked(TARGET, 5)]
    );
    assert_eq!(outcome, CodeOutcome::Refused { locked_now: true });
    assert!(g.target().locked);
}

#[test]
fn wrong_passwords_do_not_count_towards_the_mfa_lockout() {
    let mut g = wrong_codes_without_lock(enrolled_target(), 4);
    for _ in 0..10 {
        let events = login::password_refused(&g.target(), &client()).expect("refused");
        g = g.then(&events);
    }
    assert!(!g.target().locked);

    // The code count is still at four: the next wrong code is the fifth.
    let (g, events, outcome) = enter_code(g, false);
    assert_eq!(
        events,
        vec![login_failed(TARGET, "invalid_code"), mfa_locked(TARGET, 5)]
    );
    assert_eq!(outcome, CodeOutcome::Refused { locked_now: true });
    assert!(g.target().locked);
}

#[test]
fn a_right_password_does_not_reset_the_count_of_wrong_codes() {
    let mut g = wrong_codes_without_lock(enrolled_target(), 4);
    let (events, outcome) = login::password_accepted(&g.target(), &client()).expect("pending");
    assert_eq!(outcome, PasswordOutcome::MfaPending { enrolled: true });
    g = g.then(&events);

    let (_, _, outcome) = enter_code(g, false);

    assert_eq!(outcome, CodeOutcome::Refused { locked_now: true });
}

#[test]
fn a_reset_request_alone_does_not_lift_the_lockout() {
    let (g, _, _) = enter_code(wrong_codes_without_lock(enrolled_target(), 4), false);
    let g = self_reset(g, at()).expect("accepted");

    let (_, events, outcome) = enter_code(g, true);

    assert_eq!(events, vec![login_failed(TARGET, "locked")]);
    assert_eq!(outcome, CodeOutcome::Locked);
}

#[test]
fn completing_a_new_enrollment_after_a_lockout_clears_the_lock_and_the_count() {
    let (g, _, _) = enter_code(wrong_codes_without_lock(enrolled_target(), 4), false);
    assert!(g.target().locked);

    let started = login::start_enrollment(&g.target()).expect("started");
    let g = g.then(&started);
    let completed = login::complete_enrollment(&g.target()).expect("completed");
    assert_eq!(completed, vec![enrollment_completed(TARGET, true)]);
    let g = g.then(&completed);

    assert!(!g.target().locked);
    assert_eq!(g.target().failed_codes, 0);
    // Four wrong codes after the new enrollment do not lock: the old count is gone.
    let g = wrong_codes_without_lock(g, 4);
    // A right code now logs in.
    let (_, events, outcome) = enter_code(g, true);
    assert_eq!(events, vec![login_succeeded(TARGET, true)]);
    assert_eq!(outcome, CodeOutcome::Accepted);
}

#[test]
fn after_a_new_enrollment_five_more_wrong_codes_lock_again() {
    let (g, _, _) = enter_code(wrong_codes_without_lock(enrolled_target(), 4), false);
    let completed = login::complete_enrollment(&g.target()).expect("completed");
    let g = wrong_codes_without_lock(g.then(&completed), 4);

    let (g, events, outcome) = enter_code(g, false);

    assert_eq!(
        events,
        vec![login_failed(TARGET, "invalid_code"), mfa_locked(TARGET, 5)]
    );
    assert_eq!(outcome, CodeOutcome::Refused { locked_now: true });
    assert!(g.target().locked);
}

// ---------------------------------------------------------------------------------------------
// request_mfa_reset
// ---------------------------------------------------------------------------------------------

#[test]
fn an_admin_may_ask_for_their_own_set_up_mfa_email_with_a_link_valid_for_an_hour() {
    let now = at() + minutes(7);
    for (required, enrolled) in [(false, false), (true, false), (true, true)] {
        let mut history = vec![admin_created(TARGET, Role::CommandRunner, required)];
        if enrolled {
            history.push(enrollment_completed(TARGET, false));
        }
        let g = given(&history);

        let answer = login::request_mfa_reset(None, &g.target(), now);

        assert_eq!(
            answer,
            Ok(vec![Event::MfaResetRequested(MfaResetRequested {
                admin_id: TARGET.0,
                requested_by_self: true,
                expires_at: Utc
                    .with_ymd_and_hms(2026, 11, 28, 11, 7, 0)
                    .single()
                    .expect("a valid time"),
            })]),
            "required {required}, enrolled {enrolled}"
        );
    }
}

#[test]
fn a_locked_admin_may_ask_for_their_own_set_up_mfa_email() {
    let g = enrolled_target().then(&[mfa_locked(TARGET, 5)]);

    let answer = login::request_mfa_reset(None, &g.target(), at());

    assert_eq!(answer, Ok(vec![reset_requested(TARGET, true, at())]));
}

#[test]
fn a_self_service_request_does_not_find_a_removed_or_unknown_admin() {
    let removed = given(&[
        admin_created(TARGET, Role::ReadOnly, true),
        admin_removed(TARGET),
    ]);
    let unknown = given(&[]);
    for g in [removed, unknown] {
        assert_eq!(
            login::request_mfa_reset(None, &g.target(), at()),
            Err(DomainError::AdminNotFound)
        );
    }
}

#[test]
fn another_admin_may_ask_for_a_set_up_mfa_email_for_someone_as_the_role_matrix_allows() {
    for actor_role in Role::ALL {
        for target_role in Role::ALL {
            let g = given(&[
                admin_created(ACTOR, actor_role, true),
                admin_created(TARGET, target_role, true),
            ]);

            let answer = login::request_mfa_reset(Some(&g.actor()), &g.target(), at());

            let expected = if may_reset(actor_role, target_role) {
                Ok(vec![Event::MfaResetRequested(MfaResetRequested {
                    admin_id: TARGET.0,
                    requested_by_self: false,
                    expires_at: at() + Duration::hours(1),
                })])
            } else {
                Err(DomainError::Forbidden)
            };
            assert_eq!(answer, expected, "{actor_role:?} resets {target_role:?}");
        }
    }
}

#[test]
fn nobody_resets_their_own_mfa_through_the_admin_route() {
    for role in [Role::AdministratorWithBilling, Role::Administrator] {
        let g = given(&[admin_created(ACTOR, role, true)]);

        let answer = login::request_mfa_reset(Some(&g.actor()), &g.actor(), at());

        assert_eq!(answer, Err(DomainError::SelfAction), "{role:?}");
    }
}

#[test]
fn roles_without_the_right_are_refused_their_own_reset_through_the_admin_route_as_forbidden() {
    for role in [
        Role::Manager,
        Role::HelpDesk,
        Role::ReadOnly,
        Role::CommandRunner,
    ] {
        let g = given(&[admin_created(ACTOR, role, true)]);

        let answer = login::request_mfa_reset(Some(&g.actor()), &g.actor(), at());

        assert_eq!(answer, Err(DomainError::Forbidden), "{role:?}");
    }
}

#[test]
fn another_admins_request_does_not_find_a_removed_unknown_or_foreign_target() {
    let removed = given(&[
        admin_created(ACTOR, Role::AdministratorWithBilling, true),
        admin_created(TARGET, Role::ReadOnly, true),
        admin_removed(TARGET),
    ])
    .target();
    let unknown = given(&[admin_created(ACTOR, Role::AdministratorWithBilling, true)]).target();
    let foreign = given_in(OTHER_ORG, &[admin_created(TARGET, Role::ReadOnly, true)]).target();
    assert_eq!(foreign.org_id, OTHER_ORG);
    for actor_role in [Role::AdministratorWithBilling, Role::Administrator] {
        let actor = given(&[admin_created(ACTOR, actor_role, true)]).actor();
        for target in [&removed, &unknown, &foreign] {
            assert_eq!(
                login::request_mfa_reset(Some(&actor), target, at()),
                Err(DomainError::AdminNotFound),
                "{actor_role:?} on {target:?}"
            );
        }
    }
}

#[test]
fn a_foreign_billing_administrator_is_not_found_rather_than_forbidden_to_a_plain_administrator() {
    let actor = given(&[admin_created(ACTOR, Role::Administrator, true)]).actor();
    let foreign = given_in(
        OTHER_ORG,
        &[admin_created(TARGET, Role::AdministratorWithBilling, true)],
    )
    .target();

    assert_eq!(
        login::request_mfa_reset(Some(&actor), &foreign, at()),
        Err(DomainError::AdminNotFound)
    );
}

#[test]
fn roles_without_the_right_are_forbidden_whether_or_not_the_target_exists() {
    let unknown = given(&[]).target();
    let foreign = given_in(OTHER_ORG, &[admin_created(TARGET, Role::ReadOnly, true)]).target();
    for actor_role in [
        Role::Manager,
        Role::HelpDesk,
        Role::ReadOnly,
        Role::CommandRunner,
    ] {
        let actor = given(&[admin_created(ACTOR, actor_role, true)]).actor();
        for target in [&unknown, &foreign] {
            assert_eq!(
                login::request_mfa_reset(Some(&actor), target, at()),
                Err(DomainError::Forbidden),
                "{actor_role:?}"
            );
        }
    }
}

#[test]
fn a_removed_or_unknown_actor_may_not_ask_for_anyones_reset() {
    let removed = given(&[
        admin_created(ACTOR, Role::AdministratorWithBilling, true),
        admin_removed(ACTOR),
        admin_created(TARGET, Role::ReadOnly, true),
    ]);
    let unknown = given(&[admin_created(TARGET, Role::ReadOnly, true)]);
    for g in [removed, unknown] {
        assert_eq!(
            login::request_mfa_reset(Some(&g.actor()), &g.target(), at()),
            Err(DomainError::Forbidden)
        );
    }
}

#[test]
fn a_fourth_request_within_the_hour_is_refused_until_the_oldest_is_an_hour_old() {
    let g = given(&[admin_created(TARGET, Role::Manager, true)]);
    let g = self_reset(g, at()).expect("first");
    let g = self_reset(g, at() + minutes(10)).expect("second");
    let g = self_reset(g, at() + minutes(20)).expect("third");

    let cases = [
        (at() + minutes(20), 2400),
        (at() + minutes(30), 1800),
        (at() + minutes(59), 60),
        (at() + minutes(60) - Duration::seconds(1), 1),
    ];
    for (now, retry_after_secs) in cases {
        assert_eq!(
            login::request_mfa_reset(None, &g.target(), now),
            Err(DomainError::TooManyRequests { retry_after_secs }),
            "at {now}"
        );
    }
}

#[test]
fn the_rate_limit_counts_requests_by_the_admin_and_by_other_admins_together() {
    let g = given(&[
        admin_created(ACTOR, Role::AdministratorWithBilling, true),
        admin_created(TARGET, Role::Manager, true),
    ]);
    let by_actor = |g: Given, now: DateTime<Utc>| -> Given {
        let events =
            login::request_mfa_reset(Some(&g.actor()), &g.target(), now).expect("accepted");
        assert_eq!(events, vec![reset_requested(TARGET, false, now)]);
        g.then_at(now, &events)
    };
    let g = by_actor(g, at());
    let g = self_reset(g, at() + minutes(5)).expect("second");
    let g = by_actor(g, at() + minutes(15));
    let now = at() + minutes(45);

    assert_eq!(
        login::request_mfa_reset(None, &g.target(), now),
        Err(DomainError::TooManyRequests {
            retry_after_secs: 15 * 60
        })
    );
    assert_eq!(
        login::request_mfa_reset(Some(&g.actor()), &g.target(), now),
        Err(DomainError::TooManyRequests {
            retry_after_secs: 15 * 60
        })
    );
}

#[test]
fn the_rate_limit_is_per_admin() {
    let other = AdminId(Uuid::from_u128(0xC_0001));
    let g = given(&[
        admin_created(TARGET, Role::Manager, true),
        admin_created(other, Role::Manager, true),
    ]);
    let g = self_reset(g, at()).expect("first");
    let g = self_reset(g, at() + minutes(1)).expect("second");
    let g = self_reset(g, at() + minutes(2)).expect("third");

    let now = at() + minutes(3);

    assert_eq!(
        login::request_mfa_reset(None, &g.admin(other), now),
        Ok(vec![Event::MfaResetRequested(MfaResetRequested {
            admin_id: other.0,
            requested_by_self: true,
            expires_at: now + Duration::hours(1),
        })])
    );
}

#[test]
fn a_request_is_accepted_again_once_the_oldest_of_the_three_is_an_hour_old() {
    let g = given(&[admin_created(TARGET, Role::Manager, true)]);
    let g = self_reset(g, at()).expect("first");
    let g = self_reset(g, at() + minutes(10)).expect("second");
    let g = self_reset(g, at() + minutes(20)).expect("third");
    let refused = login::request_mfa_reset(None, &g.target(), at() + minutes(30));
    assert_eq!(
        refused,
        Err(DomainError::TooManyRequests {
            retry_after_secs: 1800
        })
    );

    // Retrying after exactly the advertised wait succeeds.
    let g = self_reset(g, at() + minutes(60)).expect("the first one is an hour old");

    // The window slides: the second, the third and the fourth are within the hour again.
    assert_eq!(
        login::request_mfa_reset(None, &g.target(), at() + minutes(61)),
        Err(DomainError::TooManyRequests {
            retry_after_secs: 9 * 60
        })
    );
    self_reset(g, at() + minutes(70)).expect("the second one is an hour old");
}

#[test]
fn a_request_more_than_an_hour_after_the_first_three_is_accepted() {
    let g = given(&[admin_created(TARGET, Role::Manager, true)]);
    let g = self_reset(g, at()).expect("first");
    let g = self_reset(g, at() + minutes(1)).expect("second");
    let g = self_reset(g, at() + minutes(2)).expect("third");
    assert!(login::request_mfa_reset(None, &g.target(), at() + minutes(3)).is_err());

    let later = at() + minutes(2) + Duration::hours(1) + Duration::seconds(1);
    let g = self_reset(g, later).expect("none of the three is within the hour");

    // And the next three of the new hour are counted afresh.
    let g = self_reset(g, later + minutes(1)).expect("fifth");
    let g = self_reset(g, later + minutes(2)).expect("sixth");
    assert_eq!(
        login::request_mfa_reset(None, &g.target(), later + minutes(3)),
        Err(DomainError::TooManyRequests {
            retry_after_secs: 57 * 60
        })
    );
}

#[test]
fn refused_requests_do_not_count_towards_the_rate_limit() {
    let g = given(&[admin_created(TARGET, Role::Manager, true)]);
    let g = self_reset(g, at()).expect("first");
    let g = self_reset(g, at() + minutes(10)).expect("second");
    let g = self_reset(g, at() + minutes(20)).expect("third");
    for m in 21..60 {
        assert!(login::request_mfa_reset(None, &g.target(), at() + minutes(m)).is_err());
    }

    // Nothing was appended by the refusals: the oldest is still the one at `at()`.
    self_reset(g, at() + minutes(60)).expect("accepted");
}

/// The store keeps event times to the millisecond and the service's clock is finer still, so
/// the wait is rarely a whole number of seconds. A client that waits `retry_after_secs` and asks
/// again must not be refused again: the wait has to be rounded up, not truncated.
#[test]
fn retrying_after_the_advertised_wait_is_accepted_even_with_sub_second_times() {
    let first = at() + Duration::milliseconds(500);
    let g = given(&[admin_created(TARGET, Role::Manager, true)]);
    let g = self_reset(g, first).expect("first");
    let g = self_reset(g, at() + minutes(10)).expect("second");
    let g = self_reset(g, at() + minutes(20)).expect("third");
    let now = at() + minutes(30);

    let Err(DomainError::TooManyRequests { retry_after_secs }) =
        login::request_mfa_reset(None, &g.target(), now)
    else {
        panic!("the fourth request within the hour must be refused");
    };
    let retry_at = now + Duration::seconds(i64::try_from(retry_after_secs).expect("small"));

    assert!(
        retry_at >= first + Duration::hours(1),
        "retry_after_secs {retry_after_secs} points to {retry_at}, before the oldest request is \
         an hour old"
    );
    assert_eq!(
        login::request_mfa_reset(None, &g.target(), retry_at),
        Ok(vec![reset_requested(TARGET, true, retry_at)])
    );
}

// ---------------------------------------------------------------------------------------------
// start_enrollment / complete_enrollment
// ---------------------------------------------------------------------------------------------

#[test]
fn starting_an_enrollment_records_the_totp_method() {
    for (required, enrolled) in [(false, false), (true, false), (true, true)] {
        let mut history = vec![admin_created(TARGET, Role::HelpDesk, required)];
        if enrolled {
            history.push(enrollment_completed(TARGET, false));
        }
        let g = given(&history);

        let answer = login::start_enrollment(&g.target());

        assert_eq!(
            answer,
            Ok(vec![Event::MfaEnrollmentStarted(MfaEnrollmentStarted {
                admin_id: TARGET.0,
                method: "totp".to_owned(),
            })]),
            "required {required}, enrolled {enrolled}"
        );
    }
}

#[test]
fn a_first_enrollment_replaces_nothing_and_makes_the_admin_enrolled() {
    let g = given(&[admin_created(TARGET, Role::HelpDesk, true)]);
    let g = g.then_target_does(login::start_enrollment);
    assert!(!g.target().enrolled);

    let answer = login::complete_enrollment(&g.target());

    assert_eq!(
        answer,
        Ok(vec![Event::MfaEnrollmentCompleted(
            MfaEnrollmentCompleted {
                admin_id: TARGET.0,
                method: "totp".to_owned(),
                replaced_previous: false,
            }
        )])
    );
    let g = g.then(&answer.expect("completed"));
    assert!(g.target().enrolled);
    assert_eq!(
        login::password_accepted(&g.target(), &client()),
        Ok((vec![], PasswordOutcome::MfaPending { enrolled: true }))
    );
}

#[test]
fn a_new_enrollment_of_an_enrolled_admin_replaces_the_previous_factor() {
    let g = enrolled_target().then(&[enrollment_started(TARGET)]);

    let answer = login::complete_enrollment(&g.target());

    assert_eq!(answer, Ok(vec![enrollment_completed(TARGET, true)]));
    let g = g.then(&answer.expect("completed"));
    assert_eq!(
        login::complete_enrollment(&g.target()),
        Ok(vec![enrollment_completed(TARGET, true)])
    );
}

#[test]
fn an_admin_without_mfa_required_may_still_enroll_and_then_must_pass_mfa() {
    let g = given(&[admin_created(TARGET, Role::ReadOnly, false)]);
    assert_eq!(
        login::password_accepted(&g.target(), &client()),
        Ok((
            vec![login_succeeded(TARGET, false)],
            PasswordOutcome::Authenticated
        ))
    );

    let g = g.then_target_does(login::start_enrollment);
    let g = g.then_target_does(login::complete_enrollment);

    assert_eq!(
        login::password_accepted(&g.target(), &client()),
        Ok((vec![], PasswordOutcome::MfaPending { enrolled: true }))
    );
}

#[test]
fn enrollment_refuses_a_removed_or_unknown_admin() {
    let removed_enrolled = enrolled_target().then(&[admin_removed(TARGET)]);
    let removed = given(&[
        admin_created(TARGET, Role::HelpDesk, true),
        admin_removed(TARGET),
    ]);
    let unknown = given(&[]);
    for g in [removed_enrolled, removed, unknown] {
        let target = g.target();

        assert_eq!(
            login::start_enrollment(&target),
            Err(DomainError::AdminNotFound),
            "{target:?}"
        );
        assert_eq!(
            login::complete_enrollment(&target),
            Err(DomainError::AdminNotFound),
            "{target:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// A whole story
// ---------------------------------------------------------------------------------------------

#[test]
fn a_locked_out_admin_gets_back_in_through_a_reset_asked_by_another_admin() {
    let g = given(&[
        admin_created(ACTOR, Role::Administrator, true),
        admin_created(TARGET, Role::HelpDesk, true),
    ]);

    // Required but not enrolled: the password alone does not let them in.
    let (events, outcome) = login::password_accepted(&g.target(), &client()).expect("pending");
    assert_eq!(
        (events, outcome),
        (vec![], PasswordOutcome::MfaPending { enrolled: false })
    );
    let g = self_reset(g, at()).expect("asked for the Set Up MFA email");
    let g = g.then_target_does(login::start_enrollment);
    let g = g.then_target_does(login::complete_enrollment);

    // Five wrong codes lock them out.
    let (g, _, outcome) = enter_code(wrong_codes_without_lock(g, 4), false);
    assert_eq!(outcome, CodeOutcome::Refused { locked_now: true });

    // Their administrator asks for a reset; the new enrollment replaces the old factor.
    let now = at() + minutes(5);
    let events = login::request_mfa_reset(Some(&g.actor()), &g.target(), now).expect("allowed");
    assert_eq!(events, vec![reset_requested(TARGET, false, now)]);
    let g = g.then_at(now, &events);
    let g = g.then_target_does(login::start_enrollment);
    let completed = login::complete_enrollment(&g.target()).expect("completed");
    assert_eq!(completed, vec![enrollment_completed(TARGET, true)]);
    let g = g.then(&completed);

    let (_, events, outcome) = enter_code(g, true);
    assert_eq!(events, vec![login_succeeded(TARGET, true)]);
    assert_eq!(outcome, CodeOutcome::Accepted);
}
