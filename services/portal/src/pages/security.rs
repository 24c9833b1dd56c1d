//! `/settings/security`: Settings > Security > Admin Accounts, the Global MFA Requirement.
//! Every role sees it; only an administrator_with_billing may change it (others see the
//! checkbox disabled and no Save, and the server refuses them anyway).

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use gatehouse_domain::policy;
use gatehouse_projections::query;
use serde::Deserialize;

use super::error::{PageError, message_for};
use super::extract::{PageForm, PageQuery};
use super::layout::{Layout, Section, render, see_other};
use super::session::{Viewer, caught_up};
use crate::error::ApiError;
use crate::{AppState, dispatch};

#[derive(Template)]
#[template(path = "security.html")]
pub struct SecurityPage {
    pub layout: Layout,
    pub csrf_token: String,
    pub global_mfa_required: bool,
    pub can_change: bool,
    pub notice: Option<String>,
    pub error: Option<String>,
}

async fn page(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    notice: Option<String>,
    error: Option<String>,
) -> Result<Response, PageError> {
    let global_mfa_required = query::org_summary(&state.db, viewer.org_id().0)
        .await?
        .is_some_and(|o| o.global_mfa_required);
    Ok(render(
        status,
        &SecurityPage {
            layout: viewer.layout(Section::Settings),
            csrf_token: viewer.0.csrf_token.clone(),
            global_mfa_required,
            can_change: policy::can_change_global_mfa(viewer.role()),
            notice,
            error,
        },
    ))
}

#[derive(Debug, Deserialize)]
pub struct Params {
    #[serde(default)]
    pub at: Option<i64>,
    #[serde(default)]
    pub saved: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    PageQuery(params): PageQuery<Params>,
) -> Result<Response, PageError> {
    caught_up(&state, params.at).await?;
    let notice = params.saved.map(|_| "Saved.".to_owned());
    page(&state, &viewer, StatusCode::OK, notice, None).await
}

#[derive(Debug, Deserialize)]
pub struct SecurityForm {
    #[serde(default)]
    pub csrf_token: String,
    /// The checkbox: present when checked.
    #[serde(default)]
    pub global_mfa_required: Option<String>,
}

pub async fn submit(
    State(state): State<AppState>,
    viewer: Viewer,
    PageForm(form): PageForm<SecurityForm>,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form.csrf_token)?;
    let on = form.global_mfa_required.is_some();
    let result = dispatch::run(&state, viewer.context(), move |c, ctx| async move {
        c.set_global_mfa(&ctx, on).await
    })
    .await;
    match result {
        Ok(outcome) => Ok(see_other(&format!(
            "/settings/security?at={}&saved=1",
            outcome.position
        ))),
        Err(e) if e.is_refusal() => {
            let api = ApiError::from(e);
            let message = if api.code() == "forbidden" {
                "Only an Administrator with Billing can change the Global MFA Requirement; \
                 nothing was changed."
            } else {
                message_for(api.code(), api.status())
            };
            page(
                &state,
                &viewer,
                api.status(),
                None,
                Some(message.to_owned()),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}
