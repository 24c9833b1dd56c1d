//! Liveness (`/healthz`), readiness (`/readyz`: Postgres and NATS reachable) and `/metrics`.

use std::time::Duration;

use async_nats::connection::State as NatsState;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, ErrorBody};

/// How long a readiness probe waits for Postgres.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The Prometheus text exposition format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4";

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Whether each dependency is reachable.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    pub status: &'static str,
    /// `ok` or `unreachable`.
    pub postgres: &'static str,
    /// `ok`, `unreachable`, or `not_configured` in a process without NATS.
    pub nats: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Postgres and NATS are reachable.
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "A dependency is out of reach; the body says which", body = Readiness),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    // Reading the store head is the cheapest query that proves the database answers.
    let postgres = matches!(
        tokio::time::timeout(PROBE_TIMEOUT, state.db.head()).await,
        Ok(Ok(_))
    );
    let nats = state
        .nats
        .as_ref()
        .map(|client| client.connection_state() == NatsState::Connected);
    let ready = postgres && nats.unwrap_or(true);
    let readiness = Readiness {
        status: if ready { "ready" } else { "unavailable" },
        postgres: if postgres { "ok" } else { "unreachable" },
        nats: match nats {
            Some(true) => "ok",
            Some(false) => "unreachable",
            None => "not_configured",
        },
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness))
}

/// Prometheus metrics (404 when the process records none).
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 404, description = "Metrics are not enabled", body = ErrorBody),
    )
)]
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let handle = state.metrics.as_ref().ok_or_else(ApiError::not_found)?;
    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PROMETHEUS_TEXT),
    );
    Ok(response)
}
