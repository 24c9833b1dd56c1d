//! The portal's server-rendered pages (docs/portal.md): askama templates compiled into the
//! binary, plain HTML forms and a little vanilla JavaScript served from `/static/`.
//!
//! Handlers are thin: extract the session and the form, call the command service or a
//! read-model query, render or redirect. A change answers 303 to the page to show with
//! `?at=<position>`, and that page waits for the read models to reach the position first.
//!
//! Shared parts:
//! - [`layout`]: the frame every page shares (navigation, Log Out), rendering, and the
//!   security headers of every page.
//! - [`error`]: [`PageError`], a failure answered as a page (or a redirect to log in).
//! - [`session`]: who is looking ([`session::Viewer`], [`session::AnySession`]) and
//!   read-your-writes for pages ([`session::caught_up`]).
//! - [`csrf`]: the per-session form token and the login form's same-origin check.
//! - [`extract`]: forms and query strings, rejected as pages.
//! - [`assets`]: the stylesheet and scripts.
//!
//! One module per page: [`login`], [`verify`], [`logout`], [`home`] (with [`chart`]),
//! [`home_settings`], [`without_mfa`], [`admins`], [`admin`], [`security`] and [`setup`].

pub mod admin;
pub mod admins;
pub mod assets;
pub mod chart;
pub mod csrf;
pub mod error;
pub mod extract;
pub mod home;
pub mod home_settings;
pub mod layout;
pub mod login;
pub mod logout;
pub mod security;
pub mod session;
pub mod setup;
pub mod verify;
pub mod without_mfa;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};

pub use error::PageError;

use crate::AppState;

/// Every page, form target and static file, with the pages' security headers.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login::show).post(login::submit))
        .route("/login/verify", get(verify::show).post(verify::submit))
        .route("/login/verify/reset", post(verify::request_reset))
        .route("/logout", post(logout::submit))
        .route("/", get(home::show))
        .route(
            "/home/settings",
            get(home_settings::show).post(home_settings::submit),
        )
        .route("/admins-without-mfa-required", get(without_mfa::show))
        .route(
            "/admins-without-mfa-required/require-mfa",
            post(without_mfa::require_mfa),
        )
        .route("/admins", get(admins::show))
        .route("/admins/{id}", get(admin::show))
        .route("/admins/{id}/mfa", post(admin::set_requirement))
        .route("/admins/{id}/mfa/reset", post(admin::request_reset))
        .route(
            "/settings/security",
            get(security::show).post(security::submit),
        )
        .route("/mfa/setup", get(setup::show))
        .route("/static/portal.css", get(assets::stylesheet))
        .route("/static/portal.js", get(assets::portal_script))
        .route("/static/setup.js", get(assets::setup_script))
        .layer(middleware::from_fn(layout::security_headers))
}
