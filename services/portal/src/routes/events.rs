//! `GET /events`: the caller's organisation's envelopes after a position, the HTTP alternative
//! to subscribing on NATS.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use gatehouse_domain::policy;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Caller, QueryParams};

/// The media type of a CloudEvents JSON batch.
pub const CLOUDEVENTS_BATCH: &str = "application/cloudevents-batch+json";

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Answer the events after this global position (default 0: from the start).
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// At most this many events, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

impl EventParams {
    fn after(&self) -> Result<i64, ApiError> {
        match self.after.unwrap_or(0) {
            after if after >= 0 => Ok(after),
            _ => Err(ApiError::invalid_query(
                "after must be a position, 0 or more.",
            )),
        }
    }

    fn limit(&self) -> Result<i64, ApiError> {
        match self.limit.unwrap_or(DEFAULT_LIMIT) {
            limit if (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
            _ => Err(ApiError::invalid_query(format!(
                "limit must be between 1 and {MAX_LIMIT}."
            ))),
        }
    }
}

/// A CloudEvents 1.0 envelope (SPEC §4). Documentation only: answers carry the stored envelope.
#[derive(Serialize, ToSchema)]
#[schema(as = Envelope)]
pub struct EnvelopeDoc {
    #[schema(example = "1.0")]
    pub specversion: String,
    pub id: Uuid,
    #[schema(example = "gatehouse/orgs/0193…")]
    pub source: String,
    #[serde(rename = "type")]
    #[schema(example = "gatehouse.admin.mfa_required.v1")]
    pub event_type: String,
    #[schema(example = "admins/0193…")]
    pub subject: String,
    pub time: String,
    pub datacontenttype: String,
    pub position: i64,
    pub streamversion: i64,
    pub orgid: Uuid,
    /// An admin's id, or `system`.
    pub actorid: String,
    pub correlationid: Uuid,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// The caller's organisation's events after a position, in position order.
#[utoipa::path(
    get, path = "/api/v1/events", tag = "events", operation_id = "list_events",
    params(EventParams),
    responses(
        (status = 200, description = "A CloudEvents batch", body = [EnvelopeDoc], content_type = "application/cloudevents-batch+json"),
        (status = 400, description = "Bad after or limit", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "The role may not see the history", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(params): QueryParams<EventParams>,
) -> Result<Response, ApiError> {
    caller.must(policy::can_read_directory)?;
    let recorded = state
        .db
        .read_org_after(caller.org_id().0, params.after()?, params.limit()?)
        .await?;
    let envelopes: Vec<_> = recorded.into_iter().map(|r| r.envelope).collect();
    let mut response = Json(envelopes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(CLOUDEVENTS_BATCH),
    );
    Ok(response)
}
