//! The stylesheet and the scripts, compiled into the binary and served from `/static/`.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const STYLESHEET: &str = include_str!("../../static/portal.css");
const PORTAL_SCRIPT: &str = include_str!("../../static/portal.js");
const SETUP_SCRIPT: &str = include_str!("../../static/setup.js");

/// Unversioned files: browsers may keep them briefly, then must fetch them again.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            ),
        ],
        body,
    )
        .into_response()
}

pub async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", STYLESHEET)
}

/// Select-all, the Actions menu and the Require MFA confirmation.
pub async fn portal_script() -> Response {
    asset("text/javascript; charset=utf-8", PORTAL_SCRIPT)
}

/// The Set Up MFA steps.
pub async fn setup_script() -> Response {
    asset("text/javascript; charset=utf-8", SETUP_SCRIPT)
}
