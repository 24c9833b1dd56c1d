//! `GET /audit/export`: the organisation's history streamed as NDJSON (`{"chain", "event"}`
//! lines, the envelopes exactly as stored) or CSV (one row per AuditRecord), in position order.
//!
//! The history is fixed at the organisation's last position when the request arrives (its own
//! access record included), so the download is one consistent prefix of the chain. A task reads
//! it in keyset batches and hands them to the body through a bounded channel: memory stays
//! constant whatever the size, and a client that goes away stops the reading.

use std::collections::BTreeMap;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use gatehouse_domain::policy;
use gatehouse_projections::audit_query;
use gatehouse_store::audit::{HistoryCursor, TimeRange};
use serde::Deserialize;
use tokio::sync::mpsc;
use utoipa::IntoParams;

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Caller, QueryParams};

pub const NDJSON: &str = "application/x-ndjson";
pub const CSV: &str = "text/csv; charset=utf-8";

/// Batches in flight between the reading task and the body: a few megabytes at most.
const IN_FLIGHT: usize = 4;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `ndjson` (default): `{"chain", "event"}` lines; `csv`: one row per AuditRecord.
    #[param(example = "ndjson", pattern = "^(ndjson|csv)$")]
    pub format: Option<String>,
    /// RFC 3339: only events that occurred at or after this instant.
    #[param(format = DateTime)]
    pub start_time: Option<String>,
    /// RFC 3339: only events that occurred before this instant.
    #[param(format = DateTime)]
    pub end_time: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Ndjson,
    Csv,
}

impl Format {
    pub fn parse(s: Option<&str>) -> Result<Format, ApiError> {
        match s {
            None | Some("ndjson") => Ok(Format::Ndjson),
            Some("csv") => Ok(Format::Csv),
            Some(_) => Err(ApiError::invalid_query("format must be ndjson or csv.")),
        }
    }
}

/// An RFC 3339 time, or a 400 naming the parameter.
pub fn parse_time(name: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::invalid_query(format!(
                        "{name} must be an RFC 3339 time such as 2026-11-28T10:00:00Z."
                    ))
                })
        })
        .transpose()
}

impl ExportParams {
    fn validate(&self) -> Result<(Format, TimeRange), ApiError> {
        let format = Format::parse(self.format.as_deref())?;
        let range = TimeRange {
            start: parse_time("start_time", self.start_time.as_deref())?,
            end: parse_time("end_time", self.end_time.as_deref())?,
        };
        if let (Some(start), Some(end)) = (range.start, range.end)
            && start > end
        {
            return Err(ApiError::invalid_query(
                "start_time must not be after end_time.",
            ));
        }
        Ok((format, range))
    }

    /// The parameters as given, for the access record.
    fn as_map(&self) -> BTreeMap<String, String> {
        [
            ("format", &self.format),
            ("start_time", &self.start_time),
            ("end_time", &self.end_time),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.to_owned(), v)))
        .collect()
    }
}

/// The organisation's history as a download.
#[utoipa::path(
    get, path = "/api/v1/audit/export", tag = "audit",
    params(ExportParams),
    responses(
        (status = 200, description = "NDJSON lines {\"chain\": hex, \"event\": envelope} in position order (application/x-ndjson), or CSV with a header row (text/csv); sent as an attachment, streamed", content((String = "application/x-ndjson"), (String = "text/csv"))),
        (status = 400, description = "Bad format, start_time or end_time", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "The role may not read the audit history", body = ErrorBody),
        (status = 503, description = "The audit read model has not caught up (CSV); retry", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(params): QueryParams<ExportParams>,
) -> Result<Response, ApiError> {
    // The role first, so a refused caller learns nothing of the parameters; then the
    // parameters, so a malformed request is not recorded as a read that never happened.
    caller.must(policy::can_read_directory)?;
    let (format, range) = params.validate()?;
    super::record_access(&state, &caller, "export", params.as_map()).await?;
    let org = caller.org_id().0;
    let cursor = state.db.history(org, range).await?;
    let until = cursor.until_position();
    let (content_type, extension, body) = match format {
        Format::Ndjson => (NDJSON, "ndjson", Body::from_stream(ndjson(cursor))),
        Format::Csv => {
            audit_query::wait_until_applied(&state.db, until, audit_query::CATCH_UP_WAIT)
                .await
                .map_err(|e| {
                    tracing::warn!(error = %format!("{e:#}"), "CSV export before the audit read model caught up");
                    ApiError::not_caught_up()
                })?;
            let chunks =
                audit_query::csv_chunks(state.db.clone(), org, range.start, range.end, until)
                    .map(|chunk| chunk.map(Bytes::from));
            (CSV, "csv", Body::from_stream(pump(chunks)))
        }
    };
    let disposition = format!("attachment; filename=\"gatehouse-audit-{org}-{until}.{extension}\"");
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition).map_err(|e| ApiError::internal(&e.into()))?,
    );
    Ok(response)
}

/// The cursor's batches as NDJSON, one chunk a batch.
fn ndjson(cursor: HistoryCursor) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let batches = futures::stream::try_unfold(cursor, |mut cursor| async move {
        let batch = cursor.next_batch().await?;
        if batch.is_empty() {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(batch.len() * 800);
        for row in &batch {
            row.write_ndjson(&mut out)?;
        }
        Ok(Some((Bytes::from(out), cursor)))
    });
    pump(batches)
}

/// Runs `chunks` in a task of its own, feeding the body through a bounded channel. A failure
/// midway is logged and ends the body with an error, so the client sees a broken download
/// rather than a short one that looks complete.
fn pump(
    chunks: impl Stream<Item = anyhow::Result<Bytes>> + Send + 'static,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(IN_FLIGHT);
    tokio::spawn(async move {
        let mut chunks = std::pin::pin!(chunks);
        while let Some(chunk) = chunks.next().await {
            let item = chunk.map_err(|e| {
                tracing::error!(error = %format!("{e:#}"), "an audit export failed midway");
                std::io::Error::other("the export failed midway")
            });
            let failed = item.is_err();
            // The client went away: stop reading.
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn params(format: Option<&str>, start: Option<&str>, end: Option<&str>) -> ExportParams {
        ExportParams {
            format: format.map(str::to_owned),
            start_time: start.map(str::to_owned),
            end_time: end.map(str::to_owned),
        }
    }

    #[test]
    fn bad_parameters_are_400_invalid_query() {
        for bad in [
            params(Some("xml"), None, None),
            params(None, Some("yesterday"), None),
            params(None, None, Some("2026-13-01T00:00:00Z")),
            params(
                None,
                Some("2026-02-01T00:00:00Z"),
                Some("2026-01-01T00:00:00Z"),
            ),
        ] {
            let e = bad.validate().expect_err("refused");
            assert_eq!(
                (e.status(), e.code()),
                (StatusCode::BAD_REQUEST, "invalid_query")
            );
        }
    }

    #[test]
    fn ndjson_is_the_default_and_only_given_parameters_are_recorded() {
        let p = params(None, Some("2026-01-01T00:00:00Z"), None);
        let (format, range) = p.validate().expect("valid");
        assert_eq!(format, Format::Ndjson);
        assert!(range.start.is_some() && range.end.is_none());
        assert_eq!(
            p.as_map().into_iter().collect::<Vec<_>>(),
            vec![("start_time".to_owned(), "2026-01-01T00:00:00Z".to_owned())]
        );
    }
}
