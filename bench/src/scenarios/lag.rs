//! Scenario 4: projection lag. While the scenario-1 fleet is loaded at half the rate scenario 1
//! reached, a probe flips one admin's requirement in an organisation of its own and times from
//! the command's 2xx answer until the widget's list shows the change: polling plain GETs, and
//! with `Gatehouse-Min-Position` set to the command's position (which should show it at once).
//! The two ways alternate, and each sees both directions of the flip.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper::Method;
use serde_json::json;
use uuid::Uuid;

use super::{CONNECTIONS, MIN_POSITION, Stage, commands};
use crate::load::{self, Conn, Plan, Until};
use crate::report::{Row, quantile};

/// The target of issue 7: p99 at most this.
const TARGET_MS: f64 = 100.0;

/// The background rate when scenario 1 did not run in this invocation.
const FALLBACK_RATE: f64 = 200.0;

/// How long a change may take to show before the scenario gives up.
const PATIENCE: Duration = Duration::from_secs(10);

/// Pause between plain polls: a client polling as fast as it can, without starving serve.
const POLL: Duration = Duration::from_millis(1);

/// The probe's connection, key and admin, and the widget's path.
struct Probe {
    conn: Conn,
    key: String,
    admin: Uuid,
    path: String,
}

pub async fn measure(stage: &Stage<'_>, commands_rate: Option<f64>) -> anyhow::Result<Vec<Row>> {
    let (spread, _) = stage.fleets.as_ref().context("no fleets were seeded")?;
    let (org, admin) = stage.lag.as_ref().context("no lag organisation")?;
    let rate = commands_rate.map_or(FALLBACK_RATE, |r| r / 2.0);
    let samples = if stage.env.args.quick { 100 } else { 400 };
    let mut probe = Probe {
        conn: stage.conn().await?,
        key: org.key.clone(),
        admin: *admin,
        path: "/api/v1/widgets/admins-without-mfa-required?limit=50".to_owned(),
    };

    let stop = Arc::new(AtomicBool::new(false));
    let plan = Plan {
        connections: CONNECTIONS,
        until: Until::Flag(stop.clone()),
        rate: Some(rate),
    };
    let (addr, make) = (stage.server.addr, commands::flipper(spread));
    let background = tokio::spawn(async move { load::run(addr, &plan, make).await });
    let measured = probe.sample(samples).await;
    stop.store(true, Ordering::Relaxed);
    let background = background.await.context("the background load panicked")??;
    println!(
        "background at {rate:.0} cmds/s asked: {}",
        background.summary()?
    );
    let (mut plain, mut waited, stale) = measured?;

    let origin = if commands_rate.is_some() {
        "half scenario 1's rate"
    } else {
        "scenario 1 not run"
    };
    let mut rows = Vec::new();
    for (samples, how) in [
        (&mut plain, "polling".to_owned()),
        (
            &mut waited,
            format!("with Gatehouse-Min-Position{}", stale_note(stale)),
        ),
    ] {
        let (p50, p99) = (quantile(samples, 0.5), quantile(samples, 0.99));
        rows.push(
            Row::new(
                &format!(
                    "projection lag, {how}, under {rate:.0} cmds/s ({origin}) (p99 vs {TARGET_MS} ms target)"
                ),
                "ms",
            )
            .against(p99, TARGET_MS)
            .latency(p50, p99),
        );
    }
    Ok(rows)
}

fn stale_note(stale: usize) -> String {
    if stale == 0 {
        String::new()
    } else {
        format!(" ({stale} first answers did not show it)")
    }
}

impl Probe {
    /// `samples` flips; answers the plain and the waited lags in ms, and how many waited
    /// answers did not show the change.
    async fn sample(&mut self, samples: usize) -> anyhow::Result<(Vec<f64>, Vec<f64>, usize)> {
        let (mut plain, mut waited, mut stale) = (Vec::new(), Vec::new(), 0);
        for k in 0..samples {
            // Flips alternate required / not; the way of reading alternates every two flips.
            let required = k % 2 == 0;
            let wait = (k / 2) % 2 == 1;
            let (lag, first_stale) = self.flip_and_watch(required, wait).await?;
            if wait {
                waited.push(lag);
                stale += usize::from(first_stale);
            } else {
                plain.push(lag);
            }
        }
        Ok((plain, waited, stale))
    }

    /// Sets the requirement, then reads the widget until it lists the admin exactly when it is
    /// not required; answers the ms from the command's answer, and whether the first read
    /// missed the change.
    async fn flip_and_watch(&mut self, required: bool, wait: bool) -> anyhow::Result<(f64, bool)> {
        let request = load::request(
            Method::PUT,
            &format!("/api/v1/admins/{}/mfa", self.admin),
            Some(&self.key),
            Some(&json!({ "required": required })),
        )?;
        let position = self.conn.send(request).await?.success()?.position()?;
        let answered = Instant::now();
        let mut reads = 0;
        loop {
            let mut request = load::request(Method::GET, &self.path, Some(&self.key), None)?;
            if wait {
                request
                    .headers_mut()
                    .insert(MIN_POSITION, load::number_header(position));
            }
            let page = self.conn.send(request).await?.success()?.json()?;
            reads += 1;
            if self.listed(&page)? != required {
                return Ok((answered.elapsed().as_secs_f64() * 1000.0, reads > 1));
            }
            if answered.elapsed() > PATIENCE {
                bail!("the widget did not show a change within {PATIENCE:?}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Whether the widget's page lists the probed admin.
    fn listed(&self, page: &serde_json::Value) -> anyhow::Result<bool> {
        let admins = page["admins"].as_array().context("the widget's admins")?;
        let id = self.admin.to_string();
        Ok(admins.iter().any(|a| a["id"].as_str() == Some(id.as_str())))
    }
}
