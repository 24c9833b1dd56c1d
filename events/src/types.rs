//! Event types and their `data` (SPEC §4). A type name carries its version (`….v1`); a new
//! version of a type gets a new name and an upcaster in [`Event::decode`], so old events stay
//! readable wherever they are stored.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::de::value::MapDeserializer;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Administrator roles, with JumpCloud's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    AdministratorWithBilling,
    Administrator,
    Manager,
    HelpDesk,
    ReadOnly,
    CommandRunner,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::AdministratorWithBilling,
        Role::Administrator,
        Role::Manager,
        Role::HelpDesk,
        Role::ReadOnly,
        Role::CommandRunner,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Role::AdministratorWithBilling => "administrator_with_billing",
            Role::Administrator => "administrator",
            Role::Manager => "manager",
            Role::HelpDesk => "help_desk",
            Role::ReadOnly => "read_only",
            Role::CommandRunner => "command_runner",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Why an administrator's MFA is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequirementSource {
    /// Set when the admin was created.
    Default,
    /// Set by an administrator, for one admin or in bulk.
    Admin,
    /// Set when the Global MFA Requirement was turned on.
    Global,
}

impl RequirementSource {
    pub fn as_str(&self) -> &'static str {
        match self {
            RequirementSource::Default => "default",
            RequirementSource::Admin => "admin",
            RequirementSource::Global => "global",
        }
    }

    pub fn parse(s: &str) -> Option<RequirementSource> {
        [Self::Default, Self::Admin, Self::Global]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrgCreated {
    /// The organisation.
    pub org_id: Uuid,
    /// The organisation's name.
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrgRef {
    /// The organisation.
    pub org_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AdminRef {
    /// The administrator the event is about.
    pub admin_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AdminCreated {
    /// The administrator the event is about.
    pub admin_id: Uuid,
    /// The administrator's email address (lower case).
    pub email: String,
    /// The administrator's first name.
    pub first_name: String,
    /// The administrator's last name.
    pub last_name: String,
    /// The administrator's role.
    pub role: Role,
    /// Whether MFA was required from creation.
    pub mfa_required: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MfaRequired {
    /// The administrator the event is about.
    pub admin_id: Uuid,
    /// Why MFA is now required.
    pub source: RequirementSource,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MfaResetRequested {
    /// The administrator the event is about.
    pub admin_id: Uuid,
    /// The administrator asked for the reset themselves, rather than another administrator.
    pub requested_by_self: bool,
    /// When the Set Up MFA link sent for this reset expires.
    #[serde(with = "millis")]
    #[schemars(with = "crate::schema::Time")]
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MfaEnrollmentStarted {
    /// The administrator the event is about.
    pub admin_id: Uuid,
    /// The second factor: `totp`.
    pub method: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MfaEnrollmentCompleted {
    /// The administrator the event is about.
    pub admin_id: Uuid,
    /// The second factor: `totp`.
    pub method: String,
    /// A factor enrolled before was replaced.
    pub replaced_previous: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MfaLocked {
    /// The administrator the event is about.
    pub admin_id: Uuid,
    /// Consecutive wrong codes that caused the lockout.
    pub failed_attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LoginSucceeded {
    /// The administrator the event is about.
    pub admin_id: Uuid,
    /// A second factor was part of the login.
    pub mfa: bool,
    /// `totp`, or `none` when no second factor was asked.
    pub mfa_type: String,
    /// What the login opens: `session` (a portal session).
    pub auth_method: String,
    /// The address the request came from.
    pub client_ip: String,
    /// The client's User-Agent.
    pub user_agent: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LoginFailed {
    /// The administrator the event is about.
    pub admin_id: Uuid,
    /// `invalid_password`, `invalid_code` or `locked`.
    pub reason: String,
    /// The address the request came from.
    pub client_ip: String,
    /// The client's User-Agent.
    pub user_agent: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HomeWidgetChanged {
    /// The administrator the event is about.
    pub admin_id: Uuid,
    /// The Home widget: `admins_without_mfa_required`.
    pub widget: String,
    /// Whether the administrator now shows it.
    pub visible: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApiKeyChanged {
    /// The administrator the event is about.
    pub admin_id: Uuid,
    /// The API key's id (never the key).
    pub key_id: Uuid,
}

/// An administrator read the audit history (SPEC §5): an auditor's access is history too.
/// `action` names the read (`events`, `export`, `verify`, `admins_without_mfa_required`,
/// `mfa_coverage`); `query` holds the parameters that shaped the answer, as given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuditAccessed {
    /// The administrator the event is about.
    pub admin_id: Uuid,
    pub action: String,
    #[serde(default)]
    pub query: std::collections::BTreeMap<String, String>,
}

/// The name of the one home widget there is.
pub const WIDGET_ADMINS_WITHOUT_MFA_REQUIRED: &str = "admins_without_mfa_required";

/// Every event Gatehouse writes, at the current version of its type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    #[serde(rename = "gatehouse.org.created.v1")]
    OrgCreated(OrgCreated),
    #[serde(rename = "gatehouse.org.global_mfa_enabled.v1")]
    GlobalMfaEnabled(OrgRef),
    #[serde(rename = "gatehouse.org.global_mfa_disabled.v1")]
    GlobalMfaDisabled(OrgRef),
    #[serde(rename = "gatehouse.admin.created.v1")]
    AdminCreated(AdminCreated),
    #[serde(rename = "gatehouse.admin.removed.v1")]
    AdminRemoved(AdminRef),
    #[serde(rename = "gatehouse.admin.mfa_required.v1")]
    MfaRequired(MfaRequired),
    #[serde(rename = "gatehouse.admin.mfa_requirement_removed.v1")]
    MfaRequirementRemoved(AdminRef),
    #[serde(rename = "gatehouse.admin.mfa_reset_requested.v1")]
    MfaResetRequested(MfaResetRequested),
    #[serde(rename = "gatehouse.admin.mfa_enrollment_started.v1")]
    MfaEnrollmentStarted(MfaEnrollmentStarted),
    #[serde(rename = "gatehouse.admin.mfa_enrollment_completed.v1")]
    MfaEnrollmentCompleted(MfaEnrollmentCompleted),
    #[serde(rename = "gatehouse.admin.mfa_locked.v1")]
    MfaLocked(MfaLocked),
    #[serde(rename = "gatehouse.admin.login_succeeded.v1")]
    LoginSucceeded(LoginSucceeded),
    #[serde(rename = "gatehouse.admin.login_failed.v1")]
    LoginFailed(LoginFailed),
    #[serde(rename = "gatehouse.admin.home_widget_changed.v1")]
    HomeWidgetChanged(HomeWidgetChanged),
    #[serde(rename = "gatehouse.admin.api_key_created.v1")]
    ApiKeyCreated(ApiKeyChanged),
    #[serde(rename = "gatehouse.admin.api_key_revoked.v1")]
    ApiKeyRevoked(ApiKeyChanged),
    #[serde(rename = "gatehouse.admin.audit_accessed.v1")]
    AuditAccessed(AuditAccessed),
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {0}")]
    UnknownType(String),
    #[error("event {event_type} has malformed data: {reason}")]
    Malformed { event_type: String, reason: String },
}

/// Which aggregate an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Org(Uuid),
    Admin(Uuid),
}

impl Event {
    /// The versioned type name, e.g. `gatehouse.admin.mfa_required.v1`.
    pub fn type_name(&self) -> &'static str {
        use Event::*;
        match self {
            OrgCreated(_) => "gatehouse.org.created.v1",
            GlobalMfaEnabled(_) => "gatehouse.org.global_mfa_enabled.v1",
            GlobalMfaDisabled(_) => "gatehouse.org.global_mfa_disabled.v1",
            AdminCreated(_) => "gatehouse.admin.created.v1",
            AdminRemoved(_) => "gatehouse.admin.removed.v1",
            MfaRequired(_) => "gatehouse.admin.mfa_required.v1",
            MfaRequirementRemoved(_) => "gatehouse.admin.mfa_requirement_removed.v1",
            MfaResetRequested(_) => "gatehouse.admin.mfa_reset_requested.v1",
            MfaEnrollmentStarted(_) => "gatehouse.admin.mfa_enrollment_started.v1",
            MfaEnrollmentCompleted(_) => "gatehouse.admin.mfa_enrollment_completed.v1",
            MfaLocked(_) => "gatehouse.admin.mfa_locked.v1",
            LoginSucceeded(_) => "gatehouse.admin.login_succeeded.v1",
            LoginFailed(_) => "gatehouse.admin.login_failed.v1",
            HomeWidgetChanged(_) => "gatehouse.admin.home_widget_changed.v1",
            ApiKeyCreated(_) => "gatehouse.admin.api_key_created.v1",
            ApiKeyRevoked(_) => "gatehouse.admin.api_key_revoked.v1",
            AuditAccessed(_) => "gatehouse.admin.audit_accessed.v1",
        }
    }

    /// The aggregate (and so the store stream) the event belongs to.
    pub fn aggregate(&self) -> Aggregate {
        use Event::*;
        match self {
            OrgCreated(e) => Aggregate::Org(e.org_id),
            GlobalMfaEnabled(e) | GlobalMfaDisabled(e) => Aggregate::Org(e.org_id),
            AdminCreated(e) => Aggregate::Admin(e.admin_id),
            AdminRemoved(e) | MfaRequirementRemoved(e) => Aggregate::Admin(e.admin_id),
            MfaRequired(e) => Aggregate::Admin(e.admin_id),
            MfaResetRequested(e) => Aggregate::Admin(e.admin_id),
            MfaEnrollmentStarted(e) => Aggregate::Admin(e.admin_id),
            MfaEnrollmentCompleted(e) => Aggregate::Admin(e.admin_id),
            MfaLocked(e) => Aggregate::Admin(e.admin_id),
            LoginSucceeded(e) => Aggregate::Admin(e.admin_id),
            LoginFailed(e) => Aggregate::Admin(e.admin_id),
            HomeWidgetChanged(e) => Aggregate::Admin(e.admin_id),
            ApiKeyCreated(e) | ApiKeyRevoked(e) => Aggregate::Admin(e.admin_id),
            AuditAccessed(e) => Aggregate::Admin(e.admin_id),
        }
    }

    /// The id of the event's stream in the store: the organisation's or the admin's id.
    pub fn stream_id(&self) -> Uuid {
        match self.aggregate() {
            Aggregate::Org(id) | Aggregate::Admin(id) => id,
        }
    }

    /// The envelope's `subject`: `admins/<id>` or `orgs/<id>`.
    pub fn subject(&self) -> String {
        match self.aggregate() {
            Aggregate::Org(id) => format!("orgs/{id}"),
            Aggregate::Admin(id) => format!("admins/{id}"),
        }
    }

    /// The envelope's `data`.
    pub fn data(&self) -> serde_json::Value {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut map)) => map.remove("data").unwrap_or_default(),
            // Every variant is a struct of strings, bools, integers and uuids: it always
            // serialises to an object with a `data` key.
            _ => serde_json::Value::Null,
        }
    }

    /// Reads an event of any known type and version, upcasting old versions to the current one
    /// ([`crate::upcast::UPCASTERS`]). Unknown fields are ignored, as consumers are asked to do.
    pub fn decode(event_type: &str, data: &serde_json::Value) -> Result<Event, DecodeError> {
        let (event_type, data) =
            crate::upcast::to_current(crate::upcast::UPCASTERS, event_type, data)?;
        // The adjacently tagged enum is read straight from a two-entry map over the borrowed
        // `data`, rather than from a `json!` copy of it (a bulk append decodes thousands).
        let tag = serde_json::Value::String(event_type.to_string());
        let entries = [("type", &tag), ("data", data.as_ref())];
        let tagged = MapDeserializer::<_, serde_json::Error>::new(entries.into_iter());
        Event::deserialize(tagged).map_err(|e| {
            if e.to_string().starts_with("unknown variant") {
                DecodeError::UnknownType(event_type.to_string())
            } else {
                DecodeError::Malformed {
                    event_type: event_type.to_string(),
                    reason: e.to_string(),
                }
            }
        })
    }
}

/// Times inside `data` are written like the envelope's `time`: RFC 3339 UTC with milliseconds.
/// A finer time read from elsewhere is truncated to the millisecond on the way in, so a decoded
/// event is what its own `data` says (found by the `envelope` fuzz target, docs/fuzzing.md).
mod millis {
    use chrono::{DateTime, SubsecRound, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::format_time(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc).trunc_subsecs(3))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_round_trips_through_decode() {
        let e = Event::MfaRequired(MfaRequired {
            admin_id: Uuid::nil(),
            source: RequirementSource::Global,
        });
        let data = e.data();
        assert_eq!(data["source"], "global");
        assert_eq!(Event::decode(e.type_name(), &data).expect("decodes"), e);
    }

    #[test]
    fn a_time_finer_than_a_millisecond_is_read_as_the_millisecond_it_is_written_as() {
        let data = serde_json::json!({
            "admin_id": Uuid::nil(),
            "requested_by_self": true,
            "expires_at": "2026-11-29T10:00:00.1234Z",
        });
        let e = Event::decode("gatehouse.admin.mfa_reset_requested.v1", &data).expect("decodes");
        assert_eq!(e.data()["expires_at"], "2026-11-29T10:00:00.123Z");
        assert_eq!(Event::decode(e.type_name(), &e.data()).expect("decodes"), e);
    }

    #[test]
    fn unknown_types_are_reported_as_such() {
        let err = Event::decode("gatehouse.admin.teleported.v1", &serde_json::json!({}));
        assert!(
            matches!(err, Err(DecodeError::UnknownType(t)) if t == "gatehouse.admin.teleported.v1")
        );
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let data = serde_json::json!({"admin_id": Uuid::nil(), "extra": 1});
        assert!(Event::decode("gatehouse.admin.removed.v1", &data).is_ok());
    }
}
