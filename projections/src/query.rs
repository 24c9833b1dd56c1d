//! Reads for the HTTP layer. Every read is scoped to one organisation (or one admin) and is one
//! SQL statement, so it sees one snapshot. Lists are keyset-paginated by admin id, which is a
//! UUID v7 and so follows creation order.
//!
//! Pagination: pass `after = None` for the first page and a page's last id for the next. A page
//! holds at most `limit` rows; when it holds exactly `limit`, the caller sets `next_cursor` to
//! its last id (the next page may then be empty). `limit` must be within
//! [`MIN_LIMIT`]`..=`[`MAX_LIMIT`]: callers validate it first (answering 422), anything else is
//! an error here.
//!
//! Tables are named with their schema (`proj_admins.admins`): a rebuild swaps schemas by name
//! and Postgres resolves the names again, also in cached plans.

use std::collections::HashMap;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use futures::TryStreamExt;
use gatehouse_events::Event;
use gatehouse_store::Db;
use tokio_postgres::Row;
use uuid::Uuid;

pub const MIN_LIMIT: i64 = 1;
pub const MAX_LIMIT: i64 = 200;

/// An administrator as the API shows them (SPEC §3 "Admin object").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminView {
    pub id: Uuid,
    pub org_id: Uuid,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub mfa_required: bool,
    /// `default`, `admin` or `global` while required; `None` otherwise.
    pub requirement_source: Option<String>,
    pub enrolled: bool,
    pub locked: bool,
}

/// An organisation's settings and the counts of its admins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgSummary {
    pub id: Uuid,
    pub name: String,
    pub global_mfa_required: bool,
    pub admins: i64,
    /// The Admins Without MFA Required widget's count.
    pub without_mfa_required: i64,
}

const ADMIN_COLUMNS: &str = "admin_id, org_id, email, first_name, last_name, role, created_at, \
     mfa_required, requirement_source, enrolled, locked";

fn admin(row: &Row) -> anyhow::Result<AdminView> {
    Ok(AdminView {
        id: row.try_get("admin_id")?,
        org_id: row.try_get("org_id")?,
        email: row.try_get("email")?,
        first_name: row.try_get("first_name")?,
        last_name: row.try_get("last_name")?,
        role: row.try_get("role")?,
        created_at: row.try_get("created_at")?,
        mfa_required: row.try_get("mfa_required")?,
        requirement_source: row.try_get("requirement_source")?,
        enrolled: row.try_get("enrolled")?,
        locked: row.try_get("locked")?,
    })
}

fn check_limit(limit: i64) -> anyhow::Result<()> {
    anyhow::ensure!(
        (MIN_LIMIT..=MAX_LIMIT).contains(&limit),
        "a page holds {MIN_LIMIT} to {MAX_LIMIT} admins, not {limit}"
    );
    Ok(())
}

/// The nil UUID sorts before every id, so "after nil" is the first page.
fn cursor(after: Option<Uuid>) -> Uuid {
    after.unwrap_or(Uuid::nil())
}

/// A page of the organisation's admins in creation order (see the module's pagination notes).
pub async fn list_admins(
    db: &Db,
    org: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> anyhow::Result<Vec<AdminView>> {
    check_limit(limit)?;
    let client = db
        .pool
        .get()
        .await
        .context("getting a Postgres connection")?;
    let sql = format!(
        "SELECT {ADMIN_COLUMNS} FROM proj_admins.admins
         WHERE org_id = $1 AND admin_id > $2 ORDER BY admin_id LIMIT $3"
    );
    let statement = client
        .prepare_cached(&sql)
        .await
        .context("preparing the admin list")?;
    let rows = client
        .query(&statement, &[&org, &cursor(after), &limit])
        .await
        .context("listing admins")?;
    rows.iter().map(admin).collect()
}

/// One admin of the organisation; `None` when absent, removed, or of another organisation.
pub async fn get_admin(db: &Db, org: Uuid, id: Uuid) -> anyhow::Result<Option<AdminView>> {
    let client = db
        .pool
        .get()
        .await
        .context("getting a Postgres connection")?;
    let sql = format!(
        "SELECT {ADMIN_COLUMNS} FROM proj_admins.admins WHERE org_id = $1 AND admin_id = $2"
    );
    let statement = client
        .prepare_cached(&sql)
        .await
        .context("preparing the admin look-up")?;
    let row = client
        .query_opt(&statement, &[&org, &id])
        .await
        .context("reading an admin")?;
    row.as_ref().map(admin).transpose()
}

/// The Admins Without MFA Required widget: how many there are in the organisation, and a page
/// of them (see the module's pagination notes). Count and page come from one snapshot.
pub async fn admins_without_mfa(
    db: &Db,
    org: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> anyhow::Result<(i64, Vec<AdminView>)> {
    check_limit(limit)?;
    let client = db
        .pool
        .get()
        .await
        .context("getting a Postgres connection")?;
    // One row with the count even when the page is empty (the page's columns are then NULL).
    let sql = format!(
        "SELECT count.n, page.*
         FROM (SELECT coalesce((SELECT without_mfa_required FROM proj_admins.orgs WHERE org_id = $1), 0)::bigint AS n) AS count
         LEFT JOIN LATERAL (
             SELECT {ADMIN_COLUMNS} FROM proj_admins.admins
             WHERE org_id = $1 AND NOT mfa_required AND admin_id > $2
             ORDER BY admin_id LIMIT $3
         ) AS page ON true"
    );
    let statement = client
        .prepare_cached(&sql)
        .await
        .context("preparing the widget's list")?;
    let rows = client
        .query(&statement, &[&org, &cursor(after), &limit])
        .await
        .context("listing admins without MFA required")?;
    let count = match rows.first() {
        Some(row) => row.try_get(0).context("reading the widget's count")?,
        None => 0,
    };
    let mut page = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: Option<Uuid> = row.try_get("admin_id")?;
        if id.is_some() {
            page.push(admin(row)?);
        }
    }
    Ok((count, page))
}

/// Whether the admin shows the Admins Without MFA Required widget (shown unless they hid it).
pub async fn widget_visible(db: &Db, admin: Uuid) -> anyhow::Result<bool> {
    let client = db
        .pool
        .get()
        .await
        .context("getting a Postgres connection")?;
    let statement = client
        .prepare_cached(
            "SELECT admins_without_mfa_required_visible FROM proj_home_widgets.widgets WHERE admin_id = $1",
        )
        .await
        .context("preparing the widget look-up")?;
    let row = client
        .query_opt(&statement, &[&admin])
        .await
        .context("reading an admin's widgets")?;
    match row {
        Some(row) => row.try_get(0).context("reading the widget's visibility"),
        None => Ok(true),
    }
}

/// The organisation's name, Global MFA Requirement and counts; `None` if it does not exist.
pub async fn org_summary(db: &Db, org: Uuid) -> anyhow::Result<Option<OrgSummary>> {
    let client = db
        .pool
        .get()
        .await
        .context("getting a Postgres connection")?;
    let statement = client
        .prepare_cached(
            "SELECT org_id, name, global_mfa_required, admins::bigint, without_mfa_required::bigint
             FROM proj_admins.orgs WHERE org_id = $1",
        )
        .await
        .context("preparing the organisation look-up")?;
    let row = client
        .query_opt(&statement, &[&org])
        .await
        .context("reading an organisation")?;
    row.map(|row| {
        Ok(OrgSummary {
            id: row.try_get(0)?,
            name: row.try_get(1)?,
            global_mfa_required: row.try_get(2)?,
            admins: row.try_get(3)?,
            without_mfa_required: row.try_get(4)?,
        })
    })
    .transpose()
}

/// One day of an organisation's MFA coverage, as it stood at the end of that day (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoveragePoint {
    pub day: NaiveDate,
    /// Live administrators.
    pub admins: i64,
    /// Of them, those with MFA required.
    pub mfa_required: i64,
    /// Of them, those who completed enrollment.
    pub mfa_enrolled: i64,
}

/// What the coverage fold knows about one administrator.
#[derive(Debug, Clone, Copy, Default)]
struct AdminFacts {
    required: bool,
    enrolled: bool,
}

#[derive(Debug, Clone, Copy)]
enum Fact {
    Required,
    Enrolled,
}

/// Folds an organisation's admin events, in position order, into one [`CoveragePoint`] per day
/// of a window: `days` days ending with `last_day`. Events before the window set the starting
/// state; events after `last_day` must not be pushed.
///
/// Counters are kept alongside the per-admin facts, so a day costs O(1) to close.
#[derive(Debug)]
pub struct CoverageFold {
    admins: HashMap<Uuid, AdminFacts>,
    required: i64,
    enrolled: i64,
    first_day: NaiveDate,
    days: usize,
    points: Vec<CoveragePoint>,
}

impl CoverageFold {
    pub fn new(last_day: NaiveDate, days: u32) -> CoverageFold {
        let days = days.max(1);
        CoverageFold {
            admins: HashMap::new(),
            required: 0,
            enrolled: 0,
            first_day: last_day - chrono::Days::new(u64::from(days - 1)),
            days: days as usize,
            points: Vec::with_capacity(days as usize),
        }
    }

    /// The next day still to be closed, if the window has one.
    fn open_day(&self) -> Option<NaiveDate> {
        (self.points.len() < self.days)
            .then(|| self.first_day + chrono::Days::new(self.points.len() as u64))
    }

    /// Closes every day of the window before `day` with the state as it stands.
    fn close_days_before(&mut self, day: NaiveDate) {
        while let Some(open) = self.open_day() {
            if open >= day {
                break;
            }
            self.points.push(CoveragePoint {
                day: open,
                admins: self.admins.len() as i64,
                mfa_required: self.required,
                mfa_enrolled: self.enrolled,
            });
        }
    }

    /// Applies one event that happened at `at`; events other than the admin's creation,
    /// removal, requirement and enrollment are ignored.
    pub fn push(&mut self, at: DateTime<Utc>, event: &Event) {
        self.close_days_before(at.date_naive());
        match event {
            Event::AdminCreated(e) => {
                if self.admins.contains_key(&e.admin_id) {
                    return;
                }
                self.admins.insert(
                    e.admin_id,
                    AdminFacts {
                        required: e.mfa_required,
                        enrolled: false,
                    },
                );
                self.required += i64::from(e.mfa_required);
            }
            Event::AdminRemoved(e) => {
                if let Some(facts) = self.admins.remove(&e.admin_id) {
                    self.required -= i64::from(facts.required);
                    self.enrolled -= i64::from(facts.enrolled);
                }
            }
            Event::MfaRequired(e) => self.set(e.admin_id, Fact::Required, true),
            Event::MfaRequirementRemoved(e) => self.set(e.admin_id, Fact::Required, false),
            Event::MfaEnrollmentCompleted(e) => self.set(e.admin_id, Fact::Enrolled, true),
            _ => {}
        }
    }

    /// Sets one fact of a live admin and keeps its counter in step.
    fn set(&mut self, admin: Uuid, fact: Fact, value: bool) {
        let Some(facts) = self.admins.get_mut(&admin) else {
            return;
        };
        let (slot, counter) = match fact {
            Fact::Required => (&mut facts.required, &mut self.required),
            Fact::Enrolled => (&mut facts.enrolled, &mut self.enrolled),
        };
        if *slot != value {
            *slot = value;
            *counter += if value { 1 } else { -1 };
        }
    }

    /// The window's points, the days after the last event carrying the final state.
    pub fn finish(mut self) -> Vec<CoveragePoint> {
        let after_window = self.first_day + chrono::Days::new(self.days as u64);
        self.close_days_before(after_window);
        self.points
    }
}

/// The organisation's MFA coverage per day over `days` days ending with `last_day` (UTC),
/// folded from its admin events in the store (the read models keep no history). Reads the
/// events as a stream, so memory holds one entry per admin, not the history.
pub async fn mfa_coverage(
    db: &Db,
    org: Uuid,
    last_day: NaiveDate,
    days: u32,
) -> anyhow::Result<Vec<CoveragePoint>> {
    // Any version of the types the fold reads; decoding upcasts old versions.
    const TYPES: &str = r"^gatehouse\.admin\.(created|removed|mfa_required|mfa_requirement_removed|mfa_enrollment_completed)\.v[0-9]+$";
    let end = (last_day + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .context("the end of the coverage window")?;
    let client = db
        .pool
        .get()
        .await
        .context("getting a Postgres connection")?;
    let statement = client
        .prepare_cached(
            "SELECT occurred_at, event_type, envelope->'data' FROM events
             WHERE org_id = $1 AND event_type ~ $2 AND occurred_at < $3 ORDER BY position",
        )
        .await
        .context("preparing the coverage read")?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&org, &TYPES, &end];
    let rows = client
        .query_raw(&statement, params)
        .await
        .context("reading the organisation's admin events")?;
    futures::pin_mut!(rows);
    let mut fold = CoverageFold::new(last_day, days);
    while let Some(row) = rows.try_next().await.context("reading an admin event")? {
        let at: DateTime<Utc> = row.try_get(0)?;
        let event_type: String = row.try_get(1)?;
        let data: serde_json::Value = row.try_get(2)?;
        let event = Event::decode(&event_type, &data)
            .with_context(|| format!("decoding a stored {event_type}"))?;
        fold.push(at, &event);
    }
    Ok(fold.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use gatehouse_events::types::{AdminCreated, AdminRef, MfaEnrollmentCompleted, MfaRequired};
    use gatehouse_events::{RequirementSource, Role};

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0)
            .single()
            .expect("a valid time")
    }

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).expect("a valid day")
    }

    fn created(id: Uuid, mfa_required: bool) -> Event {
        Event::AdminCreated(AdminCreated {
            admin_id: id,
            email: format!("{id}@example.com"),
            first_name: "Ada".to_owned(),
            last_name: "Lovelace".to_owned(),
            role: Role::Administrator,
            mfa_required,
        })
    }

    fn required(id: Uuid) -> Event {
        Event::MfaRequired(MfaRequired {
            admin_id: id,
            source: RequirementSource::Admin,
        })
    }

    fn enrolled(id: Uuid) -> Event {
        Event::MfaEnrollmentCompleted(MfaEnrollmentCompleted {
            admin_id: id,
            method: "totp".to_owned(),
            replaced_previous: false,
        })
    }

    fn point(d: u32, admins: i64, mfa_required: i64, mfa_enrolled: i64) -> CoveragePoint {
        CoveragePoint {
            day: day(d),
            admins,
            mfa_required,
            mfa_enrolled,
        }
    }

    #[test]
    fn coverage_is_the_state_at_the_end_of_each_day_of_the_window() {
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let mut fold = CoverageFold::new(day(10), 5);
        // Before the window: the starting state.
        fold.push(at(1, 9), &created(a, true));
        fold.push(at(2, 9), &created(b, false));
        // Day 7: b becomes required, then the requirement is removed again the same day.
        fold.push(at(7, 9), &required(b));
        fold.push(
            at(7, 10),
            &Event::MfaRequirementRemoved(AdminRef { admin_id: b }),
        );
        // Day 8: a enrolls (twice: a reset counts once), c arrives required.
        fold.push(at(8, 9), &enrolled(a));
        fold.push(at(8, 10), &enrolled(a));
        fold.push(at(8, 11), &created(c, true));
        fold.push(at(8, 12), &required(c));
        // Day 9: a leaves, taking their requirement and enrollment with them.
        fold.push(at(9, 23), &Event::AdminRemoved(AdminRef { admin_id: a }));
        assert_eq!(
            fold.finish(),
            vec![
                point(6, 2, 1, 0),
                point(7, 2, 1, 0),
                point(8, 3, 2, 1),
                point(9, 2, 1, 0),
                point(10, 2, 1, 0),
            ]
        );
    }

    #[test]
    fn an_empty_history_gives_a_window_of_zeroes_and_unknown_admins_are_ignored() {
        let mut fold = CoverageFold::new(day(3), 3);
        fold.push(at(2, 0), &required(Uuid::now_v7()));
        fold.push(at(2, 0), &enrolled(Uuid::now_v7()));
        assert_eq!(
            fold.finish(),
            vec![point(1, 0, 0, 0), point(2, 0, 0, 0), point(3, 0, 0, 0)]
        );
    }
}
