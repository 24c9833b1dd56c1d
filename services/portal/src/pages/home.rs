//! `/`: Home. The Admins Without MFA Required tile with its count (for admins who keep it
//! shown and may see the directory), Settings, and the MFA coverage chart.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use chrono::Utc;
use gatehouse_domain::policy;
use gatehouse_projections::query;
use serde::Deserialize;

use super::chart::{self, Chart};
use super::error::PageError;
use super::extract::PageQuery;
use super::layout::{Layout, Section, ok};
use super::session::{Viewer, caught_up};
use crate::AppState;

#[derive(Template)]
#[template(path = "home.html")]
pub struct HomePage {
    pub layout: Layout,
    /// The tile's count, when the tile shows.
    pub tile: Option<i64>,
    /// `None` for a role that may not see directory figures (command_runner).
    pub chart: Option<Chart>,
}

#[derive(Debug, Deserialize)]
pub struct HomeParams {
    #[serde(default)]
    pub at: Option<i64>,
}

pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    PageQuery(params): PageQuery<HomeParams>,
) -> Result<Response, PageError> {
    caught_up(&state, params.at).await?;
    let (tile, chart) = if policy::can_read_directory(viewer.role()) {
        let org = viewer.org_id().0;
        let tile = if query::widget_visible(&state.db, viewer.admin_id().0).await? {
            let summary = query::org_summary(&state.db, org).await?;
            Some(summary.map_or(0, |s| s.without_mfa_required))
        } else {
            None
        };
        let points =
            query::mfa_coverage(&state.db, org, Utc::now().date_naive(), chart::DAYS).await?;
        (tile, Some(Chart::new(&points)))
    } else {
        (None, None)
    };
    Ok(ok(&HomePage {
        layout: viewer.layout(Section::Home),
        tile,
        chart,
    }))
}
