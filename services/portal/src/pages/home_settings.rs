//! `/home/settings`: Configure and Customize Widgets, each admin's own choice of whether the
//! Admins Without MFA Required tile shows on their Home page.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use gatehouse_projections::query;
use serde::Deserialize;

use super::error::PageError;
use super::extract::{PageForm, PageQuery};
use super::layout::{Layout, Section, ok, see_other};
use super::session::{Viewer, caught_up};
use crate::{AppState, dispatch};

#[derive(Template)]
#[template(path = "home_settings.html")]
pub struct HomeSettingsPage {
    pub layout: Layout,
    pub csrf_token: String,
    pub visible: bool,
}

#[derive(Debug, Deserialize)]
pub struct Params {
    #[serde(default)]
    pub at: Option<i64>,
}

pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    PageQuery(params): PageQuery<Params>,
) -> Result<Response, PageError> {
    caught_up(&state, params.at).await?;
    let visible = query::widget_visible(&state.db, viewer.admin_id().0).await?;
    Ok(ok(&HomeSettingsPage {
        layout: viewer.layout(Section::Home),
        csrf_token: viewer.0.csrf_token.clone(),
        visible,
    }))
}

#[derive(Debug, Deserialize)]
pub struct WidgetForm {
    #[serde(default)]
    pub csrf_token: String,
    /// A checkbox: present when checked.
    #[serde(default)]
    pub visible: Option<String>,
}

/// Saves the choice and goes Home, where its effect shows.
pub async fn submit(
    State(state): State<AppState>,
    viewer: Viewer,
    PageForm(form): PageForm<WidgetForm>,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form.csrf_token)?;
    let visible = form.visible.is_some();
    let outcome = dispatch::run(&state, viewer.context(), move |c, ctx| async move {
        c.set_home_widget(&ctx, visible).await
    })
    .await?;
    Ok(see_other(&format!("/?at={}", outcome.position)))
}
