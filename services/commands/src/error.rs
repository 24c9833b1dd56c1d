//! Command failures.

use gatehouse_domain::DomainError;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// Another live administrator has this email address.
    #[error("an administrator with this email address already exists")]
    EmailTaken,
    /// Concurrent changes kept winning: the caller may retry.
    #[error("the change conflicted with concurrent changes; retry")]
    Conflict,
    /// Postgres could not be reached or the pool is exhausted.
    #[error("the event store is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Internal(anyhow::Error),
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
