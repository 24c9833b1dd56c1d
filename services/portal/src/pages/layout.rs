//! The frame every page shares, rendering, and the headers every page answer carries.

use askama::Template;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::error::PageError;

/// Scripts and styles come only from `/static/` (no inline code, so no nonce is needed);
/// images may also be `data:` URLs (the setup page's QR code); the pages fetch only their own
/// JSON API; nothing may frame them and forms post only to the portal.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// Which navigation entry a page belongs to (marked `aria-current`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Home,
    Administrators,
    Settings,
    /// Verify Your Identity: only Log Out is offered.
    Verify,
}

/// The navigation of a logged-in page: Home, Administrators, Settings and Log Out (whose form
/// carries the session's CSRF token).
#[derive(Debug, Clone)]
pub struct Nav {
    pub email: String,
    pub csrf_token: String,
    pub section: Section,
}

impl Nav {
    /// Whether the full navigation shows (not on Verify Your Identity, where the session is
    /// still pending and only Log Out makes sense).
    pub fn full(&self) -> bool {
        self.section != Section::Verify
    }

    /// `aria-current="page"` for the current section's link.
    pub fn current(&self, name: &str) -> &'static str {
        let section = match name {
            "home" => Section::Home,
            "admins" => Section::Administrators,
            "settings" => Section::Settings,
            _ => return "",
        };
        if self.section == section {
            "page"
        } else {
            "false"
        }
    }
}

/// What the base template needs besides the page's own fields.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// `None` before login (the login and Set Up MFA pages).
    pub nav: Option<Nav>,
}

impl Layout {
    /// A page shown without a session.
    pub fn bare() -> Layout {
        Layout { nav: None }
    }
}

/// Renders `page` with `status`; a template that fails to render is an opaque 500.
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => PageError::internal(&anyhow::anyhow!("rendering a page: {e}")).into_response(),
    }
}

/// Renders `page` with 200.
pub fn ok(page: &impl Template) -> Response {
    render(StatusCode::OK, page)
}

/// 303 See Other to `to` (after a form, the browser GETs the page to show).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// Middleware: the security headers of every page answer. Pages show personal data and carry
/// CSRF tokens, so they are never stored by caches (static files set their own policy).
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The Set Up MFA link carries its token in the URL: no page sends its address anywhere.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
