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

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
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
    let client = db.client().await?;
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
    let client = db.client().await?;
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
    let client = db.client().await?;
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
    let client = db.client().await?;
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
    let client = db.client().await?;
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

pub use crate::history::CoveragePoint;

/// The organisation's MFA coverage per day over `days` days ending with `last_day` (UTC), as it
/// stood at the end of each day: the Home chart. Folded from the events by
/// [`crate::history::coverage`], as the audit routes are, so the chart and the API agree.
pub async fn mfa_coverage(
    db: &Db,
    org: Uuid,
    last_day: NaiveDate,
    days: u32,
) -> anyhow::Result<Vec<CoveragePoint>> {
    let days = days.clamp(1, crate::history::MAX_DAYS);
    let first_day = last_day
        .checked_sub_days(chrono::Days::new(u64::from(days - 1)))
        .context("the start of the coverage window")?;
    crate::history::coverage(db, org, first_day, last_day).await
}
