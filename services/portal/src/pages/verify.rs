//! `/login/verify`: Verify Your Identity. A code from the authenticator app activates the
//! pending session; the button at the bottom emails a Set Up MFA link to reset or enroll.

use askama::Template;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::Response;
use gatehouse_auth::session::{Session, Stage};
use gatehouse_commands::CommandError;
use gatehouse_domain::DomainError;
use gatehouse_projections::query;
use serde::Deserialize;

use super::csrf;
use super::error::{PageError, message_for};
use super::extract::{PageForm, PageQuery};
use super::layout::{Layout, Nav, Section, render, see_other};
use super::session::AnySession;
use crate::session::{ClientMeta, set_cookie};
use crate::{AppState, dispatch};

#[derive(Template)]
#[template(path = "verify.html")]
pub struct VerifyPage {
    pub layout: Layout,
    pub csrf_token: String,
    pub email: String,
    /// False for a required admin who never enrolled: only the email link helps them.
    pub enrolled: bool,
    pub notice: Option<String>,
    pub error: Option<String>,
}

/// The pending session, or where to go instead.
fn pending(session: Option<Session>) -> Result<Session, PageError> {
    match session {
        None => Err(PageError::Redirect("/login")),
        Some(s) if s.stage == Stage::Active => Err(PageError::Redirect("/")),
        Some(s) => Ok(s),
    }
}

/// Renders the page for `session` with `status`, a notice or an error.
async fn page(
    state: &AppState,
    session: &Session,
    status: StatusCode,
    notice: Option<String>,
    error: Option<String>,
) -> Result<Response, PageError> {
    let enrolled = query::get_admin(&state.db, session.org_id.0, session.admin_id.0)
        .await?
        .is_none_or(|a| a.enrolled);
    Ok(render(
        status,
        &VerifyPage {
            layout: Layout {
                nav: Some(Nav {
                    email: session.email.clone(),
                    csrf_token: session.csrf_token.clone(),
                    section: Section::Verify,
                }),
            },
            csrf_token: session.csrf_token.clone(),
            email: session.email.clone(),
            enrolled,
            notice,
            error,
        },
    ))
}

#[derive(Debug, Deserialize)]
pub struct VerifyParams {
    /// Set after the Set Up MFA email was asked for.
    #[serde(default)]
    pub sent: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    AnySession(session): AnySession,
    PageQuery(params): PageQuery<VerifyParams>,
) -> Result<Response, PageError> {
    let session = pending(session)?;
    let notice = params.sent.map(|_| {
        format!(
            "Check your email inbox: a Set Up MFA email is on its way to {}. Follow its link to \
             reset or enroll in MFA.",
            session.email
        )
    });
    page(&state, &session, StatusCode::OK, notice, None).await
}

#[derive(Debug, Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    pub csrf_token: String,
    #[serde(default)]
    pub code: String,
}

pub async fn submit(
    State(state): State<AppState>,
    AnySession(session): AnySession,
    ClientMeta(client): ClientMeta,
    PageForm(form): PageForm<CodeForm>,
) -> Result<Response, PageError> {
    let session = pending(session)?;
    csrf::check(&session, &form.csrf_token)?;
    let pending = session.clone();
    let result = dispatch::run_unauthenticated(&state, move |c| async move {
        c.verify_code(&pending, &form.code, &client).await
    })
    .await;
    let refused = |status: StatusCode, code: &str| {
        let message = message_for(code, status).to_owned();
        (status, message)
    };
    let (status, message) = match result {
        Ok(outcome) => {
            let mut response = see_other("/");
            response.headers_mut().insert(
                header::SET_COOKIE,
                set_cookie(&outcome.value, &state.public_url),
            );
            return Ok(response);
        }
        Err(CommandError::InvalidCode) => refused(StatusCode::UNAUTHORIZED, "invalid_code"),
        Err(CommandError::Domain(DomainError::MfaLocked)) => {
            refused(StatusCode::LOCKED, "mfa_locked")
        }
        Err(CommandError::Domain(DomainError::MfaNotEnrolled)) => {
            refused(StatusCode::CONFLICT, "mfa_not_enrolled")
        }
        Err(e) => return Err(e.into()),
    };
    page(&state, &session, status, None, Some(message)).await
}

#[derive(Debug, Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    pub csrf_token: String,
}

/// The link at the bottom: emails the session's admin a Set Up MFA link.
pub async fn request_reset(
    State(state): State<AppState>,
    AnySession(session): AnySession,
    PageForm(form): PageForm<ResetForm>,
) -> Result<Response, PageError> {
    let session = pending(session)?;
    csrf::check(&session, &form.csrf_token)?;
    let (admin, org) = (session.admin_id, session.org_id);
    let result = dispatch::run_unauthenticated(&state, move |c| async move {
        c.request_own_mfa_reset(admin, org, true).await
    })
    .await;
    match result {
        Ok(_) => Ok(see_other("/login/verify?sent=1")),
        Err(CommandError::Domain(DomainError::TooManyRequests { .. })) => {
            let message = "Three Set Up MFA emails were already sent to you in the last hour. \
                           Check your email inbox, or try again later."
                .to_owned();
            page(
                &state,
                &session,
                StatusCode::TOO_MANY_REQUESTS,
                None,
                Some(message),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}
