//! `POST /logout`: the Log Out button of every page. Ends the session and goes to `/login`.

use axum::extract::State;
use axum::http::header;
use axum::response::Response;
use gatehouse_auth::session as sessions;
use serde::Deserialize;

use super::csrf;
use super::error::PageError;
use super::extract::PageForm;
use super::layout::see_other;
use super::session::AnySession;
use crate::AppState;
use crate::session::clear_cookie;

#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    pub csrf_token: String,
}

/// Without a session there is nothing to end; with one, the form must carry its token (another
/// site must not be able to log people out).
pub async fn submit(
    State(state): State<AppState>,
    AnySession(session): AnySession,
    PageForm(form): PageForm<LogoutForm>,
) -> Result<Response, PageError> {
    if let Some(session) = session {
        csrf::check(&session, &form.csrf_token)?;
        sessions::revoke(&state.db, &session.token_hash).await?;
    }
    let mut response = see_other("/login");
    response
        .headers_mut()
        .insert(header::SET_COOKIE, clear_cookie(&state.public_url));
    Ok(response)
}
