//! `/admins-without-mfa-required`: the widget's list, with a checkbox per admin and one for
//! all, and Actions → Require MFA → a confirmation modal whose Require MFA button posts the
//! selection. Refused whole if the caller may not act on any selected admin.

use std::collections::HashSet;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use gatehouse_commands::CommandError;
use gatehouse_domain::{AdminId, DomainError, Role, policy};
use gatehouse_projections::query;
use serde::Deserialize;
use uuid::Uuid;

use super::admins::{display_name, role_label};
use super::error::PageError;
use super::extract::{PageForm, PageQuery};
use super::layout::{Layout, Section, render, see_other};
use super::session::{Viewer, caught_up};
use crate::{AppState, dispatch};

/// Admins per page of the list.
const PAGE: i64 = 100;

/// One admin of the list.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    pub role: &'static str,
    pub enrolled: bool,
    /// Kept selected when a refused selection is shown again.
    pub checked: bool,
}

#[derive(Template)]
#[template(path = "admins_without_mfa.html")]
pub struct WithoutMfaPage {
    pub layout: Layout,
    pub csrf_token: String,
    pub count: i64,
    pub admins: Vec<Row>,
    /// Whether the role may require MFA at all (checkboxes, Actions, the modal).
    pub can_require: bool,
    /// The cursor of the next page, if there may be one.
    pub next: Option<Uuid>,
    pub notice: Option<String>,
    pub error: Option<String>,
}

/// The page as it stands, with the given selection, notice and error.
async fn page(
    state: &AppState,
    viewer: &Viewer,
    after: Option<Uuid>,
    selected: &HashSet<Uuid>,
    notice: Option<String>,
    error: Option<String>,
) -> Result<WithoutMfaPage, PageError> {
    let (count, views) =
        query::admins_without_mfa(&state.db, viewer.org_id().0, after, PAGE).await?;
    let next = (views.len() as i64 == PAGE)
        .then(|| views.last().map(|a| a.id))
        .flatten();
    let admins = views
        .into_iter()
        .map(|a| Row {
            id: a.id,
            name: display_name(&a.first_name, &a.last_name),
            role: role_label(&a.role),
            enrolled: a.enrolled,
            checked: selected.contains(&a.id),
            email: a.email,
        })
        .collect();
    Ok(WithoutMfaPage {
        layout: viewer.layout(Section::Home),
        csrf_token: viewer.0.csrf_token.clone(),
        count,
        admins,
        can_require: policy::can_manage_mfa_of(viewer.role(), Role::ReadOnly),
        next,
        notice,
        error,
    })
}

#[derive(Debug, Deserialize)]
pub struct Params {
    #[serde(default)]
    pub at: Option<i64>,
    #[serde(default)]
    pub after: Option<Uuid>,
    /// After a Require MFA: how many became required, and how many already were.
    #[serde(default)]
    pub required: Option<usize>,
    #[serde(default)]
    pub already: Option<usize>,
}

fn administrators(n: usize) -> String {
    if n == 1 {
        "1 administrator".to_owned()
    } else {
        format!("{n} administrators")
    }
}

pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    PageQuery(params): PageQuery<Params>,
) -> Result<Response, PageError> {
    viewer.must(policy::can_read_directory)?;
    caught_up(&state, params.at).await?;
    let notice = params.required.map(|n| {
        let mut text = format!(
            "MFA is now required for {}. They will be required to log in with MFA on their next \
             Admin Portal login.",
            administrators(n)
        );
        if let Some(already) = params.already.filter(|a| *a > 0) {
            text.push_str(&format!(
                " {} already had it required.",
                administrators(already)
            ));
        }
        text
    });
    let page = page(&state, &viewer, params.after, &HashSet::new(), notice, None).await?;
    Ok(render(StatusCode::OK, &page))
}

/// The selection: repeated `admin_ids` fields, and the form's CSRF token.
struct Selection {
    csrf_token: String,
    ids: Vec<Uuid>,
}

impl TryFrom<Vec<(String, String)>> for Selection {
    type Error = PageError;

    fn try_from(fields: Vec<(String, String)>) -> Result<Selection, PageError> {
        let mut selection = Selection {
            csrf_token: String::new(),
            ids: Vec::new(),
        };
        for (name, value) in fields {
            match name.as_str() {
                "csrf_token" => selection.csrf_token = value,
                "admin_ids" => selection.ids.push(value.parse().map_err(|_| {
                    PageError::bad_request(
                        "The selection names an administrator that does not exist.",
                    )
                })?),
                _ => {}
            }
        }
        Ok(selection)
    }
}

/// Names admins for an error message: "Ada Lovelace (ada@example.com), …".
async fn names(state: &AppState, viewer: &Viewer, ids: &[Uuid]) -> Result<String, PageError> {
    let mut names = Vec::with_capacity(ids.len());
    for id in ids {
        let name = match query::get_admin(&state.db, viewer.org_id().0, *id).await? {
            Some(a) => format!(
                "{} ({})",
                display_name(&a.first_name, &a.last_name),
                a.email
            ),
            None => id.to_string(),
        };
        names.push(name);
    }
    Ok(names.join(", "))
}

/// The modal's Require MFA button: requires MFA for every selected admin, or for none.
pub async fn require_mfa(
    State(state): State<AppState>,
    viewer: Viewer,
    PageForm(fields): PageForm<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let selection = Selection::try_from(fields)?;
    viewer.check_csrf(&selection.csrf_token)?;
    let selected: HashSet<Uuid> = selection.ids.iter().copied().collect();
    let refused = |status: StatusCode, message: String| {
        let (state, viewer, selected) = (&state, &viewer, &selected);
        async move {
            let page = page(state, viewer, None, selected, None, Some(message)).await?;
            Ok::<_, PageError>(render(status, &page))
        }
    };
    if selection.ids.is_empty() {
        return refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Select at least one administrator first.".to_owned(),
        )
        .await;
    }
    let targets: Vec<AdminId> = selection.ids.iter().copied().map(AdminId).collect();
    let result = dispatch::run(&state, viewer.context(), |c, ctx| async move {
        c.require_mfa_bulk(&ctx, &targets).await
    })
    .await;
    match result {
        Ok(outcome) => Ok(see_other(&format!(
            "/admins-without-mfa-required?at={}&required={}&already={}",
            outcome.position,
            outcome.value.required.len(),
            outcome.value.already_required.len()
        ))),
        Err(CommandError::Domain(DomainError::ForbiddenTargets(ids))) => {
            let message = format!(
                "Your role does not allow requiring MFA for {}. Nothing was changed: clear \
                 {} and try again.",
                names(&state, &viewer, &ids).await?,
                if ids.len() == 1 { "it" } else { "them" }
            );
            refused(StatusCode::FORBIDDEN, message).await
        }
        Err(CommandError::Domain(DomainError::UnknownAdmins(ids))) => {
            let message = format!(
                "{} of the selected administrators no longer exist. Nothing was changed: \
                 reload the page and try again.",
                ids.len()
            );
            refused(StatusCode::NOT_FOUND, message).await
        }
        Err(e) => Err(e.into()),
    }
}
