//! The portal's side of sessions: the `gatehouse_session` cookie, who a cookie names, where a
//! request comes from, and the cross-site request forgery guard (SPEC §3).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gatehouse_auth::session::{self, COOKIE, Session};
use gatehouse_domain::login::Client;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::API_KEY_HEADER;

/// The longest user agent kept in events.
const MAX_USER_AGENT: usize = 512;

/// The value of the session cookie, if the request has one.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
}

/// `Set-Cookie` for a session token: HttpOnly, SameSite=Lax, Secure when the portal is https.
pub fn set_cookie(token: &str, public_url: &str) -> HeaderValue {
    let secure = if public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let value = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax{secure}");
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie(public_url: &str) -> HeaderValue {
    let secure = if public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let value = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}");
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Where the request comes from, as login events record it: the peer address (proxies'
/// forwarding headers are not trusted) and the user agent, cut to a sane length.
#[derive(Debug, Clone)]
pub struct ClientMeta(pub Client);

impl<S: Send + Sync> FromRequestParts<S> for ClientMeta {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string());
        let user_agent: String = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_USER_AGENT)
            .collect();
        Ok(ClientMeta(Client { ip, user_agent }))
    }
}

/// Any live session, pending or active (for Verify Your Identity, the reset request and
/// logout). Rejects with 401 `unauthorized`.
#[derive(Debug, Clone)]
pub struct AnySession(pub Session);

impl FromRequestParts<AppState> for AnySession {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match cookie(&parts.headers) {
            Some(token) => session::find(&state.db, token)
                .await?
                .map(AnySession)
                .ok_or_else(ApiError::unauthorized),
            None => Err(ApiError::unauthorized()),
        }
    }
}

/// The optional form of [`AnySession`].
#[derive(Debug, Clone)]
pub struct MaybeSession(pub Option<Session>);

impl FromRequestParts<AppState> for MaybeSession {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match cookie(&parts.headers) {
            Some(token) => Ok(MaybeSession(session::find(&state.db, token).await?)),
            None => Ok(MaybeSession(None)),
        }
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// The CSRF guard of the JSON API: a state-changing request that relies on the session cookie
/// (no `x-api-key`) must say `Content-Type: application/json` (which a cross-site form cannot
/// send without a preflight) and, when it carries `Origin`, come from the portal's own origin.
pub async fn csrf_guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let by_cookie = !headers.contains_key(API_KEY_HEADER) && cookie(headers).is_some();
    if by_cookie && !is_safe(request.method()) {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
        let same_origin = headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|o| o.trim_end_matches('/') == origin_of(&state.public_url));
        if !json || !same_origin {
            return ApiError::csrf().into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; gatehouse_session=abc ; b=2"),
        );
        assert_eq!(cookie(&headers), Some("abc"));
        assert_eq!(cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn cookies_are_http_only_lax_and_secure_on_https() {
        let plain = set_cookie("t", "http://127.0.0.1:8080");
        assert_eq!(plain, "gatehouse_session=t; Path=/; HttpOnly; SameSite=Lax");
        let secure = set_cookie("t", "https://portal.example");
        assert!(secure.to_str().expect("ascii").ends_with("; Secure"));
        assert!(
            clear_cookie("http://x")
                .to_str()
                .expect("ascii")
                .contains("Max-Age=0")
        );
    }

    #[test]
    fn the_origin_of_a_public_url_drops_its_path() {
        assert_eq!(origin_of("https://a.example/portal/"), "https://a.example");
        assert_eq!(origin_of("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
    }
}
