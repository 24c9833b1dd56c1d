//! Aggregate states and their `evolve`: a left fold of events, with no rule in it.

use chrono::{DateTime, Utc};
use gatehouse_events::{Event, RequirementSource, Role};

use crate::{AdminId, OrgId};

/// An organisation, as its own stream tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrgState {
    /// `None` until the organisation is created.
    pub id: Option<OrgId>,
    pub name: String,
    pub global_mfa: bool,
}

impl OrgState {
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    pub fn evolve(mut self, event: &Event) -> OrgState {
        match event {
            Event::OrgCreated(e) => {
                self.id = Some(OrgId(e.org_id));
                self.name = e.name.clone();
            }
            Event::GlobalMfaEnabled(_) => self.global_mfa = true,
            Event::GlobalMfaDisabled(_) => self.global_mfa = false,
            _ => {}
        }
        self
    }
}

/// An administrator's lifecycle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Lifecycle {
    #[default]
    Absent,
    Active,
    Removed,
}

/// An administrator, as their own stream tells it.
///
/// Invariant: `requirement_source` is `Some` exactly when `required` is true.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminState {
    pub id: AdminId,
    pub org_id: OrgId,
    pub lifecycle: Lifecycle,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub role: Role,
    pub created_at: Option<DateTime<Utc>>,
    pub required: bool,
    pub requirement_source: Option<RequirementSource>,
    pub enrolled: bool,
    pub locked: bool,
    /// Wrong TOTP codes in a row since the last accepted one (or the last enrollment).
    pub failed_codes: u32,
    /// When the latest Set Up MFA resets were requested, oldest first (at most the rate limit's
    /// worth are kept: older ones no longer matter).
    pub reset_requests: Vec<DateTime<Utc>>,
    /// Whether the Admins Without MFA Required widget shows on this admin's Home page.
    pub widget_visible: bool,
}

impl AdminState {
    /// The state before the admin's first event.
    pub fn absent(id: AdminId, org_id: OrgId) -> AdminState {
        AdminState {
            id,
            org_id,
            lifecycle: Lifecycle::Absent,
            email: String::new(),
            first_name: String::new(),
            last_name: String::new(),
            role: Role::ReadOnly,
            created_at: None,
            required: false,
            requirement_source: None,
            enrolled: false,
            locked: false,
            failed_codes: 0,
            reset_requests: Vec::new(),
            widget_visible: true,
        }
    }

    pub fn is_active(&self) -> bool {
        self.lifecycle == Lifecycle::Active
    }

    /// Folds one event; `at` is the event's time.
    pub fn evolve(mut self, event: &Event, at: DateTime<Utc>) -> AdminState {
        match event {
            Event::AdminCreated(e) => {
                self.lifecycle = Lifecycle::Active;
                self.email = e.email.clone();
                self.first_name = e.first_name.clone();
                self.last_name = e.last_name.clone();
                self.role = e.role;
                self.created_at = Some(at);
                self.required = e.mfa_required;
                self.requirement_source = e.mfa_required.then_some(RequirementSource::Default);
            }
            Event::AdminRemoved(_) => self.lifecycle = Lifecycle::Removed,
            Event::MfaRequired(e) => {
                self.required = true;
                self.requirement_source = Some(e.source);
            }
            Event::MfaRequirementRemoved(_) => {
                self.required = false;
                self.requirement_source = None;
            }
            Event::MfaEnrollmentCompleted(_) => {
                self.enrolled = true;
                self.locked = false;
                self.failed_codes = 0;
            }
            Event::MfaLocked(_) => self.locked = true,
            Event::LoginFailed(e) if e.reason == crate::login::REASON_INVALID_CODE => {
                self.failed_codes += 1;
            }
            Event::LoginSucceeded(e) if e.mfa => self.failed_codes = 0,
            Event::MfaResetRequested(_) => {
                self.reset_requests.push(at);
                let excess = self
                    .reset_requests
                    .len()
                    .saturating_sub(crate::login::MAX_RESET_REQUESTS_PER_HOUR);
                self.reset_requests.drain(..excess);
            }
            Event::HomeWidgetChanged(e) => self.widget_visible = e.visible,
            _ => {}
        }
        self
    }
}
