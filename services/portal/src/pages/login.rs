//! `/login`: Email and Password. A correct password opens a session and goes Home, or to Verify
//! Your Identity when MFA applies.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use gatehouse_auth::session::Stage;
use gatehouse_commands::CommandError;
use gatehouse_domain::login::PasswordOutcome;
use serde::Deserialize;

use super::csrf;
use super::error::{PageError, message_for};
use super::extract::PageForm;
use super::layout::{Layout, ok, render, see_other};
use super::session::AnySession;
use crate::session::{ClientMeta, set_cookie};
use crate::{AppState, dispatch};

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub layout: Layout,
    /// What was typed, kept after a failure (never the password).
    pub email: String,
    pub error: Option<String>,
}

pub async fn show(AnySession(session): AnySession) -> Response {
    if session.is_some_and(|s| s.stage == Stage::Active) {
        return see_other("/");
    }
    ok(&LoginPage {
        layout: Layout::bare(),
        email: String::new(),
        error: None,
    })
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub password: String,
}

/// The password is never printed.
impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginForm { … }")
    }
}

/// "in 40 seconds", "in 3 minutes".
fn wait_text(seconds: u64) -> String {
    match seconds {
        0..=1 => "in a second".to_owned(),
        2..=90 => format!("in {seconds} seconds"),
        _ => format!("in {} minutes", seconds.div_ceil(60)),
    }
}

pub async fn submit(
    State(state): State<AppState>,
    ClientMeta(client): ClientMeta,
    headers: HeaderMap,
    PageForm(form): PageForm<LoginForm>,
) -> Result<Response, PageError> {
    csrf::same_origin(&headers, &state.public_url)?;
    let email = form.email.trim().to_owned();
    let result = dispatch::run_unauthenticated(&state, move |c| async move {
        c.login(&form.email, form.password, &client).await
    })
    .await;
    let failed = |status: StatusCode, message: String| {
        render(
            status,
            &LoginPage {
                layout: Layout::bare(),
                email: email.clone(),
                error: Some(message),
            },
        )
    };
    match result {
        Ok(outcome) => {
            let to = match outcome.value.outcome {
                PasswordOutcome::Authenticated => "/",
                PasswordOutcome::MfaPending { .. } => "/login/verify",
            };
            let mut response = see_other(to);
            response.headers_mut().insert(
                header::SET_COOKIE,
                set_cookie(&outcome.value.token, &state.public_url),
            );
            Ok(response)
        }
        Err(CommandError::InvalidCredentials) => Ok(failed(
            StatusCode::UNAUTHORIZED,
            message_for("invalid_credentials", StatusCode::UNAUTHORIZED).to_owned(),
        )),
        Err(CommandError::Throttled { retry_after_secs }) => {
            let mut response = failed(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Too many failed attempts. Try again {}.",
                    wait_text(retry_after_secs)
                ),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            Ok(response)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_read_in_seconds_then_minutes() {
        assert_eq!(wait_text(1), "in a second");
        assert_eq!(wait_text(40), "in 40 seconds");
        assert_eq!(wait_text(300), "in 5 minutes");
        assert_eq!(wait_text(301), "in 6 minutes");
    }
}
