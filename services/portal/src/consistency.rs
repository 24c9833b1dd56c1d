//! Read-your-writes (SPEC §3).
//!
//! Every command answer carries `Gatehouse-Position: N`, the global position of its last event
//! ([`Written`]). A GET that sends `Gatehouse-Min-Position: N` is answered only once every read
//! model has applied N ([`read_your_writes`]), waiting at most [`MAX_WAIT`], then 503
//! `not_caught_up` with `Retry-After`.

use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

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

/// Middleware: holds a GET back until the read models have applied `Gatehouse-Min-Position`.
pub async fn read_your_writes(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() == Method::GET || request.method() == Method::HEAD {
        match min_position(&request) {
            Ok(None) => {}
            Ok(Some(position)) => {
                if !state.checkpoints.wait_for(position, MAX_WAIT).await {
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
