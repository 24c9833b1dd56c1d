//! Getting in (SPEC §1, §3): `POST /auth/login`, `POST /auth/mfa` (Verify Your Identity),
//! `POST /auth/mfa/reset-request` and `POST /auth/logout`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use gatehouse_auth::session::{self as sessions, Stage};
use gatehouse_domain::login::PasswordOutcome;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::consistency::Written;
use crate::error::{ApiError, ErrorBody};
use crate::extract::JsonBody;
use crate::session::{AnySession, ClientMeta, MaybeSession, clear_cookie, set_cookie};
use crate::{AppState, dispatch};

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginRequest { … }")
    }
}

/// Where a login stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginStatus {
    /// `authenticated`, or `mfa_required` until Verify Your Identity succeeds.
    #[schema(example = "mfa_required")]
    pub status: &'static str,
    /// With `mfa_required`: whether the admin has an authenticator set up (if not, only the
    /// Set Up MFA email can be asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enrolled: Option<bool>,
}

impl LoginStatus {
    fn authenticated() -> LoginStatus {
        LoginStatus {
            status: "authenticated",
            enrolled: None,
        }
    }
}

fn with_cookie(body: impl IntoResponse, cookie: axum::http::HeaderValue) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}

/// Logs in with email and password; sets the `gatehouse_session` cookie.
#[utoipa::path(
    post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in, or waiting for Verify Your Identity", body = LoginStatus),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "`invalid_credentials` (the same for an unknown email)", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`, with Retry-After", body = ErrorBody),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    ClientMeta(client): ClientMeta,
    JsonBody(body): JsonBody<LoginRequest>,
) -> Result<Response, ApiError> {
    let ctx_client = client.clone();
    let outcome = dispatch::run_unauthenticated(&state, move |c| async move {
        c.login(&body.email, body.password, &ctx_client).await
    })
    .await?;
    let status = match outcome.value.outcome {
        PasswordOutcome::Authenticated => LoginStatus::authenticated(),
        PasswordOutcome::MfaPending { enrolled } => LoginStatus {
            status: "mfa_required",
            enrolled: Some(enrolled),
        },
    };
    let cookie = set_cookie(&outcome.value.token, &state.public_url);
    Ok(with_cookie(Written::ok(outcome.position, status), cookie))
}

#[derive(Deserialize, ToSchema)]
pub struct CodeRequest {
    /// The six digits the authenticator app shows.
    pub code: String,
}

/// Verify Your Identity: a TOTP code for the pending session.
#[utoipa::path(
    post, path = "/api/v1/auth/mfa", tag = "auth", operation_id = "verify_identity",
    request_body = CodeRequest,
    responses(
        (status = 200, description = "Authenticated; the session cookie is renewed", body = LoginStatus),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "`invalid_code` (wrong or already used), or no session", body = ErrorBody),
        (status = 409, description = "`mfa_not_enrolled`: ask for the Set Up MFA email", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
        (status = 423, description = "`mfa_locked` after five wrong codes, until a reset completes", body = ErrorBody),
    )
)]
pub async fn verify(
    State(state): State<AppState>,
    AnySession(session): AnySession,
    ClientMeta(client): ClientMeta,
    JsonBody(body): JsonBody<CodeRequest>,
) -> Result<Response, ApiError> {
    if session.stage == Stage::Active {
        return Ok(Json(LoginStatus::authenticated()).into_response());
    }
    let outcome = dispatch::run_unauthenticated(&state, move |c| async move {
        c.verify_code(&session, &body.code, &client).await
    })
    .await?;
    let cookie = set_cookie(&outcome.value, &state.public_url);
    Ok(with_cookie(
        Written::ok(outcome.position, LoginStatus::authenticated()),
        cookie,
    ))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ResetRequest {
    /// Without a session: the account's email address.
    #[serde(default)]
    pub email: Option<String>,
}

/// Asks for the Set Up MFA email: for the session's admin, or for an email address (answered
/// the same whether or not the address exists).
#[utoipa::path(
    post, path = "/api/v1/auth/mfa/reset-request", tag = "auth",
    request_body = ResetRequest,
    responses(
        (status = 202, description = "If the account exists, the email is on its way"),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Neither a session nor an email", body = ErrorBody),
        (status = 429, description = "Three emails were already sent this hour (session only)", body = ErrorBody),
    )
)]
pub async fn reset_request(
    State(state): State<AppState>,
    MaybeSession(session): MaybeSession,
    JsonBody(body): JsonBody<ResetRequest>,
) -> Result<Response, ApiError> {
    if let Some(session) = session {
        let (admin, org) = (session.admin_id, session.org_id);
        let outcome = dispatch::run_unauthenticated(&state, move |c| async move {
            c.request_own_mfa_reset(admin, org, true).await
        })
        .await?;
        return Ok(Written::accepted(outcome.position).into_response());
    }
    let Some(email) = body.email.filter(|e| !e.trim().is_empty()) else {
        return Err(ApiError::invalid_field(
            Some("email".to_owned()),
            "Email is required without a session.",
        ));
    };
    // Answered at once and the same for every address: whether it names an admin, and
    // whether the hourly limit was reached, must not show in the answer or its timing.
    let commands = state.commands.clone();
    tokio::spawn(async move {
        if let Err(e) = commands.request_mfa_reset_by_email(&email).await
            && !e.is_refusal()
        {
            tracing::warn!(error = %e, "a Set Up MFA request by email failed");
        }
    });
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Ends the session.
#[utoipa::path(
    post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204, description = "Logged out; the cookie is cleared"))
)]
pub async fn logout(
    State(state): State<AppState>,
    MaybeSession(session): MaybeSession,
) -> Result<Response, ApiError> {
    if let Some(session) = session {
        sessions::revoke(&state.db, &session.token_hash).await?;
    }
    Ok(with_cookie(
        StatusCode::NO_CONTENT,
        clear_cookie(&state.public_url),
    ))
}
