//! Extractors: who calls ([`Caller`]), their JSON body ([`JsonBody`]), a path id ([`PathId`])
//! and query parameters ([`QueryParams`]), each rejecting with the contract's error.

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use gatehouse_auth::session::{self, Stage};
use gatehouse_auth::{AuthMethod, Principal};
use gatehouse_commands::CommandContext;
use gatehouse_domain::{AdminId, OrgId, Role};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;

/// The header carrying an API key.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The largest body any route but the bulk one accepts (SPEC §3).
pub const BODY_LIMIT: usize = 64 * 1024;

/// The bulk Require MFA route's body limit: 10,000 ids fit (docs/decisions.md).
pub const BULK_BODY_LIMIT: usize = 512 * 1024;

/// The authenticated administrator a request acts as: by API key, or by a session that passed
/// Verify Your Identity. Rejects with 401 `unauthorized` (or `mfa_required` for a pending session).
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl Caller {
    pub fn admin_id(&self) -> AdminId {
        self.0.admin_id
    }

    pub fn org_id(&self) -> OrgId {
        self.0.org_id
    }

    /// A fresh command context (time, correlation id) for one command of this caller.
    pub fn context(&self) -> CommandContext {
        CommandContext::new(self.0.clone())
    }

    /// Refuses with 403 unless the caller's role passes `rule` (one of `gatehouse_domain::policy`).
    pub fn must(&self, rule: fn(Role) -> bool) -> Result<(), ApiError> {
        if rule(self.0.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden())
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal = match parts.headers.get(API_KEY_HEADER) {
            Some(key) => {
                let key = key.to_str().map_err(|_| ApiError::unauthorized())?;
                state
                    .commands
                    .api_keys()
                    .principal(key)
                    .await?
                    .ok_or_else(ApiError::unauthorized)?
            }
            None => {
                let token =
                    crate::session::cookie(&parts.headers).ok_or_else(ApiError::unauthorized)?;
                let session = session::find(&state.db, token)
                    .await?
                    .ok_or_else(ApiError::unauthorized)?;
                if session.stage != Stage::Active {
                    return Err(ApiError::mfa_pending());
                }
                Principal {
                    admin_id: session.admin_id,
                    org_id: session.org_id,
                    email: session.email,
                    role: session.role,
                    auth_method: AuthMethod::Session,
                }
            }
        };
        let span = tracing::Span::current();
        span.record("org_id", tracing::field::display(principal.org_id));
        span.record("admin_id", tracing::field::display(principal.admin_id));
        Ok(Caller(principal))
    }
}

/// Whether the request says its body is JSON (`application/json`, parameters allowed).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// A JSON body of at most `LIMIT` bytes, deserialised into `T`.
///
/// Rejects with 415 `unsupported_media_type` (not `application/json`), 413 `payload_too_large`,
/// 400 `malformed_json` (not JSON) and 422 `invalid_field` (valid JSON of the wrong shape: a
/// missing field, a wrong type; `field` names it).
pub struct JsonBody<T, const LIMIT: usize = BODY_LIMIT>(pub T);

impl<S, T, const LIMIT: usize> FromRequest<S> for JsonBody<T, LIMIT>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::unsupported_media_type());
        }
        if declared_length(req.headers()).is_some_and(|n| n > LIMIT) {
            return Err(ApiError::payload_too_large(LIMIT));
        }
        let bytes = match Limited::new(req.into_body(), LIMIT).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return Err(ApiError::payload_too_large(LIMIT));
            }
            Err(_) => return Err(ApiError::unreadable_body()),
        };
        parse(&bytes).map(JsonBody)
    }
}

/// serde_json's message without its "at line 1 column 7" suffix.
fn reason(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rsplit_once(" at line ") {
        Some((reason, _)) => reason.to_owned(),
        None => text,
    }
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = match serde_path_to_error::deserialize(&mut de) {
        Ok(value) => value,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            return Err(shape_error(&path, &inner));
        }
    };
    // Trailing characters after the value make the body malformed too.
    de.end()
        .map_err(|e| ApiError::malformed_json(&reason(&e)))?;
    Ok(value)
}

fn shape_error(path: &str, e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::malformed_json(&reason(e)),
        Category::Data => {
            let reason = reason(e);
            // serde reports a missing field at its parent's path and names it in the message.
            let missing = reason
                .strip_prefix("missing field `")
                .and_then(|rest| rest.strip_suffix('`'))
                .map(|name| {
                    if path == "." {
                        name.to_owned()
                    } else {
                        format!("{path}.{name}")
                    }
                });
            match missing {
                Some(field) => {
                    ApiError::invalid_field(Some(field.clone()), format!("{field} is required."))
                }
                None if path == "." => ApiError::invalid_field(
                    None,
                    format!("The body must be a JSON object with the documented fields: {reason}."),
                ),
                None => ApiError::invalid_field(
                    Some(path.to_owned()),
                    format!("{path} is invalid: {reason}."),
                ),
            }
        }
    }
}

/// The `{id}` of a path. An id that is not a UUID names nothing: 404 `not_found`.
#[derive(Debug, Clone, Copy)]
pub struct PathId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<Uuid>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| PathId(id))
            .map_err(|_| ApiError::not_found())
    }
}

/// Query parameters; ones that do not parse answer 400 `invalid_query`.
#[derive(Debug, Clone)]
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(params)| QueryParams(params))
            .map_err(|rejection| ApiError::invalid_query(format!("{}.", rejection.body_text())))
    }
}

/// The `Gatehouse-Min-Position` header a GET may send (SPEC §3), for the OpenAPI document only:
/// `consistency::read_your_writes` reads it for every GET, answering 400 `invalid_header` when
/// it is not a non-negative integer and 503 `not_caught_up` when the read models do not reach it
/// within 5 s.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // never constructed: it describes a header the middleware reads
pub struct MinPositionHeader {
    /// Answer only once the read models reflect this position (a `Gatehouse-Position`).
    #[param(rename = "Gatehouse-Min-Position", minimum = 0)]
    gatehouse_min_position: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        required: bool,
        ids: Option<Vec<Uuid>>,
    }

    #[test]
    fn syntax_errors_are_malformed_json() {
        let e = parse::<Body>(b"{\"required\": tru").expect_err("malformed");
        assert_eq!(
            (e.status(), e.code()),
            (StatusCode::BAD_REQUEST, "malformed_json")
        );
        let e = parse::<Body>(b"{\"required\": true} x").expect_err("trailing");
        assert_eq!(e.code(), "malformed_json");
        let e = parse::<Body>(b"").expect_err("empty");
        assert_eq!(e.code(), "malformed_json");
    }

    #[test]
    fn missing_and_wrongly_typed_fields_are_named() {
        let e = parse::<Body>(b"{}").expect_err("missing");
        assert_eq!(
            (e.status(), e.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field")
        );
        assert_eq!(e.field(), Some("required"));
        let e = parse::<Body>(b"{\"required\": \"yes\"}").expect_err("wrong type");
        assert_eq!(e.field(), Some("required"));
        let e = parse::<Body>(b"{\"required\": true, \"ids\": [\"nope\"]}").expect_err("bad id");
        assert_eq!(e.field(), Some("ids[0]"));
        let e = parse::<Body>(b"[1]").expect_err("not an object");
        assert_eq!(e.code(), "invalid_field");
    }

    #[test]
    fn json_content_types_may_carry_parameters() {
        let mut headers = HeaderMap::new();
        assert!(!is_json(&headers));
        headers.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().expect("header"),
        );
        assert!(is_json(&headers));
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().expect("header"));
        assert!(!is_json(&headers));
    }
}
