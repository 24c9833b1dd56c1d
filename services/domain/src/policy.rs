//! The role matrix of SPEC §1.

use gatehouse_events::Role;

/// See the widget, the admin list and the audit history.
pub fn can_read_directory(role: Role) -> bool {
    role != Role::CommandRunner
}

/// Require MFA or remove the requirement for `target`; also reset `target`'s MFA.
pub fn can_manage_mfa_of(actor: Role, target: Role) -> bool {
    match actor {
        Role::AdministratorWithBilling => true,
        Role::Administrator => target != Role::AdministratorWithBilling,
        Role::Manager | Role::HelpDesk | Role::ReadOnly | Role::CommandRunner => false,
    }
}

/// Turn the Global MFA Requirement on or off.
pub fn can_change_global_mfa(actor: Role) -> bool {
    actor == Role::AdministratorWithBilling
}

/// Create or remove administrators.
pub fn can_manage_admins(actor: Role) -> bool {
    actor == Role::AdministratorWithBilling
}
