//! Scenario 5: the Admins Without MFA Required widget's first page of 50, of an organisation
//! whose 100,000 admins all lack the requirement, over 64 connections; against the ceiling
//! server ([`crate::ceiling_server`]) answering a page of 50 from a table like the read model,
//! loaded by the same generator (before serve started, see [`super`]).

use std::time::Duration;

use anyhow::{Context, ensure};
use hyper::Method;

use super::{CONNECTIONS, Stage, WIDGET_ADMINS, measured_ceiling};
use crate::env::Env;
use crate::load::{self, Plan, Until};
use crate::report::Row;
use crate::server::{Server, free_addr};
use crate::{ceiling, ceiling_server};

/// The page size (the widget's default).
const PAGE: usize = 50;

pub async fn measure(stage: &Stage<'_>) -> anyhow::Result<Vec<Row>> {
    let page = Page::checked(stage).await?;
    let ours = page.load(stage, CONNECTIONS, stage.duration()).await?;
    println!("widget page of {PAGE}: {}", ours.summary()?);

    let ceiling = measured_ceiling(&stage.ceilings.widget)?;
    let (p50, p99) = ours.p50_p99();
    let (c50, c99) = ceiling.p50_p99();
    println!("  latency ms: ours p50 {p50:.2} p99 {p99:.2}; ceiling p50 {c50:.2} p99 {c99:.2}");
    Ok(vec![ours.row(
        &format!(
            "GET widget page of {PAGE} of {} admins, {CONNECTIONS} connections{} vs axum + deadpool SELECT",
            page.admins,
            ours.failures()
        ),
        "req/s",
        ceiling.rate(),
    )])
}

/// The widget's request on the stage's widget organisation (also loaded by the login storm).
pub struct Page {
    key: String,
    path: String,
    /// The organisation's admins, all in the widget's count.
    pub admins: usize,
}

impl Page {
    /// The page, once the widget answered it in full with the whole count (the projections are
    /// up to date and the route is the one meant).
    pub async fn checked(stage: &Stage<'_>) -> anyhow::Result<Page> {
        let (org, admins) = stage.widget.as_ref().context("no widget organisation")?;
        let page = Page {
            key: org.key.clone(),
            path: format!("/api/v1/widgets/admins-without-mfa-required?limit={PAGE}"),
            admins: admins.len(),
        };
        let request = load::request(Method::GET, &page.path, Some(&page.key), None)?;
        let answer = stage.conn().await?.send(request).await?.success()?.json()?;
        let count = answer["count"].as_u64().context("the widget's count")?;
        let listed = answer["admins"].as_array().map_or(0, Vec::len);
        ensure!(
            count == page.admins as u64 && listed == PAGE,
            "the widget answered {listed} admins of {count}, not {PAGE} of {}",
            page.admins
        );
        Ok(page)
    }

    /// Loads serve with the page back to back over `connections` for `duration`.
    pub async fn load(
        &self,
        stage: &Stage<'_>,
        connections: usize,
        duration: Duration,
    ) -> anyhow::Result<load::Report> {
        let (key, path) = (self.key.clone(), self.path.clone());
        load::run(
            stage.server.addr,
            &plan(connections, duration),
            move |_, _| load::request(Method::GET, &path, Some(&key), None),
        )
        .await
    }
}

/// The ceiling server, started on a table of [`WIDGET_ADMINS`] rows and loaded as the widget
/// is, for `duration`.
pub async fn ceiling_load(
    env: &Env<'_>,
    client: &tokio_postgres::Client,
    duration: Duration,
) -> anyhow::Result<load::Report> {
    let org = ceiling::fill_admins(client, WIDGET_ADMINS).await?;
    let addr = free_addr()?;
    let command = ceiling_server::command(addr, &env.database_url())?;
    let server = Server::start(command, addr, "the ceiling server").await?;
    let path = format!("/admins?org={org}&limit={PAGE}");
    let report = load::run(addr, &plan(CONNECTIONS, duration), move |_, _| {
        load::request(Method::GET, &path, None, None)
    })
    .await;
    server.stop().await;
    report
}

fn plan(connections: usize, duration: Duration) -> Plan {
    Plan {
        connections,
        until: Until::Elapsed(duration),
        rate: None,
    }
}
