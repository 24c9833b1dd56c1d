//! The audit format (SPEC §5): [`AuditRecord`], shaped like JumpCloud Directory Insights so
//! existing SIEM rules read it, the mapping [`record`] of every event type to one, and the CSV
//! form of a record ([`csv_header`], [`csv_row`]).
//!
//! The mapping is pure: the emails of the initiator and of the resource are looked up by the
//! caller (the audit read model keeps them, also for admins removed since) and passed in.
//!
//! | event | `event_type` | `changes` |
//! |---|---|---|
//! | `org.created` | `organization_update` | `name`: null → name |
//! | `org.global_mfa_enabled` / `_disabled` | `organization_update` | `globalMfaRequired`: false → true / true → false |
//! | `admin.created` | `admin_create` | `email`, `firstname`, `lastname`, `role`, `enableMultiFactor`: null → value |
//! | `admin.removed` | `admin_delete` | — |
//! | `admin.mfa_required` | `admin_update` | `enableMultiFactor`: false → true |
//! | `admin.mfa_requirement_removed` | `admin_update` | `enableMultiFactor`: true → false |
//! | `admin.mfa_reset_requested` | `admin_mfa_reset_request` | — |
//! | `admin.mfa_enrollment_started` | `admin_mfa_enroll` | `mfaEnrollment`: null → `started` |
//! | `admin.mfa_enrollment_completed` | `admin_mfa_enroll` | `mfaEnrollment`: `started` → `completed`; `mfaEnrolled`: (replaced a factor) → true |
//! | `admin.mfa_locked` | `admin_mfa_lockout` | `mfaLocked`: false → true |
//! | `admin.login_succeeded` / `login_failed` | `admin_login_attempt` | — (`success`, `mfa`, `mfa_meta`, `auth_method`, `client_ip`, `useragent`; `reason` when it failed) |
//! | `admin.home_widget_changed` | `admin_home_widget_update` | `<widget>.visible`: !visible → visible |
//! | `admin.api_key_created` / `_revoked` | `admin_api_key_create` / `_revoke` | `apiKey`: null → key id / key id → null |
//! | `admin.audit_accessed` | `admin_audit_access` | — (`audit`: `{action, query}`) |

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::{Actor, Envelope, Event};

/// The `service` of every record.
pub const SERVICE: &str = "directory";

/// Every `event_type` a record can have, for validating filters.
pub const EVENT_TYPES: [&str; 12] = [
    ADMIN_LOGIN_ATTEMPT,
    ADMIN_CREATE,
    ADMIN_DELETE,
    ADMIN_UPDATE,
    ADMIN_MFA_RESET_REQUEST,
    ADMIN_MFA_ENROLL,
    ADMIN_MFA_LOCKOUT,
    ORGANIZATION_UPDATE,
    ADMIN_API_KEY_CREATE,
    ADMIN_API_KEY_REVOKE,
    ADMIN_HOME_WIDGET_UPDATE,
    ADMIN_AUDIT_ACCESS,
];

pub const ADMIN_LOGIN_ATTEMPT: &str = "admin_login_attempt";
pub const ADMIN_CREATE: &str = "admin_create";
pub const ADMIN_DELETE: &str = "admin_delete";
pub const ADMIN_UPDATE: &str = "admin_update";
pub const ADMIN_MFA_RESET_REQUEST: &str = "admin_mfa_reset_request";
pub const ADMIN_MFA_ENROLL: &str = "admin_mfa_enroll";
pub const ADMIN_MFA_LOCKOUT: &str = "admin_mfa_lockout";
pub const ORGANIZATION_UPDATE: &str = "organization_update";
pub const ADMIN_API_KEY_CREATE: &str = "admin_api_key_create";
pub const ADMIN_API_KEY_REVOKE: &str = "admin_api_key_revoke";
pub const ADMIN_HOME_WIDGET_UPDATE: &str = "admin_home_widget_update";
/// Not in SPEC §5's list: an auditor's read of the history (issue 5, item 6).
pub const ADMIN_AUDIT_ACCESS: &str = "admin_audit_access";

/// One entry of the audit history. Fields that do not apply to an event are omitted.
///
/// Invariant: built from one envelope by [`record`]; holds no secret (API keys appear by id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The event's id.
    pub id: Uuid,
    /// One of [`EVENT_TYPES`].
    pub event_type: String,
    /// The envelope's `time`, as written there (RFC 3339 UTC, milliseconds).
    pub timestamp: String,
    /// Always [`SERVICE`].
    pub service: String,
    /// The organisation's id.
    pub organization: Uuid,
    /// The event's global position: the order of the history, and the `search_after` key.
    pub position: i64,
    pub initiated_by: Party,
    pub resource: Party,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    /// Login attempts only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<bool>,
    /// Login attempts only: whether a second factor was part of the attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_meta: Option<MfaMeta>,
    /// `session` or `api-key`: how the initiator authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub useragent: Option<String>,
    /// Failed login attempts only: `invalid_password`, `invalid_code` or `locked`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Audit accesses only: what was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditAccess>,
}

/// Who did it (`initiated_by`) or what it was done to (`resource`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Party {
    /// Absent for the system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    /// `admin`, `system` (initiators only) or `organization` (resources only).
    #[serde(rename = "type")]
    pub kind: String,
    /// An admin's email; absent for the system and organisations, and for an admin the
    /// history never saw created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// One field an event changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub field: String,
    pub from: Value,
    pub to: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MfaMeta {
    /// `totp`, or `none` for a login without a second factor.
    #[serde(rename = "type")]
    pub kind: String,
}

/// What an auditor read: the action (`events`, `export`, `verify`, …) and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditAccess {
    pub action: String,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
}

fn change(field: &str, from: impl Into<Value>, to: impl Into<Value>) -> Change {
    Change {
        field: field.to_owned(),
        from: from.into(),
        to: to.into(),
    }
}

/// The initiator: the envelope's actor. An unreadable `actorid` is shown as the system rather
/// than dropping the record (it cannot happen with events Gatehouse wrote).
pub fn initiator(envelope: &Envelope, emails: &impl Fn(Uuid) -> Option<String>) -> Party {
    match envelope.actor() {
        Some(Actor::Admin(id)) => Party {
            id: Some(id),
            kind: "admin".to_owned(),
            email: emails(id),
        },
        Some(Actor::System) | None => Party {
            id: None,
            kind: "system".to_owned(),
            email: None,
        },
    }
}

/// The admin an event is about, if it is about one (audit accesses are about the
/// organisation's history, so their resource is the organisation).
pub fn resource_admin(event: &Event) -> Option<Uuid> {
    use Event::*;
    match event {
        OrgCreated(_) | GlobalMfaEnabled(_) | GlobalMfaDisabled(_) | AuditAccessed(_) => None,
        AdminCreated(e) => Some(e.admin_id),
        AdminRemoved(e) | MfaRequirementRemoved(e) => Some(e.admin_id),
        MfaRequired(e) => Some(e.admin_id),
        MfaResetRequested(e) => Some(e.admin_id),
        MfaEnrollmentStarted(e) => Some(e.admin_id),
        MfaEnrollmentCompleted(e) => Some(e.admin_id),
        MfaLocked(e) => Some(e.admin_id),
        LoginSucceeded(e) => Some(e.admin_id),
        LoginFailed(e) => Some(e.admin_id),
        HomeWidgetChanged(e) => Some(e.admin_id),
        ApiKeyCreated(e) | ApiKeyRevoked(e) => Some(e.admin_id),
    }
}

/// The record of one event. `emails` answers an admin's email by id (`None` if unknown).
pub fn record(
    envelope: &Envelope,
    event: &Event,
    emails: &impl Fn(Uuid) -> Option<String>,
) -> AuditRecord {
    let resource = match (resource_admin(event), event) {
        (Some(id), Event::AdminCreated(e)) => Party {
            id: Some(id),
            kind: "admin".to_owned(),
            email: Some(e.email.clone()),
        },
        (Some(id), _) => Party {
            id: Some(id),
            kind: "admin".to_owned(),
            email: emails(id),
        },
        (None, _) => Party {
            id: Some(envelope.orgid),
            kind: "organization".to_owned(),
            email: None,
        },
    };
    let mut r = AuditRecord {
        id: envelope.id,
        event_type: String::new(),
        timestamp: envelope.time.clone(),
        service: SERVICE.to_owned(),
        organization: envelope.orgid,
        position: envelope.position,
        initiated_by: initiator(envelope, emails),
        resource,
        changes: Vec::new(),
        success: None,
        mfa: None,
        mfa_meta: None,
        auth_method: envelope.authmethod.clone(),
        client_ip: None,
        useragent: None,
        reason: None,
        audit: None,
    };
    let (event_type, changes) = match event {
        Event::OrgCreated(e) => (
            ORGANIZATION_UPDATE,
            vec![change("name", Value::Null, e.name.as_str())],
        ),
        Event::GlobalMfaEnabled(_) => (
            ORGANIZATION_UPDATE,
            vec![change("globalMfaRequired", false, true)],
        ),
        Event::GlobalMfaDisabled(_) => (
            ORGANIZATION_UPDATE,
            vec![change("globalMfaRequired", true, false)],
        ),
        Event::AdminCreated(e) => (
            ADMIN_CREATE,
            vec![
                change("email", Value::Null, e.email.as_str()),
                change("firstname", Value::Null, e.first_name.as_str()),
                change("lastname", Value::Null, e.last_name.as_str()),
                change("role", Value::Null, e.role.as_str()),
                change("enableMultiFactor", Value::Null, e.mfa_required),
            ],
        ),
        Event::AdminRemoved(_) => (ADMIN_DELETE, vec![]),
        Event::MfaRequired(_) => (ADMIN_UPDATE, vec![change("enableMultiFactor", false, true)]),
        Event::MfaRequirementRemoved(_) => {
            (ADMIN_UPDATE, vec![change("enableMultiFactor", true, false)])
        }
        Event::MfaResetRequested(_) => (ADMIN_MFA_RESET_REQUEST, vec![]),
        Event::MfaEnrollmentStarted(e) => {
            r.mfa_meta = Some(MfaMeta {
                kind: e.method.clone(),
            });
            (
                ADMIN_MFA_ENROLL,
                vec![change("mfaEnrollment", Value::Null, "started")],
            )
        }
        Event::MfaEnrollmentCompleted(e) => {
            r.mfa_meta = Some(MfaMeta {
                kind: e.method.clone(),
            });
            (
                ADMIN_MFA_ENROLL,
                vec![
                    change("mfaEnrollment", "started", "completed"),
                    change("mfaEnrolled", e.replaced_previous, true),
                ],
            )
        }
        Event::MfaLocked(_) => (ADMIN_MFA_LOCKOUT, vec![change("mfaLocked", false, true)]),
        Event::LoginSucceeded(e) => {
            r.success = Some(true);
            r.mfa = Some(e.mfa);
            r.mfa_meta = Some(MfaMeta {
                kind: e.mfa_type.clone(),
            });
            r.auth_method = r.auth_method.or_else(|| Some(e.auth_method.clone()));
            r.client_ip = Some(e.client_ip.clone());
            r.useragent = Some(e.user_agent.clone());
            (ADMIN_LOGIN_ATTEMPT, vec![])
        }
        Event::LoginFailed(e) => {
            // A wrong code, or a code refused because MFA is locked, is an attempt at the
            // second factor; a wrong password never got that far.
            let mfa = e.reason != "invalid_password";
            r.success = Some(false);
            r.mfa = Some(mfa);
            r.mfa_meta = Some(MfaMeta {
                kind: if mfa { "totp" } else { "none" }.to_owned(),
            });
            // Every login goes through the portal's login, which opens a session.
            r.auth_method = r.auth_method.or_else(|| Some("session".to_owned()));
            r.client_ip = Some(e.client_ip.clone());
            r.useragent = Some(e.user_agent.clone());
            r.reason = Some(e.reason.clone());
            (ADMIN_LOGIN_ATTEMPT, vec![])
        }
        Event::HomeWidgetChanged(e) => (
            ADMIN_HOME_WIDGET_UPDATE,
            // Emitted only when the visibility changes, so the old value is its opposite.
            vec![change(
                &format!("{}.visible", e.widget),
                !e.visible,
                e.visible,
            )],
        ),
        Event::ApiKeyCreated(e) => (
            ADMIN_API_KEY_CREATE,
            vec![change("apiKey", Value::Null, e.key_id.to_string())],
        ),
        Event::ApiKeyRevoked(e) => (
            ADMIN_API_KEY_REVOKE,
            vec![change("apiKey", e.key_id.to_string(), Value::Null)],
        ),
        Event::AuditAccessed(e) => {
            r.audit = Some(AuditAccess {
                action: e.action.clone(),
                query: e.query.clone(),
            });
            (ADMIN_AUDIT_ACCESS, vec![])
        }
    };
    r.event_type = event_type.to_owned();
    r.changes = changes;
    r
}

/// The CSV columns, in order. Absent fields are empty cells; `changes` and `audit` hold their
/// JSON (compact, as in the API answer); booleans are `true`/`false`.
pub const CSV_COLUMNS: [&str; 21] = [
    "id",
    "event_type",
    "timestamp",
    "service",
    "organization",
    "position",
    "initiated_by_id",
    "initiated_by_type",
    "initiated_by_email",
    "resource_id",
    "resource_type",
    "resource_email",
    "success",
    "mfa",
    "mfa_type",
    "auth_method",
    "client_ip",
    "useragent",
    "reason",
    "changes",
    "audit",
];

/// The header row, ending with CRLF.
pub fn csv_header() -> String {
    let mut line = String::new();
    push_row(&mut line, CSV_COLUMNS.iter().map(|c| (*c).to_owned()));
    line
}

/// One record as a CSV row (RFC 4180: fields quoted when they hold a comma, a quote, CR or
/// LF, quotes doubled; the row ends with CRLF). Values are written as they are: a cell that
/// starts with `=` is not escaped for spreadsheets, since the export is evidence.
pub fn csv_row(r: &AuditRecord) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let id = |v: &Option<Uuid>| v.map(|id| id.to_string()).unwrap_or_default();
    let flag = |v: Option<bool>| v.map(|b| b.to_string()).unwrap_or_default();
    let changes = if r.changes.is_empty() {
        String::new()
    } else {
        serde_json::to_string(&r.changes).unwrap_or_default()
    };
    let audit = match &r.audit {
        Some(a) => serde_json::to_string(a).unwrap_or_default(),
        None => String::new(),
    };
    let cells = [
        r.id.to_string(),
        r.event_type.clone(),
        r.timestamp.clone(),
        r.service.clone(),
        r.organization.to_string(),
        r.position.to_string(),
        id(&r.initiated_by.id),
        r.initiated_by.kind.clone(),
        opt(&r.initiated_by.email),
        id(&r.resource.id),
        r.resource.kind.clone(),
        opt(&r.resource.email),
        flag(r.success),
        flag(r.mfa),
        r.mfa_meta
            .as_ref()
            .map(|m| m.kind.clone())
            .unwrap_or_default(),
        opt(&r.auth_method),
        opt(&r.client_ip),
        opt(&r.useragent),
        opt(&r.reason),
        changes,
        audit,
    ];
    let mut line = String::new();
    push_row(&mut line, cells);
    line
}

fn push_row(line: &mut String, cells: impl IntoIterator<Item = String>) {
    for (i, cell) in cells.into_iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        if cell.contains([',', '"', '\r', '\n']) {
            line.push('"');
            line.push_str(&cell.replace('"', "\"\""));
            line.push('"');
        } else {
            line.push_str(&cell);
        }
    }
    line.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::EnvelopeParts;
    use crate::types::*;
    use crate::{Actor, Role};
    use chrono::{TimeZone, Utc};
    use serde_json::json;

    const ORG: &str = "0193a000-0000-7000-8000-0000000000a1";
    const OWNER: &str = "0193a000-0000-7000-8000-0000000000b1";
    const ADA: &str = "0193a000-0000-7000-8000-0000000000c1";
    const EVENT: &str = "0193a000-0000-7000-8000-0000000000e1";
    const KEY: &str = "0193a000-0000-7000-8000-0000000000f1";

    fn id(s: &str) -> Uuid {
        Uuid::parse_str(s).expect("a test uuid")
    }

    /// The emails the read model knows: the owner's and Ada's.
    fn emails(admin: Uuid) -> Option<String> {
        if admin == id(OWNER) {
            Some("owner@example.com".to_owned())
        } else if admin == id(ADA) {
            Some("ada@example.com".to_owned())
        } else {
            None
        }
    }

    fn envelope(event: &Event, actor: Actor, auth_method: Option<&'static str>) -> Envelope {
        let parts = EnvelopeParts {
            id: id(EVENT),
            org_id: id(ORG),
            actor,
            correlation_id: Uuid::nil(),
            time: Utc
                .with_ymd_and_hms(2026, 11, 28, 10, 0, 0)
                .single()
                .expect("a valid time"),
            auth_method,
        };
        Envelope::new(&parts, event, 42, 3)
    }

    fn owner() -> Actor {
        Actor::Admin(id(OWNER))
    }

    fn ada() -> Actor {
        Actor::Admin(id(ADA))
    }

    /// The fields every record has, for an event by the owner through an API key about Ada.
    fn by_owner_about_ada(extra: Value) -> Value {
        let mut base = json!({
            "id": EVENT, "timestamp": "2026-11-28T10:00:00.000Z", "service": "directory",
            "organization": ORG, "position": 42,
            "initiated_by": {"id": OWNER, "type": "admin", "email": "owner@example.com"},
            "resource": {"id": ADA, "type": "admin", "email": "ada@example.com"},
            "auth_method": "api-key",
        });
        merge(&mut base, extra);
        base
    }

    /// Ada's own doing (a login, the Set Up MFA link), without a session or key yet.
    fn by_ada_herself(extra: Value) -> Value {
        let mut base = json!({
            "id": EVENT, "timestamp": "2026-11-28T10:00:00.000Z", "service": "directory",
            "organization": ORG, "position": 42,
            "initiated_by": {"id": ADA, "type": "admin", "email": "ada@example.com"},
            "resource": {"id": ADA, "type": "admin", "email": "ada@example.com"},
        });
        merge(&mut base, extra);
        base
    }

    fn merge(base: &mut Value, extra: Value) {
        if let (Value::Object(base), Value::Object(extra)) = (base, extra) {
            base.extend(extra);
        }
    }

    fn admin_ref() -> AdminRef {
        AdminRef { admin_id: id(ADA) }
    }

    #[test]
    fn every_event_type_maps_to_its_audit_record() {
        let expires = Utc
            .with_ymd_and_hms(2026, 11, 28, 11, 0, 0)
            .single()
            .expect("a valid time");
        let cases: Vec<(&str, Envelope, Value)> = vec![
            (
                "org.created, by the command line",
                envelope(
                    &Event::OrgCreated(OrgCreated {
                        org_id: id(ORG),
                        name: "Acme".into(),
                    }),
                    Actor::System,
                    None,
                ),
                json!({
                    "id": EVENT, "event_type": "organization_update",
                    "timestamp": "2026-11-28T10:00:00.000Z", "service": "directory",
                    "organization": ORG, "position": 42,
                    "initiated_by": {"type": "system"},
                    "resource": {"id": ORG, "type": "organization"},
                    "changes": [{"field": "name", "from": null, "to": "Acme"}],
                }),
            ),
            (
                "global MFA on",
                envelope(
                    &Event::GlobalMfaEnabled(OrgRef { org_id: id(ORG) }),
                    owner(),
                    Some("session"),
                ),
                json!({
                    "id": EVENT, "event_type": "organization_update",
                    "timestamp": "2026-11-28T10:00:00.000Z", "service": "directory",
                    "organization": ORG, "position": 42,
                    "initiated_by": {"id": OWNER, "type": "admin", "email": "owner@example.com"},
                    "resource": {"id": ORG, "type": "organization"},
                    "changes": [{"field": "globalMfaRequired", "from": false, "to": true}],
                    "auth_method": "session",
                }),
            ),
            (
                "global MFA off",
                envelope(
                    &Event::GlobalMfaDisabled(OrgRef { org_id: id(ORG) }),
                    owner(),
                    Some("api-key"),
                ),
                json!({
                    "id": EVENT, "event_type": "organization_update",
                    "timestamp": "2026-11-28T10:00:00.000Z", "service": "directory",
                    "organization": ORG, "position": 42,
                    "initiated_by": {"id": OWNER, "type": "admin", "email": "owner@example.com"},
                    "resource": {"id": ORG, "type": "organization"},
                    "changes": [{"field": "globalMfaRequired", "from": true, "to": false}],
                    "auth_method": "api-key",
                }),
            ),
            (
                "admin.created takes the resource's email from the event",
                envelope(
                    &Event::AdminCreated(AdminCreated {
                        admin_id: id(ADA),
                        email: "ada.new@example.com".into(),
                        first_name: "Ada".into(),
                        last_name: "Lovelace".into(),
                        role: Role::HelpDesk,
                        mfa_required: false,
                    }),
                    owner(),
                    Some("api-key"),
                ),
                by_owner_about_ada(json!({
                    "event_type": "admin_create",
                    "resource": {"id": ADA, "type": "admin", "email": "ada.new@example.com"},
                    "changes": [
                        {"field": "email", "from": null, "to": "ada.new@example.com"},
                        {"field": "firstname", "from": null, "to": "Ada"},
                        {"field": "lastname", "from": null, "to": "Lovelace"},
                        {"field": "role", "from": null, "to": "help_desk"},
                        {"field": "enableMultiFactor", "from": null, "to": false},
                    ],
                })),
            ),
            (
                "admin.removed",
                envelope(&Event::AdminRemoved(admin_ref()), owner(), Some("api-key")),
                by_owner_about_ada(json!({"event_type": "admin_delete"})),
            ),
            (
                "mfa_required",
                envelope(
                    &Event::MfaRequired(MfaRequired {
                        admin_id: id(ADA),
                        source: RequirementSource::Admin,
                    }),
                    owner(),
                    Some("api-key"),
                ),
                by_owner_about_ada(json!({
                    "event_type": "admin_update",
                    "changes": [{"field": "enableMultiFactor", "from": false, "to": true}],
                })),
            ),
            (
                "mfa_requirement_removed",
                envelope(
                    &Event::MfaRequirementRemoved(admin_ref()),
                    owner(),
                    Some("api-key"),
                ),
                by_owner_about_ada(json!({
                    "event_type": "admin_update",
                    "changes": [{"field": "enableMultiFactor", "from": true, "to": false}],
                })),
            ),
            (
                "mfa_reset_requested by another admin",
                envelope(
                    &Event::MfaResetRequested(MfaResetRequested {
                        admin_id: id(ADA),
                        requested_by_self: false,
                        expires_at: expires,
                    }),
                    owner(),
                    Some("api-key"),
                ),
                by_owner_about_ada(json!({"event_type": "admin_mfa_reset_request"})),
            ),
            (
                "mfa_enrollment_started from the link",
                envelope(
                    &Event::MfaEnrollmentStarted(MfaEnrollmentStarted {
                        admin_id: id(ADA),
                        method: "totp".into(),
                    }),
                    ada(),
                    None,
                ),
                by_ada_herself(json!({
                    "event_type": "admin_mfa_enroll",
                    "changes": [{"field": "mfaEnrollment", "from": null, "to": "started"}],
                    "mfa_meta": {"type": "totp"},
                })),
            ),
            (
                "mfa_enrollment_completed, replacing a factor",
                envelope(
                    &Event::MfaEnrollmentCompleted(MfaEnrollmentCompleted {
                        admin_id: id(ADA),
                        method: "totp".into(),
                        replaced_previous: true,
                    }),
                    ada(),
                    None,
                ),
                by_ada_herself(json!({
                    "event_type": "admin_mfa_enroll",
                    "changes": [
                        {"field": "mfaEnrollment", "from": "started", "to": "completed"},
                        {"field": "mfaEnrolled", "from": true, "to": true},
                    ],
                    "mfa_meta": {"type": "totp"},
                })),
            ),
            (
                "mfa_locked",
                envelope(
                    &Event::MfaLocked(MfaLocked {
                        admin_id: id(ADA),
                        failed_attempts: 5,
                    }),
                    ada(),
                    None,
                ),
                by_ada_herself(json!({
                    "event_type": "admin_mfa_lockout",
                    "changes": [{"field": "mfaLocked", "from": false, "to": true}],
                })),
            ),
            (
                "login_succeeded with a code",
                envelope(
                    &Event::LoginSucceeded(LoginSucceeded {
                        admin_id: id(ADA),
                        mfa: true,
                        mfa_type: "totp".into(),
                        auth_method: "session".into(),
                        client_ip: "203.0.113.7".into(),
                        user_agent: "Mozilla/5.0 (X11, Linux)".into(),
                    }),
                    ada(),
                    None,
                ),
                by_ada_herself(json!({
                    "event_type": "admin_login_attempt", "success": true, "mfa": true,
                    "mfa_meta": {"type": "totp"}, "auth_method": "session",
                    "client_ip": "203.0.113.7", "useragent": "Mozilla/5.0 (X11, Linux)",
                })),
            ),
            (
                "login_failed on the password",
                envelope(
                    &Event::LoginFailed(LoginFailed {
                        admin_id: id(ADA),
                        reason: "invalid_password".into(),
                        client_ip: "203.0.113.7".into(),
                        user_agent: "curl/8".into(),
                    }),
                    ada(),
                    None,
                ),
                by_ada_herself(json!({
                    "event_type": "admin_login_attempt", "success": false, "mfa": false,
                    "mfa_meta": {"type": "none"}, "auth_method": "session",
                    "client_ip": "203.0.113.7", "useragent": "curl/8", "reason": "invalid_password",
                })),
            ),
            (
                "login_failed on the code",
                envelope(
                    &Event::LoginFailed(LoginFailed {
                        admin_id: id(ADA),
                        reason: "invalid_code".into(),
                        client_ip: "203.0.113.7".into(),
                        user_agent: "curl/8".into(),
                    }),
                    ada(),
                    None,
                ),
                by_ada_herself(json!({
                    "event_type": "admin_login_attempt", "success": false, "mfa": true,
                    "mfa_meta": {"type": "totp"}, "auth_method": "session",
                    "client_ip": "203.0.113.7", "useragent": "curl/8", "reason": "invalid_code",
                })),
            ),
            (
                "login_failed while locked",
                envelope(
                    &Event::LoginFailed(LoginFailed {
                        admin_id: id(ADA),
                        reason: "locked".into(),
                        client_ip: "203.0.113.7".into(),
                        user_agent: "curl/8".into(),
                    }),
                    ada(),
                    None,
                ),
                by_ada_herself(json!({
                    "event_type": "admin_login_attempt", "success": false, "mfa": true,
                    "mfa_meta": {"type": "totp"}, "auth_method": "session",
                    "client_ip": "203.0.113.7", "useragent": "curl/8", "reason": "locked",
                })),
            ),
            (
                "home_widget_changed",
                envelope(
                    &Event::HomeWidgetChanged(HomeWidgetChanged {
                        admin_id: id(ADA),
                        widget: WIDGET_ADMINS_WITHOUT_MFA_REQUIRED.into(),
                        visible: false,
                    }),
                    ada(),
                    Some("session"),
                ),
                by_ada_herself(json!({
                    "event_type": "admin_home_widget_update",
                    "changes": [{"field": "admins_without_mfa_required.visible", "from": true, "to": false}],
                    "auth_method": "session",
                })),
            ),
            (
                "api_key_created",
                envelope(
                    &Event::ApiKeyCreated(ApiKeyChanged {
                        admin_id: id(ADA),
                        key_id: id(KEY),
                    }),
                    ada(),
                    Some("session"),
                ),
                by_ada_herself(json!({
                    "event_type": "admin_api_key_create",
                    "changes": [{"field": "apiKey", "from": null, "to": KEY}],
                    "auth_method": "session",
                })),
            ),
            (
                "api_key_revoked",
                envelope(
                    &Event::ApiKeyRevoked(ApiKeyChanged {
                        admin_id: id(ADA),
                        key_id: id(KEY),
                    }),
                    ada(),
                    Some("api-key"),
                ),
                by_ada_herself(json!({
                    "event_type": "admin_api_key_revoke",
                    "changes": [{"field": "apiKey", "from": KEY, "to": null}],
                    "auth_method": "api-key",
                })),
            ),
            (
                "audit_accessed: the organisation's history was read",
                envelope(
                    &Event::AuditAccessed(AuditAccessed {
                        admin_id: id(ADA),
                        action: "events".into(),
                        query: [("sort".to_owned(), "desc".to_owned())].into(),
                    }),
                    ada(),
                    Some("api-key"),
                ),
                json!({
                    "id": EVENT, "event_type": "admin_audit_access",
                    "timestamp": "2026-11-28T10:00:00.000Z", "service": "directory",
                    "organization": ORG, "position": 42,
                    "initiated_by": {"id": ADA, "type": "admin", "email": "ada@example.com"},
                    "resource": {"id": ORG, "type": "organization"},
                    "auth_method": "api-key",
                    "audit": {"action": "events", "query": {"sort": "desc"}},
                }),
            ),
        ];
        let mut covered = std::collections::BTreeSet::new();
        for (name, envelope, expected) in cases {
            let event = envelope.event().expect("a readable event");
            covered.insert(envelope.event_type.clone());
            let got = record(&envelope, &event, &emails);
            assert_eq!(
                serde_json::to_value(&got).expect("json"),
                expected,
                "{name}"
            );
            let back: AuditRecord = serde_json::from_value(expected).expect("reads back");
            assert_eq!(back, got, "{name} round-trips");
            assert!(EVENT_TYPES.contains(&got.event_type.as_str()), "{name}");
        }
        assert_eq!(
            covered.len(),
            17,
            "one case at least per event type: {covered:?}"
        );
    }

    #[test]
    fn an_admin_the_history_never_saw_created_has_no_email() {
        let stranger = Uuid::now_v7();
        let event = Event::AdminRemoved(AdminRef { admin_id: stranger });
        let got = record(
            &envelope(&event, Actor::Admin(stranger), None),
            &event,
            &emails,
        );
        assert_eq!(got.initiated_by.email, None);
        assert_eq!(got.resource.email, None);
        assert_eq!(got.resource.id, Some(stranger));
    }

    #[test]
    fn csv_rows_quote_what_needs_quoting_and_keep_the_columns() {
        let event = Event::LoginFailed(LoginFailed {
            admin_id: id(ADA),
            reason: "invalid_password".into(),
            client_ip: "203.0.113.7".into(),
            user_agent: "Evil \"agent\", with\r\nnewline".into(),
        });
        let r = record(&envelope(&event, ada(), None), &event, &emails);
        assert_eq!(
            csv_row(&r),
            format!(
                "{EVENT},admin_login_attempt,2026-11-28T10:00:00.000Z,directory,{ORG},42,\
                 {ADA},admin,ada@example.com,{ADA},admin,ada@example.com,false,false,none,session,\
                 203.0.113.7,\"Evil \"\"agent\"\", with\r\nnewline\",invalid_password,,\r\n"
            )
        );
        assert_eq!(
            csv_header(),
            "id,event_type,timestamp,service,organization,position,initiated_by_id,\
             initiated_by_type,initiated_by_email,resource_id,resource_type,resource_email,\
             success,mfa,mfa_type,auth_method,client_ip,useragent,reason,changes,audit\r\n"
        );

        let event = Event::MfaRequired(MfaRequired {
            admin_id: id(ADA),
            source: RequirementSource::Global,
        });
        let r = record(&envelope(&event, Actor::System, None), &event, &emails);
        assert_eq!(
            csv_row(&r),
            format!(
                "{EVENT},admin_update,2026-11-28T10:00:00.000Z,directory,{ORG},42,,system,,\
                 {ADA},admin,ada@example.com,,,,,,,,\
                 \"[{{\"\"field\"\":\"\"enableMultiFactor\"\",\"\"from\"\":false,\"\"to\"\":true}}]\",\r\n"
            )
        );
    }
}
