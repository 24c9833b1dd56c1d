//! What every command carries besides its own fields.

use chrono::{DateTime, Utc};
use gatehouse_auth::Principal;
use uuid::Uuid;

/// The caller, the time the command is decided at, and the id that ties its events together.
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub principal: Principal,
    pub correlation_id: Uuid,
    pub now: DateTime<Utc>,
}

impl CommandContext {
    pub fn new(principal: Principal) -> CommandContext {
        CommandContext {
            principal,
            correlation_id: Uuid::now_v7(),
            now: Utc::now(),
        }
    }
}
