//! The Admins Without MFA Required widget: the caller's Home widgets, their visibility, and the
//! widget's list.

use axum::Json;
use axum::extract::State;
use gatehouse_domain::policy;
use gatehouse_projections::query;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::consistency::Written;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Caller, JsonBody, MinPositionHeader, QueryParams};
use crate::pagination::{self, AdminsWithoutMfa, PageParams};
use crate::views::Admin;
use crate::{AppState, dispatch};

/// The caller's Home widgets.
#[derive(Debug, Serialize, ToSchema)]
pub struct HomeWidgets {
    pub admins_without_mfa_required: HomeWidget,
}

/// One Home widget: whether the caller shows it, and its count.
#[derive(Debug, Serialize, ToSchema)]
pub struct HomeWidget {
    pub visible: bool,
    pub count: i64,
}

/// Show or hide a widget.
#[derive(Debug, Deserialize, ToSchema)]
pub struct WidgetVisibility {
    pub visible: bool,
}

/// The admins of the organisation whose MFA is not required.
#[derive(Debug, Serialize, ToSchema)]
pub struct WidgetPage {
    /// How many there are in all.
    pub count: i64,
    pub admins: Vec<Admin>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<Uuid>,
}

/// The caller's Home widgets.
#[utoipa::path(
    get, path = "/api/v1/home/widgets", tag = "widgets", operation_id = "get_home_widgets",
    params(MinPositionHeader),
    responses(
        (status = 200, description = "The widgets", body = HomeWidgets),
        (status = 400, description = "`invalid_header`: Gatehouse-Min-Position is not a non-negative integer", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 503, description = "Not caught up, or unavailable", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn home(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<HomeWidgets>, ApiError> {
    // A role that may not see the widget (command_runner) gets it hidden and empty, whatever
    // it chose: the count is directory information (docs/decisions.md).
    if !policy::can_read_directory(caller.0.role) {
        return Ok(Json(HomeWidgets {
            admins_without_mfa_required: HomeWidget {
                visible: false,
                count: 0,
            },
        }));
    }
    let visible = query::widget_visible(&state.db, caller.admin_id().0).await?;
    let count = query::org_summary(&state.db, caller.org_id().0)
        .await?
        .map_or(0, |o| o.without_mfa_required);
    Ok(Json(HomeWidgets {
        admins_without_mfa_required: HomeWidget { visible, count },
    }))
}

/// Shows or hides the Admins Without MFA Required widget on the caller's Home page.
#[utoipa::path(
    put, path = "/api/v1/home/widgets/admins-without-mfa-required", tag = "widgets", operation_id = "set_home_widget_visibility",
    request_body = WidgetVisibility,
    responses(
        (status = 204, description = "Changed", headers(("Gatehouse-Position" = i64, description = "Position of the command's last event"))),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn set_visibility(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<WidgetVisibility>,
) -> Result<Written<()>, ApiError> {
    let visible = body.visible;
    let outcome = dispatch::run(&state, caller.context(), move |c, ctx| async move {
        c.set_home_widget(&ctx, visible).await
    })
    .await?;
    Ok(Written::no_content(outcome.position))
}

/// The Admins Without MFA Required list, in creation order.
#[utoipa::path(
    get, path = "/api/v1/widgets/admins-without-mfa-required", tag = "widgets", operation_id = "list_admins_without_mfa_required",
    params(PageParams, MinPositionHeader),
    responses(
        (status = 200, description = "The count and a page of admins", body = WidgetPage),
        (status = 400, description = "`invalid_query` (bad limit or cursor) or `invalid_header` (bad Gatehouse-Min-Position)", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "The role may not see the widget", body = ErrorBody),
        (status = 503, description = "Not caught up, or unavailable", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(params): QueryParams<PageParams>,
) -> Result<Json<WidgetPage>, ApiError> {
    caller.must(policy::can_read_directory)?;
    let mut source = AdminsWithoutMfa {
        db: &state.db,
        org: caller.org_id().0,
        count: None,
    };
    let page = pagination::fetch(&params, &mut source).await?;
    Ok(Json(WidgetPage {
        count: source.count.unwrap_or(0),
        admins: page.admins.into_iter().map(Admin::from).collect(),
        next_cursor: page.next_cursor,
    }))
}
