//! Command failures.

use gatehouse_domain::DomainError;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// Another live administrator has this email address.
    #[error("an administrator with this email address already exists")]
    EmailTaken,
    /// Wrong email or password (or an unknown email: the answer is the same).
    #[error("the email or password is incorrect")]
    InvalidCredentials,
    /// Too many failed passwords for this account or from this address.
    #[error("too many failed attempts; retry in {retry_after_secs} seconds")]
    Throttled { retry_after_secs: u64 },
    /// The TOTP code is wrong, expired or already used.
    #[error("the verification code is incorrect")]
    InvalidCode,
    /// The Set Up MFA link is unknown, expired or already used.
    #[error("this Set Up MFA link has expired or was already used")]
    LinkGone,
    /// The link's code was sent before its email and password.
    #[error("enter your email and password on the Set Up MFA page first")]
    SetupNotStarted,
    /// Concurrent changes kept winning: the caller may retry.
    #[error("the change conflicted with concurrent changes; retry")]
    Conflict,
    /// Postgres could not be reached or the pool is exhausted.
    #[error("the event store is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl CommandError {
    /// Whether the command was refused for what was asked (as opposed to failing).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            CommandError::Domain(_)
                | CommandError::EmailTaken
                | CommandError::InvalidCredentials
                | CommandError::Throttled { .. }
                | CommandError::InvalidCode
                | CommandError::LinkGone
                | CommandError::SetupNotStarted
        )
    }
}

impl From<anyhow::Error> for CommandError {
    fn from(e: anyhow::Error) -> Self {
        if is_unavailable(&e) {
            CommandError::Unavailable(e)
        } else {
            CommandError::Internal(e)
        }
    }
}

/// Whether an error chain says Postgres is out of reach (pool timeout, closed or refused
/// connection) rather than that something is wrong.
pub fn is_unavailable(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        if let Some(pg) = cause.downcast_ref::<tokio_postgres::Error>() {
            return pg.is_closed() || pg.as_db_error().is_none();
        }
        let text = cause.to_string();
        text.contains("Timeout occurred while waiting")
            || text.contains("Error occurred while creating a new object")
            || text.contains("cannot reach Postgres")
    })
}
