//! JSON shapes shared by several routes: the Admin object (SPEC §3) and its parts.

use chrono::Utc;
use gatehouse_domain::AdminState;
use gatehouse_events::format_time;
use gatehouse_projections::query::AdminView;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// An administrator's role (JumpCloud's names). Documentation only: bodies carry it as a string.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleName {
    AdministratorWithBilling,
    Administrator,
    Manager,
    HelpDesk,
    ReadOnly,
    CommandRunner,
}

/// Why an admin's MFA is required. Documentation only.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequirementSourceName {
    Default,
    Admin,
    Global,
}

/// An administrator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Admin {
    pub id: Uuid,
    #[schema(example = "ada@example.com")]
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    #[schema(value_type = RoleName)]
    pub role: String,
    /// RFC 3339 UTC with milliseconds.
    #[schema(example = "2026-11-28T10:00:00.123Z")]
    pub created_at: String,
    pub mfa: Mfa,
}

/// An administrator's MFA facts. Required and enrolled are separate: all four combinations occur.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Mfa {
    pub required: bool,
    /// Set exactly when `required` is true.
    #[schema(value_type = Option<RequirementSourceName>)]
    pub requirement_source: Option<String>,
    pub enrolled: bool,
    /// Locked out of MFA after 5 consecutive wrong codes, until a reset completes.
    pub locked: bool,
}

impl From<AdminView> for Admin {
    fn from(v: AdminView) -> Admin {
        Admin {
            id: v.id,
            email: v.email,
            first_name: v.first_name,
            last_name: v.last_name,
            role: v.role,
            created_at: format_time(v.created_at),
            mfa: Mfa {
                required: v.mfa_required,
                requirement_source: v.requirement_source,
                enrolled: v.enrolled,
                locked: v.locked,
            },
        }
    }
}

/// A command's own view of the admin it changed: fresher than the read model, which may lag.
impl From<&AdminState> for Admin {
    fn from(s: &AdminState) -> Admin {
        Admin {
            id: s.id.0,
            email: s.email.clone(),
            first_name: s.first_name.clone(),
            last_name: s.last_name.clone(),
            role: s.role.as_str().to_owned(),
            // Every created admin has a creation time; the fallback only keeps this total.
            created_at: format_time(s.created_at.unwrap_or_else(Utc::now)),
            mfa: Mfa {
                required: s.required,
                requirement_source: s.requirement_source.map(|r| r.as_str().to_owned()),
                enrolled: s.enrolled,
                locked: s.locked,
            },
        }
    }
}
