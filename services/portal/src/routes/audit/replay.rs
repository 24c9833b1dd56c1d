//! `GET /audit/admins-without-mfa-required?as_of=T` and `GET /audit/mfa-coverage`: the state at
//! a past instant, folded from the events (not from a read model), by
//! [`gatehouse_projections::history`].

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Days, NaiveDate, Utc};
use gatehouse_domain::policy;
use gatehouse_events::format_time;
use gatehouse_projections::history::{self, MAX_DAYS};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Caller, QueryParams};
use crate::views::Admin;

/// Days in the default coverage series, ending today.
pub const DEFAULT_DAYS: u32 = 30;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AsOfParams {
    /// The instant (RFC 3339): every event at or before it (to the millisecond) counts. A time
    /// in the future means now. Required (a missing one is refused with 400 `invalid_query`).
    #[param(value_type = String, format = DateTime, example = "2026-11-28T10:00:00Z")]
    pub as_of: Option<String>,
}

impl AsOfParams {
    /// The instant asked for, to the millisecond, no later than `now`.
    fn check(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
        let Some(raw) = self.as_of.as_deref() else {
            return Err(ApiError::invalid_query(
                "as_of is required: an RFC 3339 time such as 2026-11-28T10:00:00Z.",
            ));
        };
        let t = DateTime::parse_from_rfc3339(raw.trim())
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                ApiError::invalid_query(
                    "as_of must be an RFC 3339 time such as 2026-11-28T10:00:00Z.",
                )
            })?;
        Ok(history::to_millis(t.min(now)))
    }

    fn as_map(&self) -> BTreeMap<String, String> {
        self.as_of
            .iter()
            .map(|v| ("as_of".to_owned(), v.clone()))
            .collect()
    }
}

/// The Admins Without MFA Required widget as it stood at an instant.
#[derive(Debug, Serialize, ToSchema)]
pub struct AsOfAnswer {
    /// The instant answered for (RFC 3339 UTC, milliseconds): the one asked, or now if that
    /// was in the future.
    #[schema(example = "2026-11-28T10:00:00.000Z")]
    pub as_of: String,
    pub count: i64,
    /// Every one of them, in the widget's order (by id: creation order), with their MFA facts
    /// as they stood then.
    pub admins: Vec<Admin>,
}

/// The Admins Without MFA Required list as it stood at `as_of`, replayed from the
/// organisation's events up to that instant. The read is itself recorded in the history.
#[utoipa::path(
    get, path = "/api/v1/audit/admins-without-mfa-required", tag = "audit",
    params(AsOfParams),
    responses(
        (status = 200, description = "The list as it stood then", body = AsOfAnswer),
        (status = 400, description = "A missing or malformed as_of", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "The role may not see the history", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn admins_without_mfa_required(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(params): QueryParams<AsOfParams>,
) -> Result<Json<AsOfAnswer>, ApiError> {
    // Refuse the role before judging its parameters; record only reads that happen.
    caller.must(policy::can_read_directory)?;
    let as_of = params.check(Utc::now())?;
    super::record_access(
        &state,
        &caller,
        "admins_without_mfa_required",
        params.as_map(),
    )
    .await?;
    let replay = history::admins_as_of(&state.db, caller.org_id().0, as_of).await?;
    let admins: Vec<Admin> = replay
        .without_mfa_required()
        .into_iter()
        .map(Admin::from)
        .collect();
    Ok(Json(AsOfAnswer {
        as_of: format_time(as_of),
        count: admins.len() as i64,
        admins,
    }))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CoverageParams {
    /// The first day (UTC), as `2026-11-01` or an RFC 3339 time on that day; default: 29 days
    /// before `to`.
    pub from: Option<String>,
    /// The last day (UTC), likewise; default: today.
    pub to: Option<String>,
    /// `day`, the only interval (the default).
    #[param(pattern = "^day$")]
    pub interval: Option<String>,
}

fn day(name: &str, value: Option<&str>) -> Result<Option<NaiveDate>, ApiError> {
    let Some(raw) = value.map(str::trim) else {
        return Ok(None);
    };
    if let Ok(d) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        return Ok(Some(d));
    }
    DateTime::parse_from_rfc3339(raw)
        .map(|t| Some(t.with_timezone(&Utc).date_naive()))
        .map_err(|_| {
            ApiError::invalid_query(format!(
                "{name} must be a day such as 2026-11-28 or an RFC 3339 time."
            ))
        })
}

impl CoverageParams {
    /// The first and last day of the series.
    fn check(&self, today: NaiveDate) -> Result<(NaiveDate, NaiveDate), ApiError> {
        match self.interval.as_deref().map(str::trim) {
            None | Some("day") => {}
            Some(_) => return Err(ApiError::invalid_query("interval must be day.")),
        }
        let to = day("to", self.to.as_deref())?.unwrap_or(today);
        let from = match day("from", self.from.as_deref())? {
            Some(from) => from,
            None => to
                .checked_sub_days(Days::new(u64::from(DEFAULT_DAYS - 1)))
                .ok_or_else(|| ApiError::invalid_query("to is too early."))?,
        };
        if from > to {
            return Err(ApiError::invalid_query("from must not be after to."));
        }
        if (to - from).num_days() + 1 > i64::from(MAX_DAYS) {
            return Err(ApiError::invalid_query(format!(
                "A series holds at most {MAX_DAYS} days: narrow from and to."
            )));
        }
        Ok((from, to))
    }

    fn as_map(&self) -> BTreeMap<String, String> {
        [
            ("from", &self.from),
            ("to", &self.to),
            ("interval", &self.interval),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_owned(), v.clone()?)))
        .collect()
    }
}

/// The MFA coverage at the end of one day.
#[derive(Debug, Serialize, ToSchema)]
pub struct CoveragePointBody {
    /// The last instant of the day (UTC, milliseconds): the counts are the state then, as
    /// the as-of route would answer for this instant. For today, the state now.
    #[schema(example = "2026-11-28T23:59:59.999Z")]
    pub t: String,
    /// Administrators.
    pub admins: i64,
    /// Of them, those with MFA required.
    pub mfa_required: i64,
    /// Of them, those enrolled in MFA.
    pub mfa_enrolled: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CoverageAnswer {
    /// One point per UTC day from `from` to `to`, oldest first.
    pub points: Vec<CoveragePointBody>,
}

/// The organisation's MFA coverage at the end of each UTC day, replayed from its events. The
/// read is itself recorded in the history.
#[utoipa::path(
    get, path = "/api/v1/audit/mfa-coverage", tag = "audit",
    params(CoverageParams),
    responses(
        (status = 200, description = "One point per day", body = CoverageAnswer),
        (status = 400, description = "A malformed day, from after to, more than 3660 days, or an interval other than day", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "The role may not see the history", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn mfa_coverage(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(params): QueryParams<CoverageParams>,
) -> Result<Json<CoverageAnswer>, ApiError> {
    caller.must(policy::can_read_directory)?;
    let (from, to) = params.check(Utc::now().date_naive())?;
    super::record_access(&state, &caller, "mfa_coverage", params.as_map()).await?;
    let points = history::coverage(&state.db, caller.org_id().0, from, to).await?;
    let points = points
        .into_iter()
        .map(|p| CoveragePointBody {
            t: p.end().map(format_time).unwrap_or_default(),
            admins: p.admins,
            mfa_required: p.mfa_required,
            mfa_enrolled: p.mfa_enrolled,
        })
        .collect();
    Ok(Json(CoverageAnswer { points }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 28).expect("a day")
    }

    #[track_caller]
    fn refused(err: ApiError, needle: &str) {
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert_eq!(err.code(), "invalid_query");
        let body = format!("{err:?}");
        assert!(body.contains(needle), "{body}");
    }

    fn coverage(from: Option<&str>, to: Option<&str>, interval: Option<&str>) -> CoverageParams {
        CoverageParams {
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            interval: interval.map(str::to_owned),
        }
    }

    #[test]
    fn as_of_is_required_well_formed_and_at_most_now() {
        let now = DateTime::parse_from_rfc3339("2026-11-28T10:00:00.123456Z")
            .expect("a time")
            .with_timezone(&Utc);
        let p = |v: &str| AsOfParams {
            as_of: Some(v.to_owned()),
        };
        refused(
            AsOfParams::default().check(now).expect_err("refused"),
            "as_of",
        );
        refused(p("yesterday").check(now).expect_err("refused"), "as_of");
        assert_eq!(
            format_time(p("2026-01-01T01:00:00.0009+01:00").check(now).expect("ok")),
            "2026-01-01T00:00:00.000Z"
        );
        assert_eq!(
            format_time(p("2999-01-01T00:00:00Z").check(now).expect("ok")),
            "2026-11-28T10:00:00.123Z"
        );
    }

    #[test]
    fn coverage_defaults_to_the_last_thirty_days_and_refuses_what_it_cannot_answer() {
        let (from, to) = coverage(None, None, None).check(today()).expect("ok");
        assert_eq!((to, (to - from).num_days()), (today(), 29));
        let (from, to) = coverage(
            Some("2026-11-01T23:00:00-02:00"),
            Some("2026-11-03"),
            Some("day"),
        )
        .check(today())
        .expect("ok");
        assert_eq!(
            (from.to_string(), to.to_string()),
            ("2026-11-02".into(), "2026-11-03".into())
        );
        let err = |p: CoverageParams| p.check(today()).expect_err("refused");
        refused(err(coverage(None, None, Some("week"))), "interval");
        refused(err(coverage(Some("soon"), None, None)), "from");
        refused(err(coverage(None, Some("2026-13-01"), None)), "to");
        refused(
            err(coverage(Some("2026-11-05"), Some("2026-11-04"), None)),
            "after",
        );
        refused(err(coverage(Some("2016-11-01"), None, None)), "3660");
        assert!(
            coverage(Some("2016-12-06"), None, None)
                .check(today())
                .is_ok()
        );
    }

    #[test]
    fn the_openapi_document_describes_both_routes() {
        use utoipa::OpenApi;
        let doc = serde_json::to_value(crate::routes::openapi::ApiDoc::openapi()).expect("json");
        for path in [
            "/api/v1/audit/admins-without-mfa-required",
            "/api/v1/audit/mfa-coverage",
        ] {
            assert!(
                doc["paths"][path]["get"].is_object(),
                "{path} is documented"
            );
        }
        let schemas = &doc["components"]["schemas"];
        for name in ["AsOfAnswer", "CoverageAnswer", "CoveragePointBody", "Admin"] {
            assert!(schemas[name].is_object(), "{name} is described");
        }
    }
}
