//! Getting in: the password step, Verify Your Identity (TOTP), Set Up MFA requests and
//! enrollment (SPEC §1). Whether a password or a code is right is checked before the decider
//! runs (it needs the secrets, which never reach the domain); the decider turns the verdict
//! into events and the rules around it: who must pass MFA, the lockout after five wrong codes,
//! who may request a reset for whom, and how often.

use chrono::{DateTime, Duration, Utc};
use gatehouse_events::Event;
use gatehouse_events::types::{
    LoginFailed, LoginSucceeded, MfaEnrollmentCompleted, MfaEnrollmentStarted, MfaLocked,
    MfaResetRequested,
};

use crate::{AdminState, DomainError, policy};

/// Wrong codes in a row that lock MFA.
pub const MAX_CODE_FAILURES: u32 = 5;
/// Set Up MFA requests per admin within [`RESET_WINDOW`].
pub const MAX_RESET_REQUESTS_PER_HOUR: usize = 3;
/// The window of the reset rate limit.
pub const RESET_WINDOW: Duration = Duration::hours(1);
/// How long a Set Up MFA link stays valid.
pub const LINK_LIFETIME: Duration = Duration::hours(1);

pub const REASON_INVALID_PASSWORD: &str = "invalid_password";
pub const REASON_INVALID_CODE: &str = "invalid_code";
pub const REASON_LOCKED: &str = "locked";
pub const METHOD_TOTP: &str = "totp";
/// The `auth_method` of a login through the portal.
pub const AUTH_SESSION: &str = "session";

/// Where a login comes from, as recorded in its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub ip: String,
    pub user_agent: String,
}

/// What a correct password leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordOutcome {
    /// No MFA applies: the session is authenticated.
    Authenticated,
    /// MFA is required or enrolled: the session waits for Verify Your Identity. A required
    /// admin who is not enrolled can only ask for the Set Up MFA email.
    MfaPending { enrolled: bool },
}

/// What a code leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeOutcome {
    Accepted,
    /// Wrong; `locked_now` when this was the fifth in a row.
    Refused {
        locked_now: bool,
    },
    /// MFA was already locked; the code was not looked at.
    Locked,
}

fn active(admin: &AdminState) -> Result<(), DomainError> {
    if admin.is_active() {
        Ok(())
    } else {
        Err(DomainError::AdminNotFound)
    }
}

fn succeeded(admin: &AdminState, mfa: bool, client: &Client) -> Event {
    Event::LoginSucceeded(LoginSucceeded {
        admin_id: admin.id.0,
        mfa,
        mfa_type: if mfa { METHOD_TOTP } else { "none" }.to_owned(),
        auth_method: AUTH_SESSION.to_owned(),
        client_ip: client.ip.clone(),
        user_agent: client.user_agent.clone(),
    })
}

fn failed(admin: &AdminState, reason: &str, client: &Client) -> Event {
    Event::LoginFailed(LoginFailed {
        admin_id: admin.id.0,
        reason: reason.to_owned(),
        client_ip: client.ip.clone(),
        user_agent: client.user_agent.clone(),
    })
}

/// The password was right. The login succeeds now unless MFA applies (required or enrolled).
pub fn password_accepted(
    admin: &AdminState,
    client: &Client,
) -> Result<(Vec<Event>, PasswordOutcome), DomainError> {
    active(admin)?;
    if admin.required || admin.enrolled {
        return Ok((
            vec![],
            PasswordOutcome::MfaPending {
                enrolled: admin.enrolled,
            },
        ));
    }
    Ok((
        vec![succeeded(admin, false, client)],
        PasswordOutcome::Authenticated,
    ))
}

/// The password was wrong for a known admin.
pub fn password_refused(admin: &AdminState, client: &Client) -> Result<Vec<Event>, DomainError> {
    active(admin)?;
    Ok(vec![failed(admin, REASON_INVALID_PASSWORD, client)])
}

/// A Verify Your Identity code was checked against the admin's factor (`accepted` is the
/// verdict, single use included).
pub fn code_checked(
    admin: &AdminState,
    accepted: bool,
    client: &Client,
) -> Result<(Vec<Event>, CodeOutcome), DomainError> {
    active(admin)?;
    if !admin.enrolled {
        return Err(DomainError::MfaNotEnrolled);
    }
    if admin.locked {
        return Ok((
            vec![failed(admin, REASON_LOCKED, client)],
            CodeOutcome::Locked,
        ));
    }
    if accepted {
        return Ok((vec![succeeded(admin, true, client)], CodeOutcome::Accepted));
    }
    let failures = admin.failed_codes + 1;
    let mut events = vec![failed(admin, REASON_INVALID_CODE, client)];
    let locked_now = failures >= MAX_CODE_FAILURES;
    if locked_now {
        events.push(Event::MfaLocked(MfaLocked {
            admin_id: admin.id.0,
            failed_attempts: failures,
        }));
    }
    Ok((events, CodeOutcome::Refused { locked_now }))
}

/// A Set Up MFA email for `target`, asked by another admin (`Some(actor)`, the role matrix
/// applies and nobody resets themself this way) or by the admin themself (`None`: from Verify
/// Your Identity or by email address). At most three per admin per hour.
pub fn request_mfa_reset(
    actor: Option<&AdminState>,
    target: &AdminState,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    if let Some(actor) = actor {
        if !actor.is_active()
            || !policy::can_manage_mfa_of(actor.role, gatehouse_events::Role::ReadOnly)
        {
            return Err(DomainError::Forbidden);
        }
        if !target.is_active() || target.org_id != actor.org_id {
            return Err(DomainError::AdminNotFound);
        }
        if actor.id == target.id {
            return Err(DomainError::SelfAction);
        }
        if !policy::can_manage_mfa_of(actor.role, target.role) {
            return Err(DomainError::Forbidden);
        }
    } else {
        active(target)?;
    }
    let recent: Vec<&DateTime<Utc>> = target
        .reset_requests
        .iter()
        .filter(|at| now - **at < RESET_WINDOW)
        .collect();
    if recent.len() >= MAX_RESET_REQUESTS_PER_HOUR {
        let oldest = recent.first().map_or(now, |at| **at);
        // Rounded up: a client that waits exactly this long must find the window open.
        let wait_ms = (oldest + RESET_WINDOW - now).num_milliseconds().max(1);
        return Err(DomainError::TooManyRequests {
            retry_after_secs: u64::try_from((wait_ms + 999) / 1000).unwrap_or(1),
        });
    }
    Ok(vec![Event::MfaResetRequested(MfaResetRequested {
        admin_id: target.id.0,
        requested_by_self: actor.is_none(),
        expires_at: now + LINK_LIFETIME,
    })])
}

/// The admin proved email and password on a Set Up MFA link and was shown a new secret.
pub fn start_enrollment(admin: &AdminState) -> Result<Vec<Event>, DomainError> {
    active(admin)?;
    Ok(vec![Event::MfaEnrollmentStarted(MfaEnrollmentStarted {
        admin_id: admin.id.0,
        method: METHOD_TOTP.to_owned(),
    })])
}

/// The admin entered a valid code for the new secret: it replaces any old factor and clears
/// the lockout.
pub fn complete_enrollment(admin: &AdminState) -> Result<Vec<Event>, DomainError> {
    active(admin)?;
    Ok(vec![Event::MfaEnrollmentCompleted(
        MfaEnrollmentCompleted {
            admin_id: admin.id.0,
            method: METHOD_TOTP.to_owned(),
            replaced_previous: admin.enrolled,
        },
    )])
}
