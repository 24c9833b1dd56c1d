//! `GET /audit/verify`: the organisation's hash chain recomputed from the store.
//!
//! The check covers the history up to and including the caller's own access record, so the
//! head answered is that record's chain link (which a later export shows on its line).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use gatehouse_events::verify::Report;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Caller;

/// The outcome of a verification (SPEC §3).
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyAnswer {
    /// Every stored event links to the one before it from `c_0`, and the last one is the
    /// recorded head.
    pub verified: bool,
    /// The organisation's events checked.
    pub events: u64,
    /// The chain head recomputed from the stored envelopes (hex of 32 bytes).
    #[schema(example = "fb1634c4e6cd4b1f1afe3ce2d6ef080f7ac5d1f357d723ad4dfca782733b62db")]
    pub head: String,
    /// The smallest position of an event that does not link (a changed event names itself, a
    /// deleted one the event after the hole, a swapped pair the first of the two); `null` when
    /// verified.
    pub first_bad_position: Option<i64>,
}

impl From<Report> for VerifyAnswer {
    fn from(r: Report) -> VerifyAnswer {
        VerifyAnswer {
            verified: r.verified,
            events: r.events,
            head: r.head.to_hex(),
            first_bad_position: r.first_bad_position,
        }
    }
}

/// Recomputes the organisation's hash chain from the stored events.
#[utoipa::path(
    get, path = "/api/v1/audit/verify", tag = "audit", operation_id = "verify_audit_chain",
    responses(
        (status = 200, description = "The chain's verification", body = VerifyAnswer),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "The role may not read the audit history", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn verify(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<VerifyAnswer>, ApiError> {
    super::record_access(&state, &caller, "verify", BTreeMap::new()).await?;
    let report = state.db.verify_org(caller.org_id().0).await?;
    Ok(Json(report.into()))
}
