//! [`PageError`]: a failure answered as a page, or a redirect to where the person must go first
//! (log in, verify their identity).
//!
//! Command and read failures go through [`ApiError`] first, so a page and the JSON API answer
//! the same status for the same failure, and unexpected causes are logged there and never shown.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gatehouse_commands::CommandError;

use super::layout::{Layout, see_other};
use crate::error::ApiError;

/// A page that could not be shown.
#[derive(Debug)]
pub enum PageError {
    /// 303 to another page (`/login` without a session, `/login/verify` while it is pending).
    Redirect(&'static str),
    /// An error page.
    Page {
        status: StatusCode,
        message: String,
        /// Seconds, for 429 and 503.
        retry_after: Option<u64>,
    },
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    layout: Layout,
    status: u16,
    title: &'a str,
    message: &'a str,
}

impl PageError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> PageError {
        PageError::Page {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A form without the session's CSRF token (or with another one).
    pub fn csrf() -> PageError {
        PageError::new(
            StatusCode::FORBIDDEN,
            "This form did not come from your current Gatehouse session, so nothing was changed. \
             Go back, reload the page and try again.",
        )
    }

    pub fn forbidden() -> PageError {
        PageError::new(
            StatusCode::FORBIDDEN,
            "Your role does not allow you to see this page.",
        )
    }

    pub fn not_found() -> PageError {
        PageError::new(StatusCode::NOT_FOUND, "There is nothing here.")
    }

    pub fn bad_request(message: impl Into<String>) -> PageError {
        PageError::new(StatusCode::BAD_REQUEST, message)
    }

    /// The read models did not reach the position of the person's change in time.
    pub fn not_caught_up() -> PageError {
        PageError::Page {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "Your change was saved, but this page is not up to date with it yet. \
                      Reload the page in a moment."
                .to_owned(),
            retry_after: Some(1),
        }
    }

    /// Anything unexpected; the cause is logged, never shown.
    pub fn internal(cause: &anyhow::Error) -> PageError {
        PageError::from(ApiError::internal(cause))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            PageError::Redirect(_) => StatusCode::SEE_OTHER,
            PageError::Page { status, .. } => *status,
        }
    }

    /// The sentence to show (empty for a redirect).
    pub fn message(&self) -> &str {
        match self {
            PageError::Redirect(_) => "",
            PageError::Page { message, .. } => message,
        }
    }
}

/// What a person reads for each of the API's error codes. Pages phrase some of them for their
/// own context (the login form, the bulk Require MFA); these are the defaults.
pub fn message_for(code: &str, status: StatusCode) -> &'static str {
    match code {
        "forbidden" => "Your role does not allow this action; nothing was changed.",
        "self_action_forbidden" => "You cannot do this to your own account.",
        "not_found" => "There is nothing here: the administrator may have been removed.",
        "global_mfa_enforced" => {
            "The Global MFA Requirement is on: MFA cannot be made optional for an administrator."
        }
        "too_many_requests" => {
            "Three Set Up MFA emails were already sent for this administrator in the last hour. \
             Try again later."
        }
        "conflict" => "Someone changed this at the same time. Reload the page and try again.",
        "invalid_credentials" => "The email or password is incorrect.",
        "too_many_attempts" => "Too many failed attempts. Wait a little before trying again.",
        "invalid_code" => "The verification code is incorrect or was already used.",
        "mfa_locked" => {
            "MFA is locked after too many wrong codes. Use the link below to get a Set Up MFA \
             email and reset it, or ask an administrator of your company to reset it for you."
        }
        "mfa_not_enrolled" => {
            "MFA is not set up for your account yet. Use the link below to get a Set Up MFA email."
        }
        "invalid_field" => "Some of what was entered is not valid.",
        _ if status == StatusCode::SERVICE_UNAVAILABLE => {
            "Gatehouse is temporarily unavailable. Try again in a moment."
        }
        _ if status.is_server_error() => "Something went wrong on our side; it has been logged.",
        _ => "This request could not be completed.",
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> PageError {
        let status = e.status();
        PageError::Page {
            status,
            message: message_for(e.code(), status).to_owned(),
            retry_after: (status == StatusCode::SERVICE_UNAVAILABLE).then_some(1),
        }
    }
}

impl From<CommandError> for PageError {
    fn from(e: CommandError) -> PageError {
        ApiError::from(e).into()
    }
}

/// Reads fail with `anyhow`: out of reach is 503, the rest 500 (logged).
impl From<anyhow::Error> for PageError {
    fn from(e: anyhow::Error) -> PageError {
        ApiError::from(e).into()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Redirect(to) => see_other(to),
            PageError::Page {
                status,
                message,
                retry_after,
            } => {
                let page = ErrorPage {
                    layout: Layout::bare(),
                    status: status.as_u16(),
                    title: status.canonical_reason().unwrap_or("Error"),
                    message: &message,
                };
                let mut response = match page.render() {
                    Ok(html) => (status, axum::response::Html(html)).into_response(),
                    // The error page has no data that could fail; plain text is the last resort.
                    Err(_) => (status, message).into_response(),
                };
                if let Some(seconds) = retry_after {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                }
                response
            }
        }
    }
}
