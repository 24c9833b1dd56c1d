//! The emailed Set Up MFA link (SPEC §1, §3): `POST /mfa/setup` checks email and password again
//! and offers a new TOTP secret; `POST /mfa/setup/complete` confirms it with a code. Neither
//! needs a session: the link's token is the proof, with the password. A GET of the link (the
//! page) never spends the token.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::consistency::Written;
use crate::error::{ApiError, ErrorBody};
use crate::extract::JsonBody;
use crate::session::ClientMeta;
use crate::{AppState, dispatch};

#[derive(Deserialize, ToSchema)]
pub struct SetupRequest {
    pub token: String,
    pub email: String,
    pub password: String,
}

impl std::fmt::Debug for SetupRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SetupRequest { … }")
    }
}

/// The new secret, shown once: scan the QR code or type the key.
#[derive(Serialize, ToSchema)]
pub struct SetupOffer {
    /// `otpauth://totp/Gatehouse:<email>?secret=…&issuer=Gatehouse`
    pub otpauth_uri: String,
    /// The key in base32, for typing into an authenticator app.
    pub secret: String,
    /// The QR code of `otpauth_uri`, a PNG in base64.
    pub qr_png_base64: String,
}

/// Checks email and password for the link and offers a new TOTP secret.
#[utoipa::path(
    post, path = "/api/v1/mfa/setup", tag = "auth",
    request_body = SetupRequest,
    responses(
        (status = 200, description = "The secret to enroll (never shown again)", body = SetupOffer),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "`invalid_credentials`: not this link's admin, or a wrong password", body = ErrorBody),
        (status = 410, description = "`link_expired`: unknown, expired or used link", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`, with Retry-After", body = ErrorBody),
    )
)]
pub async fn start(
    State(state): State<AppState>,
    ClientMeta(client): ClientMeta,
    JsonBody(body): JsonBody<SetupRequest>,
) -> Result<Response, ApiError> {
    let outcome = dispatch::run_unauthenticated(&state, move |c| async move {
        c.start_mfa_setup(&body.token, &body.email, body.password, &client)
            .await
    })
    .await?;
    let offer = outcome.value;
    let mut response = Written::ok(
        outcome.position,
        SetupOffer {
            otpauth_uri: offer.otpauth_uri,
            secret: offer.secret,
            qr_png_base64: offer.qr_png_base64,
        },
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CompleteRequest {
    pub token: String,
    /// The six digits the authenticator app shows for the new secret.
    pub code: String,
}

/// The outcome of an enrollment.
#[derive(Debug, Serialize, ToSchema)]
pub struct SetupDone {
    #[schema(example = "MFA reset was successful")]
    pub status: &'static str,
}

/// Confirms the new secret with a code: it replaces any old factor, clears the lockout and
/// ends every session of the admin.
#[utoipa::path(
    post, path = "/api/v1/mfa/setup/complete", tag = "auth",
    request_body = CompleteRequest,
    responses(
        (status = 200, description = "Enrolled", body = SetupDone),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "`invalid_code`", body = ErrorBody),
        (status = 409, description = "`setup_not_started`: POST /mfa/setup first", body = ErrorBody),
        (status = 410, description = "`link_expired`: unknown, expired or used link", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
    )
)]
pub async fn complete(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CompleteRequest>,
) -> Result<Response, ApiError> {
    let outcome = dispatch::run_unauthenticated(&state, move |c| async move {
        c.complete_mfa_setup(&body.token, &body.code).await
    })
    .await?;
    Ok(Written::ok(
        outcome.position,
        SetupDone {
            status: "MFA reset was successful",
        },
    )
    .into_response())
}
