//! `POST /admins/require-mfa`: the widget's bulk Require MFA, all or nothing.

use axum::extract::State;
use gatehouse_domain::AdminId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::consistency::Written;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{BULK_BODY_LIMIT, Caller, JsonBody};
use crate::{AppState, dispatch};

/// The administrators to require MFA for (duplicates count once).
#[derive(Debug, Deserialize, ToSchema)]
pub struct BulkRequireMfaRequest {
    /// At least one id (an empty list is refused with 422 `invalid_field`).
    #[schema(min_items = 1)]
    pub admin_ids: Vec<Uuid>,
}

/// Which administrators became required, and which already were.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkRequireMfaResponse {
    pub required: Vec<Uuid>,
    pub already_required: Vec<Uuid>,
}

fn ids(admins: Vec<AdminId>) -> Vec<Uuid> {
    admins.into_iter().map(|a| a.0).collect()
}

/// Requires MFA for many administrators at once. If the caller may not act on any of them, or
/// any is unknown, nothing changes and the offending ids are listed in `error.admin_ids`.
#[utoipa::path(
    post, path = "/api/v1/admins/require-mfa", tag = "mfa",
    request_body(content = BulkRequireMfaRequest, description = "At most 512 KiB (10,000 ids fit)"),
    responses(
        (status = 200, description = "Applied to every id", body = BulkRequireMfaResponse, headers(("Gatehouse-Position" = i64, description = "Position of the command's last event"))),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "The role may not act on some admins (`admin_ids`); nothing applied", body = ErrorBody),
        (status = 404, description = "Some admins are unknown (`admin_ids`); nothing applied", body = ErrorBody),
        (status = 409, description = "Concurrent changes kept winning", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid field (e.g. an empty list)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn require_mfa(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<BulkRequireMfaRequest, BULK_BODY_LIMIT>,
) -> Result<Written<BulkRequireMfaResponse>, ApiError> {
    let targets: Vec<AdminId> = body.admin_ids.into_iter().map(AdminId).collect();
    let outcome = dispatch::run(&state, caller.context(), |c, ctx| async move {
        c.require_mfa_bulk(&ctx, &targets).await
    })
    .await?;
    let answer = BulkRequireMfaResponse {
        required: ids(outcome.value.required),
        already_required: ids(outcome.value.already_required),
    };
    Ok(Written::ok(outcome.position, answer))
}
