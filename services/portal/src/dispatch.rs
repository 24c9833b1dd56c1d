//! Running a command of the command service from a handler.
//!
//! Each command runs in its own task, so it runs to its end even if the client goes away: a
//! decided change is never abandoned between its read and its append, and the outcome the
//! client would have seen is the one that is stored.

use gatehouse_commands::{CommandContext, CommandError, Commands, Outcome};
use tracing::Instrument;

use crate::AppState;

/// Runs `command(commands, ctx)` in a task of its own and answers its outcome.
pub async fn run<T, F, Fut>(
    state: &AppState,
    ctx: CommandContext,
    command: F,
) -> Result<Outcome<T>, CommandError>
where
    F: FnOnce(Commands, CommandContext) -> Fut,
    Fut: Future<Output = Result<Outcome<T>, CommandError>> + Send + 'static,
    T: Send + 'static,
{
    // The command's logs belong to the request that asked for it.
    let task = command(state.commands.clone(), ctx).instrument(tracing::Span::current());
    tokio::spawn(task).await.map_err(|e| {
        CommandError::Internal(anyhow::anyhow!("a command's task ended abnormally: {e}"))
    })?
}

/// Runs a command that no authenticated caller asked for (login, the Set Up MFA link) in a task
/// of its own.
pub async fn run_unauthenticated<T, F, Fut>(
    state: &AppState,
    command: F,
) -> Result<Outcome<T>, CommandError>
where
    F: FnOnce(Commands) -> Fut,
    Fut: Future<Output = Result<Outcome<T>, CommandError>> + Send + 'static,
    T: Send + 'static,
{
    let task = command(state.commands.clone()).instrument(tracing::Span::current());
    tokio::spawn(task).await.map_err(|e| {
        CommandError::Internal(anyhow::anyhow!("a command's task ended abnormally: {e}"))
    })?
}
