//! `/mfa/setup?token=…`: the emailed Set Up MFA link. The page only shows the steps; its
//! script calls `POST /api/v1/mfa/setup` and `POST /api/v1/mfa/setup/complete`. A GET neither
//! spends nor checks the token: mail scanners open links too.

use askama::Template;
use axum::response::Response;
use serde::Deserialize;

use super::extract::PageQuery;
use super::layout::{Layout, ok};

#[derive(Template)]
#[template(path = "setup.html")]
pub struct SetupPage {
    pub layout: Layout,
    /// The link's token, handed to the script in a hidden input (escaped like any text).
    pub token: String,
}

#[derive(Deserialize)]
pub struct Params {
    #[serde(default)]
    pub token: String,
}

/// The token is never printed.
impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Params { … }")
    }
}

pub async fn show(PageQuery(params): PageQuery<Params>) -> Response {
    ok(&SetupPage {
        layout: Layout::bare(),
        token: params.token,
    })
}
