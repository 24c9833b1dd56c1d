//! `/admins`: list, create, read and remove administrators.

use axum::Json;
use axum::extract::State;
use gatehouse_domain::decide::NewAdmin;
use gatehouse_domain::{AdminId, DomainError, Email, PersonName, Role, policy};
use gatehouse_projections::query;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::consistency::Written;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Caller, JsonBody, MinPositionHeader, PathId, QueryParams};
use crate::pagination::{self, AllAdmins, PageParams};
use crate::views::{Admin, RoleName};
use crate::{AppState, dispatch};

/// A page of administrators.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminPage {
    pub admins: Vec<Admin>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<Uuid>,
}

/// A new administrator.
#[derive(Deserialize, ToSchema)]
pub struct CreateAdminRequest {
    /// At most 254 characters; stored lower-cased and trimmed.
    #[schema(example = "ada@example.com", format = Email, max_length = 254)]
    pub email: String,
    /// 1 to 100 characters, no control characters.
    #[schema(min_length = 1, max_length = 100)]
    pub first_name: String,
    /// 1 to 100 characters, no control characters.
    #[schema(min_length = 1, max_length = 100)]
    pub last_name: String,
    #[schema(value_type = RoleName)]
    pub role: String,
    /// 12 to 64 characters, not containing the email address.
    #[schema(format = Password, min_length = 12, max_length = 64)]
    pub password: String,
    /// Defaults to true; false is refused while the Global MFA Requirement is on.
    pub mfa_required: Option<bool>,
}

/// The password is never printed.
impl std::fmt::Debug for CreateAdminRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateAdminRequest")
            .field("email", &self.email)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// A create-admin command, validated.
pub struct CreateAdmin {
    pub admin: NewAdmin,
    pub password: String,
}

impl TryFrom<CreateAdminRequest> for CreateAdmin {
    type Error = DomainError;

    fn try_from(body: CreateAdminRequest) -> Result<CreateAdmin, DomainError> {
        let admin = NewAdmin {
            id: AdminId::generate(),
            email: Email::parse(&body.email)?,
            first_name: PersonName::parse("first_name", &body.first_name)?,
            last_name: PersonName::parse("last_name", &body.last_name)?,
            role: Role::parse(&body.role).ok_or_else(|| {
                DomainError::invalid(
                    "role",
                    "must be one of administrator_with_billing, administrator, manager, help_desk, read_only, command_runner",
                )
            })?,
            mfa_required: body.mfa_required,
        };
        Ok(CreateAdmin {
            admin,
            password: body.password,
        })
    }
}

/// Lists the organisation's administrators in creation order.
#[utoipa::path(
    get, path = "/api/v1/admins", tag = "admins", operation_id = "list_admins",
    params(PageParams, MinPositionHeader),
    responses(
        (status = 200, description = "A page of administrators", body = AdminPage),
        (status = 400, description = "`invalid_query` (bad limit or cursor) or `invalid_header` (bad Gatehouse-Min-Position)", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "The role may not see the admin list", body = ErrorBody),
        (status = 503, description = "Not caught up, or unavailable", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(params): QueryParams<PageParams>,
) -> Result<Json<AdminPage>, ApiError> {
    caller.must(policy::can_read_directory)?;
    let mut source = AllAdmins {
        db: &state.db,
        org: caller.org_id().0,
    };
    let page = pagination::fetch(&params, &mut source).await?;
    Ok(Json(AdminPage {
        admins: page.admins.into_iter().map(Admin::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Creates an administrator (administrator_with_billing only).
#[utoipa::path(
    post, path = "/api/v1/admins", tag = "admins", operation_id = "create_admin",
    request_body = CreateAdminRequest,
    responses(
        (status = 201, description = "Created", body = Admin, headers(("Gatehouse-Position" = i64, description = "Position of the command's last event"))),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "The role may not create admins", body = ErrorBody),
        (status = 409, description = "`email_taken`, or `global_mfa_enforced` when asking for no MFA while the Global MFA Requirement is on", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<CreateAdminRequest>,
) -> Result<Written<Admin>, ApiError> {
    let command = CreateAdmin::try_from(body)?;
    let outcome = dispatch::run(&state, caller.context(), |c, ctx| async move {
        c.create_admin(&ctx, command.admin, command.password).await
    })
    .await?;
    Ok(Written::created(
        outcome.position,
        Admin::from(&outcome.value),
    ))
}

/// Reads one administrator.
#[utoipa::path(
    get, path = "/api/v1/admins/{id}", tag = "admins", operation_id = "get_admin",
    params(("id" = Uuid, Path, description = "The admin's id"), MinPositionHeader),
    responses(
        (status = 200, description = "The administrator", body = Admin),
        (status = 400, description = "`invalid_header`: Gatehouse-Min-Position is not a non-negative integer", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "The role may not see the admin list", body = ErrorBody),
        (status = 404, description = "No such admin in the caller's organisation", body = ErrorBody),
        (status = 503, description = "Not caught up, or unavailable", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<Admin>, ApiError> {
    caller.must(policy::can_read_directory)?;
    let admin = query::get_admin(&state.db, caller.org_id().0, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(admin.into()))
}

/// Removes an administrator (administrator_with_billing only; nobody removes themself).
#[utoipa::path(
    delete, path = "/api/v1/admins/{id}", tag = "admins", operation_id = "remove_admin",
    params(("id" = Uuid, Path, description = "The admin's id")),
    responses(
        (status = 204, description = "Removed", headers(("Gatehouse-Position" = i64, description = "Position of the command's last event"))),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "`forbidden`, or `self_action_forbidden`", body = ErrorBody),
        (status = 404, description = "No such admin in the caller's organisation", body = ErrorBody),
        (status = 409, description = "`conflict`: concurrent changes kept winning", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Written<()>, ApiError> {
    let outcome = dispatch::run(&state, caller.context(), move |c, ctx| async move {
        c.remove_admin(&ctx, AdminId(id)).await
    })
    .await?;
    Ok(Written::no_content(outcome.position))
}
