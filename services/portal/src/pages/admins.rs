//! `/admins`: Administrators, with the columns MFA: Requirement and MFA: Enrollment.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use gatehouse_domain::policy;
use gatehouse_projections::query;
use serde::Deserialize;
use uuid::Uuid;

use super::error::PageError;
use super::extract::PageQuery;
use super::layout::{Layout, Section, ok};
use super::session::{Viewer, caught_up};
use crate::AppState;

/// Admins per page of the list.
const PAGE: i64 = 100;

/// A role as people read it.
pub fn role_label(role: &str) -> &'static str {
    match role {
        "administrator_with_billing" => "Administrator with Billing",
        "administrator" => "Administrator",
        "manager" => "Manager",
        "help_desk" => "Help Desk",
        "read_only" => "Read Only",
        "command_runner" => "Command Runner",
        _ => "Unknown role",
    }
}

/// "First Last", trimmed.
pub fn display_name(first: &str, last: &str) -> String {
    format!("{first} {last}").trim().to_owned()
}

/// One row of the list.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    pub role: &'static str,
    pub required: bool,
    pub enrolled: bool,
    pub locked: bool,
}

#[derive(Template)]
#[template(path = "admins.html")]
pub struct AdminsPage {
    pub layout: Layout,
    pub admins: Vec<Row>,
    pub next: Option<Uuid>,
}

#[derive(Debug, Deserialize)]
pub struct Params {
    #[serde(default)]
    pub at: Option<i64>,
    #[serde(default)]
    pub after: Option<Uuid>,
}

pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    PageQuery(params): PageQuery<Params>,
) -> Result<Response, PageError> {
    viewer.must(policy::can_read_directory)?;
    caught_up(&state, params.at).await?;
    let views = query::list_admins(&state.db, viewer.org_id().0, params.after, PAGE).await?;
    let next = (views.len() as i64 == PAGE)
        .then(|| views.last().map(|a| a.id))
        .flatten();
    let admins = views
        .into_iter()
        .map(|a| Row {
            id: a.id,
            name: display_name(&a.first_name, &a.last_name),
            role: role_label(&a.role),
            required: a.mfa_required,
            enrolled: a.enrolled,
            locked: a.locked,
            email: a.email,
        })
        .collect();
    Ok(ok(&AdminsPage {
        layout: viewer.layout(Section::Administrators),
        admins,
        next,
    }))
}
