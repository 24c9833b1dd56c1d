//! Read-your-writes (SPEC §3).
//!
//! Every command answer carries `Gatehouse-Position: N`, the global position of its last event
//! ([`Written`]). A GET that sends `Gatehouse-Min-Position: N` is answered only once every read
//! model it uses has applied N ([`read_your_writes`], [`models_read_by`]), waiting at most
//! [`MAX_WAIT`], then 503 `not_caught_up` with `Retry-After`.

use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use gatehouse_projections::Projection;

use crate::AppState;
use crate::error::ApiError;

/// The position a command answer's last event was given.
pub const POSITION_HEADER: HeaderName = HeaderName::from_static("gatehouse-position");

/// The position a read must reflect.
pub const MIN_POSITION_HEADER: HeaderName = HeaderName::from_static("gatehouse-min-position");

/// How long a read waits for the read models to catch up.
pub const MAX_WAIT: Duration = Duration::from_secs(5);

fn min_position(request: &Request) -> Result<Option<i64>, ApiError> {
    let Some(value) = request.headers().get(MIN_POSITION_HEADER) else {
        return Ok(None);
    };
    parse_min_position(value).map(Some).ok_or_else(|| {
        ApiError::invalid_header("Gatehouse-Min-Position must be a non-negative integer position.")
    })
}

/// A `Gatehouse-Min-Position` value: a non-negative integer, surrounding spaces allowed; `None`
/// for anything else. Public so the fuzz target `headers` (fuzz/) can reach it.
pub fn parse_min_position(value: &HeaderValue) -> Option<i64> {
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|p| *p >= 0)
}

/// The read models a GET of `path` reads. Routes not named read (or may read) every model, so
/// they wait for all of them: waiting for a model a route does not read only costs time,
/// missing one would break read-your-writes.
pub fn models_read_by(path: &str) -> &'static [Projection] {
    use Projection::{Admins, Audit, HomeWidgets};
    let Some(rest) = path.strip_prefix("/api/v1/") else {
        return &Projection::ALL;
    };
    let segments: Vec<&str> = rest.split('/').collect();
    match segments.as_slice() {
        ["admins"]
        | ["admins", _]
        | ["widgets", "admins-without-mfa-required"]
        | ["me"]
        | ["settings", "security"] => &[Admins],
        ["home", "widgets"] => &[Admins, HomeWidgets],
        ["audit", "events"] => &[Audit],
        _ => &Projection::ALL,
    }
}

/// Middleware: holds a GET back until the read models it uses have applied
/// `Gatehouse-Min-Position`.
pub async fn read_your_writes(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() == Method::GET || request.method() == Method::HEAD {
        match min_position(&request) {
            Ok(None) => {}
            Ok(Some(position)) => {
                let models = models_read_by(request.uri().path());
                if !state
                    .checkpoints
                    .wait_for_models(models, position, MAX_WAIT)
                    .await
                {
                    return ApiError::not_caught_up().into_response();
                }
            }
            Err(e) => return e.into_response(),
        }
    }
    next.run(request).await
}

/// A command's answer: a status, the position of its last event, and a JSON body (or none).
#[derive(Debug)]
pub struct Written<B> {
    status: StatusCode,
    position: i64,
    body: Option<B>,
}

impl<B> Written<B> {
    pub fn ok(position: i64, body: B) -> Written<B> {
        Written {
            status: StatusCode::OK,
            position,
            body: Some(body),
        }
    }

    pub fn created(position: i64, body: B) -> Written<B> {
        Written {
            status: StatusCode::CREATED,
            position,
            body: Some(body),
        }
    }
}

impl Written<()> {
    pub fn no_content(position: i64) -> Written<()> {
        Written {
            status: StatusCode::NO_CONTENT,
            position,
            body: None,
        }
    }

    /// 202: the request was recorded; its effect (an email) follows.
    pub fn accepted(position: i64) -> Written<()> {
        Written {
            status: StatusCode::ACCEPTED,
            position,
            body: None,
        }
    }
}

impl<B: Serialize> IntoResponse for Written<B> {
    fn into_response(self) -> Response {
        let mut response = match self.body {
            Some(body) => (self.status, Json(body)).into_response(),
            None => self.status.into_response(),
        };
        response
            .headers_mut()
            .insert(POSITION_HEADER, HeaderValue::from(self.position));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_projections::Projection::{Admins, Audit, HomeWidgets};

    #[test]
    fn each_read_waits_for_the_models_it_reads_and_the_rest_for_all() {
        let id = "5f0c1d2e-0000-4000-8000-000000000001";
        assert_eq!(models_read_by("/api/v1/admins"), &[Admins]);
        assert_eq!(models_read_by(&format!("/api/v1/admins/{id}")), &[Admins]);
        assert_eq!(
            models_read_by("/api/v1/widgets/admins-without-mfa-required"),
            &[Admins]
        );
        assert_eq!(models_read_by("/api/v1/me"), &[Admins]);
        assert_eq!(models_read_by("/api/v1/settings/security"), &[Admins]);
        assert_eq!(
            models_read_by("/api/v1/home/widgets"),
            &[Admins, HomeWidgets]
        );
        assert_eq!(models_read_by("/api/v1/audit/events"), &[Audit]);
        for other in [
            "/",
            "/admins",
            "/api/v1/events",
            "/api/v1/audit/export",
            "/api/v1/admins/x/mfa",
            "/api/v2/admins",
        ] {
            assert_eq!(models_read_by(other), &Projection::ALL, "{other}");
        }
    }
}
