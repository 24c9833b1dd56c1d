//! [`ApiError`]: every failure the API answers, as `{"error": {"code", "message", ...}}`.
//!
//! Domain refusals become 4xx answers with the contract's codes; version conflicts become 409;
//! an unreachable dependency or an exhausted pool becomes 503 with `Retry-After`; anything else
//! is an opaque 500 whose cause is logged here and never returned.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gatehouse_commands::CommandError;
use gatehouse_commands::error::is_unavailable;
use gatehouse_domain::DomainError;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong, for machines (`code`) and for people (`message`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable snake_case code, e.g. `forbidden`, `not_found`, `invalid_field`.
    #[schema(example = "invalid_field")]
    pub code: &'static str,
    /// A human sentence; never reveals internals.
    #[schema(example = "email must be an email address like name@example.com.")]
    pub message: String,
    /// With `invalid_field`: the offending field (a path such as `admin_ids[2]` inside arrays).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// With a bulk or per-admin refusal: the administrators it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_ids: Option<Vec<Uuid>>,
}

/// A failure, ready to be answered.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    detail: ErrorDetail,
    retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            detail: ErrorDetail {
                code,
                message: message.into(),
                field: None,
                admin_ids: None,
            },
            retry_after: None,
        }
    }

    fn with_field(mut self, field: impl Into<String>) -> ApiError {
        self.detail.field = Some(field.into());
        self
    }

    fn with_admin_ids(mut self, ids: Vec<Uuid>) -> ApiError {
        self.detail.admin_ids = Some(ids);
        self
    }

    fn retry_after(mut self, seconds: u32) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.detail.code
    }

    pub fn field(&self) -> Option<&str> {
        self.detail.field.as_deref()
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Log in, or send a valid API key in the x-api-key header.",
        )
    }

    /// A session that has not passed Verify Your Identity yet.
    pub fn mfa_pending() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "mfa_required",
            "Verify your identity with your authenticator code first.",
        )
    }

    /// A cookie-authenticated change without the cross-site request forgery guards.
    pub fn csrf() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "This request must come from the portal itself (Content-Type: application/json, same origin).",
        )
    }

    /// API keys are created from a logged-in session only.
    pub fn session_required() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "session_required",
            "API keys can only be created from a logged-in session.",
        )
    }

    pub fn forbidden() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Your role does not allow this action.",
        )
    }

    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "There is nothing here.")
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "This path does not answer this method.",
        )
    }

    pub fn unsupported_media_type() -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "The body must be JSON, sent with Content-Type: application/json.",
        )
    }

    pub fn payload_too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("The body must be at most {} KiB.", limit / 1024),
        )
    }

    pub fn malformed_json(reason: &str) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("The body is not valid JSON: {reason}."),
        )
    }

    pub fn unreadable_body() -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_body",
            "The body could not be read.",
        )
    }

    /// A field is missing, of the wrong type, or fails validation.
    pub fn invalid_field(field: Option<String>, message: impl Into<String>) -> ApiError {
        let error = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message);
        match field {
            Some(field) => error.with_field(field),
            None => error,
        }
    }

    pub fn invalid_query(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message)
    }

    pub fn invalid_header(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_header", message)
    }

    /// The read models did not reach the position the client asked for in time.
    pub fn not_caught_up() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_caught_up",
            "The read models have not caught up with your change yet; retry shortly.",
        )
        .retry_after(1)
    }

    pub fn timeout() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "The request took too long and was abandoned; retry shortly.",
        )
        .retry_after(1)
    }

    pub fn overloaded() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "The server is handling too many requests; retry shortly.",
        )
        .retry_after(1)
    }

    /// A dependency is out of reach. The cause is logged, never returned.
    pub fn unavailable(cause: &anyhow::Error) -> ApiError {
        tracing::warn!(error = %format!("{cause:#}"), "a dependency is unavailable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "The service is temporarily unavailable; retry shortly.",
        )
        .retry_after(1)
    }

    /// Anything unexpected. The cause is logged, never returned.
    pub fn internal(cause: &anyhow::Error) -> ApiError {
        tracing::error!(error = %format!("{cause:#}"), "request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Something went wrong on our side; it has been logged.",
        )
    }

    /// Revoking a key that is not one of the caller's live keys reads as revoking an absent
    /// resource: 404, the same for a foreign organisation's key as for a key that never existed.
    pub fn from_revoke(e: CommandError) -> ApiError {
        match e {
            CommandError::Domain(DomainError::Invalid {
                field: "key_id", ..
            }) => ApiError::not_found(),
            other => other.into(),
        }
    }
}

/// Upper-cases the first letter and ends with a full stop: domain messages are fragments.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    let mut out: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> ApiError {
        use StatusCode as S;
        match e {
            DomainError::Forbidden => ApiError::forbidden(),
            DomainError::ForbiddenTargets(ids) => ApiError::new(
                S::FORBIDDEN,
                "forbidden",
                "Your role does not allow this action on some of the administrators; nothing was changed.",
            )
            .with_admin_ids(ids),
            DomainError::SelfAction => ApiError::new(
                S::FORBIDDEN,
                "self_action_forbidden",
                "You cannot do this to your own account.",
            ),
            DomainError::AdminNotFound | DomainError::OrgNotFound => ApiError::not_found(),
            DomainError::UnknownAdmins(ids) => ApiError::new(
                S::NOT_FOUND,
                "not_found",
                "Some administrators were not found; nothing was changed.",
            )
            .with_admin_ids(ids),
            DomainError::GlobalMfaEnforced => ApiError::new(
                S::CONFLICT,
                "global_mfa_enforced",
                "The Global MFA Requirement is on: MFA cannot be made optional for an administrator.",
            ),
            DomainError::AdminExists | DomainError::OrgExists => {
                ApiError::new(S::CONFLICT, "conflict", sentence(&e.to_string()))
            }
            DomainError::MfaLocked => ApiError::new(
                S::LOCKED,
                "mfa_locked",
                "MFA is locked after too many wrong codes. Use the Set Up MFA email to reset it.",
            ),
            DomainError::MfaNotEnrolled => ApiError::new(
                S::CONFLICT,
                "mfa_not_enrolled",
                "MFA is not set up for this account yet. Ask for the Set Up MFA email.",
            ),
            DomainError::TooManyRequests { retry_after_secs } => ApiError::new(
                S::TOO_MANY_REQUESTS,
                "too_many_requests",
                "Too many Set Up MFA emails were asked for this administrator; retry later.",
            )
            .retry_after(u32::try_from(retry_after_secs).unwrap_or(u32::MAX)),
            DomainError::Invalid { field, message } => {
                ApiError::invalid_field(Some(field.to_owned()), sentence(&format!("{field} {message}")))
            }
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> ApiError {
        match e {
            CommandError::Domain(e) => e.into(),
            CommandError::EmailTaken => ApiError::new(
                StatusCode::CONFLICT,
                "email_taken",
                "An administrator with this email address already exists.",
            ),
            CommandError::InvalidCredentials => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "The email or password is incorrect.",
            ),
            CommandError::Throttled { retry_after_secs } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                "Too many failed attempts; wait before trying again.",
            )
            .retry_after(u32::try_from(retry_after_secs).unwrap_or(u32::MAX)),
            CommandError::InvalidCode => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_code",
                "The verification code is incorrect or was already used.",
            ),
            CommandError::LinkGone => ApiError::new(
                StatusCode::GONE,
                "link_expired",
                "This Set Up MFA link has expired or was already used. Ask for a new one.",
            ),
            CommandError::SetupNotStarted => ApiError::new(
                StatusCode::CONFLICT,
                "setup_not_started",
                "Enter your email and password on the Set Up MFA page first.",
            ),
            CommandError::Conflict => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "The change conflicted with concurrent changes; retry it.",
            ),
            CommandError::Unavailable(cause) => ApiError::unavailable(&cause),
            CommandError::Internal(cause) => ApiError::internal(&cause),
        }
    }
}

/// Reads (queries, look-ups) fail with `anyhow`: out of reach is 503, the rest 500.
impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        if is_unavailable(&e) {
            ApiError::unavailable(&e)
        } else {
            ApiError::internal(&e)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(ErrorBody { error: self.detail })).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(e: ApiError) -> (StatusCode, serde_json::Value) {
        let status = e.status;
        (
            status,
            serde_json::to_value(ErrorBody { error: e.detail }).expect("an error body serialises"),
        )
    }

    #[test]
    fn forbidden_targets_list_the_ids_inside_the_error_object() {
        let id = Uuid::now_v7();
        let (status, json) = body(DomainError::ForbiddenTargets(vec![id]).into());
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(json["error"]["code"], "forbidden");
        assert_eq!(json["error"]["admin_ids"][0], id.to_string());
    }

    #[test]
    fn invalid_fields_name_the_field_in_a_sentence() {
        let (status, json) = body(DomainError::invalid("email", "must be an email address").into());
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(json["error"]["field"], "email");
        assert_eq!(json["error"]["message"], "Email must be an email address.");
    }

    #[test]
    fn internal_errors_do_not_reveal_their_cause() {
        let (status, json) = body(ApiError::internal(&anyhow::anyhow!(
            "relation \"secret_table\" does not exist"
        )));
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!json.to_string().contains("secret_table"));
        assert!(json["error"].get("field").is_none());
    }

    #[test]
    fn unavailable_answers_carry_retry_after() {
        let response = ApiError::from(CommandError::Unavailable(anyhow::anyhow!("pool timeout")))
            .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("1")
        );
    }
}
