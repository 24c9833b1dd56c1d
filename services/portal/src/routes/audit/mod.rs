//! The audit history for compliance auditors (SPEC §5): records with filters and keyset pages
//! (`events`), the streamed export (`export`), the hash-chain check (`verify`), and the state
//! at a past instant and the coverage series (`replay`). Every one of these reads is itself
//! recorded in the history ([`record_access`]).

pub mod events;
pub mod export;
pub mod replay;
pub mod verify;

use std::collections::BTreeMap;

use gatehouse_domain::policy;

use crate::error::ApiError;
use crate::extract::Caller;
use crate::{AppState, dispatch};

/// Refuses roles that may not read the audit history (403), then records that the caller read
/// it (`action`, with the query parameters that shaped the answer) as an event of their own
/// stream; answers the position of that event. Call it before answering.
pub async fn record_access(
    state: &AppState,
    caller: &Caller,
    action: &'static str,
    query: BTreeMap<String, String>,
) -> Result<i64, ApiError> {
    caller.must(policy::can_read_directory)?;
    let outcome = dispatch::run(state, caller.context(), move |c, ctx| async move {
        c.record_audit_access(&ctx, action, query).await
    })
    .await?;
    Ok(outcome.position)
}
