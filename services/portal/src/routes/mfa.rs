//! `PUT /admins/{id}/mfa`: require MFA for one administrator, or remove the requirement.

use axum::extract::State;
use gatehouse_domain::AdminId;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::consistency::Written;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Caller, JsonBody, PathId};
use crate::views::Admin;
use crate::{AppState, dispatch};

/// Whether the administrator must use MFA.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SetMfaRequest {
    pub required: bool,
}

/// Requires MFA for an administrator or removes the requirement; answers the admin as changed.
#[utoipa::path(
    put, path = "/api/v1/admins/{id}/mfa", tag = "mfa",
    params(("id" = uuid::Uuid, Path, description = "The admin's id")),
    request_body = SetMfaRequest,
    responses(
        (status = 200, description = "The administrator after the change", body = Admin, headers(("Gatehouse-Position" = i64, description = "Position of the command's last event"))),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "The role may not manage this admin's MFA (`admin_ids` names the admin)", body = ErrorBody),
        (status = 404, description = "No such admin in the caller's organisation", body = ErrorBody),
        (status = 409, description = "`global_mfa_enforced` (removing while the Global MFA Requirement is on) or `conflict`", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn set_requirement(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    JsonBody(body): JsonBody<SetMfaRequest>,
) -> Result<Written<Admin>, ApiError> {
    let required = body.required;
    let outcome = dispatch::run(&state, caller.context(), move |c, ctx| async move {
        c.set_mfa_requirement(&ctx, AdminId(id), required).await
    })
    .await?;
    Ok(Written::ok(outcome.position, Admin::from(&outcome.value)))
}

/// Sends an administrator a Set Up MFA email (nobody resets their own MFA this way).
#[utoipa::path(
    post, path = "/api/v1/admins/{id}/mfa/reset", tag = "mfa",
    params(("id" = uuid::Uuid, Path, description = "The admin's id")),
    responses(
        (status = 202, description = "The email is on its way", headers(("Gatehouse-Position" = i64, description = "Position of the reset request"))),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "`forbidden` by the role matrix, or `self_action_forbidden`", body = ErrorBody),
        (status = 404, description = "No such admin in the caller's organisation", body = ErrorBody),
        (status = 429, description = "`too_many_requests`: three emails this hour already, with Retry-After", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn reset(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Written<()>, ApiError> {
    let outcome = dispatch::run(&state, caller.context(), move |c, ctx| async move {
        c.request_mfa_reset(&ctx, AdminId(id)).await
    })
    .await?;
    Ok(Written::accepted(outcome.position))
}
