//! One decider per command: the states it needs and the command in, events or a violated rule
//! out. An empty list of events means the command changes nothing (it is idempotent).

use gatehouse_events::types::{
    AdminCreated, AdminRef, ApiKeyChanged, AuditAccessed, HomeWidgetChanged, MfaRequired,
    OrgCreated, OrgRef, WIDGET_ADMINS_WITHOUT_MFA_REQUIRED,
};
use gatehouse_events::{Event, RequirementSource, Role};
use uuid::Uuid;

use crate::policy;
use crate::{AdminId, AdminState, DomainError, Email, OrgId, OrgName, OrgState, PersonName};

/// A new administrator's details, validated.
#[derive(Debug, Clone)]
pub struct NewAdmin {
    pub id: AdminId,
    pub email: Email,
    pub first_name: PersonName,
    pub last_name: PersonName,
    pub role: Role,
    /// `Some(false)` asks for an admin without MFA required; refused while the Global MFA
    /// Requirement is on.
    pub mfa_required: Option<bool>,
}

fn created(admin: &NewAdmin, mfa_required: bool) -> Event {
    Event::AdminCreated(AdminCreated {
        admin_id: admin.id.0,
        email: admin.email.as_str().to_owned(),
        first_name: admin.first_name.as_str().to_owned(),
        last_name: admin.last_name.as_str().to_owned(),
        role: admin.role,
        mfa_required,
    })
}

fn active_actor(actor: &AdminState) -> Result<(), DomainError> {
    if actor.is_active() {
        Ok(())
    } else {
        Err(DomainError::Forbidden)
    }
}

/// The organisation the actor belongs to. An organisation state of another tenant reads as
/// absent, so a wrongly loaded state can never be changed on the actor's behalf.
fn own_org(actor: &AdminState, org: &OrgState) -> Result<OrgId, DomainError> {
    match org.id {
        Some(id) if id == actor.org_id => Ok(id),
        _ => Err(DomainError::OrgNotFound),
    }
}

fn active_target(actor: &AdminState, target: &AdminState) -> Result<(), DomainError> {
    if target.is_active() && target.org_id == actor.org_id {
        Ok(())
    } else {
        Err(DomainError::AdminNotFound)
    }
}

/// Creates an organisation and its owner, an `administrator_with_billing` with MFA required.
pub fn create_org(
    org: &OrgState,
    id: OrgId,
    name: OrgName,
    owner: &NewAdmin,
) -> Result<Vec<Event>, DomainError> {
    if org.exists() {
        return Err(DomainError::OrgExists);
    }
    if owner.role != Role::AdministratorWithBilling {
        return Err(DomainError::invalid(
            "role",
            "of an organisation's owner must be administrator_with_billing",
        ));
    }
    Ok(vec![
        Event::OrgCreated(OrgCreated {
            org_id: id.0,
            name: name.as_str().to_owned(),
        }),
        created(owner, true),
    ])
}

/// Creates an administrator in the actor's organisation.
pub fn create_admin(
    actor: &AdminState,
    org: &OrgState,
    existing: &AdminState,
    admin: &NewAdmin,
) -> Result<Vec<Event>, DomainError> {
    active_actor(actor)?;
    if !policy::can_manage_admins(actor.role) {
        return Err(DomainError::Forbidden);
    }
    own_org(actor, org)?;
    if existing.lifecycle != crate::state::Lifecycle::Absent {
        return Err(DomainError::AdminExists);
    }
    let required = match admin.mfa_required {
        Some(false) if org.global_mfa => return Err(DomainError::GlobalMfaEnforced),
        Some(false) => false,
        Some(true) | None => true,
    };
    Ok(vec![created(admin, required)])
}

/// Removes an administrator. Nobody removes themself.
///
/// The role is checked before the target is looked up: a role that may remove nobody gets the
/// same answer for every id, so it cannot probe which admins exist.
pub fn remove_admin(actor: &AdminState, target: &AdminState) -> Result<Vec<Event>, DomainError> {
    active_actor(actor)?;
    if !policy::can_manage_admins(actor.role) {
        return Err(DomainError::Forbidden);
    }
    active_target(actor, target)?;
    if actor.id == target.id {
        return Err(DomainError::SelfAction);
    }
    Ok(vec![Event::AdminRemoved(AdminRef {
        admin_id: target.id.0,
    })])
}

/// Requires MFA for one admin, or removes the requirement.
///
/// A role that may manage nobody's MFA is refused before the target is looked up (the same answer
/// for every id); a role that may manage some admins learns that this one is out of its reach.
pub fn set_mfa_requirement(
    actor: &AdminState,
    org: &OrgState,
    target: &AdminState,
    required: bool,
) -> Result<Vec<Event>, DomainError> {
    active_actor(actor)?;
    if !policy::can_manage_mfa_of(actor.role, Role::ReadOnly) {
        return Err(DomainError::Forbidden);
    }
    active_target(actor, target)?;
    if !policy::can_manage_mfa_of(actor.role, target.role) {
        return Err(DomainError::ForbiddenTargets(vec![target.id.0]));
    }
    match (required, target.required) {
        (true, true) | (false, false) => Ok(vec![]),
        (true, false) => Ok(vec![Event::MfaRequired(MfaRequired {
            admin_id: target.id.0,
            source: RequirementSource::Admin,
        })]),
        (false, true) if org.global_mfa => Err(DomainError::GlobalMfaEnforced),
        (false, true) => Ok(vec![Event::MfaRequirementRemoved(AdminRef {
            admin_id: target.id.0,
        })]),
    }
}

/// The result of a bulk Require MFA.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkRequireMfa {
    pub events: Vec<Event>,
    /// Admins whose MFA became required, in the order asked.
    pub required: Vec<AdminId>,
    /// Admins whose MFA was required already.
    pub already_required: Vec<AdminId>,
}

/// Requires MFA for many admins, all or nothing. `targets` holds the state of every requested id
/// (absent ones included); duplicates in `requested` count once.
pub fn require_mfa_bulk(
    actor: &AdminState,
    requested: &[AdminId],
    targets: &[AdminState],
) -> Result<BulkRequireMfa, DomainError> {
    active_actor(actor)?;
    if !policy::can_manage_mfa_of(actor.role, Role::ReadOnly) {
        return Err(DomainError::Forbidden);
    }
    if requested.is_empty() {
        return Err(DomainError::invalid(
            "admin_ids",
            "must name at least one administrator",
        ));
    }
    let mut seen = std::collections::HashSet::with_capacity(requested.len());
    let wanted: Vec<AdminId> = requested
        .iter()
        .copied()
        .filter(|id| seen.insert(*id))
        .collect();
    let by_id: std::collections::HashMap<AdminId, &AdminState> =
        targets.iter().map(|t| (t.id, t)).collect();
    let unknown: Vec<Uuid> = wanted
        .iter()
        .filter(|id| {
            by_id
                .get(id)
                .is_none_or(|t| active_target(actor, t).is_err())
        })
        .map(|id| id.0)
        .collect();
    if !unknown.is_empty() {
        return Err(DomainError::UnknownAdmins(unknown));
    }
    // Every id is known and active here.
    let forbidden: Vec<Uuid> = wanted
        .iter()
        .filter(|id| !policy::can_manage_mfa_of(actor.role, by_id[*id].role))
        .map(|id| id.0)
        .collect();
    if !forbidden.is_empty() {
        return Err(DomainError::ForbiddenTargets(forbidden));
    }
    let (already, todo): (Vec<AdminId>, Vec<AdminId>) =
        wanted.into_iter().partition(|id| by_id[id].required);
    Ok(BulkRequireMfa {
        events: todo
            .iter()
            .map(|id| {
                Event::MfaRequired(MfaRequired {
                    admin_id: id.0,
                    source: RequirementSource::Admin,
                })
            })
            .collect(),
        required: todo,
        already_required: already,
    })
}

/// Turns the Global MFA Requirement on: every admin not yet required becomes required (source
/// `global`). `admins` is every admin of the organisation.
pub fn enable_global_mfa(
    actor: &AdminState,
    org: &OrgState,
    admins: &[AdminState],
) -> Result<Vec<Event>, DomainError> {
    active_actor(actor)?;
    if !policy::can_change_global_mfa(actor.role) {
        return Err(DomainError::Forbidden);
    }
    let org_id = own_org(actor, org)?;
    if org.global_mfa {
        return Ok(vec![]);
    }
    let mut events = vec![Event::GlobalMfaEnabled(OrgRef { org_id: org_id.0 })];
    // The organisation check keeps the tenant boundary even if a caller passes a foreign admin.
    let unrequired = admins
        .iter()
        .filter(|a| a.org_id == org_id && a.is_active() && !a.required);
    events.extend(unrequired.map(|a| {
        Event::MfaRequired(MfaRequired {
            admin_id: a.id.0,
            source: RequirementSource::Global,
        })
    }));
    Ok(events)
}

/// Turns the Global MFA Requirement off. No admin changes.
pub fn disable_global_mfa(actor: &AdminState, org: &OrgState) -> Result<Vec<Event>, DomainError> {
    active_actor(actor)?;
    if !policy::can_change_global_mfa(actor.role) {
        return Err(DomainError::Forbidden);
    }
    let org_id = own_org(actor, org)?;
    if !org.global_mfa {
        return Ok(vec![]);
    }
    Ok(vec![Event::GlobalMfaDisabled(OrgRef { org_id: org_id.0 })])
}

/// Shows or hides the Admins Without MFA Required widget on the actor's own Home page.
pub fn set_home_widget(actor: &AdminState, visible: bool) -> Result<Vec<Event>, DomainError> {
    active_actor(actor)?;
    if actor.widget_visible == visible {
        return Ok(vec![]);
    }
    Ok(vec![Event::HomeWidgetChanged(HomeWidgetChanged {
        admin_id: actor.id.0,
        widget: WIDGET_ADMINS_WITHOUT_MFA_REQUIRED.to_owned(),
        visible,
    })])
}

/// Records that the actor read the audit history (`action`, shaped by `query`). Refused for a
/// role that may not see the history.
pub fn record_audit_access(
    actor: &AdminState,
    action: &str,
    query: std::collections::BTreeMap<String, String>,
) -> Result<Vec<Event>, DomainError> {
    active_actor(actor)?;
    if !policy::can_read_directory(actor.role) {
        return Err(DomainError::Forbidden);
    }
    Ok(vec![Event::AuditAccessed(AuditAccessed {
        admin_id: actor.id.0,
        action: action.to_owned(),
        query,
    })])
}

/// Records a new API key of the actor's own.
pub fn create_api_key(actor: &AdminState, key_id: Uuid) -> Result<Vec<Event>, DomainError> {
    active_actor(actor)?;
    Ok(vec![Event::ApiKeyCreated(ApiKeyChanged {
        admin_id: actor.id.0,
        key_id,
    })])
}

/// Records the revocation of one of the actor's own API keys; `owned_and_live` says whether the
/// key exists, is the actor's and is not revoked yet.
pub fn revoke_api_key(
    actor: &AdminState,
    key_id: Uuid,
    owned_and_live: bool,
) -> Result<Vec<Event>, DomainError> {
    active_actor(actor)?;
    if !owned_and_live {
        return Err(DomainError::invalid(
            "key_id",
            "is not one of your API keys",
        ));
    }
    Ok(vec![Event::ApiKeyRevoked(ApiKeyChanged {
        admin_id: actor.id.0,
        key_id,
    })])
}
