//! `GET /audit/events`: AuditRecords with filters, both sort orders and `search_after` pages.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use gatehouse_domain::policy;
use gatehouse_events::audit::{AuditRecord, EVENT_TYPES};
use gatehouse_projections::audit_query::{self, Filter, PartyFilter, Sort};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Caller, QueryParams};

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = audit_query::MAX_LIMIT;

/// The query, as given: every value is checked here, so a bad one is named in a 400.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditEventParams {
    /// Records at or after this time (RFC 3339).
    #[param(format = DateTime)]
    pub start_time: Option<String>,
    /// Records before this time (RFC 3339); excluded.
    #[param(format = DateTime)]
    pub end_time: Option<String>,
    /// One AuditRecord `event_type`, e.g. `admin_update`.
    pub event_type: Option<String>,
    /// The initiator: an admin's id or email, or `system`.
    pub initiated_by: Option<String>,
    /// What the record is about: an admin's id or email, or the organisation's id.
    pub resource: Option<String>,
    /// At most this many records, 1 to 1000 (default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// The `search_after` of the previous page: the next page starts after that record.
    pub search_after: Option<String>,
    /// `asc` (oldest first, the default) or `desc`, by position.
    #[param(pattern = "^(asc|desc)$")]
    pub sort: Option<String>,
}

/// The parameters, checked.
struct Query {
    filter: Filter,
    sort: Sort,
    search_after: Option<i64>,
    limit: i64,
}

fn time(name: &str, value: &Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .as_deref()
        .map(|v| {
            DateTime::parse_from_rfc3339(v.trim())
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::invalid_query(format!(
                        "{name} must be an RFC 3339 time such as 2026-11-28T10:00:00Z."
                    ))
                })
        })
        .transpose()
}

fn party(
    name: &str,
    value: &Option<String>,
    system: bool,
) -> Result<Option<PartyFilter>, ApiError> {
    let refused = || {
        let what = if system {
            "an admin's id or email, or system"
        } else {
            "an admin's id or email, or the organisation's id"
        };
        ApiError::invalid_query(format!("{name} must be {what}."))
    };
    match value.as_deref().map(PartyFilter::parse) {
        None => Ok(None),
        Some(None) => Err(refused()),
        Some(Some(PartyFilter::System)) if !system => Err(refused()),
        Some(Some(party)) => Ok(Some(party)),
    }
}

impl AuditEventParams {
    fn check(&self) -> Result<Query, ApiError> {
        let start_time = time("start_time", &self.start_time)?;
        let end_time = time("end_time", &self.end_time)?;
        if let (Some(start), Some(end)) = (start_time, end_time)
            && start >= end
        {
            return Err(ApiError::invalid_query(
                "start_time must be before end_time.",
            ));
        }
        let event_type = match self.event_type.as_deref() {
            None => None,
            Some(t) if EVENT_TYPES.contains(&t) => Some(t.to_owned()),
            Some(_) => {
                return Err(ApiError::invalid_query(format!(
                    "event_type must be one of {}.",
                    EVENT_TYPES.join(", ")
                )));
            }
        };
        let sort = match self.sort.as_deref() {
            None => Sort::Asc,
            Some(s) => Sort::parse(s)
                .ok_or_else(|| ApiError::invalid_query("sort must be asc or desc."))?,
        };
        let search_after = match self.search_after.as_deref() {
            None => None,
            Some(s) => Some(
                s.trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|p| *p >= 0)
                    .ok_or_else(|| {
                        ApiError::invalid_query(
                            "search_after must be the search_after of a previous page.",
                        )
                    })?,
            ),
        };
        let limit = match self.limit.as_deref() {
            None => DEFAULT_LIMIT,
            Some(s) => s
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|l| (1..=MAX_LIMIT).contains(l))
                .ok_or_else(|| {
                    ApiError::invalid_query(format!("limit must be between 1 and {MAX_LIMIT}."))
                })?,
        };
        Ok(Query {
            filter: Filter {
                start_time,
                end_time,
                event_type,
                initiated_by: party("initiated_by", &self.initiated_by, true)?,
                resource: party("resource", &self.resource, false)?,
            },
            sort,
            search_after,
            limit,
        })
    }

    /// The parameters given, as the audit access records them.
    fn as_map(&self) -> BTreeMap<String, String> {
        [
            ("start_time", &self.start_time),
            ("end_time", &self.end_time),
            ("event_type", &self.event_type),
            ("initiated_by", &self.initiated_by),
            ("resource", &self.resource),
            ("limit", &self.limit),
            ("search_after", &self.search_after),
            ("sort", &self.sort),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_owned(), v.clone()?)))
        .collect()
    }
}

/// A page of the history.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventsPage {
    #[schema(value_type = Vec<AuditRecordDoc>)]
    pub events: Vec<AuditRecord>,
    /// Pass it back as `search_after` for the next page; null on the last page.
    pub search_after: Option<String>,
}

/// An AuditRecord (SPEC §5), shaped like JumpCloud Directory Insights. Fields that do not apply
/// are omitted. Documentation only: answers carry `gatehouse_events::audit::AuditRecord`.
#[derive(Serialize, ToSchema)]
#[schema(as = AuditRecord)]
pub struct AuditRecordDoc {
    /// The event's id.
    pub id: Uuid,
    #[schema(example = "admin_update")]
    pub event_type: String,
    #[schema(example = "2026-11-28T10:00:00.123Z")]
    pub timestamp: String,
    #[schema(example = "directory")]
    pub service: String,
    pub organization: Uuid,
    /// The event's global position: the order of the history.
    pub position: i64,
    pub initiated_by: PartyDoc,
    pub resource: PartyDoc,
    pub changes: Option<Vec<ChangeDoc>>,
    /// Login attempts.
    pub success: Option<bool>,
    /// Login attempts: whether a second factor was part of it.
    pub mfa: Option<bool>,
    pub mfa_meta: Option<MfaMetaDoc>,
    /// `session` or `api-key`.
    pub auth_method: Option<String>,
    pub client_ip: Option<String>,
    pub useragent: Option<String>,
    /// Failed login attempts: `invalid_password`, `invalid_code` or `locked`.
    pub reason: Option<String>,
    /// `admin_audit_access` records: what was read (`action`) with which parameters (`query`).
    #[schema(value_type = Option<Object>)]
    pub audit: Option<serde_json::Value>,
}

/// Who did it, or what it was done to.
#[derive(Serialize, ToSchema)]
#[schema(as = AuditParty)]
pub struct PartyDoc {
    /// Absent for the system.
    pub id: Option<Uuid>,
    /// `admin`, `system` or `organization`.
    #[serde(rename = "type")]
    pub kind: String,
    pub email: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = AuditChange)]
pub struct ChangeDoc {
    #[schema(example = "enableMultiFactor")]
    pub field: String,
    /// The value before: any JSON value (a string, a boolean, null, …).
    #[schema(value_type = serde_json::Value)]
    pub from: serde_json::Value,
    /// The value after: any JSON value.
    #[schema(value_type = serde_json::Value)]
    pub to: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
#[schema(as = AuditMfaMeta)]
pub struct MfaMetaDoc {
    /// `totp` or `none`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// The caller's organisation's audit history, filtered and paged (keyset, by position). The
/// read is itself recorded in the history.
#[utoipa::path(
    get, path = "/api/v1/audit/events", tag = "audit", operation_id = "list_audit_events",
    params(AuditEventParams),
    responses(
        (status = 200, description = "A page of AuditRecords", body = AuditEventsPage),
        (status = 400, description = "A bad filter, sort, limit or search_after", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "The role may not see the history", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(params): QueryParams<AuditEventParams>,
) -> Result<Json<AuditEventsPage>, ApiError> {
    // Refuse the role before judging its parameters; record only reads that happen.
    caller.must(policy::can_read_directory)?;
    let query = params.check()?;
    super::record_access(&state, &caller, "events", params.as_map()).await?;
    let page = audit_query::list(
        &state.db,
        caller.org_id().0,
        &query.filter,
        query.sort,
        query.search_after,
        query.limit,
    )
    .await?;
    Ok(Json(AuditEventsPage {
        events: page.records,
        search_after: page.search_after.map(|p| p.to_string()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn params(pairs: &[(&str, &str)]) -> AuditEventParams {
        let map: BTreeMap<&str, &str> = pairs.iter().copied().collect();
        serde_json::from_value(serde_json::json!(map)).expect("string parameters")
    }

    #[track_caller]
    fn refused(pairs: &[(&str, &str)], needle: &str) {
        let err = params(pairs).check().err().expect("refused");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert_eq!(err.code(), "invalid_query");
        let body = format!("{:?}", err);
        assert!(body.contains(needle), "{body}");
    }

    #[test]
    fn defaults_are_the_first_hundred_oldest_first() {
        let q = params(&[]).check().expect("valid");
        assert_eq!((q.sort, q.search_after, q.limit), (Sort::Asc, None, 100));
        assert_eq!(q.filter, Filter::default());
    }

    #[test]
    fn every_bad_parameter_is_named() {
        refused(&[("limit", "0")], "limit");
        refused(&[("limit", "1001")], "limit");
        refused(&[("limit", "ten")], "limit");
        refused(&[("sort", "up")], "sort");
        refused(&[("search_after", "abc")], "search_after");
        refused(&[("search_after", "-1")], "search_after");
        refused(&[("event_type", "admin_teleport")], "event_type");
        refused(&[("start_time", "yesterday")], "start_time");
        refused(&[("end_time", "2026-13-01")], "end_time");
        refused(
            &[
                ("start_time", "2026-01-02T00:00:00Z"),
                ("end_time", "2026-01-01T00:00:00Z"),
            ],
            "before end_time",
        );
        refused(&[("initiated_by", "ada")], "initiated_by");
        refused(&[("resource", "system")], "resource");
    }

    #[test]
    fn good_parameters_become_the_filter_and_are_recorded_as_given() {
        let p = params(&[
            ("start_time", "2026-01-01T00:00:00+01:00"),
            ("event_type", "admin_update"),
            ("initiated_by", "system"),
            ("resource", "Ada@Example.com"),
            ("sort", "desc"),
            ("search_after", "42"),
            ("limit", "1000"),
        ]);
        let q = p.check().expect("valid");
        assert_eq!(
            q.filter.start_time.map(|t| t.to_rfc3339()),
            Some("2025-12-31T23:00:00+00:00".into())
        );
        assert_eq!(q.filter.initiated_by, Some(PartyFilter::System));
        assert_eq!(
            q.filter.resource,
            Some(PartyFilter::Email("ada@example.com".into()))
        );
        assert_eq!(
            (q.sort, q.search_after, q.limit),
            (Sort::Desc, Some(42), 1000)
        );
        assert_eq!(p.as_map().len(), 7);
        assert_eq!(p.as_map()["resource"], "Ada@Example.com");
    }

    #[test]
    fn the_openapi_document_describes_the_route_and_the_record() {
        use utoipa::OpenApi;
        let doc = serde_json::to_value(crate::routes::openapi::ApiDoc::openapi()).expect("json");
        let get = &doc["paths"]["/api/v1/audit/events"]["get"];
        assert!(get.is_object(), "the route is documented");
        let schemas = &doc["components"]["schemas"];
        for name in [
            "AuditEventsPage",
            "AuditRecord",
            "AuditParty",
            "AuditChange",
        ] {
            assert!(schemas[name].is_object(), "{name} is described");
        }
    }
}
