//! `/admins/{id}`: one administrator, with the Multi-Factor Authentication Required toggle and
//! Save, and Reset MFA / Resend Set Up MFA Email. Only what the viewer's role allows on this
//! admin shows; an admin's own page has no reset (they use the email flow).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use gatehouse_commands::CommandError;
use gatehouse_domain::{AdminId, DomainError, Role, policy};
use gatehouse_projections::query;
use serde::Deserialize;
use uuid::Uuid;

use super::admins::{display_name, role_label};
use super::error::{PageError, message_for};
use super::extract::{PageForm, PageQuery};
use super::layout::{Layout, Section, render, see_other};
use super::session::{Viewer, caught_up};
use crate::error::ApiError;
use crate::{AppState, dispatch};

#[derive(Template)]
#[template(path = "admin.html")]
pub struct AdminPage {
    pub layout: Layout,
    pub csrf_token: String,
    pub id: Uuid,
    pub name: String,
    pub email: String,
    pub role: &'static str,
    pub required: bool,
    /// Why MFA is required, in words (empty when it is not).
    pub source: &'static str,
    pub enrolled: bool,
    pub locked: bool,
    /// The toggle is enabled and Save shows.
    pub can_edit: bool,
    /// Why the toggle is disabled, when it is.
    pub edit_note: Option<&'static str>,
    /// Reset MFA and Resend Set Up MFA Email show.
    pub can_reset: bool,
    pub own: bool,
    pub notice: Option<String>,
    pub error: Option<String>,
}

fn source_label(source: Option<&str>) -> &'static str {
    match source {
        Some("default") => "Required since the administrator was created.",
        Some("admin") => "Required by an administrator.",
        Some("global") => "Required by the Global MFA Requirement.",
        _ => "",
    }
}

/// The path's id; anything that is not a UUID names no admin.
fn admin_id(raw: &str) -> Result<Uuid, PageError> {
    raw.parse().map_err(|_| PageError::not_found())
}

/// The page for admin `id` as it stands, answered with `status`.
async fn page(
    state: &AppState,
    viewer: &Viewer,
    id: Uuid,
    status: StatusCode,
    notice: Option<String>,
    error: Option<String>,
) -> Result<Response, PageError> {
    viewer.must(policy::can_read_directory)?;
    let org = viewer.org_id().0;
    let admin = query::get_admin(&state.db, org, id)
        .await?
        .ok_or_else(PageError::not_found)?;
    let global = query::org_summary(&state.db, org)
        .await?
        .is_some_and(|o| o.global_mfa_required);
    let target_role = Role::parse(&admin.role).unwrap_or(Role::AdministratorWithBilling);
    let may_manage = policy::can_manage_mfa_of(viewer.role(), target_role);
    let own = id == viewer.admin_id().0;
    let edit_note = if !may_manage {
        Some("Your role does not allow changing this administrator's MFA requirement.")
    } else if global && admin.mfa_required {
        Some("The Global MFA Requirement is on, so MFA stays required for every administrator.")
    } else {
        None
    };
    Ok(render(
        status,
        &AdminPage {
            layout: viewer.layout(Section::Administrators),
            csrf_token: viewer.0.csrf_token.clone(),
            id,
            name: display_name(&admin.first_name, &admin.last_name),
            role: role_label(&admin.role),
            required: admin.mfa_required,
            source: source_label(admin.requirement_source.as_deref()),
            enrolled: admin.enrolled,
            locked: admin.locked,
            can_edit: edit_note.is_none(),
            edit_note,
            can_reset: may_manage && !own,
            own,
            notice,
            error,
            email: admin.email,
        },
    ))
}

#[derive(Debug, Deserialize)]
pub struct Params {
    #[serde(default)]
    pub at: Option<i64>,
    #[serde(default)]
    pub saved: Option<String>,
    /// `reset` or `resend` after a Set Up MFA email was asked for.
    #[serde(default)]
    pub sent: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(raw): Path<String>,
    PageQuery(params): PageQuery<Params>,
) -> Result<Response, PageError> {
    let id = admin_id(&raw)?;
    caught_up(&state, params.at).await?;
    let notice = match (params.saved, params.sent.as_deref()) {
        (Some(_), _) => Some("Saved.".to_owned()),
        (None, Some("reset")) => Some(
            "MFA reset requested: a Set Up MFA email is on its way. Their current \
             authenticator keeps working until they set up the new one."
                .to_owned(),
        ),
        (None, Some(_)) => Some("A Set Up MFA email is on its way.".to_owned()),
        (None, None) => None,
    };
    page(&state, &viewer, id, StatusCode::OK, notice, None).await
}

/// Shows the page again with a refused command's message, or answers an error page.
async fn refused(
    state: &AppState,
    viewer: &Viewer,
    id: Uuid,
    e: CommandError,
) -> Result<Response, PageError> {
    let shown_on_page = matches!(
        &e,
        CommandError::Domain(
            DomainError::Forbidden
                | DomainError::ForbiddenTargets(_)
                | DomainError::SelfAction
                | DomainError::GlobalMfaEnforced
                | DomainError::TooManyRequests { .. }
        ) | CommandError::Conflict
    );
    let api = ApiError::from(e);
    if !shown_on_page {
        return Err(api.into());
    }
    let status = api.status();
    let message = message_for(api.code(), status).to_owned();
    page(state, viewer, id, status, None, Some(message)).await
}

#[derive(Debug, Deserialize)]
pub struct RequirementForm {
    #[serde(default)]
    pub csrf_token: String,
    /// The toggle: present when on.
    #[serde(default)]
    pub mfa_required: Option<String>,
}

/// Save: requires MFA for the admin, or removes the requirement.
pub async fn set_requirement(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(raw): Path<String>,
    PageForm(form): PageForm<RequirementForm>,
) -> Result<Response, PageError> {
    let id = admin_id(&raw)?;
    viewer.check_csrf(&form.csrf_token)?;
    let required = form.mfa_required.is_some();
    let result = dispatch::run(&state, viewer.context(), move |c, ctx| async move {
        c.set_mfa_requirement(&ctx, AdminId(id), required).await
    })
    .await;
    match result {
        Ok(outcome) => Ok(see_other(&format!(
            "/admins/{id}?at={}&saved=1",
            outcome.position
        ))),
        Err(e) => refused(&state, &viewer, id, e).await,
    }
}

#[derive(Debug, Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    pub csrf_token: String,
    /// Which button: `reset` (Reset MFA) or `resend` (Resend Set Up MFA Email). Both send the
    /// admin a Set Up MFA email; only the confirmation differs.
    #[serde(default)]
    pub kind: Option<String>,
}

/// Reset MFA and Resend Set Up MFA Email: emails the admin a Set Up MFA link.
pub async fn request_reset(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(raw): Path<String>,
    PageForm(form): PageForm<ResetForm>,
) -> Result<Response, PageError> {
    let id = admin_id(&raw)?;
    viewer.check_csrf(&form.csrf_token)?;
    let result = dispatch::run(&state, viewer.context(), move |c, ctx| async move {
        c.request_mfa_reset(&ctx, AdminId(id)).await
    })
    .await;
    let kind = match form.kind.as_deref() {
        Some("resend") => "resend",
        _ => "reset",
    };
    match result {
        Ok(outcome) => Ok(see_other(&format!(
            "/admins/{id}?at={}&sent={kind}",
            outcome.position
        ))),
        Err(e) => refused(&state, &viewer, id, e).await,
    }
}
