//! Who is looking at a page, and read-your-writes for pages.
//!
//! [`Viewer`] is a session that passed Verify Your Identity: without a session a page
//! redirects to `/login`, with a pending one to `/login/verify`. [`AnySession`] is any live
//! session or none (the login pages decide for themselves).

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use gatehouse_auth::session::{self, Session, Stage};
use gatehouse_auth::{AuthMethod, Principal};
use gatehouse_commands::CommandContext;
use gatehouse_domain::{AdminId, OrgId, Role};

use super::csrf;
use super::error::PageError;
use super::layout::{Layout, Nav, Section};
use crate::AppState;

/// How long a page waits for the read models to apply the position in its `at` parameter.
pub const MAX_WAIT: Duration = crate::consistency::MAX_WAIT;

/// The session of a request, if it has a live one.
async fn find(parts: &Parts, state: &AppState) -> Result<Option<Session>, PageError> {
    match crate::session::cookie(&parts.headers) {
        Some(token) => Ok(session::find(&state.db, token).await?),
        None => Ok(None),
    }
}

/// A logged-in administrator whose session passed Verify Your Identity.
#[derive(Debug, Clone)]
pub struct Viewer(pub Session);

impl FromRequestParts<AppState> for Viewer {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match find(parts, state).await? {
            None => Err(PageError::Redirect("/login")),
            Some(s) if s.stage == Stage::Pending => Err(PageError::Redirect("/login/verify")),
            Some(s) => {
                let span = tracing::Span::current();
                span.record("org_id", tracing::field::display(s.org_id));
                span.record("admin_id", tracing::field::display(s.admin_id));
                Ok(Viewer(s))
            }
        }
    }
}

impl Viewer {
    pub fn admin_id(&self) -> AdminId {
        self.0.admin_id
    }

    pub fn org_id(&self) -> OrgId {
        self.0.org_id
    }

    pub fn role(&self) -> Role {
        self.0.role
    }

    /// A fresh command context for one command of this administrator, through their session.
    pub fn context(&self) -> CommandContext {
        CommandContext::new(Principal {
            admin_id: self.0.admin_id,
            org_id: self.0.org_id,
            email: self.0.email.clone(),
            role: self.0.role,
            auth_method: AuthMethod::Session,
        })
    }

    /// The frame of a page in `section`.
    pub fn layout(&self, section: Section) -> Layout {
        Layout {
            nav: Some(Nav {
                email: self.0.email.clone(),
                csrf_token: self.0.csrf_token.clone(),
                section,
            }),
        }
    }

    /// Refuses a form whose `csrf_token` is not this session's.
    pub fn check_csrf(&self, submitted: &str) -> Result<(), PageError> {
        csrf::check(&self.0, submitted)
    }

    /// Refuses with a 403 page unless the role passes `rule` (one of `gatehouse_domain::policy`).
    pub fn must(&self, rule: fn(Role) -> bool) -> Result<(), PageError> {
        if rule(self.0.role) {
            Ok(())
        } else {
            Err(PageError::forbidden())
        }
    }
}

/// Any live session (pending or active), or none.
#[derive(Debug, Clone)]
pub struct AnySession(pub Option<Session>);

impl FromRequestParts<AppState> for AnySession {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(AnySession(find(parts, state).await?))
    }
}

/// Waits until every read model has applied `at` (the position of the change the person just
/// made), so the page shows it; a page without `at` is rendered at once.
pub async fn caught_up(state: &AppState, at: Option<i64>) -> Result<(), PageError> {
    match at {
        Some(position) if !state.checkpoints.wait_for(position, MAX_WAIT).await => {
            Err(PageError::not_caught_up())
        }
        _ => Ok(()),
    }
}
