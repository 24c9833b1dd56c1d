//! `/settings/security`: the organisation's Global MFA Requirement.

use axum::Json;
use axum::extract::State;
use gatehouse_projections::query;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::consistency::Written;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Caller, JsonBody, MinPositionHeader};
use crate::{AppState, dispatch};

/// The organisation's security settings.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SecuritySettings {
    /// While on, every admin is required to use MFA and no requirement can be removed.
    pub global_mfa_required: bool,
}

/// Reads the organisation's security settings.
#[utoipa::path(
    get, path = "/api/v1/settings/security", tag = "settings", operation_id = "get_security_settings",
    params(MinPositionHeader),
    responses(
        (status = 200, description = "The settings", body = SecuritySettings),
        (status = 400, description = "`invalid_header`: Gatehouse-Min-Position is not a non-negative integer", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "The organisation is not in the read model yet", body = ErrorBody),
        (status = 503, description = "Not caught up, or unavailable", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<SecuritySettings>, ApiError> {
    let org = query::org_summary(&state.db, caller.org_id().0)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(SecuritySettings {
        global_mfa_required: org.global_mfa_required,
    }))
}

/// Turns the Global MFA Requirement on or off (administrator_with_billing only). Turning it on
/// requires MFA for every admin not yet required; turning it off changes no admin.
#[utoipa::path(
    put, path = "/api/v1/settings/security", tag = "settings", operation_id = "put_security_settings",
    request_body = SecuritySettings,
    responses(
        (status = 200, description = "The settings after the change", body = SecuritySettings, headers(("Gatehouse-Position" = i64, description = "Position of the command's last event"))),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "The role may not change it", body = ErrorBody),
        (status = 409, description = "Concurrent changes kept winning", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<SecuritySettings>,
) -> Result<Written<SecuritySettings>, ApiError> {
    let on = body.global_mfa_required;
    let outcome = dispatch::run(&state, caller.context(), move |c, ctx| async move {
        c.set_global_mfa(&ctx, on).await
    })
    .await?;
    Ok(Written::ok(
        outcome.position,
        SecuritySettings {
            global_mfa_required: outcome.value,
        },
    ))
}
