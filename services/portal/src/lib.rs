//! The portal: Gatehouse's HTTP JSON API (SPEC §3), built with axum. Handlers are thin: extract,
//! convert to a command, call the command service or a read-model query, map the result.
//!
//! - [`router`]: every route and the layers around them (tracing, metrics, timeout, load
//!   shedding, read-your-writes).
//! - [`routes`]: one module per resource: `admins`, `mfa`, `bulk`, `settings`, `widgets`,
//!   `api_keys`, `me`, `events`, `health` (healthz, readyz, metrics) and `openapi`.
//! - [`extract`]: the caller from `x-api-key` ([`extract::Caller`]), JSON bodies with their size
//!   and media-type limits ([`extract::JsonBody`]), path ids and query parameters.
//! - [`error`]: [`ApiError`], the one error type answered as `{"error": {"code", "message"}}`.
//! - [`dispatch`]: running each command in a task of its own, so it ends even if the client goes.
//! - [`consistency`]: read-your-writes: `Gatehouse-Position` on command answers,
//!   `Gatehouse-Min-Position` on reads.
//! - [`views`]: the Admin object.
//! - [`pagination`]: keyset pages of admins (`limit`, `cursor`, `next_cursor`).
//! - [`telemetry`]: request spans and HTTP metrics.
//! - [`server`]: serving the router over TCP with limits on slow and oversized request heads.
//! - [`pages`]: the server-rendered HTML pages (docs/portal.md), outside `/api/v1`: forms
//!   carry the session's CSRF token instead of going through the JSON API's guard.

pub mod consistency;
pub mod dispatch;
pub mod error;
pub mod extract;
pub mod pages;
pub mod pagination;
pub mod routes;
pub mod server;
pub mod session;
pub mod telemetry;
pub mod views;

use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{BoxError, Router};
use gatehouse_commands::Commands;
use gatehouse_projections::Checkpoints;
use gatehouse_store::Db;
use tower::ServiceBuilder;

pub use error::ApiError;
/// Re-exported because [`AppState::metrics`] holds one of its handles.
pub use metrics_exporter_prometheus;

use routes::{
    admins, api_keys, auth, bulk, events, health, me, mfa, openapi, settings, setup, widgets,
};

/// A request still unanswered after this long is abandoned with 503 `timeout`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Requests served at once; more are shed at once with 503 `overloaded` rather than queued.
pub const MAX_CONCURRENT_REQUESTS: usize = 1024;

/// What every handler may use: a handle to [`Shared`], cloned for each request (an atomic
/// increment, where cloning the services themselves allocated a copy of the database URL's
/// parts and more on every request).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The services and settings behind [`AppState`].
pub struct Shared {
    pub commands: Commands,
    pub db: Db,
    pub checkpoints: Checkpoints,
    /// `None` in a process that does not talk to NATS (readiness then ignores it).
    pub nats: Option<async_nats::Client>,
    /// `None` when metrics are off (`/metrics` answers 404).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// `GATEHOUSE_PUBLIC_URL`: the base of links in emails and the origin CSRF checks expect.
    pub public_url: String,
}

/// The JSON API routes, relative to `/api/v1`.
fn api() -> Router<AppState> {
    Router::new()
        .route("/admins", get(admins::list).post(admins::create))
        .route("/admins/require-mfa", post(bulk::require_mfa))
        .route("/admins/{id}", get(admins::get).delete(admins::remove))
        .route("/admins/{id}/mfa", put(mfa::set_requirement))
        .route("/admins/{id}/mfa/reset", post(mfa::reset))
        .route("/auth/login", post(auth::login))
        .route("/auth/mfa", post(auth::verify))
        .route("/auth/mfa/reset-request", post(auth::reset_request))
        .route("/auth/logout", post(auth::logout))
        .route("/mfa/setup", post(setup::start))
        .route("/mfa/setup/complete", post(setup::complete))
        .route("/settings/security", get(settings::get).put(settings::put))
        .route("/home/widgets", get(widgets::home))
        .route(
            "/home/widgets/admins-without-mfa-required",
            put(widgets::set_visibility),
        )
        .route("/widgets/admins-without-mfa-required", get(widgets::list))
        .route("/me", get(me::get))
        .route("/me/api-keys", get(api_keys::list).post(api_keys::create))
        .route("/me/api-keys/{id}", axum::routing::delete(api_keys::revoke))
        .route("/events", get(events::list))
        .route("/audit/export", get(routes::audit::export::export))
        .route("/audit/verify", get(routes::audit::verify::verify))
        .route("/audit/events", get(routes::audit::events::list))
        .route(
            "/audit/admins-without-mfa-required",
            get(routes::audit::replay::admins_without_mfa_required),
        )
        .route(
            "/audit/mfa-coverage",
            get(routes::audit::replay::mfa_coverage),
        )
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// Answers what the timeout and load-shedding layers refuse.
async fn refused(error: BoxError) -> Response {
    if error.is::<tower::timeout::error::Elapsed>() {
        ApiError::timeout().into_response()
    } else if error.is::<tower::load_shed::error::Overloaded>() {
        ApiError::overloaded().into_response()
    } else {
        ApiError::internal(&anyhow::anyhow!("a middleware failed: {error}")).into_response()
    }
}

/// The whole HTTP surface: `/api/v1/…`, the pages, `/healthz`, `/readyz`, `/metrics`,
/// `/api/openapi.json`.
pub fn router(state: AppState) -> Router {
    router_with(state, MAX_CONCURRENT_REQUESTS)
}

/// [`router`], serving at most `max_concurrent` requests at once (at least one).
pub fn router_with(state: AppState, max_concurrent: usize) -> Router {
    let protection = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(refused))
        .load_shed()
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            max_concurrent.max(1),
        ))
        .timeout(REQUEST_TIMEOUT);
    Router::new()
        .nest(
            "/api/v1",
            api().layer(middleware::from_fn_with_state(
                state.clone(),
                session::csrf_guard,
            )),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/api/openapi.json", get(openapi::openapi_json))
        .merge(pages::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Innermost first: the read-your-writes wait runs inside the timeout.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            consistency::read_your_writes,
        ))
        .layer(protection)
        .layer(middleware::from_fn(telemetry::record_metrics))
        .layer(telemetry::trace_layer())
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[tokio::test]
    async fn timeouts_and_shed_load_answer_503_with_retry_after() {
        for (error, code) in [
            (
                BoxError::from(tower::timeout::error::Elapsed::new()),
                "timeout",
            ),
            (
                BoxError::from(tower::load_shed::error::Overloaded::new()),
                "overloaded",
            ),
        ] {
            let response = refused(error).await;
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{code}");
            assert!(
                response
                    .headers()
                    .contains_key(axum::http::header::RETRY_AFTER),
                "{code}"
            );
        }
    }
}
