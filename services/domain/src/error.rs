//! Rule violations. They say which rule, never how a transport shows it.

use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The caller's role does not allow the action at all.
    #[error("your role does not allow this action")]
    Forbidden,
    /// The caller may not act on some of the targets; nothing was applied.
    #[error("your role does not allow this action on some of the administrators")]
    ForbiddenTargets(Vec<Uuid>),
    /// Nobody removes themself, or resets their own MFA through the admin route.
    #[error("you cannot do this to your own account")]
    SelfAction,
    /// The administrator does not exist in the caller's organisation.
    #[error("administrator not found")]
    AdminNotFound,
    /// Some of the administrators do not exist in the caller's organisation.
    #[error("some administrators were not found")]
    UnknownAdmins(Vec<Uuid>),
    /// The organisation does not exist.
    #[error("organisation not found")]
    OrgNotFound,
    /// The organisation already exists.
    #[error("organisation already exists")]
    OrgExists,
    /// The administrator already exists.
    #[error("administrator already exists")]
    AdminExists,
    /// The Global MFA Requirement is on: no admin's requirement can be removed.
    #[error("the Global MFA Requirement is on: MFA cannot be made optional for an administrator")]
    GlobalMfaEnforced,
    /// Five wrong codes in a row: MFA is locked until a reset completes.
    #[error("MFA is locked after too many wrong codes; reset it with the Set Up MFA email")]
    MfaLocked,
    /// The admin has no TOTP factor to check a code against.
    #[error("this administrator has not set up MFA yet")]
    MfaNotEnrolled,
    /// Too many requests of this kind recently; retry after this many seconds.
    #[error("too many requests; retry in {retry_after_secs} seconds")]
    TooManyRequests { retry_after_secs: u64 },
    /// A field is invalid.
    #[error("{field} {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

impl DomainError {
    pub fn invalid(field: &'static str, message: &str) -> DomainError {
        DomainError::Invalid {
            field,
            message: message.to_owned(),
        }
    }
}
