//! The peer's administrator: a cqrs-es aggregate with the rule of Gatehouse's
//! `decide::set_mfa_requirement`, written the way cqrs-es asks (all rules in `handle`, none in
//! `apply`).
//!
//! What it mirrors: the caller's role must allow managing MFA at all, the target must exist in
//! the caller's organisation, the caller's role must allow the target's role (the same
//! `gatehouse_domain::policy` and the same `DomainError`s), and asking for the value the admin
//! already has succeeds with no event, exactly as Gatehouse's decider answers it. The events
//! carry Gatehouse's own payloads (`MfaRequired` with its source, `AdminRef`).
//!
//! What it does not: cqrs-es handles a command on one aggregate, so the caller's organisation
//! and role come with the command (as an authenticated principal would give them) instead of
//! being folded from the caller's own stream, and there is no organisation aggregate, so the
//! Global MFA Requirement (which forbids removing a requirement) is not checked. Gatehouse reads
//! the caller's, the target's and the organisation's streams for the same command.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use gatehouse_domain::{DomainError, RequirementSource, Role, policy};
use gatehouse_events::types::{AdminRef, MfaRequired};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who sends a command: the authenticated caller's organisation and role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub org_id: Uuid,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AdminCommand {
    /// Creates the administrator (how the benchmark seeds the peer's admins).
    Create {
        admin_id: Uuid,
        org_id: Uuid,
        role: Role,
        mfa_required: bool,
    },
    /// Requires MFA for the administrator or removes the requirement.
    SetMfaRequirement { caller: Caller, required: bool },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AdminEvent {
    AdminCreated {
        admin_id: Uuid,
        org_id: Uuid,
        role: Role,
        mfa_required: bool,
    },
    MfaRequired(MfaRequired),
    MfaRequirementRemoved(AdminRef),
}

impl DomainEvent for AdminEvent {
    fn event_type(&self) -> String {
        match self {
            AdminEvent::AdminCreated { .. } => "admin_created",
            AdminEvent::MfaRequired(_) => "mfa_required",
            AdminEvent::MfaRequirementRemoved(_) => "mfa_requirement_removed",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

/// The administrator's state, folded from its events (and stored as postgres-es's snapshots).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Admin {
    /// Set once created: the admin's id, organisation and role.
    created: Option<(Uuid, Uuid, Role)>,
    required: bool,
}

impl Aggregate for Admin {
    const TYPE: &'static str = "admin";
    type Command = AdminCommand;
    type Event = AdminEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: AdminCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        let event = match command {
            AdminCommand::Create {
                admin_id,
                org_id,
                role,
                mfa_required,
            } => {
                if self.created.is_some() {
                    return Err(DomainError::AdminExists);
                }
                AdminEvent::AdminCreated {
                    admin_id,
                    org_id,
                    role,
                    mfa_required,
                }
            }
            AdminCommand::SetMfaRequirement { caller, required } => {
                match self.set_mfa_requirement(caller, required)? {
                    Some(event) => event,
                    None => return Ok(()),
                }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: AdminEvent) {
        match event {
            AdminEvent::AdminCreated {
                admin_id,
                org_id,
                role,
                mfa_required,
            } => {
                self.created = Some((admin_id, org_id, role));
                self.required = mfa_required;
            }
            AdminEvent::MfaRequired(_) => self.required = true,
            AdminEvent::MfaRequirementRemoved(_) => self.required = false,
        }
    }
}

impl Admin {
    /// The event that sets the requirement to `required`, none if it already is.
    fn set_mfa_requirement(
        &self,
        caller: Caller,
        required: bool,
    ) -> Result<Option<AdminEvent>, DomainError> {
        if !policy::can_manage_mfa_of(caller.role, Role::ReadOnly) {
            return Err(DomainError::Forbidden);
        }
        let (admin_id, role) = match self.created {
            Some((id, org, role)) if org == caller.org_id => (id, role),
            _ => return Err(DomainError::AdminNotFound),
        };
        if !policy::can_manage_mfa_of(caller.role, role) {
            return Err(DomainError::ForbiddenTargets(vec![admin_id]));
        }
        Ok(match (required, self.required) {
            (true, true) | (false, false) => None,
            (true, false) => Some(AdminEvent::MfaRequired(MfaRequired {
                admin_id,
                source: RequirementSource::Admin,
            })),
            (false, true) => Some(AdminEvent::MfaRequirementRemoved(AdminRef { admin_id })),
        })
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    const ADMIN: Uuid = Uuid::from_u128(1);
    const ORG: Uuid = Uuid::from_u128(2);
    const OWNER: Caller = Caller {
        org_id: ORG,
        role: Role::AdministratorWithBilling,
    };

    fn created(role: Role, mfa_required: bool) -> AdminEvent {
        AdminEvent::AdminCreated {
            admin_id: ADMIN,
            org_id: ORG,
            role,
            mfa_required,
        }
    }

    fn set(caller: Caller, required: bool) -> AdminCommand {
        AdminCommand::SetMfaRequirement { caller, required }
    }

    #[test]
    fn requiring_mfa_of_an_admin_without_it_records_mfa_required_by_an_admin() {
        TestFramework::<Admin>::with(())
            .given(vec![created(Role::Manager, false)])
            .when(set(OWNER, true))
            .then_expect_events(vec![AdminEvent::MfaRequired(MfaRequired {
                admin_id: ADMIN,
                source: RequirementSource::Admin,
            })]);
    }

    #[test]
    fn removing_a_requirement_records_its_removal() {
        TestFramework::<Admin>::with(())
            .given(vec![created(Role::Manager, true)])
            .when(set(OWNER, false))
            .then_expect_events(vec![AdminEvent::MfaRequirementRemoved(AdminRef {
                admin_id: ADMIN,
            })]);
    }

    #[test]
    fn asking_for_the_requirement_an_admin_already_has_records_nothing() {
        TestFramework::<Admin>::with(())
            .given(vec![created(Role::Manager, true)])
            .when(set(OWNER, true))
            .then_expect_events(vec![]);
        TestFramework::<Admin>::with(())
            .given(vec![created(Role::Manager, false)])
            .when(set(OWNER, false))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_manager_may_not_change_anyone_s_requirement() {
        let manager = Caller {
            org_id: ORG,
            role: Role::Manager,
        };
        TestFramework::<Admin>::with(())
            .given(vec![created(Role::ReadOnly, false)])
            .when(set(manager, true))
            .then_expect_error(DomainError::Forbidden);
    }

    #[test]
    fn an_administrator_may_not_change_a_billing_administrator_s_requirement() {
        let administrator = Caller {
            org_id: ORG,
            role: Role::Administrator,
        };
        TestFramework::<Admin>::with(())
            .given(vec![created(Role::AdministratorWithBilling, true)])
            .when(set(administrator, false))
            .then_expect_error(DomainError::ForbiddenTargets(vec![ADMIN]));
    }

    #[test]
    fn an_admin_of_another_organisation_or_none_is_not_found() {
        let stranger = Caller {
            org_id: Uuid::from_u128(3),
            role: Role::AdministratorWithBilling,
        };
        TestFramework::<Admin>::with(())
            .given(vec![created(Role::Manager, false)])
            .when(set(stranger, true))
            .then_expect_error(DomainError::AdminNotFound);
        TestFramework::<Admin>::with(())
            .given_no_previous_events()
            .when(set(OWNER, true))
            .then_expect_error(DomainError::AdminNotFound);
    }
}
