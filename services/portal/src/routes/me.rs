//! `GET /me`: the caller, as an Admin object plus their organisation.

use axum::Json;
use axum::extract::State;
use gatehouse_projections::query;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Caller, MinPositionHeader};
use crate::views::Admin;

/// The caller's organisation.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrgRef {
    pub id: Uuid,
    pub name: String,
}

/// The caller: an Admin object with their organisation.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    #[serde(flatten)]
    pub admin: Admin,
    pub org: OrgRef,
}

/// Who the caller is.
#[utoipa::path(
    get, path = "/api/v1/me", tag = "me", operation_id = "get_me",
    params(MinPositionHeader),
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 400, description = "`invalid_header`: Gatehouse-Min-Position is not a non-negative integer", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "Not in the read model yet", body = ErrorBody),
        (status = 503, description = "Not caught up, or unavailable", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get(State(state): State<AppState>, caller: Caller) -> Result<Json<Me>, ApiError> {
    let org_id = caller.org_id().0;
    let admin = query::get_admin(&state.db, org_id, caller.admin_id().0)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let org = query::org_summary(&state.db, org_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(Me {
        admin: admin.into(),
        org: OrgRef {
            id: org.id,
            name: org.name,
        },
    }))
}
